/** The device side: the agent, the command handler and the GPIO backends. */
export { DeviceAgent, RECONNECT_BASE_MS, RECONNECT_MAX_MS, type DeviceConfig, type DeviceEvent } from './agent.js';
export { CommandHandler, type HandlerOptions } from './handler.js';
export { GpioError, type Gpio, type GpioErrorCode, type Level, type PinChange, type PinMode } from './gpio.js';
export { SimGpio, type SimGpioOptions } from './sim.js';
export { openMraa, type MraaOptions } from './mraa.js';
