/**
 * At-most-once execution: a bounded memory of the responses to
 * recent command ids, so that a command a controller retries (after a lost
 * ack, a path change or a reconnect) is answered with the stored response
 * instead of running a second time.
 *
 * Entries are keyed by (controller identity, request id), not by session: a
 * controller that reconnects and retries in a new session must still find
 * its earlier result, so one RecentResults outlives the sessions of a device
 * (the agent owns it; each session's CommandHandler gets it). Two
 * controllers may use the same id independently.
 *
 * Pure: no sockets, no clock. Bounded by entry count only.
 */
import type { RpcResponse } from '../protocol/index.js';

/**
 * Responses remembered in all, oldest evicted first: 4096.
 *
 * Reason: it bounds memory (a response is a few hundred bytes, so about
 * 1-2 MB at worst) while covering any realistic retry delay. The window is a
 * count, not a time: at 1000 commands/s an id older than about 4 s may be
 * forgotten and, if retried after that, run again; at 10 commands/s the
 * window is about 7 minutes. A controller must retry within it.
 */
export const MAX_RECENT_RESULTS = 4096;

/** Request ids as JSON-RPC carries them (the controller's are strings like "k3J9x2:17"; numbers still work). */
export type RequestId = number | string;

/** Options of {@link RecentResults}. */
export interface RecentResultsOptions {
  /** Entries kept in all, oldest evicted first. Positive integer; default {@link MAX_RECENT_RESULTS}. */
  limit?: number;
  /**
   * Entries kept per controller, that controller's oldest evicted first, so
   * that one busy controller cannot flush another's ids. Positive integer;
   * default `limit` (no per-controller bound).
   */
  perPeerLimit?: number;
}

/** What {@link RecentResults.run} did. */
export interface RecentRun {
  /** True if (peer, id) was already known and `response` is the stored one; false if `exec` ran now. */
  duplicate: boolean;
  /** The response: the stored one (possibly still in flight) or the fresh one. */
  response: Promise<RpcResponse>;
}

interface Entry {
  peer: string;
  response: Promise<RpcResponse>;
}

/**
 * A bounded memory of recent responses keyed by (controller identity,
 * request id). An entry is stored as soon as its command starts, holding the
 * in-flight promise: a retry that arrives while the first run is still going
 * (a long blink) waits for and gets the same response.
 *
 * Eviction is by insertion order (oldest first), whether or not the entry is
 * still in flight; see {@link MAX_RECENT_RESULTS} for the window this gives.
 * Ids 17 and "17" are different ids.
 */
export class RecentResults {
  /** Every entry, in insertion order, by global key. */
  private readonly all = new Map<string, Entry>();
  /** Per controller: its keys, in insertion order. */
  private readonly byPeer = new Map<string, Set<string>>();
  private readonly max: number;
  private readonly maxPerPeer: number;
  private dups = 0;

  constructor(opts: RecentResultsOptions = {}) {
    this.max = opts.limit ?? MAX_RECENT_RESULTS;
    this.maxPerPeer = opts.perPeerLimit ?? this.max;
    if (!Number.isSafeInteger(this.max) || this.max < 1) throw new RangeError(`limit must be a positive integer, got ${this.max}`);
    if (!Number.isSafeInteger(this.maxPerPeer) || this.maxPerPeer < 1) throw new RangeError(`perPeerLimit must be a positive integer, got ${this.maxPerPeer}`);
  }

  /** Entries held now (at most `limit`). */
  get size(): number {
    return this.all.size;
  }

  /** The bound on entries in all. */
  get limit(): number {
    return this.max;
  }

  /** Retried ids answered from memory since construction, over all controllers. */
  get duplicates(): number {
    return this.dups;
  }

  /** True if a response (or an in-flight run) for (peer, id) is remembered. */
  has(peer: string, id: RequestId): boolean {
    return this.all.has(keyOf(peer, id));
  }

  /** The remembered response for (peer, id), possibly still pending; undefined if none. */
  get(peer: string, id: RequestId): Promise<RpcResponse> | undefined {
    return this.all.get(keyOf(peer, id))?.response;
  }

  /**
   * Answers (peer, id) at most once: if it is remembered, returns the stored
   * response without calling `exec`; otherwise calls `exec` once, remembers
   * its promise at once (before it settles) and returns it. If `exec` throws
   * or its promise rejects, the entry is dropped (there is no response to
   * replay) and the rejection is passed on.
   */
  run(peer: string, id: RequestId, exec: () => Promise<RpcResponse>): RecentRun {
    const key = keyOf(peer, id);
    const known = this.all.get(key);
    if (known) {
      this.dups++;
      return { duplicate: true, response: known.response };
    }
    let response: Promise<RpcResponse>;
    try {
      response = exec();
    } catch (e) {
      response = Promise.reject(e);
    }
    const entry: Entry = { peer, response };
    this.insert(key, entry);
    response.catch(() => {
      if (this.all.get(key) === entry) this.remove(key);
    });
    return { duplicate: false, response };
  }

  /** Forgets everything (e.g. after the board was reset, when old results no longer hold). */
  clear(): void {
    this.all.clear();
    this.byPeer.clear();
  }

  private insert(key: string, entry: Entry): void {
    const before = this.byPeer.get(entry.peer);
    if (before) while (before.size >= this.maxPerPeer) this.remove(before.values().next().value as string);
    while (this.all.size >= this.max) this.remove(this.all.keys().next().value as string);
    let mine = this.byPeer.get(entry.peer);
    if (!mine) this.byPeer.set(entry.peer, (mine = new Set()));
    this.all.set(key, entry);
    mine.add(key);
  }

  private remove(key: string): void {
    const e = this.all.get(key);
    if (!e) return;
    this.all.delete(key);
    const mine = this.byPeer.get(e.peer);
    mine?.delete(key);
    if (mine && mine.size === 0) this.byPeer.delete(e.peer);
  }
}

/** Unambiguous key: JSON keeps 17 and "17" apart, and no peer string can run into the id. */
function keyOf(peer: string, id: RequestId): string {
  return JSON.stringify([peer, id]);
}
