/**
 * A small typed event emitter for the core, which cannot import node:events.
 * Typed like Node's EventEmitter<Events> (each event maps to its argument
 * tuple) and with Node's semantics where the core relies on them: listeners
 * run synchronously in the order added; emit() calls the listeners present
 * when it started (one added meanwhile waits for the next emit, one removed
 * meanwhile still runs); a listener that throws stops the emit and the
 * exception reaches the emitter's caller. Unlike Node, an 'error' event with
 * no listener is not special: core events carry error codes, never throw.
 */

/** Event name to argument tuple, as for Node's EventEmitter<Events>. */
export type EventMap<E> = { [K in keyof E]: unknown[] };

/** A listener with its argument types erased: stored per event, called with that event's arguments only. */
type Listener = (...args: unknown[]) => void;
interface Entry {
  fn: Listener;
  once: boolean;
}

export class Emitter<E extends EventMap<E>> {
  private readonly listeners = new Map<keyof E, Entry[]>();

  /** Adds `fn` for `event`. */
  on<K extends keyof E>(event: K, fn: (...args: E[K]) => void): this {
    return this.add(event, fn as Listener, false);
  }

  /** Adds `fn` for the next `event` only. */
  once<K extends keyof E>(event: K, fn: (...args: E[K]) => void): this {
    return this.add(event, fn as Listener, true);
  }

  /** Removes the most recently added registration of `fn` for `event` (on or once). */
  off<K extends keyof E>(event: K, fn: (...args: E[K]) => void): this {
    const list = this.listeners.get(event);
    if (!list) return this;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i]!.fn !== (fn as Listener)) continue;
      // A new array: an emit in progress keeps iterating the one it copied.
      const next = [...list.slice(0, i), ...list.slice(i + 1)];
      if (next.length) this.listeners.set(event, next);
      else this.listeners.delete(event);
      break;
    }
    return this;
  }

  /** Calls the listeners of `event` with `args`; true if there were any. */
  emit<K extends keyof E>(event: K, ...args: E[K]): boolean {
    const list = this.listeners.get(event);
    if (!list) return false;
    for (const entry of list) {
      if (entry.once) this.removeEntry(event, entry);
      entry.fn(...args);
    }
    return true;
  }

  /** Removes every listener of `event`, or of every event. */
  removeAllListeners(event?: keyof E): this {
    if (event === undefined) this.listeners.clear();
    else this.listeners.delete(event);
    return this;
  }

  /** How many listeners `event` has. */
  listenerCount(event: keyof E): number {
    return this.listeners.get(event)?.length ?? 0;
  }

  private add(event: keyof E, fn: Listener, once: boolean): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), { fn, once }]);
    return this;
  }

  private removeEntry(event: keyof E, entry: Entry): void {
    const list = this.listeners.get(event);
    if (!list) return;
    const next = list.filter((e) => e !== entry);
    if (next.length) this.listeners.set(event, next);
    else this.listeners.delete(event);
  }
}
