/**
 * X25519 and Ed25519 from OpenSSL (node:crypto): many times faster per
 * operation than the pure ones the core defaults to.
 *
 * Keys go in and out as JWK: node builds an OKP key straight from the raw
 * bytes that way, while DER import and export go through OpenSSL's much
 * slower decoder and encoder machinery.
 *
 * Verification accepts exactly what nobleCurve25519.ed25519Verify accepts.
 * OpenSSL checks S < L and compares the re-encoded SB - kA with R, so it
 * never takes a non-canonical R; but it takes non-canonical and small-order
 * public keys, so only keys isValidIdentityKey passes reach it, and S < L is
 * checked here too rather than trusted to every OpenSSL build. What it then
 * accepts also passes the strict check. Its equation is the cofactorless
 * one (SB = R + kA), which refuses some signatures the cofactored one takes
 * (only ones whose R or A has a small-order component, which no honest
 * signer makes); so when OpenSSL says no, the pure check decides.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject, sign, verify } from 'node:crypto';
import { type Curve25519, isValidIdentityKey, nobleCurve25519 } from '../../crypto/index.js';

/** Public keys kept ready for verification (peers reconnect with the same key); beyond this, the oldest is dropped. */
const MAX_CACHED_KEYS = 64;

const bytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);
const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');

function check32(b: Uint8Array, what: string): void {
  if (!(b instanceof Uint8Array) || b.length !== 32) throw new TypeError(`${what} must be 32 bytes`);
}

type Crv = 'X25519' | 'Ed25519';
// A private JWK must carry an `x` string, but node derives the public key from `d` and ignores it.
const privateKeyOf = (crv: Crv, d: Uint8Array): KeyObject => createPrivateKey({ key: { kty: 'OKP', crv, d: b64(d), x: '' }, format: 'jwk' });
const publicKeyOf = (crv: Crv, x: string): KeyObject => createPublicKey({ key: { kty: 'OKP', crv, x }, format: 'jwk' });
const rawPublicKey = (k: KeyObject): Uint8Array => bytes(Buffer.from(createPublicKey(k).export({ format: 'jwk' }).x!, 'base64url'));

/** L, the order of the Ed25519 base point, little-endian. */
const L = Uint8Array.from(Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex'));

/** True if the little-endian 32-byte scalar s is below L (RFC 8032 5.1.7: reject S >= L). */
export function scalarBelowOrder(s: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) if (s[i] !== L[i]) return s[i]! < L[i]!;
  return false;
}

/** Verification keys that passed isValidIdentityKey, by base64url; insertion order is age. */
const verifyKeys = new Map<string, KeyObject>();

function verifyKeyFor(publicKey: Uint8Array): KeyObject | undefined {
  const x = b64(publicKey);
  const cached = verifyKeys.get(x);
  if (cached) return cached;
  if (!isValidIdentityKey(publicKey)) return undefined;
  const key = publicKeyOf('Ed25519', x);
  if (verifyKeys.size >= MAX_CACHED_KEYS) verifyKeys.delete(verifyKeys.keys().next().value!);
  verifyKeys.set(x, key);
  return key;
}

export const nodeCurve25519: Curve25519 = {
  x25519(secret) {
    check32(secret, 'X25519 secret');
    const privateKey = privateKeyOf('X25519', secret);
    return {
      publicKey: rawPublicKey(privateKey),
      sharedSecret(peerPublic) {
        check32(peerPublic, 'X25519 public key');
        // OpenSSL refuses (throws) when the result is all zeros: a small-order peer share.
        return bytes(diffieHellman({ privateKey, publicKey: publicKeyOf('X25519', b64(peerPublic)) }));
      },
    };
  },
  ed25519(secretKey) {
    check32(secretKey, 'Ed25519 secret key');
    const privateKey = privateKeyOf('Ed25519', secretKey);
    return { publicKey: rawPublicKey(privateKey), sign: (msg) => bytes(sign(null, msg, privateKey)) };
  },
  ed25519Verify(publicKey, msg, sig) {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
    if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(msg instanceof Uint8Array)) return false;
    if (!scalarBelowOrder(sig.subarray(32))) return false;
    const key = verifyKeyFor(publicKey);
    if (!key) return false;
    try {
      if (verify(null, msg, key, sig)) return true;
    } catch {
      /* decided below */
    }
    return nobleCurve25519.ed25519Verify(publicKey, msg, sig);
  },
};
