/**
 * One board, many hands: the GPIO backend as every controller session of a
 * device shares it. No sockets here; the backend and the clock are injected.
 *
 * - Commands run in the order they reach the board (each call is
 *   synchronous up to its first toggle), whoever sends them.
 * - A write, mode change or blink on a pin whose blink is running (whoever
 *   started it) stops that blink first; the blink's call then ends with
 *   PinholeError('preempted'), and it never writes again.
 * - Each edge is delivered to every watcher of the pin, in the order the
 *   backend reports them, with `by`: the name of the controller whose write,
 *   blink toggle or mode change caused it, else BY_INPUT.
 */
import { BY_INPUT, type Level, PinholeError, type PinMode } from '../protocol/index.js';
import type { Gpio, PinChange, PinDescription, PinSettings } from './gpio/gpio.js';

/**
 * How long after a write an edge of the written level may still be put down
 * to that write, in ms, for a backend that reports it later rather than
 * inside the write (libmraa's ISR thread hands the edge to the event loop,
 * so it arrives behind whatever else is queued; a polled pin within
 * MRAA_POLL_INTERVAL_MS, 20 ms). 250 ms covers either plus a busy small
 * board's event-loop stalls many times over, and erring long costs little: a
 * written pin is an output, whose level only the board drives, and a mode
 * change forgets the writes before it.
 */
export const ATTRIBUTION_WINDOW_MS = 250;

/**
 * Writes per pin remembered for a late edge (oldest dropped first). A blink
 * at the shortest interval (10 ms) makes 25 in one window; two writers
 * interleaving on one pin fit too.
 */
export const MAX_PENDING_WRITES = 32;

/** An edge as a watcher of the board sees it: who caused it as well. */
export interface BoardChange extends PinChange {
  /** The name of the controller whose command caused the edge, or BY_INPUT. */
  by: string;
}

/** Options of a {@link Board}. */
export interface BoardOptions {
  /** Clock in ms for the attribution window (default `performance.now()`). */
  now?: () => number;
}

/** Result of a blink that ran to its end (or whose session went away). */
export interface BlinkResult {
  pin: number;
  toggles: number;
  value: Level;
}

/** A write not yet matched with an edge. */
interface PendingWrite {
  value: Level;
  by: string;
  at: number;
}

/** A blink in progress on one pin; `phase` changes once, when another command stops it. */
interface RunningBlink {
  by: string;
  toggles: number;
  times: number;
  phase: { state: 'running' } | { state: 'preempted'; by: string; method: string };
  /** Ends the blink's current wait at once. */
  wake: () => void;
}

/** What a pin's watchers share: one backend subscription. */
interface PinWatch {
  watchers: Set<(c: BoardChange) => void>;
  off: () => void;
}

/** The GPIO backend shared by every controller session of one device. */
export class Board {
  private readonly now: () => number;
  private readonly blinks = new Map<number, RunningBlink>();
  private readonly pending = new Map<number, PendingWrite[]>();
  private readonly watches = new Map<number, PinWatch>();
  /** The command running on the backend right now: an edge it delivers inside the call is this one's. */
  private causing: { pin: number; by: string; delivered: boolean } | undefined;

