/** The shared protocol and link module: what device, controller and server all speak. */
export * from './protocol.js';
export * from './rpc.js';
export { PinholeError, isPinholeError, type ErrorCode, type LocalErrorCode } from './errors.js';
export { generateCode, parseCode, formatCode, CODE_BITS, CODE_ALPHABET, type CodeParse } from './code.js';
export { Link, type Path, type Transport, type Timers, type LinkEvents } from './link.js';
export { SignalClient, CONNECT_TIMEOUT_MS } from './signal-client.js';
export { PeerSession, preloadDirect, type SessionOptions } from './session.js';
export { type RtcConfig, type IceServer } from './rtc.js';
export { iceConfigFor, parseIceServer } from './ice-config.js';
export { VERSION } from './version.js';
