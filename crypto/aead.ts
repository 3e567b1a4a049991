/**
 * ChaCha20-Poly1305 (RFC 8439) as an injected dependency: the core seals with
 * the pure implementation below unless the platform hands it a faster one
 * (platform/node/aead.ts uses OpenSSL through node:crypto). Every
 * implementation must give the same bytes for the same inputs: the two
 * sides of a session may use different ones.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';

/** Key bytes of ChaCha20-Poly1305. */
export const AEAD_KEY_BYTES = 32;
/** Nonce bytes (96-bit IETF nonce). */
export const AEAD_NONCE_BYTES = 12;
/** Poly1305 tag bytes, appended to the ciphertext. */
export const AEAD_TAG_BYTES = 16;

/** An AEAD: ChaCha20-Poly1305 with a 32-byte key and a 12-byte nonce. */
export interface Aead {
  /** Ciphertext followed by the 16-byte tag. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array;
  /** The plaintext, or undefined if `sealed` does not authenticate under key, nonce and ad. Never throws. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | undefined;
}

/** ChaCha20-Poly1305 from @noble/ciphers: pure JS, runs anywhere. The core's default. */
export const nobleAead: Aead = {
  seal: (key, nonce, plaintext, ad) => chacha20poly1305(key, nonce, ad).encrypt(plaintext),
  open: (key, nonce, sealed, ad) => {
    try {
      return chacha20poly1305(key, nonce, ad).decrypt(sealed);
    } catch {
      return undefined;
    }
  },
};
