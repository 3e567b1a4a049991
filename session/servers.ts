/**
 * A list of signaling servers of one deployment (`--server ws://a:8080,ws://b:8080`):
 * the servers are tried in a random order, one per attempt, so a fleet spreads
 * over them and a dead one costs one attempt. Backoff and jitter between
 * attempts are the caller's (session/backoff.ts).
 */

import { PinholeError } from '../protocol/index.js';

/** Splits a comma-separated server list (spaces around commas allowed); empty parts are dropped. */
export function splitServers(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** What is wrong with a server list: no URL, or one that is not a ws:// or wss:// URL; null if nothing. */
export function serverListProblem(list: string): string | null {
  const urls = splitServers(list);
  if (urls.length === 0) return 'names no URL';
  for (const one of urls) {
    let u: URL;
    try {
      u = new URL(one);
    } catch {
      return `${one} is not a URL; use ws://host:port`;
    }
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') return `${one} must be ws:// or wss://, not ${u.protocol}`;
  }
  return null;
}

/** Injected sources of a ServerList (tests pass fixed ones). */
export interface ServerListOptions {
  /** Uniform in [0, 1), for the order (default Math.random). */
  random?: () => number;
  /** Wall clock in ms, for avoidance (default Date.now). */
  now?: () => number;
}

/**
 * Time, in ms, a server that said `goaway` is passed over while another is
 * left: it is draining to restart, which takes about this long; a list of
 * one server, or all of them avoided, still gets it.
 */
export const GOAWAY_AVOID_MS = 30_000;

/** The servers of a list in a random order, handed out in turn, wrapping around. */
export class ServerList {
  private readonly urls: readonly string[];
  private i = 0;
  /** Servers to pass over until the time given (`now` ms). */
  private readonly avoided = new Map<string, number>();
  private readonly now: () => number;

  /** `list`: a comma-separated list (or one URL) of ws:// or wss:// URLs; anything else throws `usage`. */
  constructor(list: string, opts: ServerListOptions = {}) {
    const why = serverListProblem(list);
    if (why) throw new PinholeError('usage', `server list: ${why}`);
    const urls = splitServers(list);
    const random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    // Fisher-Yates: every order is as likely.
    for (let j = urls.length - 1; j > 0; j--) {
      const k = Math.floor(random() * (j + 1));
      [urls[j], urls[k]] = [urls[k]!, urls[j]!];
    }
    this.urls = urls;
  }

  /** How many servers the list holds. */
  get size(): number {
    return this.urls.length;
  }

  /** The server for the next attempt: the next in turn that is not avoided (if every one is, the next in turn). */
  next(): string {
    const now = this.now();
    for (let k = 0; k < this.urls.length; k++) {
      const u = this.urls[this.i]!;
      this.i = (this.i + 1) % this.urls.length;
      const until = this.avoided.get(u);
      if (until === undefined || until <= now) {
        this.avoided.delete(u);
        return u;
      }
    }
    const u = this.urls[this.i]!;
    this.i = (this.i + 1) % this.urls.length;
    return u;
  }

  /** Passes `url` over for `ms` (it said goaway). */
  avoid(url: string, ms = GOAWAY_AVOID_MS): void {
    if (this.urls.includes(url)) this.avoided.set(url, this.now() + ms);
  }
}
