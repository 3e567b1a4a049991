/**
 * End-to-end protection of link frames on both paths: the server relay and
 * the direct data channel. The server only ever forwards opaque, size-limited
 * strings, and a data channel that the real peer did not open (werift 0.25.2
 * checks neither DTLS signature, docs/security.md) carries nothing that opens.
 *
 * Construction (no new primitives: HKDF-SHA-256 per RFC 5869 and
 * ChaCha20-Poly1305 per RFC 8439):
 *
 *   keys     relay:  c2d = HKDF-SHA-256(ikm = secret, salt = none, info = "pinhole/1 seal c2d" || 0x00 || sessionId, 32)
 *                    d2c = HKDF-SHA-256(ikm = secret, salt = none, info = "pinhole/1 seal d2c" || 0x00 || sessionId, 32)
 *            direct: the same with "pinhole/1 direct c2d" and "pinhole/1 direct d2c"
 *            where `secret` is the output of an authenticated key exchange for
 *            this session (crypto/handshake.ts).
 *
 *   frame    version (1 byte, 0x01) | direction (1 byte: 0x01 c2d, 0x02 d2c)
 *            | counter (8 bytes, big-endian) | ciphertext || 16-byte tag
 *   nonce    direction (1 byte) | 0x00 0x00 0x00 | counter (8 bytes, big-endian)   = 96 bits
 *   aad      the 10 header bytes || sessionId
 *   wire     base64url without padding: fits a relay `data` string or one data-channel message
 *
 * Each direction has its own key and its own nonce prefix, and the sender's
 * counter starts at 0 and only goes up, so no (key, nonce) pair is ever
 * used twice as long as `secret` (or sessionId) is fresh per session.
 *
 * Receiving: each path is one ordered stream per side (a WebSocket, an
 * ordered data channel), so the receiver needs no reordering window: a frame whose counter is not strictly
 * greater than the last accepted one is a replay (or a reorder by the relay)
 * and is dropped. Gaps are allowed: a sender may seal a frame and then fail
 * to send it; frame loss on the relay is the link layer's business (its
 * sequence numbers and resends, protocol/frames.ts), not this one's. The state
 * only advances on a frame that authenticates, so forged frames cannot
 * push the counter forward.
 *
 * Opening never throws: it returns a stable code.
 *
 * ChaCha20-Poly1305 itself is injected (`aead` option, crypto/aead.ts): the
 * pure implementation by default, a native one where the platform has it.
 * Both give the same bytes, so the two sides need not agree on which.
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { fromBase64url, MAX_LINK_FRAME_BYTES, PinholeError, toBase64url } from '../protocol/index.js';
import { AEAD_KEY_BYTES, AEAD_TAG_BYTES, type Aead, nobleAead } from './aead.js';

export type SealDirection = 'c2d' | 'd2c';

/**
 * Which path a key seals: the relay and the data channel get keys of their
 * own (and so counters of their own), so a frame from one path never opens on
 * the other.
 */
export type SealPath = 'relay' | 'direct';

const SEAL_LABEL: Record<SealPath, string> = { relay: 'seal', direct: 'direct' };

/** Frame format version. */
export const SEAL_VERSION = 1;
/** Header: version, direction, 64-bit counter. */
export const SEAL_HEADER_BYTES = 10;
/** Poly1305 tag. */
export const SEAL_TAG_BYTES = AEAD_TAG_BYTES;
/** Key length of ChaCha20-Poly1305. */
export const SEAL_KEY_BYTES = AEAD_KEY_BYTES;
/** Largest counter value: the 8-byte field is full. */
export const MAX_SEAL_COUNTER = 2n ** 64n - 1n;
/** Largest sealed frame before base64url: its encoding is exactly MAX_LINK_FRAME_BYTES characters. */
export const MAX_SEALED_FRAME_BYTES = Math.floor((MAX_LINK_FRAME_BYTES * 3) / 4);
/** Largest plaintext one sealed frame can carry (12262 bytes with a 16 KiB link frame). */
export const MAX_SEALED_PLAINTEXT_BYTES = MAX_SEALED_FRAME_BYTES - SEAL_HEADER_BYTES - SEAL_TAG_BYTES;
/** Smallest secret accepted by deriveSealKeys. */
export const MIN_SEAL_SECRET_BYTES = 32;
/** Longest session id bound into keys and frames. */
export const MAX_SEAL_SESSION_ID_BYTES = 256;

