// The shared board of a device: preemption of blinks, attribution of edges (`by`), fan-out to every watcher.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ATTRIBUTION_WINDOW_MS, Board, type BoardChange } from '../../device/board.js';
import type { Gpio, PinChange } from '../../device/gpio/gpio.js';
import { SimGpio } from '../../device/gpio/sim.js';
import { BY_INPUT, type Level, type PinMode } from '../../protocol/rpc.js';

const isCode = (code: string) => (e: unknown) => (e as { code?: unknown }).code === code;
const tick = () => new Promise((r) => setImmediate(r));
const never = () => false;

/** A sleep the test releases by hand; `release` wakes every sleeper. */
function manualSleep() {
  let waiting: (() => void)[] = [];
  return {
    sleep: (_ms: number) => new Promise<void>((r) => waiting.push(r)),
    release() {
      const w = waiting;
      waiting = [];
      for (const r of w) r();
    },
    pending: () => waiting.length,
  };
}

test("issue 12: another controller's write preempts a blink: the blink ends with preempted at once, and writes no more", async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  const s = manualSleep();
  const blink = board.blink(20, 10, 100, 'alice', s.sleep, never);
  await tick();
  assert.equal(board.blinker(20), 'alice');
  assert.equal(gpio.counters(20).writes, 1);
  board.write(20, 0, 'bob');
  assert.equal(board.blinker(20), undefined);
  await assert.rejects(blink, isCode('preempted'), 'ends without waiting out its interval');
  assert.equal(s.pending(), 1, 'its sleep was never released');
  s.release();
  await tick();
  await tick();
  assert.equal(gpio.counters(20).writes, 2, 'one toggle, then the write');
  assert.equal(gpio.read(20), 0, "bob's level stays");
});

test('issue 12: the same controller preempts its own blink with a write', async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  const s = manualSleep();
  const blink = board.blink(20, 10, 100, 'alice', s.sleep, never);
  await tick();
  board.write(20, 1, 'alice');
  await assert.rejects(blink, isCode('preempted'));
  assert.equal(gpio.read(20), 1);
});

test('issue 12: a preempted blink does not write after being stopped even if its sleep had already ended', async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  let wake: () => void = () => {};
  // The sleep resolves, and the preemption lands before the blink's continuation runs.
  const blink = board.blink(20, 10, 100, 'alice', () => new Promise<void>((r) => (wake = r)), never);
  wake();
  board.write(20, 0, 'bob');
  await assert.rejects(blink, isCode('preempted'));
  await tick();
  assert.equal(gpio.counters(20).writes, 2);
});

test('issue 12: a mode change preempts a blink; so does a new blink, which then runs in full', async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  const s = manualSleep();
  const first = board.blink(20, 10, 100, 'alice', s.sleep, never);
  await tick();
  board.setMode(20, 'out', 'bob');
  await assert.rejects(first, isCode('preempted'));

  const second = board.blink(20, 10, 100, 'alice', s.sleep, never);
  await tick();
  const writesBefore = gpio.counters(20).writes;
  const third = board.blink(20, 3, 100, 'bob', async () => {}, never);
  await assert.rejects(second, isCode('preempted'));
  assert.deepEqual(await third, { pin: 20, toggles: 3, value: gpio.read(20) });
  assert.equal(gpio.counters(20).writes, writesBefore + 3, 'only the new blink wrote');
  s.release();
  await tick();
  assert.equal(gpio.counters(20).writes, writesBefore + 3, 'the preempted blinks stay stopped');
});

test('issue 12: a read does not preempt a blink; a blink of another pin neither', async () => {
  const board = new Board(new SimGpio());
  const blink = board.blink(20, 3, 10, 'alice', async () => {}, never);
  board.read(20);
  board.write(21, 1, 'bob');
  assert.deepEqual(await blink, { pin: 20, toggles: 3, value: 1 });
});

test('issue 12: a blink whose session went away stops quietly, even when preempted meanwhile', async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  const s = manualSleep();
  let gone = false;
  const blink = board.blink(20, 10, 100, 'alice', s.sleep, () => gone);
  await tick();
  gone = true;
  board.write(20, 0, 'bob');
  assert.deepEqual(await blink, { pin: 20, toggles: 1, value: 1 });
  assert.equal(gpio.counters(20).writes, 2);
});

test('issue 12: a blink on an input is refused with pin-mode and leaves a running blink alone', async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  gpio.setMode(5, 'in');
  await assert.rejects(
    board.blink(5, 2, 10, 'alice', async () => {}, never),
    isCode('pin-mode'),
  );
});

test("issue 12: edges delivered inside the call are the caller's: write, blink toggle, mode change; outside edges are input", async () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  const seen: BoardChange[] = [];
  board.setMode(20, 'out', 'alice');
  board.watch(20, (c) => seen.push(c));
  board.write(20, 1, 'alice');
  await board.blink(20, 2, 10, 'bob', async () => {}, never);
  board.setMode(20, 'in', 'carol'); // exposes the pulled-down level
  gpio.drive(20, 1);
  assert.deepEqual(
    seen.map((c) => [c.value, c.edge, c.by]),
    [
      [1, 'rising', 'alice'],
      [0, 'falling', 'bob'],
      [1, 'rising', 'bob'],
      [0, 'falling', 'carol'],
      [1, 'rising', BY_INPUT],
    ],
  );
});

