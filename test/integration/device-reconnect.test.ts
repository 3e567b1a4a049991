// Regression: when the device's server connection drops and it re-registers, the
// server hands back the same session; the device must keep that session's Link, not start over.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { connect } from '../../controller/index.js';
import { DeviceAgent, type DeviceEvent, SimGpio } from '../../device/index.js';
import { VERSION } from '../../protocol/version.js';
import { startServer, stateDir, waitFor } from './helpers.js';

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
  const codes = (): string[] => events.flatMap((e) => (e.event === 'code' ? [e.code] : []));
  const agent = await DeviceAgent.start({
    server: `ws://127.0.0.1:${proxy.port}`,
    name: 'r',
    stateDir: stateDir('device'),
    gpio,
    version: VERSION,
    onEvent: (e) => events.push(e),
  });
  // Pair once (that session ends), then the session under test is a by-name one in the device's own room.
  const ctl = stateDir('controller');
  await (await connect({ server: server.url, code: agent.pairingCode!, stateDir: ctl })).close();
  await waitFor(() => codes().length === 2, 5000, 'the code after the spent one');
  const dev = await connect({ device: 'r', stateDir: ctl });
  try {
    assert.equal(await dev.whenDirect(5000), true);
    await dev.write(20, 1);
    await waitFor(() => events.some((e) => e.event === 'controller' && !e.paired), 2000, 'the by-name session to start');
    const sessionsBefore = events.filter((e) => e.event === 'controller').length;
    const registeredBefore = server.stats().registered;
    const codesBefore = codes().length;
    proxy.cut(); // the device's WebSockets (own room and pairing room) die; the data channel does not
    const t0 = performance.now();
    while (codes().length < codesBefore + 1 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(codes().length, codesBefore + 1, 'device re-registered');
    assert.equal(codes().at(-1), codes().at(-2), 'its pairing room keeps its code');
    await waitFor(() => server.stats().registered >= registeredBefore + 2, 5000, 'both rooms to be registered again');
    assert.ok(
      events.some((e) => e.event === 'disconnected'),
      'the device reported the lost server',
    );
    await new Promise((r) => setTimeout(r, 200)); // let the server's peer{session} arrive
    assert.equal(events.filter((e) => e.event === 'controller').length, sessionsBefore, 'no new session was started');
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
