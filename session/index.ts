/** session: what other folders use. */
export { iceConfigFor, parseIceServer } from './ice-config.js';
export type { SessionEvents } from './session.js';
export { PeerSession, preloadDirect } from './session.js';
export { Backoff, type BackoffOptions } from './backoff.js';
