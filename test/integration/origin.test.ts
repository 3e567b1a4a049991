/**
 * The signaling server's Origin check on loopback, with real `ws` clients
 * sending the Origin header a browser would: allowed origins connect, others
 * get HTTP 403 before the upgrade and an `origin-refused` log line, clients
 * with no Origin (Node) always connect.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { PROTOCOL_VERSION, parseServerMessage, type ServerMessage } from '../../protocol/signaling.js';
import type { SignalServer } from '../../signaling/index.js';
import { exited, runCli, spawnUntil, startDevice, startServer, waitFor } from './helpers.js';

const ALLOWED = ['https://pinhole.example', 'http://127.0.0.1:8080'];

type Outcome = { kind: 'open'; ws: WebSocket; first: ServerMessage } | { kind: 'refused'; status: number };

/** Opens a WebSocket with `origin` (undefined: no Origin header, as Node clients send); resolves with the server's first message, or the HTTP status of a refusal. */
function connect(url: string, origin: string | undefined): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin === undefined ? {} : { origin });
    ws.once('unexpected-response', (req, res) => {
      resolve({ kind: 'refused', status: res.statusCode ?? 0 });
      res.resume();
      req.destroy();
    });
    ws.once('message', (data) => {
      const r = parseServerMessage(data as Buffer);
      assert.ok(r.ok);
      resolve({ kind: 'open', ws, first: r.value });
    });
    ws.on('error', reject);
  });
}

/** Registers a pairing room on an open socket; resolves with the server's answer. */
function register(ws: WebSocket, room: string): Promise<ServerMessage> {
  return new Promise((resolve) => {
    ws.once('message', (data) => {
      const r = parseServerMessage(data as Buffer);
      assert.ok(r.ok);
      resolve(r.value);
    });
    ws.send(JSON.stringify({ type: 'register', v: PROTOCOL_VERSION, room }));
  });
}

const pick = (m: ServerMessage) => ({ type: m.type, room: (m as { room?: string }).room });

const counts = (s: SignalServer) => {
  const { conns, rooms, devices, controllers, sockets, pendingUpgrades } = s.stats();
  return { conns, rooms, devices, controllers, sockets, pendingUpgrades };
};

describe('issue 13: Origin check, with a list of allowed origins', { timeout: 30_000 }, () => {
  let server: SignalServer;
  const lines: string[] = [];
  before(async () => {
    server = await startServer(undefined, { allowedOrigins: ALLOWED, log: (l) => lines.push(l) });
  });
  after(async () => {
    await server?.close();
  });

  test('issue 13: an allowed Origin connects and registers (compared normalised)', async () => {
    for (const [origin, room] of [
      ['https://pinhole.example', 'A2B3'],
      ['https://PINHOLE.example:443', 'A2B4'],
      ['http://127.0.0.1:8080', 'A2B5'],
    ] as const) {
      const r = await connect(server.url, origin);
      assert.equal(r.kind, 'open', origin);
      if (r.kind !== 'open') continue;
      assert.equal(r.first.type, 'hello');
      assert.deepEqual(pick(await register(r.ws, room)), { type: 'registered', room });
      r.ws.close();
    }
    assert.ok(!lines.some((l) => l.includes('origin-refused')));
  });

  test('issue 13: a disallowed Origin gets 403 before the upgrade, an origin-refused log line, and changes no room state', async () => {
    // A room held by an allowed client: the refused ones must not touch it.
    const holder = await connect(server.url, undefined);
    assert.equal(holder.kind, 'open');
    if (holder.kind !== 'open') return;
    assert.deepEqual(pick(await register(holder.ws, 'C2D3')), { type: 'registered', room: 'C2D3' });
    await waitFor(() => counts(server).pendingUpgrades === 0, 2000, 'no pending upgrades');
    const before = counts(server);
    const refused = ['https://evil.example', 'http://pinhole.example', 'https://pinhole.example:8443', 'http://127.0.0.1:8081', 'null', 'garbage'];
    for (const origin of refused) {
      const r = await connect(server.url, origin);
      assert.deepEqual(r, { kind: 'refused', status: 403 }, origin);
    }
    await waitFor(() => counts(server).pendingUpgrades === 0, 2000, 'the refused connections to close');
    assert.deepEqual(counts(server), before, 'no socket, connection or room came of it');
    const logged = lines.map((l) => JSON.parse(l) as { event: string; origin?: string }).filter((e) => e.event === 'origin-refused');
    assert.deepEqual(
      logged.map((e) => e.origin),
      ['https://evil.example', 'http://pinhole.example', 'https://pinhole.example:8443', 'http://127.0.0.1:8081', 'null', 'invalid'],
    );
    // The room is still the holder's: another register of it is room-taken.
    const other = await connect(server.url, 'https://pinhole.example');
    assert.equal(other.kind, 'open');
    if (other.kind !== 'open') return;
    const taken = await register(other.ws, 'C2D3');
    assert.equal(taken.type === 'error' ? taken.code : taken.type, 'room-taken');
    other.ws.close();
    holder.ws.close();
  });

  test('issue 13: no Origin header (a Node client) is always allowed: a device agent registers and prints a code', async () => {
    const r = await connect(server.url, undefined);
    assert.equal(r.kind, 'open');
    if (r.kind === 'open') r.ws.close();
    const dev = await startDevice(server);
    assert.match(dev.code ?? '', /^[2-9A-Z]{4}-/);
    await dev.agent.stop();
  });
});

describe("issue 13: Origin check, '*' (the default)", { timeout: 30_000 }, () => {
  let server: SignalServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.close();
  });

  test("issue 13: with '*' every Origin connects, and so does none", async () => {
    for (const origin of ['https://evil.example', 'http://192.168.1.4:8080', 'null', undefined]) {
      const r = await connect(server.url, origin);
      assert.equal(r.kind, 'open', String(origin));
      if (r.kind === 'open') r.ws.close();
    }
  });
});

describe('issue 13: pinhole signal --allow-origin', { timeout: 30_000 }, () => {
  test('issue 13: the CLI refuses other origins with 403 and logs origin-refused; a bad origin is a usage error', async () => {
    const s = await spawnUntil(
      ['signal', '--host', '127.0.0.1', '--port', '0', '--stun-port', '0', '--allow-origin', 'https://Pinhole.example:443,http://127.0.0.1:8080'],
      /listening/,
    );
    const url = (JSON.parse(s.out().split('\n')[0]!) as { ws: string }).ws;
    const ok = await connect(url, 'https://pinhole.example');
    assert.equal(ok.kind, 'open');
    if (ok.kind === 'open') ok.ws.close();
    assert.deepEqual(await connect(url, 'https://evil.example'), { kind: 'refused', status: 403 });
    const line = await waitFor(
      () =>
        s
          .out()
          .split('\n')
          .find((l) => l.includes('origin-refused')),
      3000,
      'the origin-refused line',
    );
    assert.deepEqual(JSON.parse(line), { event: 'origin-refused', origin: 'https://evil.example' });
    s.proc.kill('SIGTERM');
    assert.equal(await exited(s.proc), 0);
    for (const bad of ['pinhole.example', 'https://pinhole.example/app', '', '*,https://pinhole.example']) {
      const r = await runCli(['signal', '--host', '127.0.0.1', '--port', '0', '--stun-port', '0', '--allow-origin', bad]);
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
  });
});
