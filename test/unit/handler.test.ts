// Device command handling on the simulated board: requests in, responses out, no sockets.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimGpio } from '../../device/gpio/sim.js';
import { CommandHandler } from '../../device/handler.js';
import { RecentResults } from '../../device/recent.js';
import type { ChangeNotification, RpcResponse } from '../../protocol/rpc.js';

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

// --- at-most-once execution by (controller, id) ---

/** A sleep the test releases by hand, to hold a blink in flight. */
function manualSleep() {
  const waiting: (() => void)[] = [];
  return {
    sleep: (_ms: number) => new Promise<void>((r) => waiting.push(r)),
    /** Releases sleeps until the blink has none left, letting microtasks run between. */
    async drain() {
      for (let i = 0; i < 1000; i++) {
        await new Promise((r) => setImmediate(r));
        const w = waiting.shift();
        if (!w) {
          await new Promise((r) => setImmediate(r));
          if (waiting.length === 0) return;
          continue;
        }
        w();
      }
    },
    pending: () => waiting.length,
  };
}

function dedupSetup(opts: { peer?: string; recent?: RecentResults; gpio?: SimGpio; sleep?: (ms: number) => Promise<void> } = {}) {
  const gpio = opts.gpio ?? new SimGpio();
  const recent = opts.recent ?? new RecentResults();
  const notes: ChangeNotification[] = [];
  const h = new CommandHandler({ gpio, name: 'bench', version: '0.0.0', recent, peer: opts.peer ?? 'ctl-A', sleep: opts.sleep ?? (async () => {}) }, (n) =>
    notes.push(n),
  );
  return { gpio, recent, h, notes };
}

const sreq = (id: number | string, method: string, params?: unknown) => ({ jsonrpc: '2.0', id, method, params });

test('issue 5: a retried id runs once and gets the stored response (sim write counter)', async () => {
  const { gpio, h } = dedupSetup();
  const first = await h.handle(sreq('k3J9x2:1', 'gpio.write', { pin: 20, value: 1 }));
  const again = await h.handle(sreq('k3J9x2:1', 'gpio.write', { pin: 20, value: 1 }));
  assert.deepEqual(again, first);
  assert.equal(gpio.counters(20).writes, 1);
  assert.equal(h.duplicatesAnswered, 1);
});

test('issue 5: a late retry replays the old result and does not undo a later command', async () => {
  const { gpio, h } = dedupSetup();
  result(await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 })));
  result(await h.handle(sreq(2, 'gpio.write', { pin: 20, value: 0 })));
  assert.deepEqual(result(await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 }))), { pin: 20, value: 1 });
  assert.equal(gpio.read(20), 0, 'the retry did not drive the pin again');
  assert.equal(gpio.counters(20).writes, 2);
});

test('issue 5: a retry during a blink waits for the same result and the pin toggles once per step', async () => {
  const s = manualSleep();
  const { gpio, h } = dedupSetup({ sleep: s.sleep });
  const blink = sreq('c:7', 'gpio.blink', { pin: 20, times: 4, intervalMs: 100 });
  const first = h.handle(blink);
  await new Promise((r) => setImmediate(r));
  assert.equal(s.pending(), 1, 'the blink is in flight');
  const retry = h.handle(blink);
  await s.drain();
  const [a, b] = await Promise.all([first, retry]);
  assert.deepEqual(b, a);
  assert.deepEqual(result(a), { pin: 20, toggles: 4, value: 0 });
  assert.equal(gpio.counters(20).writes, 4, 'one blink, not two');
  assert.equal(gpio.trace(20).length, 4);
  assert.equal(h.duplicatesAnswered, 1);
  assert.equal(errCode(b), undefined, 'the retry is not refused as busy');
});

test('issue 5: two controllers using the same id are independent', async () => {
  const recent = new RecentResults();
  const gpio = new SimGpio();
  const a = dedupSetup({ gpio, recent, peer: 'ctl-A' });
  const b = dedupSetup({ gpio, recent, peer: 'ctl-B' });
  result(await a.h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 })));
  assert.deepEqual(result(await b.h.handle(sreq(1, 'gpio.write', { pin: 20, value: 0 }))), { pin: 20, value: 0 });
  assert.equal(gpio.counters(20).writes, 2);
  assert.equal(gpio.read(20), 0);
  assert.equal(a.h.duplicatesAnswered + b.h.duplicatesAnswered, 0);
});

test('issue 5: numeric and string ids that print alike are different ids', async () => {
  const { gpio, h } = dedupSetup();
  result(await h.handle(sreq(17, 'gpio.write', { pin: 20, value: 1 })));
  result(await h.handle(sreq('17', 'gpio.write', { pin: 20, value: 1 })));
  assert.equal(gpio.counters(20).writes, 2);
  const r = await h.handle(sreq(17, 'gpio.write', { pin: 20, value: 1 }));
  assert.equal(r.id, 17);
  assert.equal(gpio.counters(20).writes, 2);
});

