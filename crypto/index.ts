/** crypto: what other folders use. */
export type { Aead } from './aead.js';
export { AEAD_TAG_BYTES, nobleAead } from './aead.js';
export type { Curve25519, Ed25519Key, X25519Key } from './curve25519.js';
export { nobleCurve25519 } from './curve25519.js';
export type { HandshakeErrorCode, HandshakeResult, LocalInfo, PeerInfo } from './handshake.js';
export { ControllerHandshake, DeviceHandshake, HandshakeError, encodeHandshake, isHandshakeText, parseHandshake } from './handshake.js';
export type { Identity, IdentityErrorCode } from './identity.js';
export { IdentityError, decodeKey32, fingerprintOf, isValidIdentityKey, openIdentity, verifyIdentitySignature } from './identity.js';
export type { KnownDevice, TrustedController } from './peers.js';
export { CONTROLLERS_FILE, DEVICES_FILE, KnownDeviceStore, TrustedControllerStore, corruptRecord, exactObject } from './peers.js';
export type { OpenErrorCode, OpenerOptions, SealPath, SealerOptions } from './seal.js';
export { MAX_SEALED_PLAINTEXT_BYTES, Opener, Sealer, deriveSealKeys } from './seal.js';
export type { StateStore } from './state.js';
