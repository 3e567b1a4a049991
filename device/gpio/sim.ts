/**
 * The simulated board: pinhole's default backend. It behaves like a libmraa
 * board (modes, levels, edges) so that everything above the Gpio interface
 * works the same with or without hardware.
 */
import { performance } from 'node:perf_hooks';
import type { Level, PinMode } from '../../protocol/index.js';
import { PinholeError } from '../../protocol/index.js';
import type { Bias, Gpio, PinChange, PinSettings } from './gpio.js';

/** Default number of pins: 0..63. */
export const SIM_DEFAULT_PIN_COUNT = 64;
/** Default number of changes kept per pin by `trace`; bounds memory on a long-running device. */
export const SIM_DEFAULT_TRACE_LIMIT = 1000;

/** Options of {@link SimGpio}. */
export interface SimGpioOptions {
  /**
   * Pins of the board: a count n (pins 0..n-1) or an explicit list of pin
   * numbers (non-negative integers). Default {@link SIM_DEFAULT_PIN_COUNT}, i.e. 0..63.
   */
  pins?: number | readonly number[];
  /**
   * Clock in milliseconds used for `PinChange.ts` and `trace` timestamps.
   * Default `performance.now()`: monotonic (immune to wall-clock steps),
   * counted from process start, sub-millisecond resolution.
   */
  now?: () => number;
  /** Board name reported by `board`. Default 'sim'. */
  board?: string;
  /** Changes kept per pin by `trace` (oldest dropped first). Default {@link SIM_DEFAULT_TRACE_LIMIT}. */
  traceLimit?: number;
}

/** One recorded change of a pin's observed value. `ts` is the sim clock in ms. */
export interface TraceEntry {
  ts: number;
  value: Level;
}

/** Calls made on a pin since the sim was created. */
export interface PinCounters {
  /** `write` calls, including ones that threw 'pin-mode'. */
  writes: number;
  /** `read` calls. */
  reads: number;
}

interface SimPin {
  mode: PinMode | undefined;
  /** Bias set with setMode; undefined until set. */
  pull: Bias | undefined;
  /** Level driven from outside; undefined: nothing drives it (an input then reads its bias, 0 without a pull-up). */
  driven: Level | undefined;
  /** Output latch; what an output reads and drives. */
  latch: Level;
  watchers: Set<(c: PinChange) => void>;
  trace: TraceEntry[];
  writes: number;
  reads: number;
}

/**
 * A simulated board.
 *
 * - A pin's mode is undefined until configured. `read` on such a pin makes it
 *   an input, `write` makes it an output (as libmraa init + dir would).
 * - An input reads the level driven on it from outside (`drive`); with
 *   nothing driving it, its bias: 1 with a pull-up, else 0. An output reads
 *   its latch (0 until written).
 * - `write` on an input throws PinholeError('pin-mode'); any call with a pin the
 *   board lacks throws PinholeError('no-such-pin').
 * - Watchers get a PinChange whenever the pin's observed value changes: an
 *   output write of a new value, `drive` of a new level on an input (or
 *   unconfigured pin), or a mode switch that exposes a different level. Never
 *   for a write of the value already there. Watchers run synchronously inside
 *   the call that caused the change; an exception thrown by a watcher does not
 *   reach the caller or the other watchers, it is rethrown in a microtask.
 */
export class SimGpio implements Gpio {
  readonly backend = 'sim';
  readonly board: string;
  private readonly now: () => number;
  private readonly traceLimit: number;
  private readonly state = new Map<number, SimPin>();

  constructor(opts: SimGpioOptions = {}) {
    this.board = opts.board ?? 'sim';
    this.now = opts.now ?? (() => performance.now());
    this.traceLimit = opts.traceLimit ?? SIM_DEFAULT_TRACE_LIMIT;
    if (!Number.isInteger(this.traceLimit) || this.traceLimit < 0) {
      throw new RangeError(`traceLimit must be a non-negative integer, got ${this.traceLimit}`);
    }
    const spec = opts.pins ?? SIM_DEFAULT_PIN_COUNT;
    const list = typeof spec === 'number' ? countToList(spec) : spec;
    for (const p of list) {
      if (!Number.isInteger(p) || p < 0) throw new RangeError(`pin numbers must be non-negative integers, got ${p}`);
      this.state.set(p, { mode: undefined, pull: undefined, driven: undefined, latch: 0, watchers: new Set(), trace: [], writes: 0, reads: 0 });
    }
  }

