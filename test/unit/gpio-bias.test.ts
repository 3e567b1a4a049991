// Bias (pull-up, pull-down, disabled) on the API: gpio.mode's `pull`, the
// sim's model of it, the handler and the CLI's chardev flags.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand } from '../../cli/commands.js';
import { resolveDevice } from '../../cli/config.js';
import { Board } from '../../device/board.js';
import { SimGpio } from '../../device/gpio/sim.js';
import { CommandHandler } from '../../device/handler.js';
import { PinholeError } from '../../protocol/errors.js';
import { parseRequest } from '../../protocol/rpc.js';

const usage = (e: unknown): boolean => e instanceof PinholeError && e.code === 'usage';

test('gpio.mode takes an optional pull of up, down or disabled', () => {
  const ok = parseRequest({ jsonrpc: '2.0', id: 1, method: 'gpio.mode', params: { pin: 3, mode: 'in', pull: 'up' } });
  assert.ok(ok.ok);
  assert.deepEqual(ok.req.params, { pin: 3, mode: 'in', pull: 'up' });
  const none = parseRequest({ jsonrpc: '2.0', id: 1, method: 'gpio.mode', params: { pin: 3, mode: 'in' } });
  assert.ok(none.ok);
  assert.deepEqual(none.req.params, { pin: 3, mode: 'in' });
  for (const pull of ['sideways', 1, null, '']) {
    const bad = parseRequest({ jsonrpc: '2.0', id: 1, method: 'gpio.mode', params: { pin: 3, mode: 'in', pull } });
    assert.ok(!bad.ok);
    assert.equal((bad.reply as { error: { data: { code: string } } }).error.data.code, 'invalid-params');
  }
});

test('the sim models bias: an undriven input reads 1 with a pull-up, 0 with a pull-down; driving wins', () => {
  const g = new SimGpio({ pins: 4 });
  const edges: number[] = [];
  g.watch(1, (c) => edges.push(c.value));
  g.setMode(1, 'in', { pull: 'up' });
  assert.equal(g.pull(1), 'up');
  assert.equal(g.read(1), 1);
  g.drive(1, 0);
  assert.equal(g.read(1), 0);
  g.drive(1, undefined); // released: back to the pull-up
  assert.equal(g.read(1), 1);
  g.setMode(1, 'in', { pull: 'down' });
  assert.equal(g.read(1), 0);
  g.setMode(1, 'in', { pull: 'disabled' });
  g.setMode(1, 'in'); // no pull: unchanged
  assert.equal(g.pull(1), 'disabled');
  assert.deepEqual(edges, [1, 0, 1, 0]);
  assert.throws(() => g.setMode(1, 'in', { pull: 'sideways' as 'up' }), RangeError);
});

test('the handler passes pull through to the board and answers with it', async () => {
  const g = new SimGpio({ pins: 4 });
  const h = new CommandHandler({ board: new Board(g), name: 'd', version: 'v', who: 'c' }, () => {});
  const r = await h.handle({ jsonrpc: '2.0', id: 1, method: 'gpio.mode', params: { pin: 2, mode: 'in', pull: 'up' } });
  assert.deepEqual(r, { jsonrpc: '2.0', id: 1, result: { pin: 2, mode: 'in', pull: 'up' } });
  assert.equal(g.read(2), 1);
  assert.equal(g.pull(2), 'up');
  // The sim has no line names: its info carries no per-pin lines.
  const info = await h.handle({ jsonrpc: '2.0', id: 2, method: 'device.info', params: {} });
  assert.equal((info as { result: { lines?: unknown } }).result.lines, undefined);
});

test('control: mode PIN in|out [--pull up|down|disabled]', () => {
  assert.deepEqual(buildCommand(['mode', '17', 'in'], { pull: 'up' }), { cmd: 'mode', pin: 17, mode: 'in', pull: 'up' });
  assert.deepEqual(buildCommand(['mode', '17', 'out'], {}), { cmd: 'mode', pin: 17, mode: 'out', pull: undefined });
  assert.throws(() => buildCommand(['mode', '17', 'sideways'], {}), usage);
  assert.throws(() => buildCommand(['mode', '17', 'in'], { pull: 'strong' }), usage);
  assert.throws(() => buildCommand(['write', '17', '1'], { pull: 'up' }), usage);
});

test('device: --gpio chardev with --chip, line-name --pins, --active-low and --debounce; those flags need chardev', () => {
  const base = { server: 'ws://127.0.0.1:1', 'state-dir': '/tmp/pinhole-unit-bias' };
  const c = resolveDevice({ ...base, gpio: 'chardev', chip: 'pinctrl-rp1', pins: 'GPIO17,GPIO27', 'active-low': 'GPIO27', debounce: 'GPIO17=5000' }, {});
  assert.equal(c.gpio, 'chardev');
  assert.equal(c.pins, undefined);
  assert.deepEqual(c.chardev, { chip: 'pinctrl-rp1', pins: ['GPIO17', 'GPIO27'], activeLow: ['GPIO27'], debounceUs: [['GPIO17', 5000]] });
  const numeric = resolveDevice({ ...base, gpio: 'chardev', pins: '17,20-21' }, {});
  assert.deepEqual([...numeric.pins!], [17, 20, 21]);
  assert.equal(numeric.chardev!.pins, undefined);
  for (const bad of [{ chip: 'x' }, { debounce: '17=5' }, { 'active-low': '17' }, { pins: 'GPIO17' }])
    assert.throws(() => resolveDevice({ ...base, ...bad }, {}), usage);
  for (const bad of ['GPIO17', 'GPIO17=-1', 'GPIO17=2000000', '=5']) assert.throws(() => resolveDevice({ ...base, gpio: 'chardev', debounce: bad }, {}), usage);
  assert.throws(() => resolveDevice({ ...base, gpio: 'gpiod' }, {}), usage);
});
