/** platform/node: what other folders use. Nothing here loads werift until a direct path is tried (direct.ts). */
export type { DtlsKeyPair, IceServer, RtcConfig } from '../../session/index.js';
export { nodeAead } from './aead.js';
export { nodeCurve25519 } from './curve25519.js';
export { preloadDirect, weriftDialer } from './direct.js';
export { loadOrCreateDtlsCert } from './dtls-cert.js';
export { KnownDevices, TrustedControllers } from './peer-files.js';
export type { DirectPathEvents } from './rtc.js';
export { type RelayMessage, routeServerMessage, routeSignal, type ServerRoutes, SignalClient } from './signal-client.js';
export { FileStateStore, loadOrCreateIdentity, resolveStateDir } from './state-files.js';
