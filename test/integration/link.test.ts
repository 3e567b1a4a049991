// The controller API against a real server and device: relay first, then direct; relay-only; no loss across the move.
// Issue 4: each test pairs a controller state dir once, then connects by the device's name.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type Device } from '../../controller/index.js';
import type { SignalServer } from '../../signaling/index.js';
import { pair, startDevice, startServer, stateDir, type TestDevice, waitFor } from './helpers.js';

let server: SignalServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

/** Pairs a fresh controller with `d` (once), then connects to it by name. */
async function pairAndConnect(d: TestDevice, opts: { direct?: boolean } = {}): Promise<{ dev: Device; stateDir: string }> {
  const p = await pair(server, d);
  return { dev: await connect({ device: p.device, stateDir: p.stateDir, ...opts }), stateDir: p.stateDir };
}

test('issue 2: the first command goes over the relay, then the path becomes direct', async () => {
  const d = await startDevice(server);
  const { dev } = await pairAndConnect(d);
  try {
    assert.equal(dev.path, 'relay', 'usable at once, before ICE');
    assert.equal(dev.fingerprint, d.agent.fingerprint, 'the device proved the identity saved at pairing');
    assert.equal(dev.peer?.name, 'test-board');
    assert.equal(dev.pairedAs, undefined, 'a session by name does not pair again');
    await dev.write(20, 1);
    assert.equal(d.gpio.read(20), 1);
    assert.equal(await dev.whenDirect(5000), true, 'data channel should open on loopback');
    await dev.write(20, 0);
    assert.equal(dev.path, 'direct');
    assert.equal(await dev.read(20), 0);
    // The device moves when its own probe is answered, a moment after the controller.
    const t0 = performance.now();
    while (d.agent.path !== 'direct' && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(d.agent.path, 'direct', 'device side sends direct too');
  } finally {
    await dev.close();
    await d.agent.stop();
  }
});

test('issue 4: connect() with a code pairs, saves the device under its name, and is usable at once', async () => {
  const d = await startDevice(server, { name: 'bench-board' });
  const dir = stateDir('controller');
  const dev = await connect({ server: server.url, code: d.code!, stateDir: dir, name: 'api-laptop' });
  try {
    assert.deepEqual(dev.pairedAs, { name: 'bench-board', replaced: false });
    assert.equal(dev.fingerprint, d.agent.fingerprint);
    await dev.write(20, 1);
    assert.equal(d.gpio.read(20), 1);
    const paired = d.events.find((e) => e.event === 'controller');
    assert.ok(paired && paired.event === 'controller' && paired.paired && paired.name === 'api-laptop', JSON.stringify(paired));
  } finally {
    await dev.close();
  }
  const again = await connect({ device: 'bench-board', stateDir: dir });
  try {
    assert.equal(await again.read(20), 1);
  } finally {
    await again.close();
    await d.agent.stop();
  }
});

test('issue 2: commands issued while the path moves are each run exactly once', async () => {
  const d = await startDevice(server);
  const { dev } = await pairAndConnect(d);
  try {
    const paths = new Set<string>();
    let n = 0;
    // Keep 4 writes in flight until well after the switch.
    const deadline = performance.now() + 1500;
    while (performance.now() < deadline) {
      await Promise.all([0, 1, 2, 3].map(() => dev.write(20, (n++ % 2) as 0 | 1).then(() => paths.add(dev.path))));
    }
    assert.ok(paths.has('relay') && paths.has('direct'), `saw paths ${[...paths]}`);
    assert.equal(d.gpio.counters(20).writes, n, 'every write executed once: none lost, none doubled');
  } finally {
    await dev.close();
    await d.agent.stop();
  }
});

test('issue 2: relay-only (direct: false) works and never goes direct', async () => {
  const d = await startDevice(server, { direct: false });
  const { dev } = await pairAndConnect(d, { direct: false });
  try {
    await dev.write(20, 1);
    assert.equal(await dev.read(20), 1);
    assert.equal(await dev.whenDirect(1500), false);
    assert.equal(dev.path, 'relay');
  } finally {
    await dev.close();
    await d.agent.stop();
  }
});

test('issue 2: watch over the API pushes changes as events', async () => {
  const d = await startDevice(server);
  const { dev } = await pairAndConnect(d);
  try {
    await dev.mode(7, 'in');
    const seen: number[] = [];
    dev.on('change', (c) => seen.push(c.value));
    assert.equal(await dev.watch(7), 0);
    d.gpio.drive(7, 1);
    d.gpio.drive(7, 0);
    const t0 = performance.now();
    while (seen.length < 2 && performance.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen, [1, 0]);
  } finally {
    await dev.close();
    await d.agent.stop();
  }
});

test('issue 12: a second session of a paired controller is served while the first stays connected', async () => {
  const d = await startDevice(server);
  const { dev: first, stateDir: dir } = await pairAndConnect(d, { direct: false });
  try {
    // The device's own room takes several controllers (this one twice, from two processes say).
    const second = await connect({ device: 'test-board', stateDir: dir, direct: false, timeoutMs: 2000 });
    try {
      await second.write(20, 1);
      assert.equal(await first.read(20), 1);
      assert.equal(d.agent.controllers, 2);
    } finally {
      await second.close();
    }
    assert.equal(await first.read(20), 1, 'the first outlives the second');
  } finally {
    await first.close();
    await d.agent.stop();
  }
});

test('issue 4: after a controller leaves, it comes back by name; another pairs with the next code, never the spent one', async () => {
  const d = await startDevice(server);
  try {
    const first = d.code!;
    const aDir = stateDir('controller');
    const a = await connect({ server: server.url, code: first, stateDir: aDir });
    await a.write(20, 1);
    const rooms = server.stats().rooms; // the device's own room, the spent pairing room, the next pairing room
    await a.close();
    const next = await d.nextCode(first);
    // Once the session ends the device leaves the spent room, and the server forgets it at once.
    await waitFor(() => server.stats().rooms === rooms - 1, 3000, 'the device to leave the spent room');
    await assert.rejects(
      connect({ server: server.url, code: first, stateDir: stateDir('controller'), timeoutMs: 3000 }),
      (e: { code?: string }) => e.code === 'unknown-room',
    );
    const b = await connect({ server: server.url, code: next, stateDir: stateDir('controller') });
    try {
      assert.equal(await b.read(20), 1);
    } finally {
      await b.close();
    }
    const back = await connect({ device: 'test-board', stateDir: aDir });
    try {
      assert.equal(await back.read(20), 1);
    } finally {
      await back.close();
    }
  } finally {
    await d.agent.stop();
  }
});

test('issue 2: a controller waiting for an offline device is served when the device comes back', async () => {
  const first = await startDevice(server);
  const p = await pair(server, first);
  await first.agent.stop(); // the device's room stays known for the server's grace period
  const pending = connect({ device: p.device, stateDir: p.stateDir, timeoutMs: 8000 });
  await new Promise((r) => setTimeout(r, 300)); // the controller is now waiting in the room
  // The same state dir is the same identity, hence the same room. registered and peer reach
  // the new device together: neither may be lost.
  const again = await startDevice(server, { stateDir: first.stateDir });
  const dev = await pending;
  try {
    await dev.write(20, 1);
    assert.equal(again.gpio.read(20), 1);
  } finally {
    await dev.close();
    await again.agent.stop();
  }
});
