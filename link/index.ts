/** The shared protocol and link module: what device, controller and server all speak. */
export * from './protocol.js';
export * from './rpc.js';
export { PinholeError, isPinholeError, type ErrorCode, type LocalErrorCode } from './errors.js';
export {
  generatePairingCode,
  formatPairingCode,
  parsePairingCode,
  parseRoom,
  deviceRoom,
  CODE_ALPHABET,
  SECRET_BITS,
  type PairingCode,
  type PairingCodeParse,
} from './code.js';
export { Link, realTimers, type Path, type Transport, type Timers, type LinkEvents } from './link.js';
export { SignalClient, CONNECT_TIMEOUT_MS } from './signal-client.js';
export { PeerSession, preloadDirect, OFFER_GATE_MS, type SessionOptions, type SessionSecurity, type SessionEvents, type RefusalCode, type DirectFailure } from './session.js';
export { type RtcConfig, type IceServer } from './rtc.js';
export { HandshakeError, type HandshakeErrorCode, type PeerInfo, type HandshakeResult } from './handshake.js';
export { loadOrCreateIdentity, resolveStateDir, fingerprintOf, IdentityError, type Identity, type IdentityErrorCode } from './identity.js';
export { TrustedControllers, KnownDevices, loadOrCreateDtlsCert, isValidPeerName, type TrustedController, type KnownDevice, type DtlsKeyPair } from './trust.js';
export { iceConfigFor, parseIceServer } from './ice-config.js';
export { VERSION } from './version.js';
