/**
 * A list of signaling servers of one deployment (`--server ws://a:8080,ws://b:8080`):
 * the servers are tried in a random order, one per attempt, so a fleet spreads
 * over them and a dead one costs one attempt. Backoff and jitter between
 * attempts are the caller's (session/backoff.ts).
 */

/** Splits a comma-separated server list (spaces around commas allowed); empty parts are dropped. */
export function splitServers(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The servers of a list in a random order, handed out in turn, wrapping around. */
export class ServerList {
  private readonly urls: readonly string[];
  private i = 0;

  /** `list`: a comma-separated list (or one URL); `random` is injectable for tests. */
  constructor(list: string, random: () => number = Math.random) {
    const urls = splitServers(list);
    if (urls.length === 0) throw new RangeError('a server list needs at least one URL');
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

  /** The server for the next attempt. */
  next(): string {
    const u = this.urls[this.i % this.urls.length]!;
    this.i = (this.i + 1) % this.urls.length;
    return u;
  }
}
