import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PinChange } from '../../device/gpio/gpio.js';
import { SIM_DEFAULT_TRACE_LIMIT, SimGpio } from '../../device/gpio/sim.js';
import { PinholeError } from '../../protocol/errors.js';

/** A clock the test advances by hand. */
function fakeClock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

function code(c: string): (e: unknown) => boolean {
  return (e) => e instanceof PinholeError && e.code === c;
}

test('default board: name sim, backend sim, pins 0..63', () => {
  const g = new SimGpio();
  assert.equal(g.backend, 'sim');
  assert.equal(g.board, 'sim');
  assert.deepEqual(
    g.pins(),
    Array.from({ length: 64 }, (_, i) => i),
  );
});

test('pin count and pin list options', () => {
  assert.deepEqual(new SimGpio({ pins: 3 }).pins(), [0, 1, 2]);
  assert.deepEqual(new SimGpio({ pins: [13, 2, 7] }).pins(), [2, 7, 13]);
  assert.throws(() => new SimGpio({ pins: [-1] }), RangeError);
  assert.throws(() => new SimGpio({ pins: 1.5 }), RangeError);
});

test('unconfigured pin has undefined mode', () => {
  const g = new SimGpio();
  assert.equal(g.mode(5), undefined);
});

test('read on unconfigured pin makes it an input reading 0 (pulled down)', () => {
  const g = new SimGpio();
  assert.equal(g.read(4), 0);
  assert.equal(g.mode(4), 'in');
});

test('write on unconfigured pin makes it an output; read returns the latch', () => {
  const g = new SimGpio();
  g.write(3, 1);
  assert.equal(g.mode(3), 'out');
  assert.equal(g.read(3), 1);
  g.write(3, 0);
  assert.equal(g.read(3), 0);
  assert.equal(g.mode(3), 'out');
});

test('setMode out starts with latch 0, setMode in reads the driven level', () => {
  const g = new SimGpio();
  g.setMode(1, 'out');
  assert.equal(g.mode(1), 'out');
  assert.equal(g.read(1), 0);
  g.drive(2, 1);
  g.setMode(2, 'in');
  assert.equal(g.read(2), 1);
});

test('write on an input throws pin-mode and leaves the pin alone', () => {
  const g = new SimGpio();
  g.setMode(6, 'in');
  assert.throws(() => g.write(6, 1), code('pin-mode'));
  assert.equal(g.mode(6), 'in');
  assert.equal(g.read(6), 0);
});

test('unknown pin throws no-such-pin on every call', () => {
  const g = new SimGpio({ pins: 4 });
  const calls: Array<() => unknown> = [
    () => g.mode(4),
    () => g.setMode(4, 'out'),
    () => g.write(4, 1),
    () => g.read(4),
    () => g.watch(4, () => {}),
    () => g.drive(4, 1),
    () => g.trace(4),
    () => g.counters(4),
    () => g.read(-1),
  ];
  for (const call of calls) assert.throws(call, code('no-such-pin'));
});

test('invalid level or mode is a RangeError, not a silent coercion', () => {
  const g = new SimGpio();
  assert.throws(() => g.write(0, 2 as 0), RangeError);
  assert.throws(() => g.drive(0, 7 as 0), RangeError);
  assert.throws(() => g.setMode(0, 'inout' as 'in'), RangeError);
  assert.equal(g.mode(0), undefined);
});

test('drive sets what an input reads; drive on an output throws pin-mode', () => {
  const g = new SimGpio();
  g.setMode(8, 'in');
  g.drive(8, 1);
  assert.equal(g.read(8), 1);
  g.drive(8, 0);
  assert.equal(g.read(8), 0);
  g.setMode(9, 'out');
  assert.throws(() => g.drive(9, 1), code('pin-mode'));
  assert.equal(g.read(9), 0);
});

test('watch: output writes give rising then falling edges with clock ts', () => {
  const clock = fakeClock();
  const g = new SimGpio({ now: clock.now });
  const seen: PinChange[] = [];
  g.watch(2, (c) => seen.push(c));
  g.write(2, 1);
  clock.advance(5);
  g.write(2, 0);
  assert.deepEqual(seen, [
    { pin: 2, value: 1, edge: 'rising', ts: 1000 },
    { pin: 2, value: 0, edge: 'falling', ts: 1005 },
  ]);
});

test('watch: writing the same value gives no edge', () => {
  const g = new SimGpio();
  const seen: PinChange[] = [];
  g.watch(2, (c) => seen.push(c));
  g.write(2, 0); // unconfigured reads 0, output latch 0: no change
  g.write(2, 1);
  g.write(2, 1);
  g.write(2, 1);
  assert.deepEqual(
    seen.map((c) => c.edge),
    ['rising'],
  );
});

