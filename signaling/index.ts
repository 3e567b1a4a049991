/**
 * Public API of the signaling server: start one in-process (demo, tests,
 * `pinhole signal`), or drive the pure router directly in unit tests.
 */
export {
  startSignalServer,
  resolveSignalConfig,
  DEFAULT_SIGNAL_HOST,
  DEFAULT_SIGNAL_PORT,
  DEFAULT_STUN_PORT,
  KEEPALIVE_INTERVAL_MS,
  MAX_BUFFERED_BYTES,
  MAX_PENDING_UPGRADES_PER_ADDR,
  TICK_INTERVAL_MS,
  UPGRADE_TIMEOUT_MS,
  WS_MAX_PAYLOAD_BYTES,
} from './server.js';
export type { SignalServer, SignalServerConfig, SignalServerConfigInput, SignalServerStats } from './server.js';
export {
  Router,
  CODE_UNUSED_TTL_MS,
  DEVICE_GRACE_MS,
  JOIN_RATE_PER_MIN,
  JOIN_BURST,
  REGISTER_RATE_PER_MIN,
  REGISTER_BURST,
  MAX_ROOMS_PER_ADDR,
  ADMIT_TIMEOUT_MS,
  DEFAULT_ROUTER_LIMITS,
  addressKey,
} from './router.js';
export type { Action, ConnId, RouterInput, RouterLimits, RouterOptions, RouterStats } from './router.js';
export { startStunServer, bindingResponse, CHANGE_IP, CHANGE_PORT } from './stun.js';
export type { StunServerHandle, StunServerOptions, StunStats, StunEndpoint } from './stun.js';
