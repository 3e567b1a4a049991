/**
 * The GPIO interface every backend implements. Pins are numbered as the
 * backend numbers them (libmraa numbering for `mraa`). Levels and modes are
 * the protocol's (protocol/rpc.ts).
 */
import type { Level, PinMode } from '../../protocol/index.js';

/** An edge seen on a pin. `ts` is the backend clock in ms. */
export interface PinChange {
  pin: number;
  value: Level;
  edge: 'rising' | 'falling';
  ts: number;
}

/** Stable error codes a backend throws (as PinholeError). */
export type GpioErrorCode =
  | 'no-such-pin' // the board has no GPIO with that number
  | 'pin-mode' // e.g. write to a pin configured as input
  | 'hardware' // the backend reported a failure
  | 'backend-unavailable'; // libmraa missing or unusable

/**
 * One GPIO backend. Calls are synchronous because libmraa's are, and the sim
 * must behave the same way. Edges are delivered through `watch`.
 */
export interface Gpio {
  /** Backend name shown by `info`: 'sim' or 'mraa'. */
  readonly backend: string;
  /** Board name as the backend reports it. */
  readonly board: string;
  /** Pin numbers this backend can drive. */
  pins(): number[];
  /** Current mode of a pin, or undefined if never configured. */
  mode(pin: number): PinMode | undefined;
  /** Sets a pin's direction. */
  setMode(pin: number, mode: PinMode): void;
  /** Drives an output. Throws PinholeError('pin-mode') on an input. */
  write(pin: number, value: Level): void;
  /** Reads a pin: the input level, or an output's latch. */
  read(pin: number): Level;
  /** Subscribes to both edges of a pin; returns an unsubscribe function. */
  watch(pin: number, onChange: (c: PinChange) => void): () => void;
  /** Releases the hardware. */
  close(): void;
}
