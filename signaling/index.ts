/**
 * Public API of the signaling server: start one in-process (demo, tests,
 * `pinhole signal`), or drive the pure router directly in unit tests.
 */

export type { ClusterOptions, ClusterStats } from './cluster.js';
export { HEARTBEAT_MS, NODE_TTL_MS, PRESENCE_TTL_MS } from './cluster.js';
export type { AllowedOrigins } from './origin.js';
export { checkOrigin, normalizeOrigin, parseAllowedOrigins, parseOriginFlag } from './origin.js';
export { loadPage, PAGE_CSP, PAGE_DIR, type PageFiles, type PageManifest, pageHash, servePage } from './page.js';
export type { Action, ConnId, RouterInput, RouterLimits, RouterOptions, RouterStats } from './router.js';
export {
  ADMIT_TIMEOUT_MS,
  addressKey,
  CODE_UNUSED_TTL_MS,
  DEFAULT_ROUTER_LIMITS,
  DEVICE_GRACE_MS,
  JOIN_BURST,
  JOIN_RATE_PER_MIN,
  MAX_CONTROLLERS_PER_ROOM,
  MAX_ROOMS_PER_ADDR,
  REGISTER_BURST,
  REGISTER_RATE_PER_MIN,
  Router,
} from './router.js';
export type { SignalServer, SignalServerConfig, SignalServerConfigInput, SignalServerStats } from './server.js';
export {
  DEFAULT_SIGNAL_HOST,
  DEFAULT_SIGNAL_PORT,
  DEFAULT_STUN_PORT,
  DRAIN_MS,
  GOAWAY_RECONNECT_MS,
  KEEPALIVE_INTERVAL_MS,
  MAX_BUFFERED_BYTES,
  MAX_PENDING_UPGRADES_PER_ADDR,
  resolveSignalConfig,
  startSignalServer,
  TICK_INTERVAL_MS,
  UPGRADE_TIMEOUT_MS,
  WS_MAX_PAYLOAD_BYTES,
} from './server.js';
export type { StunEndpoint, StunServerHandle, StunServerOptions, StunStats } from './stun.js';
export { bindingResponse, CHANGE_IP, CHANGE_PORT, startStunServer } from './stun.js';
