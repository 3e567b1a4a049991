// Several signaling nodes over one real Redis (Debian's redis-server, started here on a free
// loopback port): forwarding one hop, presence and its fencing, node death and drain, a Redis
// outage, cluster-wide limits and /metrics.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import WebSocket from 'ws';
import { connect, type Device } from '../../controller/index.js';
import { deviceRoom, makeRegisterProof, PROTOCOL_VERSION, parseServerMessage, type ServerMessage } from '../../protocol/index.js';
import { NODE_TTL_MS, type SignalServer } from '../../signaling/index.js';
import { exited, LOOPBACK_LIMITS, pair, type Spawned, spawnUntil, startDevice, startServer, stateDir, waitFor } from './helpers.js';
import { TestRedis } from './redis.js';

let redis: TestRedis;
const servers = new Set<SignalServer>();
before(async () => {
  redis = await TestRedis.start();
});
after(async () => {
  await Promise.all([...servers].map((s) => s.close()));
  await redis.down();
});
beforeEach(async () => {
  // Each test starts with an empty cluster store: no presence or buckets of an earlier test.
  await redisCmd(['FLUSHALL']);
});

/** Runs one Redis command with redis-cli (tests only). */
async function redisCmd(args: string[]): Promise<string> {
  const { execFileSync } = await import('node:child_process');
  return execFileSync('redis-cli', ['-p', String(redis.port), ...args]).toString().trim();
}

/** A clustered node in this process, on free loopback ports. */
async function node(limits: Record<string, number> = LOOPBACK_LIMITS, extra: Parameters<typeof startServer>[1] = {}): Promise<SignalServer> {
  const s = await startServer(limits, { redis: redis.url, ...extra });
  servers.add(s);
  return s;
}

async function stop(s: SignalServer): Promise<void> {
  servers.delete(s);
  await s.close();
}

/** A URL list standing for a cluster, where the helpers take a server. */
const list = (...urls: string[]): SignalServer => ({ url: urls.join(',') }) as SignalServer;

