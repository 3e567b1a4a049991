// Safe state: pins set when no controller has been connected for a while. Manual timers, sim board.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimGpio } from '../../device/gpio/sim.js';
import { DEFAULT_SAFE_AFTER_MS, MAX_SAFE_AFTER_MS, MIN_SAFE_AFTER_MS, parseSafeState, SafeState, type SafeStateOptions } from '../../device/safe-state.js';
import { isPinholeError, PinholeError } from '../../protocol/errors.js';
import type { Level } from '../../protocol/rpc.js';
import { MAX_PIN } from '../../protocol/rpc.js';
import { ManualTimers } from './timers.js';

const AFTER = 10_000;
const PINS = new Map<number, Level>([
  [20, 0],
  [13, 1],
]);

function setup(over: Partial<SafeStateOptions> = {}) {
  const gpio = new SimGpio();
  const timers = new ManualTimers();
  const applied: ReadonlyMap<number, Level>[] = [];
  const errors: [number, unknown][] = [];
  const safe = new SafeState({
    gpio,
    pins: PINS,
    afterMs: AFTER,
    timers,
    onApplied: (p) => applied.push(p),
    onError: (pin, e) => errors.push([pin, e]),
    ...over,
  });
  return { gpio, timers, safe, applied, errors };
}

test('issue 5: the constants are what the docs say', () => {
  assert.equal(DEFAULT_SAFE_AFTER_MS, 30_000);
  assert.ok(MIN_SAFE_AFTER_MS >= 1 && MIN_SAFE_AFTER_MS <= DEFAULT_SAFE_AFTER_MS);
  assert.equal(MAX_SAFE_AFTER_MS, 2 ** 31 - 1);
});

test('issue 5: at start-up with no controller the pins go to the safe state after afterMs', () => {
  const { gpio, timers, safe, applied } = setup();
  assert.equal(safe.pending, true);
  timers.advance(AFTER - 1);
  assert.equal(applied.length, 0);
  assert.equal(gpio.mode(20), undefined);
  timers.advance(1);
  assert.equal(applied.length, 1);
  assert.deepEqual([...applied[0]!], [...PINS]);
  assert.equal(safe.timesApplied, 1);
  assert.equal(safe.pending, false);
});

test('issue 5: applying sets each pin to output and writes its value', () => {
  const { gpio, timers } = setup();
  gpio.setMode(13, 'in'); // an input is switched to output
  gpio.write(20, 1); // an output on the wrong level
  timers.advance(AFTER);
  assert.equal(gpio.mode(20), 'out');
  assert.equal(gpio.mode(13), 'out');
  assert.equal(gpio.read(20), 0);
  assert.equal(gpio.read(13), 1);
  assert.equal(gpio.counters(20).writes, 2);
  assert.equal(gpio.counters(13).writes, 1);
});

test('issue 5: not applied while a controller is connected, however long', () => {
  const { gpio, timers, safe, applied } = setup();
  safe.connected();
  assert.equal(safe.pending, false);
  timers.advance(AFTER * 100);
  assert.equal(applied.length, 0);
  assert.equal(gpio.counters(20).writes, 0);
  assert.equal(timers.pending, 0, 'no timer left running');
});

test('issue 5: the timer starts when the controller leaves and is cancelled when one comes back', () => {
  const { timers, safe, applied } = setup();
  safe.connected();
  timers.advance(AFTER * 2);
  safe.disconnected();
  timers.advance(AFTER - 1);
  safe.connected(); // back just in time
  timers.advance(AFTER * 2);
  assert.equal(applied.length, 0);
  safe.disconnected();
  timers.advance(AFTER);
  assert.equal(applied.length, 1);
});

test('issue 5: sessions nest; the timer starts only when the last one ends', () => {
  const { timers, safe, applied } = setup();
  safe.connected();
  safe.connected();
  safe.disconnected();
  assert.equal(safe.activeSessions, 1);
  timers.advance(AFTER * 2);
  assert.equal(applied.length, 0);
  safe.disconnected();
  assert.equal(safe.activeSessions, 0);
  timers.advance(AFTER);
  assert.equal(applied.length, 1);
  safe.disconnected(); // unmatched: ignored, no new timer
  assert.equal(safe.activeSessions, 0);
  assert.equal(safe.pending, false);
});

