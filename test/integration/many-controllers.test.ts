// Many controllers on one device at once, end to end: a real signaling server, a real
// DeviceAgent on the simulated board, and real controllers through connect(), on relay and
// on direct (werift) paths. Every controller pairs once through the API, then connects by name.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Change, connect, type Device, isPinholeError } from '../../controller/index.js';
import type { DeviceEvent } from '../../device/index.js';
import { TrustedControllers } from '../../platform/node/peer-files.js';
import { loadOrCreateIdentity } from '../../platform/node/state-files.js';
import type { Level } from '../../protocol/index.js';
import type { SignalServer } from '../../signaling/index.js';
import { startDevice, startServer, stateDir, type TestDevice, waitFor } from './helpers.js';

let server: SignalServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Pairs a fresh controller named `name` with `d` through the API (relay only, closed at once); returns its state dir. */
async function pairController(d: TestDevice, name: string): Promise<string> {
  const dir = stateDir('controller');
  const code = d.code;
  assert.ok(code, 'the device shows no pairing code');
  const dev = await connect({ server: server.url, code, stateDir: dir, name, direct: false });
  await dev.close();
  await d.nextCode(code);
  return dir;
}

/** The controller of state dir `dir` by its name in the device's trust list. */
function trustedName(d: TestDevice, dir: string): string {
  const e = TrustedControllers.load(d.stateDir).find(loadOrCreateIdentity(dir).publicKey);
  assert.ok(e, 'the controller is in the trust list');
  return e.name;
}

const ofEvent =
  <K extends DeviceEvent['event']>(kind: K) =>
  (events: DeviceEvent[]): Extract<DeviceEvent, { event: K }>[] =>
    events.filter((e): e is Extract<DeviceEvent, { event: K }> => e.event === kind);
const controllerEvents = ofEvent('controller');
const leftEvents = ofEvent('controller-left');

/** The levels a pin goes through when written `n` times, starting from 0: 1, 0, 1, ... */
const alternating = (n: number): Level[] => Array.from({ length: n }, (_, i) => ((i + 1) % 2) as Level);
const edgeOf = (v: Level): 'rising' | 'falling' => (v === 1 ? 'rising' : 'falling');

async function closeAll(devs: Device[]): Promise<void> {
  await Promise.all(devs.map((x) => x.close()));
}

