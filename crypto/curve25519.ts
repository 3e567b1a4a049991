/**
 * X25519 (RFC 7748) and Ed25519 (RFC 8032) as an injected dependency, like
 * the AEAD (crypto/aead.ts): the core uses the pure implementation below
 * unless the platform hands it a faster one (platform/node/curve25519.ts
 * uses OpenSSL through node:crypto). Every implementation must compute the
 * same keys, shared secrets and signatures, and accept exactly the same
 * signatures: the two sides of a session may use different ones.
 */
import { ed25519, x25519 } from '@noble/curves/ed25519.js';

/** An X25519 key pair made from a 32-byte secret (clamped as RFC 7748 says). */
export interface X25519Key {
  /** 32 bytes: the u-coordinate to send. */
  readonly publicKey: Uint8Array;
  /**
   * X25519(secret, peerPublic), 32 bytes. For a peer share of small order an
   * implementation may throw or return all zeros: callers must refuse both
   * (crypto/handshake.ts does).
   */
  sharedSecret(peerPublic: Uint8Array): Uint8Array;
}

/** An Ed25519 key pair made from a 32-byte secret key (the RFC 8032 seed). */
export interface Ed25519Key {
  /** 32 bytes. */
  readonly publicKey: Uint8Array;
  /** The 64-byte signature of msg (deterministic: every implementation gives the same bytes). */
  sign(msg: Uint8Array): Uint8Array;
}

/** The curve arithmetic the handshake and the identity need. */
export interface Curve25519 {
  /** The X25519 key pair of `secret` (32 bytes); the implementation may prepare the key once here. */
  x25519(secret: Uint8Array): X25519Key;
  /** The Ed25519 key pair of `secretKey` (32 bytes); the implementation may prepare the key once here. */
  ed25519(secretKey: Uint8Array): Ed25519Key;
  /**
   * Strict RFC 8032 verification, exactly as nobleCurve25519's: canonical
   * encodings of A and R, S < L, small-order A refused, the cofactored
   * equation. False (never a throw) for anything malformed.
   */
  ed25519Verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean;
}

/** X25519 and Ed25519 from @noble/curves: pure JS, runs anywhere. The core's default. */
export const nobleCurve25519: Curve25519 = {
  x25519(secret) {
    const sk = secret.slice();
    return { publicKey: x25519.getPublicKey(sk), sharedSecret: (peerPublic) => x25519.getSharedSecret(sk, peerPublic) };
  },
  ed25519(secretKey) {
    const sk = secretKey.slice();
    return { publicKey: ed25519.getPublicKey(sk), sign: (msg) => ed25519.sign(msg, sk) };
  },
  ed25519Verify(publicKey, msg, sig) {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
    if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(msg instanceof Uint8Array)) return false;
    try {
      return ed25519.verify(sig, msg, publicKey, { zip215: false });
    } catch {
      return false;
    }
  },
};
