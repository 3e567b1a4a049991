// Device command handling on the simulated board: requests in, responses out, no sockets.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Board } from '../../device/board.js';
import { SimGpio } from '../../device/gpio/sim.js';
import { CommandHandler } from '../../device/handler.js';
import { RecentResults } from '../../device/recent.js';
import { BY_INPUT, type ChangeNotification, FULL_RIGHTS, type Rights, type RpcResponse } from '../../protocol/rpc.js';
import { PROTOCOL_VERSION } from '../../protocol/signaling.js';

function setup(allowed?: number[]) {
  const gpio = new SimGpio();
  const notes: ChangeNotification[] = [];
  const sleeps: number[] = [];
  const h = new CommandHandler(
    {
      board: new Board(gpio),
      name: 'bench',
      version: '0.0.0',
      who: 'alice',
      allowedPins: allowed ? new Set(allowed) : undefined,
      sleep: async (ms) => void sleeps.push(ms),
    },
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

/** Boards by backend: sessions of one device share one Board, as the agent wires them. */
const boards = new WeakMap<SimGpio, Board>();
const boardOf = (gpio: SimGpio): Board => boards.get(gpio) ?? (boards.set(gpio, new Board(gpio)), boards.get(gpio)!);

function dedupSetup(opts: { peer?: string; recent?: RecentResults; gpio?: SimGpio; sleep?: (ms: number) => Promise<void> } = {}) {
  const gpio = opts.gpio ?? new SimGpio();
  const recent = opts.recent ?? new RecentResults();
  const notes: ChangeNotification[] = [];
  const peer = opts.peer ?? 'ctl-A';
  const h = new CommandHandler({ board: boardOf(gpio), name: 'bench', version: '0.0.0', who: peer, recent, peer, sleep: opts.sleep ?? (async () => {}) }, (n) =>
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
  assert.equal(errCode(b), undefined, 'the retry is not a second blink: it neither preempts the first nor is preempted');
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
  const h = new CommandHandler({ board: new Board(gpio), name: 'bench', version: '0.0.0', who: 'alice', recent: new RecentResults() }, () => {});
  await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 }));
  await h.handle(sreq(1, 'gpio.write', { pin: 20, value: 1 }));
  assert.equal(gpio.counters(20).writes, 2);
  assert.equal(h.duplicatesAnswered, 0);
});

// --- many controllers on one board: rights, info, `by` ---

/** Two or more sessions of one device, each with its own rights (changeable while it runs). */
function device(gpio = new SimGpio(), opts: { allowed?: number[]; sleep?: (ms: number) => Promise<void> } = {}) {
  const board = new Board(gpio);
  const recent = new RecentResults();
  let connected = 0;
  const session = (who: string, initial: Rights = FULL_RIGHTS) => {
    let rights: Rights = initial;
    let reads = 0;
    const notes: ChangeNotification[] = [];
    const h = new CommandHandler(
      {
        board,
        name: 'bench',
        version: '0.0.0',
        who,
        peer: `fp-${who}`,
        recent,
        allowedPins: opts.allowed ? new Set(opts.allowed) : undefined,
        rights: () => (reads++, rights),
        controllers: () => connected,
        sleep: opts.sleep ?? (async () => {}),
      },
      (n) => notes.push(n),
    );
    connected++;
    return {
      h,
      notes,
      setRights: (r: Rights) => void (rights = r),
      reads: () => reads,
    };
  };
  return { gpio, board, session };
}

const READ_ONLY: Rights = { access: 'read-only', pins: null };

