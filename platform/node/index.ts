/** platform/node: what other folders use. */
export type { DirectPathEvents, DtlsKeyPair, IceServer, RtcConfig } from './rtc.js';
export { SignalClient } from './signal-client.js';
export { nodeAead } from './aead.js';
export { loadOrCreateDtlsCert } from './dtls-cert.js';
export { KnownDevices, TrustedControllers } from './peer-files.js';
export { FileStateStore, loadOrCreateIdentity, resolveStateDir } from './state-files.js';
// the SDP fingerprint parser moved to protocol/; kept here until session/ imports it from there
export { parseSdpFingerprint } from '../../protocol/index.js';