  pins(): number[] {
    return [...this.state.keys()].sort((a, b) => a - b);
  }

  mode(pin: number): PinMode | undefined {
    return this.pin(pin).mode;
  }

  setMode(pin: number, mode: PinMode, settings: PinSettings = {}): void {
    if (mode !== 'in' && mode !== 'out') throw new RangeError(`mode must be 'in' or 'out', got ${String(mode)}`);
    const pull = settings.pull;
    if (pull !== undefined && pull !== 'up' && pull !== 'down' && pull !== 'disabled')
      throw new RangeError(`pull must be up, down or disabled, got ${String(pull)}`);
    const p = this.pin(pin);
    this.change(pin, p, () => {
      p.mode = mode;
      if (pull !== undefined) p.pull = pull;
    });
  }

  /** The bias set on a pin with setMode, or undefined. */
  pull(pin: number): Bias | undefined {
    return this.pin(pin).pull;
  }

  write(pin: number, value: Level): void {
    const p = this.pin(pin);
    checkLevel(value);
    p.writes++;
    if (p.mode === 'in') throw new PinholeError('pin-mode', `pin ${pin} is an input; set it to 'out' before writing`);
    this.change(pin, p, () => {
      p.mode = 'out';
      p.latch = value;
    });
  }

  read(pin: number): Level {
    const p = this.pin(pin);
    p.reads++;
    if (p.mode === undefined) p.mode = 'in'; // reads the driven level either way: no change
    return observed(p);
  }

  watch(pin: number, onChange: (c: PinChange) => void): () => void {
    const p = this.pin(pin);
    // Wrap so the same function can be subscribed twice and unsubscribed independently.
    const entry = (c: PinChange): void => onChange(c);
    p.watchers.add(entry);
    return () => {
      p.watchers.delete(entry);
    };
  }

  close(): void {
    for (const p of this.state.values()) p.watchers.clear();
  }

  /**
   * Drives a level onto a pin from outside the board (a button, another
   * chip). Allowed on inputs and unconfigured pins; throws
   * PinholeError('pin-mode') on an output, whose level the board itself
   * drives. `undefined` stops driving it: an input then reads its bias
   * (1 with a pull-up, else 0).
   */
  drive(pin: number, level: Level | undefined): void {
    const p = this.pin(pin);
    if (level !== undefined) checkLevel(level);
    if (p.mode === 'out') throw new PinholeError('pin-mode', `pin ${pin} is an output; it cannot be driven from outside`);
    this.change(pin, p, () => {
      p.driven = level;
    });
  }

  /**
   * Recorded changes of a pin's observed value, oldest first: at most the
   * last `traceLimit` (default 1000). Returns a copy.
   */
  trace(pin: number): TraceEntry[] {
    return this.pin(pin).trace.map((e) => ({ ...e }));
  }

  /** Number of `write` and `read` calls made on a pin (a copy). */
  counters(pin: number): PinCounters {
    const p = this.pin(pin);
    return { writes: p.writes, reads: p.reads };
  }

  private pin(pin: number): SimPin {
    const p = this.state.get(pin);
    if (!p) throw new PinholeError('no-such-pin', `board '${this.board}' has no pin ${pin}`);
    return p;
  }

  /** Applies a mutation and records/emits the change of observed value, if any. */
  private change(pin: number, p: SimPin, mutate: () => void): void {
    const before = observed(p);
    mutate();
    const value = observed(p);
    if (value === before) return;
    const ts = this.now();
    if (this.traceLimit > 0) {
      if (p.trace.length >= this.traceLimit) p.trace.shift();
      p.trace.push({ ts, value });
    }
    const c: PinChange = { pin, value, edge: value === 1 ? 'rising' : 'falling', ts };
    for (const w of [...p.watchers]) {
      try {
        w({ ...c });
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

function observed(p: SimPin): Level {
  if (p.mode === 'out') return p.latch;
  return p.driven ?? (p.pull === 'up' ? 1 : 0);
}

function countToList(n: number): number[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`pin count must be a non-negative integer, got ${n}`);
  return Array.from({ length: n }, (_, i) => i);
}

function checkLevel(v: unknown): asserts v is Level {
  if (v !== 0 && v !== 1) throw new RangeError(`level must be 0 or 1, got ${String(v)}`);
}
