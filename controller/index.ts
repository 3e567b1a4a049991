/** The controller API: connect() to a device (by code the first time, then by name) and drive its pins. */

export {
  type Behaviour,
  type BehaviourResult,
  classifyNat,
  DEFAULT_DOCTOR_TIMEOUT_MS,
  type DoctorOptions,
  type DoctorReport,
  type Endpoint,
  LATENCY_SAMPLES,
  type NatObservations,
  type NatReport,
  type Probe,
  type ProbeSummary,
  runDoctor,
  STUN_RTO_MS,
  type Verdict,
} from '../doctor/index.js';
export { BY_INPUT, type ErrorCode, isPinholeError, PinholeError, type Rights } from '../protocol/index.js';
export type { Path } from '../transport/index.js';
export {
  type Change,
  type ConnectOptions,
  connect,
  DEFAULT_TIMEOUT_MS,
  Device,
  type DeviceEvents,
  type DeviceInfo,
  type DirectFailed,
  RECONNECT_BASE_MS,
  RECONNECT_MAX_MS,
} from './client.js';