test('issue 12: eight controllers at once, 4 relay-only and 4 direct: every watcher sees every edge of one writer, in order, with its name', {
  timeout: 60_000,
}, async () => {
  const d = await startDevice(server);
  const dirs: string[] = [];
  for (let i = 0; i < 8; i++) dirs.push(await pairController(d, `ctl-${i}`));
  const mark = d.events.length;
  // 0..3 relay only, 4..7 direct.
  const devs = await Promise.all(dirs.map((dir, i) => connect({ device: d.name, stateDir: dir, direct: i >= 4 })));
  try {
    assert.deepEqual(await Promise.all(devs.slice(4).map((x) => x.whenDirect(20_000))), [true, true, true, true], 'the direct four went direct');
    await waitFor(() => d.agent.paths().filter((p) => p === 'direct').length === 4, 10_000, 'the device to send direct on four sessions');
    assert.equal(d.agent.controllers, 8);
    assert.deepEqual(
      devs.map((x) => x.path),
      ['relay', 'relay', 'relay', 'relay', 'direct', 'direct', 'direct', 'direct'],
    );
    assert.deepEqual(d.agent.paths().sort(), ['direct', 'direct', 'direct', 'direct', 'relay', 'relay', 'relay', 'relay']);
    // Each connect was one line with its name, path and the count after it joined.
    const joined = controllerEvents(d.events.slice(mark));
    assert.deepEqual(joined.map((e) => e.name).sort(), ['ctl-0', 'ctl-1', 'ctl-2', 'ctl-3', 'ctl-4', 'ctl-5', 'ctl-6', 'ctl-7']);
    assert.deepEqual(
      joined.map((e) => e.controllers).sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.ok(
      joined.every((e) => e.path === 'relay' && !e.paired),
      JSON.stringify(joined),
    );

    // Each move to direct was reported with the controller's name.
    assert.deepEqual([...new Set(ofEvent('path')(d.events.slice(mark)).flatMap((e) => (e.path === 'direct' ? [e.name] : [])))].sort(), [
      'ctl-4',
      'ctl-5',
      'ctl-6',
      'ctl-7',
    ]);

    const [writer, ...watchers] = devs as [Device, ...Device[]];
    const writerName = trustedName(d, dirs[0]!);
    assert.equal(writerName, 'ctl-0');
    await writer.write(20, 0); // an output at 0 before anyone watches: no edge
    const seen = watchers.map(() => [] as Change[]);
    watchers.forEach((w, i) => w.on('change', (c) => void (c.pin === 20 && seen[i]!.push(c))));
    assert.deepEqual(await Promise.all(watchers.map((w) => w.watch(20))), [0, 0, 0, 0, 0, 0, 0]);
    const writesBefore = d.gpio.counters(20).writes;
    const WRITES = 40;
    const levels = alternating(WRITES);
    for (const v of levels) await writer.write(20, v);
    await waitFor(() => seen.every((s) => s.length >= WRITES), 15_000, 'every watcher to see every edge');
    await sleep(200); // nothing more may follow
    for (const [i, s] of seen.entries()) {
      assert.deepEqual(
        s.map((c) => [c.value, c.edge, c.by]),
        levels.map((v): [Level, string, string] => [v, edgeOf(v), writerName]),
        `watcher ${i + 1} (${i < 3 ? 'relay' : 'direct'})`,
      );
      assert.ok(
        s.every((c, k) => k === 0 || c.ts >= s[k - 1]!.ts),
        'in the order the device saw them',
      );
    }
    assert.equal(d.gpio.counters(20).writes - writesBefore, WRITES, 'the sim ran exactly the writes sent');
    assert.equal(d.agent.controllers, 8, 'nobody was dropped');
  } finally {
    await closeAll(devs);
    await d.agent.stop();
  }
});

test('issue 12: a ninth controller gets device-busy; the eight keep working', { timeout: 60_000 }, async () => {
  const d = await startDevice(server, { direct: false });
  const dirs: string[] = [];
  for (let i = 0; i < 9; i++) dirs.push(await pairController(d, `ctl-${i}`));
  const devs = await Promise.all(dirs.slice(0, 8).map((dir) => connect({ device: d.name, stateDir: dir, direct: false })));
  try {
    await waitFor(() => d.agent.controllers === 8, 5_000, 'eight controllers');
    await assert.rejects(
      connect({ device: d.name, stateDir: dirs[8]!, direct: false, timeoutMs: 5_000 }),
      (e: unknown) => isPinholeError(e) && e.code === 'device-busy',
    );
    // The refused one changed nothing for the others.
    await Promise.all(devs.map((x, i) => x.write(21, (i % 2) as Level)));
    assert.equal(d.agent.controllers, 8);
    // One leaves: the ninth gets in.
    await devs.pop()!.close();
    await waitFor(() => d.agent.controllers === 7, 5_000, 'seven controllers');
    const ninth = await connect({ device: d.name, stateDir: dirs[8]!, direct: false, timeoutMs: 5_000 });
    devs.push(ninth);
    assert.equal(await ninth.read(21), 1);
  } finally {
    await closeAll(devs);
    await d.agent.stop();
  }
});

test('issue 12: the device counts its pairing room against its cap too: past it, a controller is refused in the handshake (device-busy)', {
  timeout: 30_000,
}, async () => {
  const d = await startDevice(server, { direct: false, maxControllers: 2 });
  const a = await pairController(d, 'alice');
  const b = await pairController(d, 'bob');
  const first = await connect({ device: d.name, stateDir: a, direct: false });
  // A pairing session, held open: the server's cap for the home room (2) has one place left, the device none.
  const pairing = await connect({ server: server.url, code: d.code!, stateDir: stateDir('controller'), name: 'carol', direct: false });
  const devs = [first, pairing];
  try {
    await waitFor(() => d.agent.controllers === 2, 5_000, 'two controllers');
    const mark = d.events.length;
    await assert.rejects(
      connect({ device: d.name, stateDir: b, direct: false, timeoutMs: 5_000 }),
      (e: unknown) => isPinholeError(e) && e.code === 'device-busy',
    );
    const busy = ofEvent('busy')(d.events.slice(mark));
    assert.equal(busy.length, 1, JSON.stringify(d.events.slice(mark)));
    assert.equal(busy[0]!.controllers, 2);
    assert.equal(await first.read(20), 0, 'the first session carries on');
    assert.equal(await pairing.read(20), 0, 'so does the pairing one');
  } finally {
    await closeAll(devs);
    await d.agent.stop();
  }
});

test('issue 12: churn: 50 relay and 50 direct connect/disconnect cycles of one controller, half with writes in flight, while three others stay direct and every command of theirs succeeds', {
  timeout: 90_000,
}, async () => {
  const d = await startDevice(server);
  const dirs: string[] = [];
  for (let i = 0; i < 4; i++) dirs.push(await pairController(d, `ctl-${i}`));
  const churnDir = dirs.pop()!;
  const stable = await Promise.all(dirs.map((dir) => connect({ device: d.name, stateDir: dir })));
  const incidents: string[] = [];
  let running = true;
  const done = [0, 0, 0];
  const gaps = [0, 0, 0];
  try {
    assert.deepEqual(await Promise.all(stable.map((x) => x.whenDirect(20_000))), [true, true, true]);
    stable.forEach((s, i) => {
      s.on('path', (p, prev) => incidents.push(`stable ${i}: path ${prev} -> ${p}`));
      s.on('disconnected', (e) => incidents.push(`stable ${i}: disconnected ${e.code}`));
    });
    // Each of the three keeps one command going, each on its own pin.
    const loops = stable.map(async (s, i) => {
      const pin = 21 + i;
      let v: Level = 0;
      let last = performance.now();
      while (running) {
        v = v === 1 ? 0 : 1;
        try {
          await s.write(pin, v);
          done[i]!++;
        } catch (e) {
          incidents.push(`stable ${i}: write failed: ${isPinholeError(e) ? e.code : String(e)}`);
        }
        const now = performance.now();
        gaps[i] = Math.max(gaps[i]!, now - last);
        last = now;
        await sleep(5);
      }
    });

    const RELAY_CYCLES = 50;
    const DIRECT_CYCLES = 50;
    const joinedBefore = controllerEvents(d.events).length;
    for (let c = 0; c < RELAY_CYCLES + DIRECT_CYCLES; c++) {
      const direct = c >= RELAY_CYCLES;
      const dev = await connect({ device: d.name, stateDir: churnDir, direct, reconnect: false });
      if (direct) assert.equal(await dev.whenDirect(10_000), true, `cycle ${c} went direct`);
      if (c % 2 === 0) {
        await dev.write(20, 1);
        await dev.close();
      } else {
        // Closed with writes in flight: its data channel (or relay) goes with data pending (werift#495).
        const inFlight = Array.from({ length: 8 }, (_, k) => dev.write(20, (k % 2) as Level).catch(() => undefined));
        await dev.close();
        await Promise.all(inFlight);
      }
    }
    // Every cycle was one session on the device, and each ended.
    await waitFor(() => d.agent.controllers === 3, 10_000, 'the churned sessions to end');
    assert.equal(controllerEvents(d.events).length - joinedBefore, RELAY_CYCLES + DIRECT_CYCLES);
    // The three still work on direct after the churn.
    const sofar = [...done];
    await waitFor(() => done.every((n, i) => n >= sofar[i]! + 5), 10_000, 'the three to go on after the churn');
    running = false;
    await Promise.all(loops);
    assert.deepEqual(incidents, [], 'none of the three lost its path or a command');
    assert.deepEqual(
      stable.map((s) => s.path),
      ['direct', 'direct', 'direct'],
    );
    assert.deepEqual(d.agent.paths(), ['direct', 'direct', 'direct']);
    for (let i = 0; i < 3; i++) assert.equal(d.gpio.counters(21 + i).writes, done[i], `stable ${i}: each write ran once`);
    // A stall (a data channel that stops moving) would show as a long wait for one command.
    assert.ok(
      gaps.every((g) => g < 2_000),
      `longest wait for one command: ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`,
    );
    assert.ok(
      done.every((n) => n >= 100),
      `commands done: ${done.join(', ')}`,
    );
  } finally {
    running = false;
    await closeAll(stable);
    await d.agent.stop();
  }
});

test('issue 12: one controller watches while another writes through the API at the same time; both writing one pin each get their own answers', {
  timeout: 30_000,
}, async () => {
  const d = await startDevice(server);
  const aDir = await pairController(d, 'alice');
  const bDir = await pairController(d, 'bob');
  const [a, b] = await Promise.all([connect({ device: d.name, stateDir: aDir }), connect({ device: d.name, stateDir: bDir, direct: false })]);
  try {
    assert.equal(await a.whenDirect(20_000), true, 'the watcher is direct, the writer on the relay');
    await b.write(13, 0);
    const seen: Change[] = [];
    a.on('change', (c) => void (c.pin === 13 && seen.push(c)));
    assert.equal(await a.watch(13), 0);
    const levels = alternating(20);
    // Bob writes (four in flight at a time) while Alice reads the same pin.
    const reads: Promise<Level>[] = [];
    for (let i = 0; i < levels.length; i += 4) {
      reads.push(a.read(13));
      await Promise.all(levels.slice(i, i + 4).map((v) => b.write(13, v)));
    }
    for (const r of await Promise.all(reads)) assert.ok(r === 0 || r === 1);
    await waitFor(() => seen.length >= levels.length, 10_000, 'every edge at the watcher');
    await sleep(100);
    assert.deepEqual(
      seen.map((c) => [c.value, c.by]),
      levels.map((v) => [v, trustedName(d, bDir)]),
    );
    // Both write pin 20 at once: the device runs them in the order it receives them; each caller gets its own answer.
    const before = d.gpio.counters(20).writes;
    const [ra, rb] = await Promise.all([
      Promise.all(Array.from({ length: 10 }, () => a.call('gpio.write', { pin: 20, value: 1 }))),
      Promise.all(Array.from({ length: 10 }, () => b.call('gpio.write', { pin: 20, value: 0 }))),
    ]);
    assert.ok(
      ra.every((r) => r.value === 1),
      JSON.stringify(ra),
    );
    assert.ok(
      rb.every((r) => r.value === 0),
      JSON.stringify(rb),
    );
    assert.equal(d.gpio.counters(20).writes - before, 20);
  } finally {
    await closeAll([a, b]);
    await d.agent.stop();
  }
});

test('issue 12: safe state starts only after the last of two controllers leaves', { timeout: 30_000 }, async () => {
  const AFTER_MS = 1_000;
  const d = await startDevice(server, { direct: false, safeState: { pins: new Map([[21, 0]]), afterMs: AFTER_MS } });
  const aDir = await pairController(d, 'alice');
  const bDir = await pairController(d, 'bob');
  const a = await connect({ device: d.name, stateDir: aDir, direct: false, reconnect: false });
  const b = await connect({ device: d.name, stateDir: bDir, direct: false, reconnect: false });
  try {
    await a.write(21, 1);
    const applied = (): number => ofEvent('safe-state')(d.events).length;
    const before = applied();
    await a.close();
    await waitFor(() => leftEvents(d.events).some((e) => e.name === 'alice' && e.controllers === 1), 5_000, 'alice to leave the device');
    await sleep(AFTER_MS * 1.5);
    assert.equal(d.gpio.read(21), 1, 'not while bob is connected');
    assert.equal(applied(), before);
    const t0 = Date.now();
    await b.close();
    await waitFor(() => d.gpio.read(21) === 0, 5_000, 'the safe state');
    const waited = Date.now() - t0;
    assert.ok(waited >= AFTER_MS - 100, `applied after ${waited} ms, not before the delay`);
    assert.deepEqual(ofEvent('safe-state')(d.events).slice(before), [{ event: 'safe-state', pins: { '21': 0 } }]);
    assert.deepEqual(
      leftEvents(d.events)
        .filter((e) => e.name === 'alice' || e.name === 'bob')
        .map((e) => [e.name, e.controllers])
        .slice(-2),
      [
        ['alice', 1],
        ['bob', 0],
      ],
    );
  } finally {
    await closeAll([a, b]);
    await d.agent.stop();
  }
});