test('issue 5: applied once per outage, and again after the next controller leaves', () => {
  const { timers, safe, applied } = setup();
  timers.advance(AFTER * 5);
  assert.equal(applied.length, 1);
  safe.connected();
  safe.disconnected();
  timers.advance(AFTER * 5);
  assert.equal(applied.length, 2);
});

test('issue 5: a pin that fails is reported and the others are still set', () => {
  const gpio = new SimGpio({ pins: [13, 20] });
  const { timers, applied, errors } = setup({
    gpio,
    pins: new Map<number, Level>([
      [99, 1],
      [20, 1],
      [13, 0],
    ]),
  });
  timers.advance(AFTER);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]![0], 99);
  assert.ok(errors[0]![1] instanceof PinholeError && errors[0]![1].code === 'no-such-pin');
  assert.deepEqual([...applied[0]!].sort(), [
    [13, 0],
    [20, 1],
  ]);
  assert.equal(gpio.read(20), 1);
  assert.equal(gpio.read(13), 0);
});

test('issue 5: dispose cancels the timer for good', () => {
  const { timers, safe, applied } = setup();
  safe.dispose();
  timers.advance(AFTER * 2);
  safe.connected();
  safe.disconnected();
  timers.advance(AFTER * 2);
  assert.equal(applied.length, 0);
  assert.equal(timers.pending, 0);
});

test('issue 5: no pins configured means nothing is ever scheduled (off by default)', () => {
  const { timers, safe } = setup({ pins: new Map() });
  assert.equal(safe.pending, false);
  safe.connected();
  safe.disconnected();
  assert.equal(timers.pending, 0);
});

test('issue 5: bad options are refused with the usage code', () => {
  const bad: Partial<SafeStateOptions>[] = [
    { afterMs: MIN_SAFE_AFTER_MS - 1 },
    { afterMs: 1.5e3 + 0.5 },
    { afterMs: MAX_SAFE_AFTER_MS + 1 },
    { pins: new Map([[MAX_PIN + 1, 0 as Level]]) },
    { pins: new Map([[-1, 0 as Level]]) },
    { pins: new Map([[3, 2 as unknown as Level]]) },
  ];
  for (const b of bad)
    assert.throws(
      () => setup(b),
      (e) => isPinholeError(e, 'usage'),
      JSON.stringify(b, (_k, v) => (v instanceof Map ? [...v] : v)),
    );
  const { safe } = setup({ afterMs: undefined });
  assert.equal(safe.afterMs, DEFAULT_SAFE_AFTER_MS);
});

test('issue 5: parseSafeState reads PIN=LEVEL lists', () => {
  assert.deepEqual(
    parseSafeState('20=0,13=1'),
    new Map([
      [20, 0],
      [13, 1],
    ]),
  );
  assert.deepEqual(
    parseSafeState(' 20 = 1 , 0=0 '),
    new Map([
      [20, 1],
      [0, 0],
    ]),
  );
  assert.deepEqual(parseSafeState(`${MAX_PIN}=1`), new Map([[MAX_PIN, 1]]));
});

test('issue 5: parseSafeState refuses bad specs with a reason, never throwing', () => {
  const bad = [
    '',
    '   ',
    '20',
    '20=2',
    '20=',
    '=1',
    '20=0,',
    ',20=0',
    '20=0,20=1',
    '20=0;13=1',
    '-1=0',
    '1.5=0',
    `${MAX_PIN + 1}=0`,
    '99999999999999999999=1',
    'x=1',
    '20=01',
    '20=0=1',
    'x'.repeat(100_000),
  ];
  for (const s of bad) {
    const r = parseSafeState(s);
    assert.equal(typeof r, 'string', `expected a reason for ${JSON.stringify(s.slice(0, 40))}`);
    assert.ok((r as string).length < 200, 'the reason stays one short line');
  }
  assert.equal(typeof parseSafeState(42 as unknown as string), 'string');
});
