// The NAT lab's impaired internet as pure code (test/natlab/impair.ts): the seeded PRNG, the
// per-crossing decision and the in-flight queue the delay router serves. No sockets, no clock:
// the tests pass `now` in.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crossing, type Impairment, InFlight, impairment, mixSeed, PERFECT_INTERNET, parseSeed, prng } from '../natlab/impair.js';

const SEED = 0x5eed;
/** Packets per statistical test: the loss and duplicate rates land within TOLERANCE of p with overwhelming odds. */
const N = 20_000;
/** Five standard deviations of a rate measured over N packets at p = 0.02 (σ ≈ 0.001). */
const TOLERANCE = 0.005;
const BASE_MS = 40;

/** Sends `n` packets on one pair of legs, `gapMs` apart, and drains the queue; returns the order they came out in and when. */
function run(imp: Impairment, n: number, gapMs: number, seed = SEED): { order: number[]; at: number[]; q: InFlight<number> } {
  const q = new InFlight<number>(imp, seed);
  const order: number[] = [];
  const at: number[] = [];
  let now = 0;
  for (let i = 0; i < n; i++) {
    now = i * gapMs;
    for (const x of q.takeDue(now)) order.push(x), at.push(now);
    q.send('a>b', now, BASE_MS, i);
  }
  // Drain in 0.1 ms steps so due times are observed at (nearly) their own time.
  while (q.size > 0) {
    now += 0.1;
    for (const x of q.takeDue(now)) order.push(x), at.push(now);
  }
  return { order, at, q };
}

const inversions = (xs: number[]): number => xs.reduce((n, x, i) => n + (i > 0 && x < xs[i - 1]! ? 1 : 0), 0);

describe('impairment options', () => {
  test('issue 10: the default is the perfect internet', () => {
    assert.deepEqual(impairment(), PERFECT_INTERNET);
    assert.deepEqual(impairment({ loss: 0.02 }), { jitterMs: 0, loss: 0.02, duplicate: 0 });
  });

  test('issue 10: nonsense is refused with a clear error', () => {
    for (const bad of [
      { loss: 1.5 },
      { loss: -0.1 },
      { duplicate: Number.NaN },
      { jitterMs: -1 },
      { jitterMs: Infinity },
      { loss: '0.1' as unknown as number },
    ])
      assert.throws(() => impairment(bad), RangeError, JSON.stringify(bad));
  });

  test('issue 10: seeds are 32-bit integers, from numbers or decimal strings', () => {
    assert.equal(parseSeed(42), 42);
    assert.equal(parseSeed(' 4294967295 '), 4294967295);
    for (const bad of [-1, 2 ** 32, 1.5, '0x10', 'abc', '']) assert.throws(() => parseSeed(bad), RangeError, String(bad));
  });
});

describe('the PRNG', () => {
  test('issue 10: one seed gives one sequence; another seed another', () => {
    const take = (seed: number) => Array.from({ length: 8 }, prng(seed));
    assert.deepEqual(take(7), take(7));
    assert.notDeepEqual(take(7), take(8));
    for (const x of take(9)) assert.ok(x >= 0 && x < 1);
  });

  test('issue 10: derived seeds repeat and differ per part', () => {
    assert.equal(mixSeed(1, 2, 3), mixSeed(1, 2, 3));
    const seeds = new Set<number>();
    for (let cell = 0; cell < 20; cell++) for (let attempt = 0; attempt < 20; attempt++) seeds.add(mixSeed(SEED, cell, attempt));
    assert.equal(seeds.size, 400);
  });

  test('issue 10: roughly uniform (each tenth of [0, 1) gets 10% ± 1%)', () => {
    const r = prng(SEED);
    const bins = new Array<number>(10).fill(0);
    for (let i = 0; i < N * 5; i++) bins[Math.floor(r() * 10)]!++;
    for (const b of bins) assert.ok(Math.abs(b / (N * 5) - 0.1) < 0.01, String(bins));
  });
});

describe('crossing()', () => {
  test('issue 10: the perfect internet delivers every packet once, with no extra delay', () => {
    const r = prng(SEED);
    for (let i = 0; i < 1000; i++) assert.deepEqual(crossing(r, PERFECT_INTERNET), [0]);
  });

  test('issue 10: jitter stays within [0, jitterMs)', () => {
    const r = prng(SEED);
    let max = 0;
    for (let i = 0; i < N; i++) {
      const [j] = crossing(r, impairment({ jitterMs: 5 }));
      assert.ok(j! >= 0 && j! < 5);
      max = Math.max(max, j!);
    }
    assert.ok(max > 4.9, `max jitter ${max}: the range is used`);
  });

  test('issue 10: the same seed makes the same decisions', () => {
    const imp = impairment({ jitterMs: 5, loss: 0.1, duplicate: 0.1 });
    const a = prng(3);
    const b = prng(3);
    for (let i = 0; i < 1000; i++) assert.deepEqual(crossing(a, imp), crossing(b, imp));
  });
});