test('issue 12: a read-only controller is refused write, mode and blink with not-allowed; read, watch, unwatch and info work', async () => {
  const { gpio, session } = device();
  const viewer = session('viewer', READ_ONLY);
  let id = 0;
  for (const [method, params] of [
    ['gpio.write', { pin: 20, value: 1 }],
    ['gpio.mode', { pin: 20, mode: 'out' }],
    ['gpio.blink', { pin: 20, times: 2, intervalMs: 10 }],
  ] as const) {
    assert.equal(errCode(await viewer.h.handle(req(++id, method, params))), 'not-allowed', method);
  }
  assert.equal(gpio.counters(20).writes, 0);
  assert.equal(gpio.mode(20), undefined, 'not even the mode was touched');
  assert.deepEqual(result(await viewer.h.handle(req(++id, 'gpio.read', { pin: 20 }))), { pin: 20, value: 0 });
  assert.deepEqual(result(await viewer.h.handle(req(++id, 'gpio.watch', { pin: 20 }))), { pin: 20, value: 0 });
  assert.deepEqual(result(await viewer.h.handle(req(++id, 'gpio.unwatch', { pin: 20 }))), { pin: 20 });
  const info = result(await viewer.h.handle(req(++id, 'device.info', {}))) as { rights: Rights };
  assert.deepEqual(info.rights, READ_ONLY);
});

test('issue 12: a controller restricted to some pins is refused outside them with not-allowed; --pins is checked first (pin-not-allowed)', async () => {
  const { gpio, session } = device(new SimGpio(), { allowed: [13, 20, 21] });
  const kid = session('kid', { access: 'full', pins: [13, 20] });
  assert.deepEqual(result(await kid.h.handle(req(1, 'gpio.write', { pin: 13, value: 1 }))), { pin: 13, value: 1 });
  assert.equal(errCode(await kid.h.handle(req(2, 'gpio.write', { pin: 21, value: 1 }))), 'not-allowed');
  assert.equal(errCode(await kid.h.handle(req(3, 'gpio.read', { pin: 21 }))), 'not-allowed', 'its pins bound what it may look at too');
  assert.equal(errCode(await kid.h.handle(req(4, 'gpio.watch', { pin: 21 }))), 'not-allowed');
  assert.equal(errCode(await kid.h.handle(req(5, 'gpio.write', { pin: 30, value: 1 }))), 'pin-not-allowed', 'outside the device pins');
  assert.equal(gpio.counters(21).writes, 0);
  assert.equal(gpio.counters(30).writes, 0);
  const roPins = session('guest', { access: 'read-only', pins: [20] });
  assert.equal(errCode(await roPins.h.handle(req(1, 'gpio.write', { pin: 20, value: 1 }))), 'not-allowed');
  assert.equal(errCode(await roPins.h.handle(req(2, 'gpio.read', { pin: 13 }))), 'not-allowed');
  assert.deepEqual(result(await roPins.h.handle(req(3, 'gpio.read', { pin: 20 }))), { pin: 20, value: 0 });
});

test('issue 12: rights are read at every command, so a change applies at the next one, in the same session', async () => {
  const { gpio, session } = device();
  const c = session('laptop');
  result(await c.h.handle(req(1, 'gpio.write', { pin: 20, value: 1 })));
  c.setRights(READ_ONLY);
  assert.equal(errCode(await c.h.handle(req(2, 'gpio.write', { pin: 20, value: 0 }))), 'not-allowed');
  assert.equal(gpio.read(20), 1);
  c.setRights({ access: 'full', pins: [20] });
  result(await c.h.handle(req(3, 'gpio.write', { pin: 20, value: 0 })));
  assert.equal(errCode(await c.h.handle(req(4, 'gpio.write', { pin: 21, value: 1 }))), 'not-allowed');
  assert.equal(c.reads(), 4, 'one read of the rights per command');
});

test('issue 12: a watch on a pin the rights no longer cover ends at the next command', async () => {
  const { gpio, session } = device();
  const c = session('laptop');
  gpio.setMode(7, 'in');
  result(await c.h.handle(req(1, 'gpio.watch', { pin: 7 })));
  gpio.drive(7, 1);
  c.setRights({ access: 'read-only', pins: [13] });
  result(await c.h.handle(req(2, 'device.info', {})));
  gpio.drive(7, 0);
  assert.deepEqual(
    c.notes.map((n) => n.params.value),
    [1],
  );
});

