/** crypto: what other folders use. */
export type { HandshakeErrorCode, HandshakeResult, LocalInfo, PeerInfo } from './handshake.js';
export { ControllerHandshake, DeviceHandshake, HandshakeError, encodeHandshake, isHandshakeText, parseHandshake } from './handshake.js';
export type { Identity, IdentityErrorCode } from './identity.js';
export { IdentityError, createSecureFile, decodeKey32, ensureStateDir, fingerprintOf, isValidIdentityKey, loadOrCreateIdentity, readSecureFile, resolveStateDir, verifyIdentitySignature, writeSecureFile } from './identity.js';
export type { OpenErrorCode, SealPath } from './seal.js';
export { MAX_SEALED_PLAINTEXT_BYTES, Opener, Sealer, deriveSealKeys } from './seal.js';
