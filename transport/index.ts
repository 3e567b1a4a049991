/** transport: what other folders use. */
export type { Path, Timers, Transport } from './link.js';
export { Link, realTimers } from './link.js';
