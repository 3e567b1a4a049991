/** ChaCha20-Poly1305 from OpenSSL (node:crypto): several times faster per frame than the pure one the core defaults to. */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { AEAD_TAG_BYTES, type Aead } from '../../crypto/index.js';

const bytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);

export const nodeAead: Aead = {
  seal(key, nonce, plaintext, ad) {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES });
    c.setAAD(ad, { plaintextLength: plaintext.length });
    return bytes(Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]));
  },
  open(key, nonce, sealed, ad) {
    if (sealed.length < AEAD_TAG_BYTES) return undefined;
    try {
      const body = sealed.subarray(0, sealed.length - AEAD_TAG_BYTES);
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES });
      d.setAAD(ad, { plaintextLength: body.length });
      d.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_BYTES));
      return bytes(Buffer.concat([d.update(body), d.final()]));
    } catch {
      return undefined;
    }
  },
};