/** A raw `ws` client with a queue of parsed server messages. */
class Client {
  readonly queue: ServerMessage[] = [];
  private waiter: (() => void) | null = null;
  readonly closed: Promise<{ code: number }>;
  isClosed = false;
  nonce = '';
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const r = parseServerMessage(data as Buffer);
      assert.ok(r.ok, `server sent an invalid message: ${String(data).slice(0, 200)}`);
      this.queue.push(r.value);
      this.waiter?.();
    });
    ws.on('error', () => {});
    this.closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        this.isClosed = true;
        this.waiter?.();
        resolve({ code });
      }),
    );
  }
  static async open(url: string): Promise<Client> {
    const c = await new Promise<Client>((resolve, reject) => {
      const ws = new WebSocket(url);
      const c = new Client(ws);
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
    c.nonce = (await c.expect('hello')).nonce;
    return c;
  }
  /** Registers a fresh key's device room with its proof; the room. */
  async registerHome(): Promise<string> {
    const sk = ed25519.utils.randomSecretKey();
    const key = { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
    const room = deviceRoom(key.publicKey);
    this.send({ type: 'register', v: PROTOCOL_VERSION, room, proof: makeRegisterProof(key, this.nonce, room), maxControllers: 4 });
    assert.equal((await this.expect('registered')).room, room);
    return room;
  }
  send(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }
  async next(ms = 3000): Promise<ServerMessage> {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.isClosed) throw new Error('socket closed while waiting for a message');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a message');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
    return this.queue.shift()!;
  }
  async expect<T extends ServerMessage['type']>(type: T, ms?: number): Promise<Extract<ServerMessage, { type: T }>> {
    const m = await this.next(ms);
    assert.equal(m.type, type, `expected ${type}, got ${JSON.stringify(m)}`);
    return m as Extract<ServerMessage, { type: T }>;
  }
  async expectError(code: string): Promise<void> {
    const m = await this.expect('error');
    assert.equal(m.code, code);
  }
  close(): void {
    this.ws.terminate();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const pairingRoom = (): string => randomBytes(3).toString('hex').toUpperCase().replace(/[01]/g, '7').slice(0, 4) + 'Z';

test('issue 15: a controller on another node reaches a device room one hop away; relay frames go both ways', async () => {
  const a = await node();
  const b = await node();
  const d = await Client.open(a.url);
  const room = await d.registerHome();
  const c = await Client.open(b.url);
  c.send({ type: 'join', v: PROTOCOL_VERSION, room });
  const joined = await c.expect('joined');
  assert.equal(joined.waiting, false);
  const peer = await d.expect('peer');
  assert.equal(peer.session, joined.session);
  c.send({ type: 'relay', data: 'from-controller' });
  assert.deepEqual(await d.expect('relay'), { type: 'relay', data: 'from-controller', session: joined.session });
  d.send({ type: 'relay', session: joined.session, data: 'from-device' });
  assert.deepEqual(await c.expect('relay'), { type: 'relay', data: 'from-device' });
  assert.equal(a.stats().cluster?.proxiedIn, 1);
  assert.equal(b.stats().cluster?.proxiedOut, 1);
  c.close();
  assert.equal((await d.expect('peer-left')).session, joined.session);
  d.close();
  await Promise.all([stop(a), stop(b)]);
});

for (const n of [2, 3]) {
  test(`issue 15: ${n} nodes, device on the first, controller on the last: pairing, write, read, watch, direct; no relay once direct`, async () => {
    const nodes: SignalServer[] = [];
    for (let i = 0; i < n; i++) nodes.push(await node());
    const home = nodes[0]!;
    const far = nodes[n - 1]!;
    const d = await startDevice(home);
    const p = await pair(far, d);
    const dev = await connect({ device: p.device, stateDir: p.stateDir, server: far.url });
    try {
      await dev.write(20, 1);
      assert.equal(d.gpio.read(20), 1);
      assert.equal(await dev.read(20), 1);
      const changes: number[] = [];
      dev.on('change', (ch) => changes.push(ch.value));
      assert.equal(await dev.watch(21), 0);
      d.gpio.drive(21, 1);
      await waitFor(() => changes.includes(1), 5000, 'the watched edge, forwarded');
      assert.equal(await dev.whenDirect(8000), true, 'the direct path forms across nodes');
      await waitFor(() => d.agent.path === 'direct', 3000, 'the device on direct');
      const before = home.stats().relayed;
      for (let i = 0; i < 20; i++) await dev.write(20, (i % 2) as 0 | 1);
      assert.equal(home.stats().relayed, before, 'once direct, the servers relay nothing');
    } finally {
      await dev.close();
      await d.agent.stop();
      for (const s of nodes) await stop(s);
    }
  });
}

test('issue 15: two devices registering one room on different nodes: exactly one wins', async () => {
  const a = await node();
  const b = await node();
  for (let round = 0; round < 10; round++) {
    const room = pairingRoom();
    const [x, y] = await Promise.all([Client.open(a.url), Client.open(b.url)]);
    x.send({ type: 'register', v: PROTOCOL_VERSION, room });
    y.send({ type: 'register', v: PROTOCOL_VERSION, room });
    const r = await Promise.all([x.next(), y.next()]);
    const won = r.filter((m) => m.type === 'registered').length;
    const lost = r.filter((m) => m.type === 'error' && m.code === 'room-taken').length;
    assert.deepEqual([won, lost], [1, 1], JSON.stringify(r));
    x.close();
    y.close();
  }
  await Promise.all([stop(a), stop(b)]);
});

test('issue 15: Redis down: same-node pairs keep working, cross-node joins fail with cluster-unavailable; Redis back heals with no restart', async () => {
  const a = await node();
  const b = await node();
  const d = await Client.open(a.url);
  const room = await d.registerHome();
  try {
    await redis.down();
    await waitFor(() => a.stats().cluster?.redisUp === false && b.stats().cluster?.redisUp === false, 5000, 'both nodes to see Redis gone');
    // Same node: works.
    const local = await Client.open(a.url);
    local.send({ type: 'join', v: PROTOCOL_VERSION, room });
    await local.expect('joined');
    await d.expect('peer');
    local.send({ type: 'relay', data: 'x' });
    assert.equal((await d.expect('relay')).data, 'x');
    // Another node: a clear code.
    const far = await Client.open(b.url);
    far.send({ type: 'join', v: PROTOCOL_VERSION, room });
    await far.expectError('cluster-unavailable');
    await redis.up();
    await waitFor(() => a.stats().cluster?.redisUp && b.stats().cluster?.redisUp, 10_000, 'both nodes to see Redis back');
    // The next heartbeat puts the room's presence back (it was lost with Redis's memory).
    let joined: ServerMessage | undefined;
    for (const t0 = Date.now(); Date.now() - t0 < 10_000 && joined?.type !== 'joined'; await sleep(200)) {
      const c = await Client.open(b.url);
      c.send({ type: 'join', v: PROTOCOL_VERSION, room });
      joined = await c.next();
      c.close();
    }
    assert.equal(joined?.type, 'joined', `a cross-node join after Redis came back: ${JSON.stringify(joined)}`);
  } finally {
    d.close();
    await Promise.all([stop(a), stop(b)]);
  }
});
