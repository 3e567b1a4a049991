// The controller API against a real server and device: relay first, then direct; relay-only; no loss across the move.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startDevice } from './helpers.js';
import { connect, type Device } from '../../controller/index.js';
import type { SignalServer } from '../../signaling/index.js';

let server: SignalServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

test('issue 2: the first command goes over the relay, then the path becomes direct', async () => {
  const d = await startDevice(server);
  const dev = await connect({ server: server.url, code: d.code });
  try {
    assert.equal(dev.path, 'relay', 'usable at once, before ICE');
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

test('issue 2: commands issued while the path moves are each run exactly once', async () => {
  const d = await startDevice(server);
  const dev: Device = await connect({ server: server.url, code: d.code });
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
  const dev = await connect({ server: server.url, code: d.code, direct: false });
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
  const dev = await connect({ server: server.url, code: d.code });
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

test('issue 2: a second controller is refused with room-full while one is connected', async () => {
  const d = await startDevice(server);
  const first = await connect({ server: server.url, code: d.code });
  try {
    await assert.rejects(connect({ server: server.url, code: d.code, timeoutMs: 2000 }), (e: { code?: string }) => e.code === 'room-full');
  } finally {
    await first.close();
    await d.agent.stop();
  }
});

test('issue 2: after a controller leaves, another can pair with the same code', async () => {
  const d = await startDevice(server);
  const a = await connect({ server: server.url, code: d.code });
  await a.write(20, 1);
  await a.close();
  const b = await connect({ server: server.url, code: d.code });
  try {
    assert.equal(await b.read(20), 1);
  } finally {
    await b.close();
    await d.agent.stop();
  }
});

test('issue 2: a controller waiting for an offline device is served when the device comes back', async () => {
  const first = await startDevice(server, { code: 'BACK-SOON-77' });
  await first.agent.stop(); // the code stays known for the server's grace period
  const pending = connect({ server: server.url, code: 'back-soon-77', timeoutMs: 8000 });
  await new Promise((r) => setTimeout(r, 300)); // the controller is now waiting in the room
  // registered and peer reach the new device together: neither may be lost.
  const again = await startDevice(server, { code: 'BACK-SOON-77' });
  const dev = await pending;
  try {
    await dev.write(20, 1);
    assert.equal(again.gpio.read(20), 1);
  } finally {
    await dev.close();
    await again.agent.stop();
  }
});
