// Timers the test drives by hand, shared by the unit tests that inject Timers.
import type { Timers } from '../../transport/reliable.js';

/**
 * A manual clock. `advance(ms)` moves time on and fires what falls due, in
 * order, including timers set meanwhile; `runPending()` fires every timer set
 * so far whatever its delay (for tests that count intervals, not ms).
 */
export class ManualTimers implements Timers {
  now = 0;
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.due.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    this.due.delete(h as number);
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.due.size;
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const next = [...this.due.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.due.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }

  /** Fires the timers pending now, in the order they were set (unless one clears another first); those set meanwhile wait for the next call. The clock does not move. */
  runPending(): void {
    for (const id of [...this.due.keys()]) {
      const t = this.due.get(id);
      if (!t) continue; // cleared by a timer that ran before it
      this.due.delete(id);
      t.fn();
    }
  }
}
