// The NAT lab's impaired internet, as pure code: a seedable PRNG, the per-crossing decision
// (lost, delivered once or twice, and with how much jitter) and the queue that holds packets
// until they are due. No sockets, no timers, no clock: delay-router.ts is the I/O shell and
// passes `now` in. Unit-tested in test/unit/impair.test.ts.

/** How the internet mistreats a packet, per crossing (one trip through the delay router). */
export interface Impairment {
  /** Extra delay drawn uniformly from [0, jitterMs) per packet, on top of the legs' delays. Above 0, packets reorder. */
  jitterMs: number;
  /** Probability that a packet is dropped. */
  loss: number;
  /** Probability that a packet that was not dropped is delivered twice (the copy gets its own jitter). */
  duplicate: number;
}

/** The perfect internet: fixed delay, nothing lost, nothing reordered. The lab's default. */
export const PERFECT_INTERNET: Readonly<Impairment> = Object.freeze({ jitterMs: 0, loss: 0, duplicate: 0 });

/** Largest jitter accepted, in ms: beyond it a "delay" is an outage; use setWanUp for that. */
export const MAX_JITTER_MS = 10_000;

/** Fills in defaults (the perfect internet) and rejects values that make no sense. */
export function impairment(x: Partial<Impairment> = {}): Impairment {
  const imp = { ...PERFECT_INTERNET, ...x };
  const prob = (k: 'loss' | 'duplicate'): void => {
    if (typeof imp[k] !== 'number' || !(imp[k] >= 0 && imp[k] <= 1))
      throw new RangeError(`natlab: impairment ${k} must be a probability in [0, 1], got ${imp[k]}`);
  };
  prob('loss');
  prob('duplicate');
  if (typeof imp.jitterMs !== 'number' || !(imp.jitterMs >= 0 && imp.jitterMs <= MAX_JITTER_MS))
    throw new RangeError(`natlab: impairment jitterMs must be in [0, ${MAX_JITTER_MS}], got ${imp.jitterMs}`);
  return { jitterMs: imp.jitterMs, loss: imp.loss, duplicate: imp.duplicate };
}

export const isPerfect = (imp: Impairment): boolean => imp.jitterMs === 0 && imp.loss === 0 && imp.duplicate === 0;

/** A 32-bit seed, from a number or a decimal string (an environment variable); throws on anything else. */
export function parseSeed(x: number | string): number {
  const n = typeof x === 'number' ? x : /^\d+$/.test(x.trim()) ? Number(x.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`natlab: seed must be an integer in [0, 2^32), got ${String(x)}`);
  return n;
}

/** Mixes several 32-bit numbers into one seed (e.g. a run's seed, a cell and an attempt), so derived runs differ but repeat. */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  }
  return h >>> 0;
}

/** sfc32 seeded from one 32-bit number: a fast PRNG with a 128-bit state; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i++) next(); // spread the seed through the state
  return next;
}

/**
 * Decides one crossing: the extra delay (jitter) of each copy to deliver, in ms; [] when
 * the packet is lost, two entries when it is duplicated. Draws exactly four numbers per
 * call, whatever the outcome, so the n-th packet always gets the n-th draws of a seed.
 */
export function crossing(rand: () => number, imp: Impairment): number[] {
  const lost = rand() < imp.loss;
  const dup = rand() < imp.duplicate;
  const j1 = rand() * imp.jitterMs;
  const j2 = rand() * imp.jitterMs;
  if (lost) return [];
  return dup ? [j1, j2] : [j1];
}

/** Counters of what the impairment did. */
export interface ImpairStats {
  /** Packets dropped by `loss`. */
  lost: number;
  /** Extra copies delivered by `duplicate`. */
  duplicated: number;
  /** Packets delivered after a packet between the same two legs that was sent later. */
  reordered: number;
}

interface Entry<T> {
  due: number;
  seq: number;
  /** Position of the original packet among those sent on its pair of legs. */
  pairSeq: number;
  pair: string;
  item: T;
}

/**
 * Packets in flight between legs. Perfect links keep their order (a packet is never due
 * before the previous one on the same pair of legs, even when a leg's delay drops); with
 * jitter each copy is due at its own time and packets overtake each other.
 */
export class InFlight<T> {
  private readonly heap: Array<Entry<T>> = [];
  private seq = 0;
  private readonly lastDue = new Map<string, number>();
  private readonly pairSent = new Map<string, number>();
  private readonly pairDelivered = new Map<string, number>();
  private rand: () => number;
  readonly stats: ImpairStats = { lost: 0, duplicated: 0, reordered: 0 };

  constructor(
    private imp: Impairment,
    seed: number,
  ) {
    this.rand = prng(seed);
  }

  get impairment(): Impairment {
    return this.imp;
  }

  /** Changes the impairment for packets sent from now on (the PRNG stream goes on). */
  setImpairment(imp: Impairment): void {
    this.imp = imp;
  }

  /** Sends `item` from one leg to another (`pair` names the two) with the legs' summed delay `baseMs`, at time `now`. */
  send(pair: string, now: number, baseMs: number, item: T): void {
    const pairSeq = this.pairSent.get(pair) ?? 0;
    this.pairSent.set(pair, pairSeq + 1);
    if (isPerfect(this.imp)) {
      const due = Math.max(now + baseMs, this.lastDue.get(pair) ?? -Infinity);
      this.lastDue.set(pair, due);
      this.push({ due, seq: this.seq++, pairSeq, pair, item });
      return;
    }
    const copies = crossing(this.rand, this.imp);
    if (copies.length === 0) this.stats.lost++;
    if (copies.length > 1) this.stats.duplicated++;
    for (const j of copies) {
      const due = now + baseMs + j;
      this.lastDue.set(pair, Math.max(due, this.lastDue.get(pair) ?? -Infinity));
      this.push({ due, seq: this.seq++, pairSeq, pair, item });
    }
  }

  /** When the next packet is due; Infinity when nothing is in flight. */
  nextDue(): number {
    return this.heap[0]?.due ?? Infinity;
  }

  get size(): number {
    return this.heap.length;
  }

  /** Removes and returns every packet due at `now`, earliest first (ties in sending order). */
  takeDue(now: number): T[] {
    const out: T[] = [];
    while (this.heap.length > 0 && this.heap[0]!.due <= now) {
      const e = this.pop();
      const last = this.pairDelivered.get(e.pair) ?? -1;
      if (e.pairSeq < last) this.stats.reordered++;
      else this.pairDelivered.set(e.pair, e.pairSeq);
      out.push(e.item);
    }
    return out;
  }

  private less(x: Entry<T>, y: Entry<T>): boolean {
    return x.due < y.due || (x.due === y.due && x.seq < y.seq);
  }

  private push(e: Entry<T>): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Entry<T> {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