  constructor(
    /** The backend: a write past the board would escape preemption and attribution. */
    private readonly gpio: Gpio,
    opts: BoardOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** Backend name shown by `info`. */
  get backend(): string {
    return this.gpio.backend;
  }

  /** Board name as the backend reports it. */
  get name(): string {
    return this.gpio.board;
  }

  /** Pin numbers the backend can drive. */
  pins(): number[] {
    return this.gpio.pins();
  }

  /** Who runs a blink on `pin` now, or undefined. */
  blinker(pin: number): string | undefined {
    return this.blinks.get(pin)?.by;
  }

  read(pin: number): Level {
    return this.gpio.read(pin);
  }

  /** Drives an output for controller `by`, stopping a blink on the pin first. */
  write(pin: number, value: Level, by: string): void {
    this.preempt(pin, by, 'gpio.write');
    this.drive(pin, value, by);
  }

  /** Sets a pin's direction (and bias, with `settings.pull`) for controller `by`, stopping a blink on the pin first. */
  setMode(pin: number, mode: PinMode, by: string, settings: PinSettings = {}): void {
    this.preempt(pin, by, 'gpio.mode');
    // Edges that follow are the new direction's: no earlier write explains them.
    this.pending.delete(pin);
    this.cause(pin, by, () => (settings.pull === undefined ? this.gpio.setMode(pin, mode) : this.gpio.setMode(pin, mode, settings)));
  }

  /** Per-pin details, where the backend has them (line names, bias, active-low, debounce). */
  describe(): PinDescription[] | undefined {
    return this.gpio.describe?.();
  }

  /**
   * Toggles `pin` `times` times, `intervalMs` apart (waiting with `sleep`),
   * for controller `by`, stopping a blink already on the pin first.
   * Resolves after the last toggle, or early and quietly once `isCancelled`
   * (the session went away) says so. Rejects with PinholeError('preempted')
   * when another write, mode change or blink on the pin stops it; it does not
   * write after that, and does not wait out its current interval either.
   */
  async blink(
    pin: number,
    times: number,
    intervalMs: number,
    by: string,
    sleep: (ms: number) => Promise<void>,
    isCancelled: () => boolean,
  ): Promise<BlinkResult> {
    if (this.gpio.mode(pin) === 'in') throw new PinholeError('pin-mode', `pin ${pin} is an input`);
    this.preempt(pin, by, 'gpio.blink');
    const run: RunningBlink = { by, toggles: 0, times, phase: { state: 'running' }, wake: () => {} };
    const stopped = new Promise<void>((r) => (run.wake = r));
    this.blinks.set(pin, run);
    try {
      let value: Level = this.gpio.mode(pin) === 'out' ? this.gpio.read(pin) : 0;
      while (run.toggles < times) {
        if (isCancelled()) break; // a session that went away stops quietly, even if preempted meanwhile
        const p = run.phase;
        if (p.state === 'preempted') {
          throw new PinholeError('preempted', `the blink on pin ${pin} was stopped after ${run.toggles} of ${times} toggles by ${p.by}'s ${p.method}`);
        }
        value = value === 1 ? 0 : 1;
        this.drive(pin, value, by);
        run.toggles++;
        if (run.toggles < times) await Promise.race([sleep(intervalMs), stopped]);
      }
      return { pin, toggles: run.toggles, value };
    } finally {
      if (this.blinks.get(pin) === run) this.blinks.delete(pin);
    }
  }

  /**
   * Subscribes to a pin's edges; returns the unsubscribe function. Every
   * watcher of a pin gets every edge, in order. The backend is watched once
   * per pin, while it has watchers. A watcher that throws does not stop the
   * others; its error is rethrown in a microtask.
   */
  watch(pin: number, fn: (c: BoardChange) => void): () => void {
    let w = this.watches.get(pin);
    if (!w) {
      const off = this.gpio.watch(pin, (c) => this.deliver(c));
      w = { watchers: new Set(), off };
      this.watches.set(pin, w);
    }
    // Wrapped, so the same function can be subscribed twice and unsubscribed independently.
    const entry = (c: BoardChange): void => fn(c);
    w.watchers.add(entry);
    const watch = w;
    return () => {
      if (!watch.watchers.delete(entry) || watch.watchers.size > 0) return;
      watch.off();
      if (this.watches.get(pin) === watch) this.watches.delete(pin);
    };
  }

  /** Stops the blink on `pin`, if any, in favour of `by`'s `method`. */
  private preempt(pin: number, by: string, method: string): void {
    const run = this.blinks.get(pin);
    if (!run) return;
    this.blinks.delete(pin);
    run.phase = { state: 'preempted', by, method };
    run.wake();
  }

  /** Writes for `by` (no preemption: a blink's own toggles come here) and, on a watched pin, remembers the write for a late edge. */
  private drive(pin: number, value: Level, by: string): void {
    const inCall = this.cause(pin, by, () => this.gpio.write(pin, value));
    // Reported inside the write, or nobody to tell: nothing to attribute later.
    if (inCall || !this.watches.has(pin)) return;
    const list = this.pending.get(pin) ?? [];
    if (list.length >= MAX_PENDING_WRITES) list.shift();
    list.push({ value, by, at: this.now() });
    this.pending.set(pin, list);
  }

  /** Runs a backend call on behalf of `by`; true if it delivered an edge of `pin` inside the call. */
  private cause(pin: number, by: string, call: () => void): boolean {
    const outer = this.causing;
    const mark = { pin, by, delivered: false };
    this.causing = mark;
    try {
      call();
    } finally {
      this.causing = outer;
    }
    return mark.delivered;
  }

  /** Attributes one backend edge and hands it to every watcher of its pin. */
  private deliver(c: PinChange): void {
    const change: BoardChange = { ...c, by: this.attribute(c) };
    const w = this.watches.get(c.pin);
    if (!w) return;
    for (const fn of [...w.watchers]) {
      try {
        fn({ ...change });
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * Who caused an edge: the command running on the backend if the edge came
   * inside it; else the oldest write of that level within
   * ATTRIBUTION_WINDOW_MS not yet matched (it and the writes before it are
   * used up: each write explains at most one edge); else BY_INPUT.
   */
  private attribute(c: PinChange): string {
    const now = this.causing;
    if (now && now.pin === c.pin) {
      now.delivered = true;
      return now.by;
    }
    const list = this.pending.get(c.pin);
    if (!list) return BY_INPUT;
    const since = this.now() - ATTRIBUTION_WINDOW_MS;
    const i = list.findIndex((w) => w.at >= since && w.value === c.value);
    if (i < 0) {
      if (list.every((w) => w.at < since)) this.pending.delete(c.pin);
      return BY_INPUT;
    }
    const by = list[i].by;
    list.splice(0, i + 1);
    if (list.length === 0) this.pending.delete(c.pin);
    return by;
  }
}
