/** The device side: the agent, the shared board, the command handler and the GPIO backends. */

export type { Level, PinMode } from '../protocol/index.js';
export {
  DEFAULT_MAX_CONTROLLERS,
  DeviceAgent,
  type DeviceConfig,
  type DeviceEvent,
  HANDSHAKE_START_MS,
  HANDSHAKE_TIMEOUT_MS,
  RECONNECT_BASE_MS,
  RECONNECT_MAX_MS,
} from './agent.js';
export { Board } from './board.js';
export {
  CHARDEV_CONSUMER,
  type ChardevGpio,
  type ChardevOptions,
  type ChipReport,
  GPIO_GROUP,
  GPIO_UDEV_RULE,
  type LineReport,
  MAX_DEBOUNCE_US,
} from './gpio/chardev.js';
export type { Bias, Gpio, GpioErrorCode, PinChange, PinDescription, PinSettings } from './gpio/gpio.js';
export { type MraaOptions, openMraa } from './gpio/mraa.js';
export { SimGpio, type SimGpioOptions } from './gpio/sim.js';
export { CommandHandler, type HandlerOptions } from './handler.js';
export { MAX_RECENT_RESULTS, RecentResults, type RecentResultsOptions, type RecentRun, type RequestId } from './recent.js';
export {
  DEFAULT_SAFE_AFTER_MS,
  MAX_SAFE_AFTER_MS,
  MAX_SAFE_STATE_SPEC_CHARS,
  MIN_SAFE_AFTER_MS,
  parseSafeState,
  SafeState,
  type SafeStateOptions,
} from './safe-state.js';
