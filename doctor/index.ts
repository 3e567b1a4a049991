/** doctor: what other folders use. */
export type { Behaviour, BehaviourResult, Endpoint, NatObservations, NatReport, Probe, Verdict } from './nat-behaviour.js';
export { classifyNat } from './nat-behaviour.js';
export type { DoctorOptions, DoctorReport, ProbeSummary } from './netcheck.js';
export { DEFAULT_DOCTOR_TIMEOUT_MS, LATENCY_SAMPLES, runDoctor, STUN_RTO_MS } from './netcheck.js';
