/** The device side: the agent, the command handler and the GPIO backends. */
export { DeviceAgent, RECONNECT_BASE_MS, RECONNECT_MAX_MS, HANDSHAKE_TIMEOUT_MS, HANDSHAKE_START_MS, type DeviceConfig, type DeviceEvent } from './agent.js';
export { CommandHandler, type HandlerOptions } from './handler.js';
export { RecentResults, MAX_RECENT_RESULTS, type RecentResultsOptions, type RecentRun, type RequestId } from './recent.js';
export {
  SafeState,
  parseSafeState,
  DEFAULT_SAFE_AFTER_MS,
  MIN_SAFE_AFTER_MS,
  MAX_SAFE_AFTER_MS,
  MAX_SAFE_STATE_SPEC_CHARS,
  type SafeStateOptions,
} from './safe-state.js';
export { type Gpio, type GpioErrorCode, type PinChange } from './gpio/gpio.js';
export type { Level, PinMode } from '../protocol/index.js';
export { SimGpio, type SimGpioOptions } from './gpio/sim.js';
export { openMraa, type MraaOptions } from './gpio/mraa.js';
