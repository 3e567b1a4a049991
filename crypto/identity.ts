/**
 * The long-term Ed25519 identity of one pinhole installation: created on
 * first use, then loaded, from a StateStore (crypto/state.ts; on Node the
 * state dir, platform/node/state-files.ts).
 *
 *   identity.json   {"v":1,"alg":"ed25519","secretKey":"<32 bytes base64url>","publicKey":"<32 bytes base64url>"}
 *
 * Signatures are plain Ed25519 (RFC 8032), made by the injected Curve25519
 * (crypto/curve25519.ts: @noble/curves unless the platform gives another);
 * verification is strict RFC 8032 (no ZIP-215 leniency, small-order keys
 * refused). Callers must domain-separate what they sign (e.g. a fixed
 * "pinhole/1 dtls-fp" prefix) so that one signature can never be replayed as
 * another kind of statement.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { base32, decodeBase64url, equalBytes, PinholeError, type StateErrorCode, toBase64url } from '../protocol/index.js';
import { type Curve25519, type Ed25519Key, nobleCurve25519 } from './curve25519.js';
import type { StateStore } from './state.js';

export type { StateErrorCode };

/** Name of the identity record in the state store (a file in the state dir). */
export const IDENTITY_FILE = 'identity.json';
/** Bytes of SHA-256(publicKey) shown in a fingerprint: 80 bits, 16 base32 characters. */
export const FINGERPRINT_BYTES = 10;
/** Largest identity record read; a real one is about 150 bytes. */
const MAX_IDENTITY_FILE_BYTES = 4096;

export interface Identity {
  /** Ed25519 public key, 32 bytes. Pin this full key, never the fingerprint. */
  readonly publicKey: Uint8Array;
  /** Short human form for reading aloud and comparing: XXXX-XXXX-XXXX-XXXX (base32 of SHA-256(publicKey)[0..10]). */
  readonly fingerprint: string;
  /** Where the key is stored (on Node, the key file). */
  readonly path: string;
  /** True if this call created the key. */
  readonly created: boolean;
  /** Ed25519 signature (64 bytes) of msg. */
  sign(msg: Uint8Array): Uint8Array;
}

/** The short human form of a public key: base32 of the first 10 bytes of SHA-256(publicKey), in groups of four. */
export function fingerprintOf(publicKey: Uint8Array): string {
  return base32(sha256(publicKey).subarray(0, FINGERPRINT_BYTES))
    .match(/.{1,4}/g)!
    .join('-');
}

/**
 * True for a key that can verify a strict RFC 8032 signature: 32 bytes, a
 * canonical encoding of a curve point, not of small order. Anything else can
 * never authenticate a peer, so a stored one means the file was damaged.
 */
export function isValidIdentityKey(publicKey: unknown): publicKey is Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
  try {
    return !ed25519.Point.fromBytes(publicKey, false).isSmallOrder();
  } catch {
    return false;
  }
}

/** Strict RFC 8032 Ed25519 verification; false (never a throw) for anything malformed. */
export function verifyIdentitySignature(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  return nobleCurve25519.ed25519Verify(publicKey, msg, sig);
}

/** A 32-byte key from its canonical unpadded base64url form (43 characters); undefined for anything else. */
export function decodeKey32(v: unknown): Uint8Array | undefined {
  return decodeBase64url(v, 32);
}

function encodeIdentity(secretKey: Uint8Array, publicKey: Uint8Array): string {
  return `${JSON.stringify({ v: 1, alg: 'ed25519', secretKey: toBase64url(secretKey), publicKey: toBase64url(publicKey) })}\n`;
}

function parseIdentity(text: string, path: string, curve: Curve25519): Ed25519Key {
  const corrupt = (why: string) =>
    new PinholeError(
      'state-corrupt',
      `identity file ${path} is corrupt (${why}); move it away to create a new identity (peers paired with the old one must pair again)`,
      path,
    );
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw corrupt('not JSON');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw corrupt('not an object');
  const o = j as Record<string, unknown>;
  if (o.v !== 1 || o.alg !== 'ed25519') throw corrupt('unknown version or algorithm');
  const secretKey = decodeKey32(o.secretKey);
  const publicKey = decodeKey32(o.publicKey);
  if (!secretKey || !publicKey) throw corrupt('keys are not 32-byte base64url');
  const key = curve.ed25519(secretKey);
  if (!equalBytes(key.publicKey, publicKey)) throw corrupt('public key does not match the secret key');
  return key;
}

function makeIdentity(key: Ed25519Key, path: string, created: boolean): Identity {
  return {
    publicKey: key.publicKey.slice(),
    fingerprint: fingerprintOf(key.publicKey),
    path,
    created,
    sign: (msg: Uint8Array) => {
      if (!(msg instanceof Uint8Array)) throw new TypeError('msg must be a Uint8Array');
      return key.sign(msg);
    },
  };
}

/**
 * Loads the identity in `store`, creating a fresh key on first use.
 * `rng` gives the secret key's 32 bytes (default crypto.getRandomValues);
 * `curve` makes the key pair and signs (default the pure one).
 * Throws PinholeError with a stable code.
 */
export function openIdentity(store: StateStore, rng: (n: number) => Uint8Array = randomBytes, curve: Curve25519 = nobleCurve25519): Identity {
  const path = store.where(IDENTITY_FILE);
  const label = 'identity file';
  for (let attempt = 0; attempt < 2; attempt++) {
    const text = store.read(IDENTITY_FILE, MAX_IDENTITY_FILE_BYTES, label);
    if (text !== undefined) {
      return makeIdentity(parseIdentity(text, path, curve), path, false);
    }
    const secretKey = rng(32);
    if (!(secretKey instanceof Uint8Array) || secretKey.length !== 32) throw new TypeError('rng must return 32 bytes');
    const key = curve.ed25519(secretKey);
    const fresh = encodeIdentity(secretKey, key.publicKey);
    const created = store.create ? store.create(IDENTITY_FILE, fresh, label) : (store.write(IDENTITY_FILE, fresh, label), true);
    if (created) return makeIdentity(key, path, true);
    // another process created it between our read and our create: load theirs
  }
  throw new PinholeError('state-io', `identity file ${path} keeps appearing and disappearing`, path);
}
