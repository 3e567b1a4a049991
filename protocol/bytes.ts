/**
 * Byte helpers for the whole core: base64url, base32, UTF-8 and
 * constant-time equality, on Uint8Array only (no Buffer: this runs in a
 * browser too).
 *
 * They live here, in protocol/, because protocol is the lowest layer: it
 * needs base64url itself (registration proofs, hello nonces), and crypto/
 * imports protocol/ anyway. This file imports nothing, so no folder index
 * can form an import cycle through it.
 */

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Byte to 6-bit value; 0xff for anything outside the base64url alphabet (its top bits mark it). */
const B64URL_VALUE = (() => {
  const t = new Uint8Array(256).fill(0xff);
  for (let i = 0; i < B64URL.length; i++) t[B64URL.charCodeAt(i)] = i;
  return t;
})();
const B64URL_CODES = Uint8Array.from(B64URL, (c) => c.charCodeAt(0));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Unpadded base64url (RFC 4648 section 5) of `bytes`. */
export function toBase64url(bytes: Uint8Array): string {
  const n = bytes.length;
  const out = new Uint8Array(Math.ceil((n * 4) / 3));
  const full = n - (n % 3);
  let o = 0;
  for (let i = 0; i < full; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = B64URL_CODES[v >>> 18]!;
    out[o++] = B64URL_CODES[(v >>> 12) & 63]!;
    out[o++] = B64URL_CODES[(v >>> 6) & 63]!;
    out[o++] = B64URL_CODES[v & 63]!;
  }
  if (n - full === 1) {
    const v = bytes[full]! << 16;
    out[o++] = B64URL_CODES[v >>> 18]!;
    out[o++] = B64URL_CODES[(v >>> 12) & 63]!;
  } else if (n - full === 2) {
    const v = (bytes[full]! << 16) | (bytes[full + 1]! << 8);
    out[o++] = B64URL_CODES[v >>> 18]!;
    out[o++] = B64URL_CODES[(v >>> 12) & 63]!;
    out[o++] = B64URL_CODES[(v >>> 6) & 63]!;
  }
  return decoder.decode(out); // ASCII, so UTF-8 decoding is the identity
}

/**
 * Strict base64url to bytes: the alphabet only, no padding, no whitespace,
 * and canonical (the unused low bits of the last character are zero), so
 * each byte string has exactly one accepted encoding. Undefined for anything
 * else; never throws.
 */
export function fromBase64url(s: unknown): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined;
  const len = s.length;
  const tail = len % 4;
  if (tail === 1) return undefined;
  // ASCII in, one byte per character: anything else does not fit and is refused
  const src = new Uint8Array(len);
  const { read, written } = encoder.encodeInto(s, src);
  if (read !== len || written !== len) return undefined;
  const out = new Uint8Array((len * 3) >>> 2);
  const full = len - tail;
  let bad = 0;
  let o = 0;
  for (let i = 0; i < full; i += 4) {
    const a = B64URL_VALUE[src[i]!]!;
    const b = B64URL_VALUE[src[i + 1]!]!;
    const c = B64URL_VALUE[src[i + 2]!]!;
    const d = B64URL_VALUE[src[i + 3]!]!;
    bad |= a | b | c | d;
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = v >>> 16;
    out[o++] = (v >>> 8) & 255;
    out[o++] = v & 255;
  }
  if (tail === 2) {
    const a = B64URL_VALUE[src[full]!]!;
    const b = B64URL_VALUE[src[full + 1]!]!;
    bad |= a | b | ((b & 15) === 0 ? 0 : 0xff); // canonical: the unused low bits are zero
    out[o++] = (a << 2) | (b >>> 4);
  } else if (tail === 3) {
    const a = B64URL_VALUE[src[full]!]!;
    const b = B64URL_VALUE[src[full + 1]!]!;
    const c = B64URL_VALUE[src[full + 2]!]!;
    bad |= a | b | c | ((c & 3) === 0 ? 0 : 0xff);
    const v = (a << 18) | (b << 12) | (c << 6);
    out[o++] = v >>> 16;
    out[o++] = (v >>> 8) & 255;
  }
  return (bad & 0xc0) === 0 ? out : undefined;
}

/** Canonical unpadded base64url of exactly `n` bytes, decoded; undefined for anything else. */
export function decodeBase64url(v: unknown, n: number): Uint8Array | undefined {
  if (typeof v !== 'string' || v.length !== Math.ceil((n * 4) / 3)) return undefined;
  const b = fromBase64url(v);
  return b !== undefined && b.length === n ? b : undefined;
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32, upper case, no padding. */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += B32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * True if `a` and `b` hold the same bytes. The time taken depends on the
 * length only, never on where they differ, so it is safe for tags and keys
 * (the length is not secret).
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** UTF-8 of a string (a lone surrogate becomes U+FFFD). */
export function utf8Encode(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Text from UTF-8 bytes; invalid sequences become U+FFFD, as a Node Buffer decodes them. */
export function utf8Decode(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Bytes of utf8Encode(s), counted without encoding. */
export function utf8ByteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
