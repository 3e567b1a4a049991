// The server's clients are hostile. A real server and real device agents on loopback:
// self-certifying device rooms, registrations retried instead of given up, a silent holder of a
// pairing room, a server at capacity, admission, and a corrupt trust list.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, type Device } from '../../controller/index.js';
import { DeviceAgent, type DeviceEvent, HANDSHAKE_START_MS, SimGpio } from '../../device/index.js';
import { SignalClient } from '../../platform/node/signal-client.js';
import { loadOrCreateIdentity } from '../../platform/node/state-files.js';
import { deviceRoom, parsePairingCode } from '../../protocol/code.js';
import { CLOSE_LEAVE, makeRegisterProof, PROTOCOL_VERSION, type ServerMessage } from '../../protocol/signaling.js';
import { VERSION } from '../../protocol/version.js';
import type { SignalServer } from '../../signaling/index.js';
import { LOOPBACK_LIMITS, startDevice, startServer, stateDir, waitFor } from './helpers.js';

const servers: SignalServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});
/** A server for one test (closed when the file ends); loopback limits unless told otherwise. */
async function server(limits: Parameters<typeof startServer>[0] = LOOPBACK_LIMITS, extra: Parameters<typeof startServer>[1] = {}): Promise<SignalServer> {
  const s = await startServer(limits, extra);
  servers.push(s);
  return s;
}

/** The server's answer to a register or join on `signal`. */
const answer = (signal: SignalClient): Promise<ServerMessage> =>
  signal.next((m) => (m.type === 'registered' || m.type === 'joined' || m.type === 'error' ? m : undefined), 3000, 'an answer');
const codeOf = (m: ServerMessage): string => (m.type === 'error' ? m.code : m.type);
/** How many times the device reported a registration refused with `code` and retried. */
const retries = (events: DeviceEvent[], code: string): number =>
  events.filter((e) => e.event === 'error' && e.code === code && / retrying in \d+\.\d s$/.test(e.message)).length;

test('issue 9: a squatter cannot register a device room it holds no key for (bad-proof); the real device then comes up in it', async () => {
  const srv = await server();
  const dir = stateDir('device');
  const id = loadOrCreateIdentity(dir); // its public key is no secret: every paired controller has it
  const room = deviceRoom(id.publicKey);
  const squatter = await SignalClient.connect(srv.url);
  try {
    squatter.send({ type: 'register', v: PROTOCOL_VERSION, room });
    assert.equal(codeOf(await answer(squatter)), 'bad-proof', 'no proof');
    const own = loadOrCreateIdentity(stateDir('squatter'));
    squatter.send({ type: 'register', v: PROTOCOL_VERSION, room, proof: makeRegisterProof(own, squatter.nonce, room) });
    assert.equal(codeOf(await answer(squatter)), 'bad-proof', "a proof by the squatter's own key");
    assert.equal(srv.stats().rooms, 0);

    const d = await startDevice(srv, { stateDir: dir, direct: false });
    assert.deepEqual(
      d.events.filter((e) => e.event === 'error'),
      [],
      'no refusal on the way up',
    );
    const ctl = stateDir('controller');
    await (await connect({ server: srv.url, code: d.code!, stateDir: ctl, direct: false })).close();
    // By name: the controller joins the device room, where the real device answers.
    const dev = await connect({ device: 'test-board', stateDir: ctl, direct: false });
    await dev.write(20, 1);
    assert.equal(d.gpio.counters(20).writes, 1);
    await dev.close();
  } finally {
    squatter.close();
  }
});

test('issue 9: a device started while its previous instance still holds its room retries, says why, and comes up once the room is free', async () => {
  const srv = await server();
  const a = await startDevice(srv, { direct: false });
  const events: DeviceEvent[] = [];
  const gpio = new SimGpio();
  const starting = DeviceAgent.start({
    server: srv.url,
    name: 'second',
    stateDir: a.stateDir,
    gpio,
    version: VERSION,
    direct: false,
    onEvent: (e) => events.push(e),
  });
  let b: DeviceAgent | undefined;
  let failed: unknown;
  starting.then(
    (x) => (b = x),
    (e: unknown) => (failed = e),
  );
  try {
    await waitFor(() => failed ?? retries(events, 'room-taken') >= 2, 8000, 'the second instance to retry its taken room twice');
    assert.equal(failed, undefined, 'start did not give up');
    assert.equal(b, undefined, 'not up while the first instance holds the room');
    assert.match((events.find((e) => e.event === 'error') as { message: string }).message, /another instance of this device/);
    await a.agent.stop(); // its room now waits for its device: the second instance takes it
    await starting;
    const code = events.filter((e) => e.event === 'code').at(-1) as { code: string } | undefined;
    assert.ok(code, 'the second instance shows a pairing code');
    const dev = await connect({ server: srv.url, code: code.code, stateDir: stateDir('controller'), direct: false });
    assert.equal((await dev.info()).name, 'second');
    await dev.close();
  } finally {
    await a.agent.stop();
    await (await starting.catch(() => undefined))?.stop();
  }
});

