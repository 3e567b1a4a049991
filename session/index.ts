/** session: what other folders use. */

export { Backoff, type BackoffOptions } from './backoff.js';
export { type CandidateSignal, CoordinatedStart, type StartPeer } from './coordinated-start.js';
export type { Dialer, DirectAttempt, DirectAttemptEvents, DirectFailedInfo, DirectFailure, DirectPhase, DtlsKeyPair, IceServer, RtcConfig } from './direct.js';
export { iceConfigFor, parseIceServer } from './ice-config.js';
export { ServerList, type ServerListOptions, serverListProblem, splitServers } from './servers.js';
export type { RefusalCode, RelaySocket, SessionEvents, SessionOptions, SessionPhase, SessionSecurity } from './session.js';
export { PeerSession } from './session.js';
export { type RelayMessage, routeServerMessage, routeSignal, type ServerRoutes, SignalChannel, type SignalEvents, type TextSocket } from './signal.js';