/**
 * A backend that reports edges later, as libmraa's ISR thread does: changes
 * are queued and handed over by `flush()`.
 */
class LateGpio implements Gpio {
  readonly backend = 'late';
  readonly board = 'late';
  private readonly queue: PinChange[] = [];
  private readonly watchers = new Map<number, Set<(c: PinChange) => void>>();
  subscriptions = 0;
  constructor(readonly sim = new SimGpio()) {}
  pins(): number[] {
    return this.sim.pins();
  }
  mode(pin: number): PinMode | undefined {
    return this.sim.mode(pin);
  }
  setMode(pin: number, mode: PinMode): void {
    this.sim.setMode(pin, mode);
  }
  write(pin: number, value: Level): void {
    this.sim.write(pin, value);
  }
  read(pin: number): Level {
    return this.sim.read(pin);
  }
  watch(pin: number, fn: (c: PinChange) => void): () => void {
    this.subscriptions++;
    const off = this.sim.watch(pin, (c) => this.queue.push(c));
    const set = this.watchers.get(pin) ?? new Set();
    this.watchers.set(pin, set);
    set.add(fn);
    return () => {
      this.subscriptions--;
      off();
      set.delete(fn);
    };
  }
  close(): void {}
  flush(): void {
    for (const c of this.queue.splice(0)) for (const fn of this.watchers.get(c.pin) ?? []) fn(c);
  }
}

test("issue 12: an edge reported after the write is still the writer's within the window, and input after it", () => {
  let now = 1000;
  const gpio = new LateGpio();
  const board = new Board(gpio, { now: () => now });
  const seen: string[] = [];
  board.setMode(20, 'out', 'alice');
  board.watch(20, (c) => seen.push(`${c.value}:${c.by}`));
  board.write(20, 1, 'alice');
  now += ATTRIBUTION_WINDOW_MS - 1;
  gpio.flush();
  board.write(20, 0, 'bob');
  now += ATTRIBUTION_WINDOW_MS + 1;
  gpio.flush();
  assert.deepEqual(seen, ['1:alice', `0:${BY_INPUT}`]);
});

test('issue 12: late edges of two writers interleaved are each put down to their own writer; a write of the level already there explains nothing', () => {
  let now = 0;
  const gpio = new LateGpio();
  const board = new Board(gpio, { now: () => now });
  const seen: string[] = [];
  board.setMode(20, 'out', 'setup');
  board.watch(20, (c) => seen.push(`${c.value}:${c.by}`));
  board.write(20, 1, 'alice');
  now++;
  board.write(20, 1, 'carol'); // no edge: the pin is already 1
  now++;
  board.write(20, 0, 'bob');
  now++;
  board.write(20, 1, 'alice');
  gpio.flush();
  assert.deepEqual(seen, ['1:alice', '0:bob', '1:alice']);
});

test('issue 12: a mode change forgets earlier writes: a late edge after it is not put down to them', () => {
  const gpio = new LateGpio();
  const board = new Board(gpio, { now: () => 0 });
  const seen: string[] = [];
  board.setMode(20, 'out', 'setup');
  board.watch(20, (c) => seen.push(`${c.value}:${c.by}`));
  gpio.flush();
  board.write(20, 1, 'alice');
  board.setMode(20, 'in', 'bob'); // the edge this exposes comes late too
  gpio.sim.drive(20, 1);
  gpio.flush();
  assert.deepEqual(seen, [`1:${BY_INPUT}`, `0:${BY_INPUT}`, `1:${BY_INPUT}`]);
});

test('issue 12: every watcher of a pin gets every edge, in order, with its writer, from two writers', () => {
  const gpio = new SimGpio();
  const board = new Board(gpio);
  board.setMode(20, 'out', 'setup');
  const lists: string[][] = [[], [], []];
  const offs = lists.map((l) => board.watch(20, (c) => l.push(`${c.value}:${c.by}`)));
  const want: string[] = [];
  let level: Level = 0;
  for (let i = 0; i < 50; i++) {
    const by = i % 3 === 0 ? 'bob' : 'alice';
    level = level === 1 ? 0 : 1;
    board.write(20, level, by);
    want.push(`${level}:${by}`);
  }
  for (const l of lists) assert.deepEqual(l, want);
  assert.equal(gpio.counters(20).writes, 50);
  offs[0]();
  board.write(20, level === 1 ? 0 : 1, 'alice');
  assert.equal(lists[0].length, 50, 'unsubscribed');
  assert.equal(lists[1].length, 51);
});

test('issue 12: the backend is watched once per pin while it has watchers; a throwing watcher does not stop the others', () => {
  const gpio = new LateGpio();
  const board = new Board(gpio);
  board.setMode(20, 'out', 'setup');
  const got: number[] = [];
  const offA = board.watch(20, () => {
    throw new Error('watcher bug');
  });
  const offB = board.watch(20, (c) => got.push(c.value));
  assert.equal(gpio.subscriptions, 1);
  const queued: (() => void)[] = [];
  const real = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => void queued.push(fn);
  try {
    board.write(20, 1, 'alice');
    gpio.flush();
  } finally {
    globalThis.queueMicrotask = real;
  }
  assert.deepEqual(got, [1]);
  assert.equal(queued.length, 1);
  assert.throws(queued[0], /watcher bug/, 'rethrown in a microtask');
  offA();
  offA();
  assert.equal(gpio.subscriptions, 1);
  offB();
  assert.equal(gpio.subscriptions, 0);
});