const DIRECTION_BYTE: Record<SealDirection, number> = { c2d: 0x01, d2c: 0x02 };

/** Why a frame was dropped. Stable: callers and tests match on these. */
export type OpenErrorCode =
  | 'malformed' // not a string, not canonical base64url, too short, too long, unknown version
  | 'wrong-direction' // sealed for the other direction (e.g. our own frame reflected back)
  | 'replay' // counter not above the last accepted one: a replayed or reordered frame
  | 'bad-mac'; // does not authenticate: tampered, wrong key, wrong session

export type OpenResult = { ok: true; plaintext: Uint8Array; counter: bigint } | { ok: false; code: OpenErrorCode };

/** Codes thrown when sealing (programming or capacity errors, never attacker-triggered). */
export type SealErrorCode = 'seal-too-large' | 'seal-exhausted' | 'seal-usage';

function toBytes(v: Uint8Array | string, name: string): Uint8Array {
  if (typeof v === 'string') return utf8ToBytes(v);
  if (v instanceof Uint8Array) return v;
  throw new PinholeError('seal-usage', `${name} must be a Uint8Array or a string`);
}

function checkKey(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== SEAL_KEY_BYTES) throw new PinholeError('seal-usage', `key must be ${SEAL_KEY_BYTES} bytes`);
  return key.slice();
}

function checkDirection(d: SealDirection): number {
  if (typeof d !== 'string' || !Object.hasOwn(DIRECTION_BYTE, d)) throw new PinholeError('seal-usage', "direction must be 'c2d' or 'd2c'");
  return DIRECTION_BYTE[d];
}

function checkSessionId(s: Uint8Array | string): Uint8Array {
  const b = toBytes(s, 'sessionId').slice();
  if (b.length === 0 || b.length > MAX_SEAL_SESSION_ID_BYTES) throw new PinholeError('seal-usage', `sessionId must be 1..${MAX_SEAL_SESSION_ID_BYTES} bytes`);
  return b;
}

/**
 * Per-direction keys of one path for one session, from the output of an
 * authenticated key exchange (at least 32 bytes of secret) and the session id.
 */
export function deriveSealKeys(secret: Uint8Array, sessionId: Uint8Array | string, path: SealPath = 'relay'): { c2d: Uint8Array; d2c: Uint8Array } {
  if (!(secret instanceof Uint8Array) || secret.length < MIN_SEAL_SECRET_BYTES)
    throw new PinholeError('seal-usage', `secret must be at least ${MIN_SEAL_SECRET_BYTES} bytes`);
  if (path !== 'relay' && path !== 'direct') throw new PinholeError('seal-usage', "path must be 'relay' or 'direct'");
  const sid = checkSessionId(sessionId);
  const info = (d: SealDirection) => concatBytes(utf8ToBytes(`pinhole/1 ${SEAL_LABEL[path]} ${d}`), new Uint8Array([0]), sid);
  return {
    c2d: hkdf(sha256, secret, undefined, info('c2d'), SEAL_KEY_BYTES),
    d2c: hkdf(sha256, secret, undefined, info('d2c'), SEAL_KEY_BYTES),
  };
}

function header(dir: number, counter: bigint): Uint8Array {
  const h = new Uint8Array(SEAL_HEADER_BYTES);
  h[0] = SEAL_VERSION;
  h[1] = dir;
  new DataView(h.buffer).setBigUint64(2, counter, false);
  return h;
}

function nonce(dir: number, counter: bigint): Uint8Array {
  const n = new Uint8Array(12);
  n[0] = dir;
  new DataView(n.buffer).setBigUint64(4, counter, false);
  return n;
}

/** Options of an Opener. */
export interface OpenerOptions {
  /** The ChaCha20-Poly1305 implementation (default the pure one, nobleAead). */
  aead?: Aead;
}

