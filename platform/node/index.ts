/** platform/node: what other folders use. */
export type { DirectPathEvents, DtlsKeyPair, IceServer, RtcConfig } from './rtc.js';
export { SignalClient, routeServerMessage, routeSignal, type RelayMessage, type ServerRoutes } from './signal-client.js';
export { KnownDevices, TrustedControllers, loadOrCreateDtlsCert, parseSdpFingerprint } from './trust.js';
