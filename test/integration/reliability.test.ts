// Issue 5 fault tests on loopback, with the real server, agent, controller API
// and werift: server restart, device restart, a lost answer, safe state.
// (The WAN-outage fault needs a router and lives in test/natlab/fault.test.ts.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, type Device } from '../../controller/index.js';
import { DeviceAgent, type DeviceEvent, SimGpio } from '../../device/index.js';
import { isPinholeError } from '../../protocol/errors.js';
import type { SignalServer } from '../../signaling/index.js';
import { startServer, stateDir, waitFor } from './helpers.js';
import { parseFrameText, startHostileServer } from './hostile-server.js';

async function server(port = 0): Promise<SignalServer> {
  return startServer(undefined, { port });
}

async function device(
  t: { after: (fn: () => Promise<void> | void) => void },
  url: string,
  stateDir: string,
  gpio: SimGpio,
  extra: Partial<Parameters<typeof DeviceAgent.start>[0]> = {},
) {
  const events: DeviceEvent[] = [];
  const agent = await DeviceAgent.start({ server: url, name: 'board', stateDir, gpio, version: 'test', onEvent: (e) => events.push(e), ...extra });
  t.after(() => agent.stop());
  return { agent, events };
}

test('issue 5: fault 1: the signaling server restarts during a direct session; the session carries on, the device re-registers, a new controller pairs', {
  timeout: 60_000,
}, async (t) => {
  let srv = await server();
  const port = Number(new URL(srv.url).port);
  const sim = new SimGpio();
  const { agent, events } = await device(t, srv.url, stateDir('dev'), sim);
  const dev = await connect({ server: srv.url, code: agent.pairingCode!, stateDir: stateDir('ctl'), timeoutMs: 5_000 });
  t.after(() => dev.close());
  assert.equal(await dev.whenDirect(10_000), true, 'direct before the restart');
  const disconnected: string[] = [];
  dev.on('disconnected', (e) => disconnected.push(e.code));

  await srv.close();
  // No server at all: the direct path still carries commands, both ways.
  for (let i = 0; i < 5; i++) {
    await dev.write(20, (i % 2) as 0 | 1);
    assert.equal(dev.path, 'direct');
  }
  assert.equal(await dev.read(20), 0);
  assert.equal(sim.counters(20).writes, 5);
  assert.deepEqual(disconnected, [], 'no reconnect while the direct path lives');

  srv = await server(port);
  t.after(() => srv.close());
  // The device's backoff is 0.5 s doubling; it re-registers its rooms within a few seconds.
  const codesBefore = events.filter((e) => e.event === 'code').length;
  await waitFor(() => (events.filter((e) => e.event === 'code').length > codesBefore ? true : undefined), 20_000, 'the device to re-register its pairing room');
  await waitFor(() => (srv.stats().devices >= 2 ? true : undefined), 20_000, 'the device to re-register its home room');
  const again = await connect({ server: srv.url, code: agent.pairingCode!, stateDir: stateDir('ctl2'), timeoutMs: 5_000 });
  t.after(() => again.close());
  assert.equal(await again.read(20), 0, 'a new controller pairs after the restart');
  // ...while the first session is still direct and working.
  await dev.write(20, 1);
  assert.equal(dev.path, 'direct');
});

test('issue 5: fault 3: the device agent stops and starts again; the controller reconnects on its own, resends, and renews its watch', {
  timeout: 60_000,
}, async (t) => {
  const srv = await server();
  t.after(() => srv.close());
  const sim = new SimGpio(); // the board keeps its pins across an agent restart
  const devDir = stateDir('dev');
  let { agent } = await device(t, srv.url, devDir, sim, { direct: false });
  const dev = await connect({ server: srv.url, code: agent.pairingCode!, stateDir: stateDir('ctl'), timeoutMs: 20_000, direct: false });
  t.after(() => dev.close());
  assert.equal(await dev.watch(13), 0);
  const seen: string[] = [];
  dev.on('disconnected', (e) => seen.push(`disconnected ${e.code}`));
  dev.on('reconnected', () => seen.push('reconnected'));
  const resyncs: { pin: number; value: number; previous: number }[] = [];
  dev.on('resync', (r) => resyncs.push(r));

  await agent.stop();
  await waitFor(() => (seen.length ? true : undefined), 10_000, 'the controller to notice');
  // While the device is away, pin 13 changes on the board and a write is issued.
  sim.drive(13, 1);
  const pending = dev.write(20, 1);
  ({ agent } = await device(t, srv.url, devDir, sim, { direct: false }));
  await pending; // resent on the new session, within its timeout
  assert.equal(sim.read(20), 1);
  assert.equal(sim.counters(20).writes, 1, 'ran once');
  await waitFor(() => (resyncs.length ? true : undefined), 10_000, 'the watch to be renewed');
  assert.deepEqual(resyncs, [{ pin: 13, value: 1, previous: 0 }]);
  assert.equal(seen[0]?.startsWith('disconnected'), true);
  assert.equal(seen[1], 'reconnected');
  // Edges after the reconnect arrive again.
  const change = new Promise<number>((r) => dev.once('change', (c) => r(c.value)));
  sim.drive(13, 0);
  assert.equal(await change, 0);
});

