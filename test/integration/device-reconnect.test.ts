// Regression (issue 2): when the device's server connection drops and it re-registers, the
// server hands back the same session; the device must keep that session's Link, not start over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, startDevice } from './helpers.js';
import { connect } from '../../controller/index.js';
import { DeviceAgent, SimGpio, type DeviceEvent } from '../../device/index.js';
import { VERSION } from '../../link/index.js';

/** A TCP pass-through whose live connections can be cut. */
async function cuttableProxy(targetPort: number) {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((c) => {
    const up = net.connect(targetPort, '127.0.0.1');
    for (const s of [c, up]) {
      socks.add(s);
      s.on('close', () => socks.delete(s));
      s.on('error', () => undefined);
    }
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    cut: () => socks.forEach((s) => s.destroy()),
    close: () => new Promise<void>((r) => (socks.forEach((s) => s.destroy()), srv.close(() => r()))),
  };
}

test('issue 2: a device that reconnects to the server keeps serving the same controller session', async () => {
  const server = await startServer();
  const proxy = await cuttableProxy(server.port);
  const gpio = new SimGpio();
  const events: DeviceEvent[] = [];
  const agent = await DeviceAgent.start({ server: `ws://127.0.0.1:${proxy.port}`, name: 'r', gpio, version: VERSION, onEvent: (e) => events.push(e) });
  const dev = await connect({ server: server.url, code: agent.pairingCode });
  try {
    assert.equal(await dev.whenDirect(5000), true);
    await dev.write(20, 1);
    proxy.cut(); // the device's WebSocket dies; the data channel does not
    const t0 = performance.now();
    while (events.filter((e) => e.event === 'code').length < 2 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(events.filter((e) => e.event === 'code').length, 2, 'device re-registered');
    await new Promise((r) => setTimeout(r, 200)); // let the server's peer{session} arrive
    assert.equal(events.filter((e) => e.event === 'controller').length, 1, 'no new session was started');
    await dev.write(20, 0);
    assert.equal(await dev.read(20), 0);
    assert.equal(gpio.counters(20).writes, 2);
  } finally {
    await dev.close();
    await agent.stop();
    await proxy.close();
    await server.close();
  }
});
