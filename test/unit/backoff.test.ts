// Backoff: capped exponential delays with injected randomness. Pure, no timers.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RECONNECT_BASE_MS as CONTROLLER_BASE, RECONNECT_MAX_MS as CONTROLLER_MAX } from '../../controller/client.js';
import { RECONNECT_BASE_MS as DEVICE_BASE, RECONNECT_MAX_MS as DEVICE_MAX } from '../../device/agent.js';
import { Backoff } from '../../session/backoff.js';

test('without jitter every delay is its ceiling: base doubling up to max', () => {
  const b = new Backoff({ baseMs: 250, maxMs: 5_000 });
  assert.deepEqual(
    Array.from({ length: 8 }, () => b.next()),
    [250, 500, 1000, 2000, 4000, 5000, 5000, 5000],
  );
  assert.equal(b.attempts, 8);
});

test('jitter draws that part of the ceiling at random: [ceiling * (1 - jitter), ceiling]', () => {
  const low = new Backoff({ baseMs: 500, maxMs: 30_000, jitter: 0.5, random: () => 0 });
  const high = new Backoff({ baseMs: 500, maxMs: 30_000, jitter: 0.5, random: () => 0.999999 });
  assert.deepEqual([low.next(), low.next(), low.next()], [250, 500, 1000]);
  assert.deepEqual([high.next(), high.next(), high.next()], [500, 1000, 2000]);
  const full = new Backoff({ baseMs: 1000, maxMs: 1000, jitter: 1, random: () => 0.25 });
  assert.equal(full.next(), 250);
});

test('the delay is the formula the roles used before: round(ceiling / 2 + random * ceiling / 2)', () => {
  let seed = 7;
  const random = (): number => {
    seed = (seed * 16807) % 2147483647;
    return (seed - 1) / 2147483646;
  };
  const values: number[] = [];
  const b = new Backoff({ baseMs: 250, maxMs: 5_000, jitter: 0.5, random: () => values[values.push(random()) - 1]! });
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(5_000, 250 * 2 ** attempt);
    const d = b.next();
    assert.equal(d, Math.round(ceiling / 2 + (values.at(-1)! * ceiling) / 2), `attempt ${attempt}`);
  }
});

test('reset() starts again from base; a long outage stays at max', () => {
  const b = new Backoff({ baseMs: 100, maxMs: 400 });
  for (let i = 0; i < 2000; i++) b.next();
  assert.equal(b.next(), 400);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.equal(b.next(), 100);
});

test('bad options are refused', () => {
  assert.throws(() => new Backoff({ baseMs: 0, maxMs: 10 }), RangeError);
  assert.throws(() => new Backoff({ baseMs: 10, maxMs: 5 }), RangeError);
  assert.throws(() => new Backoff({ baseMs: 10, maxMs: 20, jitter: 1.5 }), RangeError);
});

test('both roles keep their constants', () => {
  assert.deepEqual([CONTROLLER_BASE, CONTROLLER_MAX], [250, 5_000]);
  assert.deepEqual([DEVICE_BASE, DEVICE_MAX], [500, 30_000]);
});