export interface SealerOptions extends OpenerOptions {
  /**
   * Stop after this many frames (default 2^64, every counter value). Lower it
   * to rekey early; tests lower it to reach the overflow guard.
   */
  maxFrames?: bigint;
}

/** Seals the frames one side sends in one direction. */
export class Sealer {
  readonly #key: Uint8Array;
  readonly #dir: number;
  readonly #sid: Uint8Array;
  readonly #max: bigint;
  readonly #aead: Aead;
  #next = 0n;

  constructor(key: Uint8Array, direction: SealDirection, sessionId: Uint8Array | string, opts: SealerOptions = {}) {
    this.#key = checkKey(key);
    this.#dir = checkDirection(direction);
    this.#sid = checkSessionId(sessionId);
    this.#aead = opts.aead ?? nobleAead;
    const max = opts.maxFrames ?? MAX_SEAL_COUNTER + 1n;
    if (typeof max !== 'bigint' || max < 1n || max > MAX_SEAL_COUNTER + 1n) throw new PinholeError('seal-usage', 'maxFrames must be a bigint in 1..2^64');
    this.#max = max;
  }

  /** Frames sealed so far (the next counter value). */
  get sent(): bigint {
    return this.#next;
  }

  /** Seals one plaintext into a base64url string for a relay `data` field. */
  seal(plaintext: Uint8Array | string): string {
    const pt = toBytes(plaintext, 'plaintext');
    if (pt.length > MAX_SEALED_PLAINTEXT_BYTES)
      throw new PinholeError('seal-too-large', `plaintext is ${pt.length} bytes; at most ${MAX_SEALED_PLAINTEXT_BYTES} fit one sealed frame`);
    if (this.#next >= this.#max) throw new PinholeError('seal-exhausted', 'frame counter exhausted for this key; start a new session');
    const counter = this.#next++;
    const h = header(this.#dir, counter);
    return toBase64url(concatBytes(h, this.#aead.seal(this.#key, nonce(this.#dir, counter), pt, concatBytes(h, this.#sid))));
  }
}

/** Opens the frames one side receives in one direction. */
export class Opener {
  readonly #key: Uint8Array;
  readonly #dir: number;
  readonly #sid: Uint8Array;
  readonly #aead: Aead;
  #last = -1n;

  constructor(key: Uint8Array, direction: SealDirection, sessionId: Uint8Array | string, opts: OpenerOptions = {}) {
    this.#key = checkKey(key);
    this.#dir = checkDirection(direction);
    this.#sid = checkSessionId(sessionId);
    this.#aead = opts.aead ?? nobleAead;
  }

  /** Counter of the last accepted frame, or -1n before the first. */
  get lastCounter(): bigint {
    return this.#last;
  }

  /** Opens one frame. Never throws; a failed frame leaves the state unchanged. */
  open(frame: string): OpenResult {
    if (typeof frame !== 'string' || frame.length > MAX_LINK_FRAME_BYTES) return { ok: false, code: 'malformed' };
    const raw = fromBase64url(frame);
    if (!raw || raw.length < SEAL_HEADER_BYTES + SEAL_TAG_BYTES || raw[0] !== SEAL_VERSION) return { ok: false, code: 'malformed' };
    const dir = raw[1];
    if (dir !== DIRECTION_BYTE.c2d && dir !== DIRECTION_BYTE.d2c) return { ok: false, code: 'malformed' };
    if (dir !== this.#dir) return { ok: false, code: 'wrong-direction' };
    const counter = new DataView(raw.buffer, raw.byteOffset, raw.length).getBigUint64(2, false);
    if (counter <= this.#last) return { ok: false, code: 'replay' };
    const h = raw.subarray(0, SEAL_HEADER_BYTES);
    let plaintext: Uint8Array | undefined;
    try {
      plaintext = this.#aead.open(this.#key, nonce(dir, counter), raw.subarray(SEAL_HEADER_BYTES), concatBytes(h, this.#sid));
    } catch {
      plaintext = undefined; // an injected AEAD that throws still never makes open() throw
    }
    if (plaintext === undefined) return { ok: false, code: 'bad-mac' };
    this.#last = counter;
    return { ok: true, plaintext, counter };
  }
}
