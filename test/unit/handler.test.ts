// Device command handling on the simulated board: requests in, responses out, no sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandHandler } from '../../device/handler.js';
import { SimGpio } from '../../device/sim.js';
import type { ChangeNotification, RpcResponse } from '../../link/rpc.js';

function setup(allowed?: number[]) {
  const gpio = new SimGpio();
  const notes: ChangeNotification[] = [];
  const sleeps: number[] = [];
  const h = new CommandHandler(
    { gpio, name: 'bench', version: '0.0.0', allowedPins: allowed ? new Set(allowed) : undefined, sleep: async (ms) => void sleeps.push(ms) },
    (n) => notes.push(n),
  );
  return { gpio, h, notes, sleeps };
}

const req = (id: number, method: string, params?: unknown) => ({ jsonrpc: '2.0', id, method, params });
const errCode = (r: RpcResponse): string | undefined => ('error' in r ? r.error.data.code : undefined);
const result = (r: RpcResponse): unknown => ('result' in r ? r.result : assert.fail(`expected a result, got ${JSON.stringify(r)}`));

test('issue 2: write then read returns the written level and drives the sim pin', async () => {
  const { gpio, h } = setup();
  assert.deepEqual(result(await h.handle(req(1, 'gpio.write', { pin: 20, value: 1 }))), { pin: 20, value: 1 });
  assert.equal(gpio.read(20), 1);
  assert.deepEqual(result(await h.handle(req(2, 'gpio.read', { pin: 20 }))), { pin: 20, value: 1 });
});

test('issue 2: pins outside --pins are refused with pin-not-allowed and not touched', async () => {
  const { gpio, h } = setup([13]);
  const r = await h.handle(req(1, 'gpio.write', { pin: 20, value: 1 }));
  assert.equal(errCode(r), 'pin-not-allowed');
  assert.equal(gpio.counters(20).writes, 0);
});

test('issue 2: malformed requests get JSON-RPC errors with stable codes', async () => {
  const { h } = setup();
  assert.equal(errCode(await h.handle('nonsense')), 'invalid-request');
  assert.equal(errCode(await h.handle({ jsonrpc: '2.0', id: 1, method: 'gpio.explode' })), 'method-not-found');
  assert.equal(errCode(await h.handle(req(1, 'gpio.write', { pin: 20, value: 2 }))), 'invalid-params');
  assert.equal(errCode(await h.handle(req(1, 'gpio.write', { pin: -1, value: 1 }))), 'invalid-params');
  assert.equal(errCode(await h.handle(req(1, 'gpio.write', { pin: '20', value: 1 }))), 'invalid-params');
  assert.equal(errCode(await h.handle(req(1, 'gpio.read', { pin: 999 }))), 'no-such-pin');
});

test('issue 2: write to an input is refused with pin-mode', async () => {
  const { h } = setup();
  result(await h.handle(req(1, 'gpio.mode', { pin: 5, mode: 'in' })));
  assert.equal(errCode(await h.handle(req(2, 'gpio.write', { pin: 5, value: 1 }))), 'pin-mode');
});

test('issue 2: blink toggles N times on the device clock (defaults 20 x 300 ms)', async () => {
  const { gpio, h, sleeps } = setup();
  const r = result(await h.handle(req(1, 'gpio.blink', { pin: 20 }))) as { toggles: number; value: number };
  assert.equal(r.toggles, 20);
  assert.equal(gpio.trace(20).length, 20);
  assert.equal(r.value, 0, 'an even number of toggles from 0 ends at 0');
  assert.equal(sleeps.length, 19);
  assert.ok(sleeps.every((ms) => ms === 300));
});

test('issue 2: watch pushes gpio.change on edges of a driven input, and stops on dispose', async () => {
  const { gpio, h, notes } = setup();
  result(await h.handle(req(1, 'gpio.mode', { pin: 7, mode: 'in' })));
  assert.deepEqual(result(await h.handle(req(2, 'gpio.watch', { pin: 7 }))), { pin: 7, value: 0 });
  gpio.drive(7, 1);
  gpio.drive(7, 1); // no edge
  gpio.drive(7, 0);
  assert.deepEqual(
    notes.map((n) => [n.params.pin, n.params.value, n.params.edge]),
    [
      [7, 1, 'rising'],
      [7, 0, 'falling'],
    ],
  );
  h.dispose();
  gpio.drive(7, 1);
  assert.equal(notes.length, 2);
});

test('issue 2: device.info lists only allowed pins', async () => {
  const { h } = setup([20, 21]);
  const i = result(await h.handle(req(1, 'device.info', {}))) as { pins: number[]; backend: string; name: string };
  assert.deepEqual(i.pins, [20, 21]);
  assert.equal(i.backend, 'sim');
  assert.equal(i.name, 'bench');
});
