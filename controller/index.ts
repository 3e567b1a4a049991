/** The controller API: connect() to a device by code and drive its pins. */
export { connect, Device, DEFAULT_TIMEOUT_MS, type ConnectOptions, type Change, type DeviceInfo, type DeviceEvents } from './client.js';
export { PinholeError, isPinholeError, type ErrorCode, type Path } from '../link/index.js';