test('issue 9: a silent holder of the pairing room: the device drops it within HANDSHAKE_START_MS and prints a new code, which pairs', {
  timeout: 30_000,
}, async () => {
  const srv = await server();
  const d = await startDevice(srv, { direct: false });
  const code = d.code!;
  const holder = await SignalClient.connect(srv.url);
  try {
    const parsed = parsePairingCode(code);
    assert.ok(parsed.ok);
    holder.send({ type: 'join', v: PROTOCOL_VERSION, room: parsed.room });
    const j = await answer(holder);
    assert.equal(codeOf(j), 'joined');
    const t0 = performance.now();
    // It says nothing. The real user now finds the code held.
    const first = await connect({ server: srv.url, code, stateDir: stateDir('controller'), direct: false, timeoutMs: 3000 }).then(
      () => 'paired',
      (e: { code?: string }) => e.code,
    );
    assert.equal(first, 'code-spent');
    const next = await d.nextCode(code, HANDSHAKE_START_MS + 3000);
    const waited = performance.now() - t0;
    assert.ok(waited >= HANDSHAKE_START_MS - 500, `a new code after ${Math.round(waited)} ms, not before the holder had its chance`);
    assert.ok(
      d.events.some((e) => e.event === 'refused' && e.code === 'bad-handshake'),
      'the device says it dropped the silent controller',
    );
    // The silent one lost the room with the code: the old code is gone for good.
    await waitFor(() => !holder.isOpen || srv.stats().rooms === 2, 3000, 'the spent room to be left');
    const gone = await connect({ server: srv.url, code, stateDir: stateDir('controller'), direct: false, timeoutMs: 3000 }).then(
      () => 'paired',
      (e: { code?: string }) => e.code,
    );
    assert.equal(gone, 'unknown-room');
    const dev = await connect({ server: srv.url, code: next, stateDir: stateDir('controller'), direct: false });
    await dev.write(20, 1);
    assert.equal(await dev.read(20), 1);
    await dev.close();
  } finally {
    holder.close();
  }
});

test('issue 9: a server at room capacity: the fresh code is retried, said so, and registered once a room frees', { timeout: 30_000 }, async () => {
  const srv = await server({ ...LOOPBACK_LIMITS, maxRooms: 3 });
  const d = await startDevice(srv, { direct: false }); // its own room and its pairing room
  const filler = await SignalClient.connect(srv.url);
  let first: Device | undefined;
  try {
    filler.send({ type: 'register', v: PROTOCOL_VERSION, room: 'FILL' });
    assert.equal(codeOf(await answer(filler)), 'registered');
    assert.equal(srv.stats().rooms, 3, 'the server is full');
    const code = d.code!;
    // Pairing spends the code; the controller stays, so its room stays too. The fresh code finds no room.
    first = await connect({ server: srv.url, code, stateDir: stateDir('controller'), direct: false });
    await waitFor(() => retries(d.events, 'rate-limited') >= 2, 8000, 'the fresh code to be refused and retried twice');
    assert.equal(d.code, code, 'no new code while the server is full');
    filler.close(CLOSE_LEAVE); // a room frees
    const next = await d.nextCode(code, 10_000);
    const dev = await connect({ server: srv.url, code: next, stateDir: stateDir('controller'), direct: false });
    assert.equal((await dev.info()).name, 'test-board');
    await dev.close();
  } finally {
    await first?.close();
    filler.close();
  }
});

test('issue 9: the device admits secured sessions, which outlive the admission timeout; a silent controller in its room is dropped', {
  timeout: 30_000,
}, async () => {
  const ADMIT_MS = 1000;
  const srv = await server({ ...LOOPBACK_LIMITS, admitTimeoutMs: ADMIT_MS }, { tickIntervalMs: 100 });
  const d = await startDevice(srv, { direct: false });
  const ctl = stateDir('controller');
  await (await connect({ server: srv.url, code: d.code!, stateDir: ctl, direct: false })).close();
  const dev = await connect({ device: 'test-board', stateDir: ctl, direct: false });
  const lost: unknown[] = [];
  dev.on('disconnected', (e) => lost.push(e));
  try {
    await new Promise((r) => setTimeout(r, ADMIT_MS * 2.5));
    await dev.write(20, 1);
    assert.deepEqual(lost, [], 'the session was never dropped');
    assert.equal(srv.stats().notAdmitted, 0);
  } finally {
    await dev.close();
  }
  // A controller that joins the device room and never starts a handshake is dropped by the server.
  const silent = await SignalClient.connect(srv.url);
  const closed = new Promise<number>((r) => silent.once('close', (c) => r(c)));
  silent.send({ type: 'join', v: PROTOCOL_VERSION, room: deviceRoom(loadOrCreateIdentity(d.stateDir).publicKey) });
  assert.equal(codeOf(await answer(silent)), 'joined');
  const t0 = performance.now();
  const told = await silent.next((m) => (m.type === 'error' ? m : undefined), ADMIT_MS + 2000, 'the drop');
  assert.equal(told.code, 'not-admitted');
  assert.equal(await closed, 1008);
  assert.ok(performance.now() - t0 >= ADMIT_MS - 150);
  assert.equal(srv.stats().notAdmitted, 1);
  // The room is free for a real controller again.
  const back = await connect({ device: 'test-board', stateDir: ctl, direct: false });
  await back.write(20, 0);
  await back.close();
});

test('issue 9: a corrupt controllers.json refuses to start, with state-corrupt naming the file', async () => {
  const srv = await server();
  const dir = stateDir('device');
  loadOrCreateIdentity(dir);
  const file = join(dir, 'controllers.json');
  writeFileSync(file, '{"v":1,"controllers":[{"name":', { mode: 0o600 });
  const r = await DeviceAgent.start({ server: srv.url, name: 'x', stateDir: dir, gpio: new SimGpio(), version: VERSION, direct: false }).then(
    async (agent) => {
      await agent.stop();
      return undefined;
    },
    (e: { code?: string; message?: string }) => e,
  );
  assert.ok(r, 'the device started with a corrupt trust list');
  assert.equal(r.code, 'state-corrupt');
  assert.ok(r.message?.includes(file), r.message);
  assert.equal(srv.stats().rooms, 0, 'it never registered');
});
