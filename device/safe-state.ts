/**
 * Safe state: per output pin, a level the device sets when no
 * controller has been connected for a while, so that an output a lost
 * controller left on (a motor, a heater) does not stay on. Off by default:
 * the device builds a SafeState only when its config names pins.
 *
 * Pure: the GPIO backend and the timers are injected; no sockets, no clock.
 */

import type { Level } from '../protocol/index.js';
import { MAX_PIN, PinholeError } from '../protocol/index.js';
import { realTimers, type Timers } from '../transport/index.js';
import type { Gpio } from './gpio/gpio.js';

/**
 * Default time without any controller before the safe state is set, in ms: 30 s.
 *
 * Reason: long enough to ride out what a session survives or repairs on its
 * own (a fallback to the relay, a controller's reconnect and handshake, a
 * signaling server restart), short enough that an output left on by a lost
 * controller does not stay on for minutes.
 */
export const DEFAULT_SAFE_AFTER_MS = 30_000;

/**
 * Shortest accepted delay, in ms: 1 s. Reason: the config gives it in whole
 * seconds, and anything shorter would set the safe state during an ordinary
 * session hand-over (a new session's handshake over the relay).
 */
export const MIN_SAFE_AFTER_MS = 1_000;

/** Longest accepted delay, in ms: 2^31 - 1 (about 24.8 days). Reason: the largest delay a Node timer honours; longer ones fire at once. */
export const MAX_SAFE_AFTER_MS = 2 ** 31 - 1;

/** Options of {@link SafeState}. */
export interface SafeStateOptions {
  /** The GPIO backend. */
  gpio: Gpio;
  /** Pin -> level to set. Pins are integers 0..MAX_PIN (protocol/rpc.ts), levels 0 or 1. An empty map makes SafeState do nothing. */
  pins: ReadonlyMap<number, Level>;
  /**
   * Time with no controller connected before the pins are set, in ms: an
   * integer in MIN_SAFE_AFTER_MS..MAX_SAFE_AFTER_MS. Default
   * {@link DEFAULT_SAFE_AFTER_MS}.
   */
  afterMs?: number;
  /** Timers (default: Node's, unref'd so they never keep a process alive). */
  timers?: Timers;
  /** Called once each time the safe state is set, with the pins that were set (those that failed are left out). */
  onApplied?: (applied: ReadonlyMap<number, Level>) => void;
  /** Called for each pin that could not be set; the other pins are still set. Default: ignore. */
  onError?: (pin: number, error: unknown) => void;
}

/**
 * Tracks whether any controller session is active and sets the configured
 * pins once no controller has been connected for `afterMs`.
 *
 * - The timer starts at construction (a device that boots with no controller
 *   goes to the safe state too) and each time the count of active sessions
 *   drops to 0.
 * - `connected()` cancels it; sessions nest (each `connected()` is matched by
 *   one `disconnected()`), so the timer starts only when the last one ends.
 * - When it fires, each pin that is not already an output is set to 'out',
 *   then written with its level. A pin that fails is reported to `onError`
 *   and the rest are still set; `onApplied` is called once. The pins are set
 *   once per outage: nothing more happens until a controller connects and
 *   all controllers leave again.
 *
 * A pin that was an input is switched to output before it is written, so it
 * briefly drives its old output latch; a backend cannot set both at once.
 */
export class SafeState {
  private readonly gpio: Gpio;
  private readonly pins: ReadonlyMap<number, Level>;
  private readonly timers: Timers;
  private readonly afterMsValue: number;
  private readonly onApplied: ((applied: ReadonlyMap<number, Level>) => void) | undefined;
  private readonly onError: ((pin: number, error: unknown) => void) | undefined;
  private sessions = 0;
  private timer: unknown = undefined;
  private armed = false;
  private disposed = false;
  private appliedCount = 0;

  /** Throws PinholeError('usage') for a pin, level or delay out of range. */
  constructor(opts: SafeStateOptions) {
    const afterMs = opts.afterMs ?? DEFAULT_SAFE_AFTER_MS;
    if (!Number.isInteger(afterMs) || afterMs < MIN_SAFE_AFTER_MS || afterMs > MAX_SAFE_AFTER_MS) {
      throw new PinholeError('usage', `safe-state delay must be an integer ${MIN_SAFE_AFTER_MS}..${MAX_SAFE_AFTER_MS} ms, got ${afterMs}`);
    }
    for (const [pin, level] of opts.pins) {
      if (!isPin(pin)) throw new PinholeError('usage', `safe-state pin must be an integer 0..${MAX_PIN}, got ${pin}`);
      if (level !== 0 && level !== 1) throw new PinholeError('usage', `safe-state level of pin ${pin} must be 0 or 1, got ${String(level)}`);
    }
    this.gpio = opts.gpio;
    this.pins = new Map(opts.pins);
    this.timers = opts.timers ?? realTimers;
    this.afterMsValue = afterMs;
    this.onApplied = opts.onApplied;
    this.onError = opts.onError;
    this.arm();
  }

