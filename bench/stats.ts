/** Latency samples: timing loops and summaries (all times in ms). */

/** How long a round-trip figure samples, and after how much warm-up. */
export interface LoopOptions {
  /** Untimed iterations first (JIT, caches, congestion windows). */
  warmup: number;
  /** Warm-up stops after this long even if fewer iterations ran, in ms. */
  warmupMaxMs: number;
  /** Timed iterations wanted. */
  iterations: number;
  /** Stop timing after this long even if fewer iterations ran, in ms. */
  maxMs: number;
}

/** Summary of one figure. */
export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of sorted samples (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** n, mean, p50, p99, min, max of the samples. */
export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
  return { n: s.length, mean, p50: percentile(s, 50), p99: percentile(s, 99), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}

/** Something whose round trip is timed; close() releases it. */
export interface Runner {
  roundTrip(): Promise<unknown>;
  /** Throws if the figure is not what it claims (called after timing). */
  verify?(): void;
  close(): Promise<void>;
}

/**
 * Times runners against each other: each warms up, then they take turns in
 * `rounds` blocks (A B C A B C ...), so load from elsewhere on the machine
 * falls on all of them alike. Each runner gets iterations/rounds round trips
 * and maxMs/rounds of time per block; round trips run one at a time.
 */
export async function timeInterleaved(runners: readonly Runner[], o: LoopOptions, rounds: number): Promise<Summary[]> {
  for (const r of runners) await warmUp(() => r.roundTrip(), o);
  const samples: number[][] = runners.map(() => []);
  const perBlock = Math.ceil(o.iterations / rounds);
  const blockMs = o.maxMs / rounds;
  for (let k = 0; k < rounds; k++) {
    for (const [i, r] of runners.entries()) await timeBlock(() => r.roundTrip(), samples[i]!, perBlock, blockMs);
  }
  return samples.map(summarize);
}

/** Untimed round trips: o.warmup of them, or fewer once o.warmupMaxMs is spent. */
export async function warmUp(roundTrip: () => Promise<unknown>, o: Pick<LoopOptions, 'warmup' | 'warmupMaxMs'>): Promise<void> {
  const end = performance.now() + o.warmupMaxMs;
  for (let i = 0; i < o.warmup && performance.now() < end; i++) await roundTrip();
}

/** Times round trips one at a time, pushing each (ms) onto `samples`, until `n` ran or `ms` passed. */
export async function timeBlock(roundTrip: () => Promise<unknown>, samples: number[], n: number, ms: number): Promise<void> {
  const end = performance.now() + ms;
  for (let j = 0; j < n && performance.now() < end; j++) {
    const t = performance.now();
    await roundTrip();
    samples.push(performance.now() - t);
  }
}

/** Rejects with `what` after `ms` unless `p` settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
