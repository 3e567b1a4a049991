/** The controller API: connect() to a device (by code the first time, then by name) and drive its pins. */
export {
  connect,
  Device,
  DEFAULT_TIMEOUT_MS,
  RECONNECT_BASE_MS,
  RECONNECT_MAX_MS,
  type ConnectOptions,
  type Change,
  type DeviceInfo,
  type DeviceEvents,
  type DirectFailed,
} from './client.js';
export { PinholeError, isPinholeError, type ErrorCode } from '../protocol/index.js';
export { type Path } from '../transport/index.js';
export {
  runDoctor,
  DEFAULT_DOCTOR_TIMEOUT_MS,
  STUN_RTO_MS,
  LATENCY_SAMPLES,
  type DoctorOptions,
  type DoctorReport,
  type ProbeSummary,
} from '../doctor/index.js';
export {
  classifyNat,
  type NatObservations,
  type NatReport,
  type Probe,
  type Endpoint,
  type Behaviour,
  type BehaviourResult,
  type Verdict,
} from '../doctor/index.js';
