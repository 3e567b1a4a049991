/** transport: what other folders use. */
export type { EventMap } from './emitter.js';
export { Emitter } from './emitter.js';
export type { Path, Timers, Transport } from './link.js';
export { Link, realTimers } from './link.js';