test('issue 12: device.info gives the controllers connected now and the caller its own rights', async () => {
  const { session } = device();
  const a = session('alice');
  const b = session('bob', { access: 'read-only', pins: [13, 20] });
  const ia = result(await a.h.handle(req(1, 'device.info', {}))) as { controllers: number; rights: Rights; protocol: number };
  const ib = result(await b.h.handle(req(1, 'device.info', {}))) as { controllers: number; rights: Rights };
  assert.equal(ia.controllers, 2);
  assert.equal(ib.controllers, 2);
  assert.deepEqual(ia.rights, FULL_RIGHTS);
  assert.deepEqual(ib.rights, { access: 'read-only', pins: [13, 20] });
  assert.equal(ia.protocol, PROTOCOL_VERSION);
  const lone = setup();
  const i = result(await lone.h.handle(req(1, 'device.info', {}))) as { controllers: number; rights: Rights };
  assert.equal(i.controllers, 1, 'default: just the caller');
  assert.deepEqual(i.rights, FULL_RIGHTS, 'default: full rights');
});

test("issue 12: gpio.change says who caused the edge: the writer's name for each watcher, input for an outside edge", async () => {
  const { gpio, session } = device();
  const alice = session('alice');
  const bob = session('bob', READ_ONLY);
  gpio.setMode(20, 'out'); // watching reads the pin, which would make an unconfigured one an input
  result(await alice.h.handle(req(1, 'gpio.watch', { pin: 20 })));
  result(await bob.h.handle(req(1, 'gpio.watch', { pin: 20 })));
  result(await alice.h.handle(req(2, 'gpio.write', { pin: 20, value: 1 })));
  result(await alice.h.handle(req(3, 'gpio.blink', { pin: 20, times: 2, intervalMs: 10 })));
  result(await alice.h.handle(req(4, 'gpio.mode', { pin: 20, mode: 'in' })));
  gpio.drive(20, 1);
  const seen = (n: ChangeNotification[]) => n.map((x) => [x.params.value, x.params.by]);
  const want = [
    [1, 'alice'],
    [0, 'alice'],
    [1, 'alice'],
    [0, 'alice'], // switching to an input exposes the pulled-down level: alice's mode change did it
    [1, BY_INPUT],
  ];
  assert.deepEqual(seen(alice.notes), want);
  assert.deepEqual(seen(bob.notes), want, "the read-only watcher sees alice's edges too");
});

test('issue 12: two controllers write the same pin: commands run in the order they arrive, each gets its own answer', async () => {
  const { gpio, session } = device();
  const a = session('alice');
  const b = session('bob');
  const w = session('watcher', READ_ONLY);
  gpio.setMode(20, 'out');
  result(await w.h.handle(req(1, 'gpio.watch', { pin: 20 })));
  // Handed over without waiting, as the agent does for frames that arrive back to back.
  const answers = await Promise.all([
    a.h.handle(req(1, 'gpio.write', { pin: 20, value: 1 })),
    b.h.handle(req(1, 'gpio.write', { pin: 20, value: 0 })),
    a.h.handle(req(2, 'gpio.write', { pin: 20, value: 1 })),
  ]);
  assert.deepEqual(answers.map(result), [
    { pin: 20, value: 1 },
    { pin: 20, value: 0 },
    { pin: 20, value: 1 },
  ]);
  assert.equal(gpio.read(20), 1, 'the last to arrive wins');
  assert.deepEqual(
    w.notes.map((n) => n.params.by),
    ['alice', 'bob', 'alice'],
  );
});

test("issue 12: a write by another controller preempts a blink: the blinker's call ends with preempted, the write succeeds", async () => {
  const s = manualSleep();
  const { gpio, session } = device(new SimGpio(), { sleep: s.sleep });
  const a = session('alice');
  const b = session('bob');
  const blink = a.h.handle(req(1, 'gpio.blink', { pin: 20, times: 10, intervalMs: 100 }));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(result(await b.h.handle(req(1, 'gpio.write', { pin: 20, value: 0 }))), { pin: 20, value: 0 });
  const r = await blink;
  assert.equal(errCode(r), 'preempted');
  assert.ok('error' in r && r.error.code === -32007);
  await s.drain();
  assert.equal(gpio.counters(20).writes, 2, 'one toggle, then the write; the blink wrote no more');
  assert.equal(gpio.read(20), 0);
});