  /** The delay in use, in ms. */
  get afterMs(): number {
    return this.afterMsValue;
  }

  /** Controller sessions active now. */
  get activeSessions(): number {
    return this.sessions;
  }

  /** True while the timer is running (no controller, safe state not yet set). */
  get pending(): boolean {
    return this.armed;
  }

  /** Times the safe state has been set since construction. */
  get timesApplied(): number {
    return this.appliedCount;
  }

  /** A controller session became active: cancels the timer. */
  connected(): void {
    if (this.disposed) return;
    this.sessions++;
    this.disarm();
  }

  /** A controller session ended: when none is left, starts the timer. An unmatched call is ignored. */
  disconnected(): void {
    if (this.disposed || this.sessions === 0) return;
    if (--this.sessions === 0) this.arm();
  }

  /** Cancels the timer for good; later calls do nothing. */
  dispose(): void {
    this.disarm();
    this.disposed = true;
  }

  private arm(): void {
    if (this.disposed || this.pins.size === 0) return;
    this.disarm();
    this.armed = true;
    this.timer = this.timers.setTimeout(() => this.fire(), this.afterMsValue);
  }

  private disarm(): void {
    if (!this.armed) return;
    this.armed = false;
    this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(): void {
    if (!this.armed || this.disposed || this.sessions > 0) return;
    this.armed = false;
    this.timer = undefined;
    const applied = new Map<number, Level>();
    for (const [pin, level] of this.pins) {
      try {
        if (this.gpio.mode(pin) !== 'out') this.gpio.setMode(pin, 'out');
        this.gpio.write(pin, level);
        applied.set(pin, level);
      } catch (e) {
        this.report(pin, e);
      }
    }
    this.appliedCount++;
    try {
      this.onApplied?.(applied);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private report(pin: number, e: unknown): void {
    try {
      this.onError?.(pin, e);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

const isPin = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= MAX_PIN;

/** Longest safe-state spec parsed, in characters. Reason: MAX_PIN + 1 entries of "1023=0," fit in 8 KiB; anything longer is not a config. */
export const MAX_SAFE_STATE_SPEC_CHARS = 8 * 1024;

/**
 * Parses a safe-state spec, `PIN=LEVEL[,PIN=LEVEL...]` (e.g. "20=0,13=1";
 * spaces around entries allowed): pins are decimal integers 0..MAX_PIN, each
 * at most once; levels 0 or 1. Returns the map, or a one-line reason.
 * Never throws.
 */
export function parseSafeState(spec: string): Map<number, Level> | string {
  if (typeof spec !== 'string') return 'safe state must be a string like 20=0,13=1';
  if (spec.length > MAX_SAFE_STATE_SPEC_CHARS) return `safe state too long (at most ${MAX_SAFE_STATE_SPEC_CHARS} characters)`;
  if (spec.trim() === '') return 'safe state is empty: give PIN=LEVEL pairs like 20=0,13=1';
  const pins = new Map<number, Level>();
  for (const raw of spec.split(',')) {
    const entry = raw.trim();
    const shown = JSON.stringify(entry.length > 24 ? `${entry.slice(0, 24)}...` : entry);
    const m = /^(\d+)\s*=\s*(\S*)$/.exec(entry);
    if (!m) return `safe state entry ${shown} is not PIN=LEVEL (like 20=0)`;
    const pin = Number(m[1]);
    if (pin > MAX_PIN) return `safe state pin ${m[1].length > 8 ? `${m[1].slice(0, 8)}...` : m[1]} is out of range 0..${MAX_PIN}`;
    if (m[2] !== '0' && m[2] !== '1') return `safe state level of pin ${pin} must be 0 or 1`;
    if (pins.has(pin)) return `safe state names pin ${pin} twice`;
    pins.set(pin, m[2] === '1' ? 1 : 0);
  }
  return pins;
}