test('issue 5: fault 3, no reconnect: a controller with reconnect off gets a clear error (exit 4 class)', { timeout: 30_000 }, async (t) => {
  const srv = await server();
  t.after(() => srv.close());
  const sim = new SimGpio();
  const { agent } = await device(t, srv.url, stateDir('dev'), sim, { direct: false });
  const dev = await connect({ server: srv.url, code: agent.pairingCode!, stateDir: stateDir('ctl'), timeoutMs: 3_000, direct: false, reconnect: false });
  const closed = new Promise<string | undefined>((r) => dev.once('close', (e) => r(e?.code)));
  await agent.stop();
  assert.equal(await closed, 'peer-left');
  await assert.rejects(dev.read(1), (e) => isPinholeError(e, 'peer-left', 'link-closed'));
});

test('issue 5: fault 3, safe state: with no controller for --safe-after, the configured pins are set', { timeout: 30_000 }, async (t) => {
  const srv = await server();
  t.after(() => srv.close());
  const sim = new SimGpio();
  const { agent, events } = await device(t, srv.url, stateDir('dev'), sim, { direct: false, safeState: { pins: new Map([[20, 0]]), afterMs: 1_000 } });
  const dev = await connect({ server: srv.url, code: agent.pairingCode!, stateDir: stateDir('ctl'), timeoutMs: 3_000, direct: false, reconnect: false });
  await dev.write(20, 1);
  await new Promise((r) => setTimeout(r, 1_300));
  assert.equal(sim.read(20), 1, 'not while a controller is connected');
  const t0 = Date.now();
  await dev.close(); // the controller goes away
  await waitFor(() => (sim.read(20) === 0 ? true : undefined), 5_000, 'the safe state');
  const waited = Date.now() - t0;
  assert.ok(waited >= 900, `applied after ${waited} ms, not before --safe-after`);
  assert.deepEqual(
    events.filter((e) => e.event === 'safe-state'),
    [{ event: 'safe-state', pins: { '20': 0 } }],
  );
});

test('issue 5: fault 4: a command whose answer is lost is retried on a new session and runs once', { timeout: 30_000 }, async (t) => {
  const h = await startHostileServer();
  t.after(() => h.close());
  const sim = new SimGpio();
  const { agent } = await device(t, h.url, stateDir('dev'), sim, { direct: false });
  const dev: Device = await connect({ server: h.url, code: agent.pairingCode!, stateDir: stateDir('ctl'), timeoutMs: 10_000, direct: false });
  t.after(() => dev.close());
  await dev.write(20, 0);
  const before = sim.counters(20).writes;
  // Drop every frame the device sends back from now on and cut the controller's socket:
  // the write runs, its answer is lost with the session, and the controller must retry.
  let armed = true;
  h.onDown = (conn, text) => {
    if (!armed || conn.role !== 'controller' || parseFrameText(text)?.type !== 'relay') return text;
    armed = false;
    h.onDown = null;
    setTimeout(() => h.kill(conn), 10);
    return null;
  };
  const reconnected = new Promise<void>((r) => dev.once('reconnected', () => r()));
  await dev.write(20, 1);
  await reconnected;
  assert.equal(sim.read(20), 1);
  assert.equal(sim.counters(20).writes - before, 1, 'executed once although the request was sent twice');
  assert.equal(agent.recentDuplicates, 1, 'the retry was answered from memory');
});

test('issue 5: a device whose server is gone retries with capped backoff and does not spin the CPU', { timeout: 30_000 }, async (t) => {
  const srv = await server();
  const url = srv.url;
  const sim = new SimGpio();
  const { events } = await device(t, url, stateDir('dev'), sim, { direct: false });
  await srv.close();
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, 6_000));
  const used = process.cpuUsage(cpu0);
  const wallMs = Date.now() - t0;
  const cpuMs = (used.user + used.system) / 1000;
  const retries = events.filter((e) => e.event === 'disconnected').map((e) => (e as { retryMs: number }).retryMs);
  t.diagnostic(`6 s without a server: ${retries.length} scheduled retries (${retries.join(', ')} ms), ${cpuMs.toFixed(0)} ms CPU`);
  // Backoff 0.5 s doubling (with jitter in [ceiling/2, ceiling]): at most 5 retries in 6 s, growing.
  assert.ok(retries.length >= 2 && retries.length <= 6, `${retries.length} retries`);
  for (let i = 1; i < retries.length; i++) assert.ok(retries[i]! >= retries[i - 1]! / 2, 'delays grow');
  assert.ok(cpuMs < wallMs * 0.1, `CPU ${cpuMs.toFixed(0)} ms in ${wallMs} ms: no spinning`);
});

test('issue 5: a signaling server that stops answering pings is noticed within SIGNAL_PING_MISSES intervals', { timeout: 10_000 }, async (t) => {
  // A WebSocket server that accepts and then goes silent: no pongs, no close (a dead path).
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const { PROTOCOL_VERSION } = await import('../../protocol/signaling.js');
  wss.on('connection', (ws) => ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, nonce: Buffer.alloc(32, 7).toString('base64url') })));
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  );
  const { SignalClient } = await import('../../platform/node/signal-client.js');
  const port = (wss.address() as { port: number }).port;
  const keepalive = { intervalMs: 200, misses: 3 };
  const client = await SignalClient.connect(`ws://127.0.0.1:${port}`, 2_000, keepalive);
  const t0 = Date.now();
  const code = await new Promise<number>((r) => client.once('close', (c) => r(c)));
  const ms = Date.now() - t0;
  assert.equal(code, 1006, 'terminated, not closed politely');
  // misses x interval after the last traffic, within one more interval.
  assert.ok(ms >= keepalive.intervalMs * keepalive.misses && ms <= keepalive.intervalMs * (keepalive.misses + 2), `noticed after ${ms} ms`);
});