test('watch: driven inputs give edges, not on same level', () => {
  const g = new SimGpio();
  g.setMode(7, 'in');
  const seen: PinChange[] = [];
  g.watch(7, (c) => seen.push(c));
  g.drive(7, 0);
  g.drive(7, 1);
  g.drive(7, 1);
  g.drive(7, 0);
  assert.deepEqual(
    seen.map((c) => [c.pin, c.value, c.edge]),
    [
      [7, 1, 'rising'],
      [7, 0, 'falling'],
    ],
  );
});

test('watch: only the watched pin reports', () => {
  const g = new SimGpio();
  const seen: PinChange[] = [];
  g.watch(1, (c) => seen.push(c));
  g.write(0, 1);
  g.drive(2, 1);
  assert.equal(seen.length, 0);
});

test('watch: a mode switch exposing another level is an edge', () => {
  const g = new SimGpio();
  const seen: PinChange[] = [];
  g.watch(3, (c) => seen.push(c));
  g.write(3, 1); // rising
  g.setMode(3, 'in'); // driven level 0 shows: falling
  assert.deepEqual(
    seen.map((c) => c.edge),
    ['rising', 'falling'],
  );
});

test('unsubscribe stops delivery to that watcher only; close drops all', () => {
  const g = new SimGpio();
  const a: PinChange[] = [];
  const b: PinChange[] = [];
  const offA = g.watch(0, (c) => a.push(c));
  g.watch(0, (c) => b.push(c));
  g.write(0, 1);
  offA();
  offA(); // idempotent
  g.write(0, 0);
  assert.equal(a.length, 1);
  assert.equal(b.length, 2);
  g.close();
  g.write(0, 1);
  assert.equal(b.length, 2);
});

test('the same function subscribed twice is called twice and unsubscribed separately', () => {
  const g = new SimGpio();
  let n = 0;
  const fn = (): void => {
    n++;
  };
  const off1 = g.watch(0, fn);
  g.watch(0, fn);
  g.write(0, 1);
  assert.equal(n, 2);
  off1();
  g.write(0, 0);
  assert.equal(n, 3);
});

test('a throwing watcher neither fails the write nor starves other watchers', async () => {
  const g = new SimGpio();
  let other = 0;
  g.watch(0, () => {
    throw new Error('watcher bug');
  });
  g.watch(0, () => {
    other++;
  });
  // The error is rethrown in a microtask; capture it (this bypasses the test
  // runner's own uncaughtException listener) so the process survives.
  let captured: unknown;
  process.setUncaughtExceptionCaptureCallback((err) => {
    captured = err;
  });
  try {
    g.write(0, 1);
    assert.equal(g.read(0), 1);
    assert.equal(other, 1);
    await new Promise((resolve) => setImmediate(resolve)); // microtasks have run by then
  } finally {
    process.setUncaughtExceptionCaptureCallback(null);
  }
  assert.ok(captured instanceof Error, 'the watcher error was rethrown');
  assert.equal(captured.message, 'watcher bug');
});

test('trace records changes with timestamps, not repeats', () => {
  const clock = fakeClock(0);
  const g = new SimGpio({ now: clock.now });
  g.write(5, 1);
  clock.advance(10);
  g.write(5, 1);
  g.write(5, 0);
  assert.deepEqual(g.trace(5), [
    { ts: 0, value: 1 },
    { ts: 10, value: 0 },
  ]);
  assert.deepEqual(g.trace(6), []);
});

test('trace keeps only the last 1000 changes by default', () => {
  assert.equal(SIM_DEFAULT_TRACE_LIMIT, 1000);
  const clock = fakeClock(0);
  const g = new SimGpio({ now: clock.now });
  for (let i = 0; i < 1500; i++) {
    g.write(0, i % 2 === 0 ? 1 : 0);
    clock.advance(1);
  }
  const t = g.trace(0);
  assert.equal(t.length, 1000);
  assert.deepEqual(t[0], { ts: 500, value: 1 });
  assert.deepEqual(t[999], { ts: 1499, value: 0 });
});

test('traceLimit option bounds the trace; trace returns a copy', () => {
  const g = new SimGpio({ traceLimit: 2 });
  g.write(0, 1);
  g.write(0, 0);
  g.write(0, 1);
  const t = g.trace(0);
  assert.deepEqual(
    t.map((e) => e.value),
    [0, 1],
  );
  t.push({ ts: 0, value: 0 });
  assert.equal(g.trace(0).length, 2);
});

test('counters count write and read calls, including same-value and refused writes', () => {
  const g = new SimGpio();
  assert.deepEqual(g.counters(0), { writes: 0, reads: 0 });
  g.write(0, 1);
  g.write(0, 1);
  g.read(0);
  assert.deepEqual(g.counters(0), { writes: 2, reads: 1 });
  g.setMode(1, 'in');
  assert.throws(() => g.write(1, 1), code('pin-mode'));
  g.read(1);
  g.read(1);
  assert.deepEqual(g.counters(1), { writes: 1, reads: 2 });
  assert.deepEqual(g.counters(2), { writes: 0, reads: 0 });
});
