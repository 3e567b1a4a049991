/** transport: what other folders use. */
export type { EventMap } from './emitter.js';
export { Emitter } from './emitter.js';
export type { Path, Timers, Transport } from './reliable.js';
export { Link, realTimers } from './reliable.js';
