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
  | 'backend-unavailable' // libmraa or the GPIO character device missing or unusable
  | 'pin-busy' // another consumer holds the line
  | 'gpio-permission'; // this user may not open the GPIO chip

/** A pin's bias: pull-up, pull-down, or neither (the protocol's `pull`). */
export type Bias = 'up' | 'down' | 'disabled';

/** Settings that go with a direction (`setMode`). Absent fields leave the pin as it is. */
export interface PinSettings {
  pull?: Bias;
}

/** What a backend knows of a pin beyond its number (`describe`; shown by `info`). */
export interface PinDescription {
  pin: number;
  /** Line name, where the backend has one (the chardev's line info). */
  name?: string;
  mode?: PinMode;
  /** Bias set through pinhole; undefined: as the hardware had it. */
  pull?: Bias;
  activeLow?: boolean;
  /** Debounce period of an input, µs (0: none). */
  debounceUs?: number;
}

/**
 * One GPIO backend. Calls are synchronous because libmraa's are, and the sim
 * must behave the same way. Edges are delivered through `watch`.
 */
export interface Gpio {
  /** Backend name shown by `info`: 'sim', 'mraa' or 'chardev'. */
  readonly backend: string;
  /** Board name as the backend reports it. */
  readonly board: string;
  /** Pin numbers this backend can drive. */
  pins(): number[];
  /** Current mode of a pin, or undefined if never configured. */
  mode(pin: number): PinMode | undefined;
  /**
   * Sets a pin's direction and, with `settings.pull`, its bias. A backend
   * that cannot set a bias throws PinholeError('hardware') and leaves the pin as it was.
   */
  setMode(pin: number, mode: PinMode, settings?: PinSettings): void;
  /** Drives an output. Throws PinholeError('pin-mode') on an input. */
  write(pin: number, value: Level): void;
  /** Reads a pin: the input level, or an output's latch. */
  read(pin: number): Level;
  /** Subscribes to both edges of a pin; returns an unsubscribe function. */
  watch(pin: number, onChange: (c: PinChange) => void): () => void;
  /** Per-pin details (line names, bias, active-low, debounce), where the backend has more than numbers. */
  describe?(): PinDescription[];
  /** Releases the hardware. */
  close(): void;
}