test('issue 5: past the memory limit an evicted id runs again', async () => {
  const { gpio, h } = dedupSetup({ recent: new RecentResults({ limit: 2 }) });
  for (const id of [1, 2, 3]) result(await h.handle(sreq(id, 'gpio.write', { pin: 20, value: 1 })));
  assert.equal(gpio.counters(20).writes, 3);
  await h.handle(sreq(3, 'gpio.write', { pin: 20, value: 1 }));
  assert.equal(gpio.counters(20).writes, 3, 'id 3 is still remembered');
  await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 }));
  assert.equal(gpio.counters(20).writes, 4, 'id 1 was evicted, so it ran again');
});

test('issue 5: requests that fail validation are not stored', async () => {
  const { gpio, h, recent } = dedupSetup();
  assert.equal(errCode(await h.handle(sreq(5, 'gpio.write', { pin: 20, value: 2 }))), 'invalid-params');
  assert.equal(errCode(await h.handle(sreq(5, 'gpio.explode', {}))), 'method-not-found');
  assert.equal(errCode(await h.handle({ jsonrpc: '2.0', id: -1, method: 'gpio.read', params: { pin: 1 } })), 'invalid-request');
  assert.equal(recent.size, 0);
  assert.deepEqual(result(await h.handle(sreq(5, 'gpio.write', { pin: 20, value: 1 }))), { pin: 20, value: 1 });
  assert.equal(gpio.counters(20).writes, 1);
  assert.equal(h.duplicatesAnswered, 0);
});

test('issue 5: an execution error is stored and replayed with its code, not retried on the board', async () => {
  const { gpio, h } = dedupSetup();
  gpio.setMode(5, 'in');
  assert.equal(errCode(await h.handle(sreq('w', 'gpio.write', { pin: 5, value: 1 }))), 'pin-mode');
  assert.equal(errCode(await h.handle(sreq('w', 'gpio.write', { pin: 5, value: 1 }))), 'pin-mode');
  assert.equal(gpio.counters(5).writes, 1);
});

test('issue 5: a retried watch returns the same value and does not double-subscribe', async () => {
  const { gpio, h, notes } = dedupSetup();
  gpio.setMode(7, 'in');
  const first = await h.handle(sreq('w1', 'gpio.watch', { pin: 7 }));
  const again = await h.handle(sreq('w1', 'gpio.watch', { pin: 7 }));
  assert.deepEqual(again, first);
  assert.equal(gpio.counters(7).reads, 1, 'the retry did not read the pin');
  gpio.drive(7, 1);
  assert.equal(notes.length, 1, 'one subscription, one notification per edge');
});

test('issue 5: a watch retried in a new session (same controller) subscribes that session once, without re-running', async () => {
  const gpio = new SimGpio();
  const recent = new RecentResults();
  gpio.setMode(7, 'in');
  const s1 = dedupSetup({ gpio, recent, peer: 'ctl-A' });
  const first = await s1.h.handle(sreq('w1', 'gpio.watch', { pin: 7 }));
  s1.h.dispose(); // the session died before the controller saw the answer
  const s2 = dedupSetup({ gpio, recent, peer: 'ctl-A' });
  assert.deepEqual(await s2.h.handle(sreq('w1', 'gpio.watch', { pin: 7 })), first);
  assert.deepEqual(await s2.h.handle(sreq('w1', 'gpio.watch', { pin: 7 })), first);
  assert.equal(gpio.counters(7).reads, 1);
  assert.equal(s2.h.duplicatesAnswered, 2);
  gpio.drive(7, 1);
  assert.equal(s1.notes.length, 0);
  assert.deepEqual(
    s2.notes.map((n) => [n.params.pin, n.params.value]),
    [[7, 1]],
    'the new session gets each edge once',
  );
});

test('issue 5: a blink cut short by a lost session is not resumed by the retry in the next one', async () => {
  const gpio = new SimGpio();
  const recent = new RecentResults();
  const s = manualSleep();
  const s1 = dedupSetup({ gpio, recent, sleep: s.sleep });
  const blink = sreq('b1', 'gpio.blink', { pin: 20, times: 10, intervalMs: 100 });
  const first = s1.h.handle(blink);
  await new Promise((r) => setImmediate(r));
  s1.h.dispose();
  const s2 = dedupSetup({ gpio, recent });
  const retry = s2.h.handle(blink);
  await s.drain();
  const [a, b] = await Promise.all([first, retry]);
  assert.deepEqual(b, a);
  assert.equal((result(a) as { toggles: number }).toggles, 1);
  assert.equal(gpio.counters(20).writes, 1);
});

test('issue 5: without a peer identity every request runs (the old behaviour)', async () => {
  const gpio = new SimGpio();
  const h = new CommandHandler({ gpio, name: 'bench', version: '0.0.0', recent: new RecentResults() }, () => {});
  await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 }));
  await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 }));
  assert.equal(gpio.counters(20).writes, 2);
  assert.equal(h.duplicatesAnswered, 0);
});
