/** crypto: what other folders use. */
export type { Aead } from './aead.js';
export { AEAD_TAG_BYTES, nobleAead } from './aead.js';
export type { Curve25519, Ed25519Key, X25519Key } from './curve25519.js';
export { nobleCurve25519 } from './curve25519.js';
export type { HandshakeErrorCode, HandshakeResult, LocalInfo, PeerInfo } from './handshake.js';
export { ControllerHandshake, DeviceHandshake, encodeHandshake, isHandshakeText, parseHandshake } from './handshake.js';
export type { Identity, StateErrorCode } from './identity.js';
export { decodeKey32, fingerprintOf, isValidIdentityKey, openIdentity, verifyIdentitySignature } from './identity.js';
export type { KnownDevice, TrustedController } from './peers.js';
export { CONTROLLERS_FILE, corruptRecord, DEVICES_FILE, exactObject, KnownDeviceStore, TrustedControllerStore } from './peers.js';
export type { OpenErrorCode, OpenerOptions, SealerOptions, SealPath } from './seal.js';
export { deriveSealKeys, MAX_SEALED_PLAINTEXT_BYTES, Opener, Sealer } from './seal.js';
export { checkedText, type StateStore } from './state.js';