describe('InFlight: packets between legs', () => {
  test('issue 10: perfect links keep the order and deliver after exactly the base delay', () => {
    const { order, at } = run(PERFECT_INTERNET, 1000, 0.5);
    assert.deepEqual(order, [...order.keys()]);
    // Observed at the first step at or after the due time.
    order.forEach((i, k) => assert.ok(at[k]! >= i * 0.5 + BASE_MS && at[k]! < i * 0.5 + BASE_MS + 0.5, `packet ${i} at ${at[k]}`));
  });

  test('issue 10: a perfect link never reorders, even when a leg gets faster', () => {
    const q = new InFlight<string>(PERFECT_INTERNET, SEED);
    q.send('a>b', 0, 100, 'slow');
    q.send('a>b', 1, 10, 'fast'); // due at 11 alone, but behind 'slow'
    q.send('b>a', 1, 10, 'other pair');
    assert.deepEqual(q.takeDue(50), ['other pair']);
    assert.deepEqual(q.takeDue(100), ['slow', 'fast']);
    assert.equal(q.stats.reordered, 0);
  });

  test('issue 10: with jitter the delivered order differs from the sent order, and nothing is lost or doubled', () => {
    // 1000 packets 0.5 ms apart with 0–5 ms of jitter: many overtake each other.
    const { order, q } = run(impairment({ jitterMs: 5 }), 1000, 0.5);
    assert.deepEqual(
      [...order].sort((x, y) => x - y),
      [...Array(1000).keys()],
      'each packet exactly once',
    );
    assert.notDeepEqual(order, [...Array(1000).keys()]);
    assert.ok(inversions(order) > 100, `only ${inversions(order)} inversions`);
    assert.ok(q.stats.reordered > 100, `reordered ${q.stats.reordered}`);
    assert.equal(q.stats.lost, 0);
  });

  test('issue 10: packets further apart than the jitter keep their order', () => {
    const { order } = run(impairment({ jitterMs: 5 }), 500, 6);
    assert.deepEqual(order, [...Array(500).keys()]);
  });

  test(`issue 10: the measured loss rate is within ${TOLERANCE} of p over ${N} packets`, () => {
    for (const p of [0.02, 0.1]) {
      const { order, q } = run(impairment({ loss: p }), N, 0.1);
      const measured = 1 - order.length / N;
      assert.ok(Math.abs(measured - p) < TOLERANCE, `p=${p}: measured ${measured}`);
      assert.equal(q.stats.lost, N - order.length);
      assert.equal(new Set(order).size, order.length, 'no packet twice');
    }
  });

  test(`issue 10: the measured duplication rate is within ${TOLERANCE} of d over ${N} packets`, () => {
    const d = 0.05;
    const { order, q } = run(impairment({ duplicate: d }), N, 0.1);
    const extra = order.length - N;
    assert.ok(Math.abs(extra / N - d) < TOLERANCE, `measured ${extra / N}`);
    assert.equal(q.stats.duplicated, extra);
    assert.equal(new Set(order).size, N, 'every packet arrives');
  });

  test('issue 10: loss and duplication together', () => {
    const { order, q } = run(impairment({ jitterMs: 2, loss: 0.02, duplicate: 0.02 }), N, 0.1);
    assert.equal(order.length, N - q.stats.lost + q.stats.duplicated);
    assert.ok(Math.abs(q.stats.lost / N - 0.02) < TOLERANCE);
    // A lost packet is never duplicated: duplicates are drawn among the delivered ones.
    assert.ok(Math.abs(q.stats.duplicated / (N - q.stats.lost) - 0.02) < TOLERANCE);
  });

  test('issue 10: a seed reproduces the run exactly; another seed does not', () => {
    const imp = impairment({ jitterMs: 5, loss: 0.05, duplicate: 0.02 });
    assert.deepEqual(run(imp, 2000, 0.5, 11).order, run(imp, 2000, 0.5, 11).order);
    assert.notDeepEqual(run(imp, 2000, 0.5, 11).order, run(imp, 2000, 0.5, 12).order);
  });

  test('issue 10: the impairment can change mid-run', () => {
    const q = new InFlight<number>(impairment({ loss: 1 }), SEED);
    q.send('a>b', 0, 10, 1);
    q.setImpairment(PERFECT_INTERNET);
    q.send('a>b', 0, 10, 2);
    assert.deepEqual(q.takeDue(10), [2]);
    assert.equal(q.stats.lost, 1);
  });
});
