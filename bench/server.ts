/**
 * `npm run bench:server`: the signaling server under load, single node and
 * clustered over a local Redis, beside a bare `ws` forwarder and PeerJS's
 * server, all measured in this run. Each server runs in a process of its own
 * (RSS and CPU are read from /proc). Load comes from light `ws` clients
 * speaking the protocol, spread over 127.0.0.x source addresses (the
 * per-address connection cap is 64). Prints figures and ratios; asserts nothing.
 *
 *   --conns N    idle connections per server (default 10000)
 *   --quick      1000 idle connections, shorter relay and round-trip runs
 *   --only LIST  some of idle,relay,rtt,failover (default all)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { PROTOCOL_VERSION } from '../protocol/index.js';

/** Targets of the issue this bench checks. */
export const TARGET_CLUSTERED_RSS_VS_SINGLE = 1.2;
export const TARGET_CROSS_VS_SAME_THROUGHPUT = 0.6;
export const TARGET_SAME_CPU_VS_BARE = 1.1;
export const TARGET_CROSS_ADDS_P50_MS = 1;

const SELF = fileURLToPath(import.meta.url);
const CLK_TCK = 100;
/** Frames each relay pair keeps in flight: enough to keep the server busy, few enough to stay under the per-socket rate burst. */
const WINDOW = 32;
/** Loopback source addresses for the load: 64 sockets each at most. */
const SOURCES = 200;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

function cpuS(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

// --- the servers, each in a child process -----------------------------------

async function child(kind: string, port: number, redis: string | undefined): Promise<void> {
  if (kind === 'pinhole') {
    const { startSignalServer } = await import('../signaling/index.js');
    const big = 1e9;
    await startSignalServer({
      host: '127.0.0.1',
      port,
      stunPort: null,
      log: () => undefined,
      redis: redis ?? null,
      limits: {
        rateMsgsPerSec: big,
        rateBurst: big,
        joinRatePerMin: big,
        joinBurst: big,
        registerRatePerMin: big,
        registerBurst: big,
        maxRoomsPerAddr: big,
        maxConns: 100_000,
        maxRooms: 100_000,
      },
    });
  } else if (kind === 'ws') {
    // A bare forwarder: "pair:ID" pairs two sockets; everything else goes to the partner as is.
    const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, clientTracking: false });
    // Ready only once it listens: a client that came earlier was refused (the bench then died with ECONNREFUSED).
    await new Promise((r) => wss.once('listening', r));
    const waiting = new Map<string, WebSocket>();
    wss.on('connection', (ws) => {
      let peer: WebSocket | undefined;
      ws.on('message', (d, bin) => {
        if (peer) return peer.send(d, { binary: bin });
        const id = d.toString();
        const other = waiting.get(id);
        if (other) {
          waiting.delete(id);
          peer = other;
          (other as WebSocket & { peer?: WebSocket }).peer = ws;
          other.emit('paired', ws);
        } else {
          waiting.set(id, ws);
          ws.once('paired', (p: WebSocket) => void (peer = p));
        }
      });
    });
  } else if (kind === 'peerjs') {
    const { PeerServer } = await import('peer');
    await new Promise((r) =>
      PeerServer({ host: '127.0.0.1', port, path: '/', key: 'peerjs', alive_timeout: 600_000, expire_timeout: 600_000, concurrent_limit: 100_000 }, r),
    );
  }
  // The bench asks for a full collection before each RSS reading (the child runs with --expose-gc).
  process.on('message', (m) => {
    if (m === 'gc') {
      (globalThis as { gc?: () => void }).gc?.();
      process.send?.('gc-done');
    }
  });
  process.send?.('ready');
}

interface Proc {
  proc: ChildProcess;
  url: string;
  pid: number;
}

async function startChild(kind: string, redis?: string): Promise<Proc> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--expose-gc', SELF, '--child', kind, String(port), ...(redis ? [redis] : [])], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((r) => proc.once('message', () => r()));
  return { proc, url: `ws://127.0.0.1:${port}`, pid: proc.pid! };
}

// --- clients ----------------------------------------------------------------

let nextSource = 0;
const source = (): string => `127.0.0.${2 + (nextSource++ % SOURCES)}`;

/** The first message of each socket (the server's hello can arrive in the same read as the upgrade's answer). */
const firsts = new WeakMap<WebSocket, Promise<unknown>>();

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress: source(), perMessageDeflate: false });
    firsts.set(ws, new Promise((r) => ws.once('message', r)));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Waits for the server's hello. */
const hello = (ws: WebSocket): Promise<unknown> => firsts.get(ws)!;

/** The next message on `ws`, parsed. */
function nextMsg(ws: WebSocket): Promise<{ type: string; session?: string; data?: string; code?: string }> {
  return new Promise((r) => ws.once('message', (d) => r(JSON.parse(d.toString()))));
}

let roomSerial = 0;
const freshRoom = (): string => `B${process.pid.toString(36).toUpperCase()}X${(roomSerial++).toString(36).toUpperCase()}`.padEnd(8, 'Q');

/** A pinhole pair: a device that registered a room (on `deviceUrl`) and a controller that joined it (on `controllerUrl`). */
async function pinholePair(deviceUrl: string, controllerUrl: string): Promise<{ d: WebSocket; c: WebSocket; session: string }> {
  const d = await open(deviceUrl);
  await hello(d);
  const room = freshRoom();
  const reg = nextMsg(d);
  d.send(JSON.stringify({ type: 'register', v: PROTOCOL_VERSION, room }));
  const r = await reg;
  if (r.type !== 'registered') throw new Error(`register: ${JSON.stringify(r)}`);
  const c = await open(controllerUrl);
  await hello(c);
  const j = nextMsg(c);
  const peer = nextMsg(d);
  c.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, room }));
  const jm = await j;
  if (jm.type !== 'joined') throw new Error(`join: ${JSON.stringify(jm)}`);
  await peer;
  return { d, c, session: jm.session! };
}

/** A full collection in the child: RSS is then what the connections hold, not the garbage their set-up left. */
function collect(p: Proc): Promise<void> {
  return new Promise((resolve) => {
    p.proc.once('message', () => resolve());
    p.proc.send('gc');
  });
}

async function idle(kind: string, p: Proc, n: number): Promise<{ rssPerConnKiB: number; rawPerConnKiB: number; idleCpuPct: number }> {
  await sleep(500);
  await collect(p);
  const before = rssKiB(p.pid);
  const socks: WebSocket[] = [];
  for (let i = 0; i < n; i += 200) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(200, n - i) }, async (_, k) => {
        if (kind === 'peerjs') return open(`${p.url}/peerjs?key=peerjs&id=bench${i + k}x${process.pid}&token=t${i + k}`);
        const ws = await open(p.url);
        if (kind === 'pinhole') {
          await hello(ws);
          const reg = nextMsg(ws);
          ws.send(JSON.stringify({ type: 'register', v: PROTOCOL_VERSION, room: freshRoom() }));
          await reg;
        }
        return ws;
      }),
    );
    socks.push(...batch);
  }
  await sleep(2000);
  const raw = rssKiB(p.pid);
  await collect(p);
  await sleep(500);
  const after = rssKiB(p.pid);
  const c0 = cpuS(p.pid);
  await sleep(5000);
  const idleCpuPct = ((cpuS(p.pid) - c0) / 5) * 100;
  for (const s of socks) s.terminate();
  await sleep(500);
  return { rssPerConnKiB: (after - before) / n, rawPerConnKiB: (raw - before) / n, idleCpuPct };
}

/** Relays frames through pairs for `ms`: frames/s delivered, and the CPU of `pids` per 100k frames. */
async function relay(
  pairs: Array<{ send: () => void; onEcho: (f: () => void) => void }>,
  pids: number[],
  ms: number,
): Promise<{ fps: number; cpuPer100k: number }> {
  let delivered = 0;
  let running = true;
  for (const p of pairs) {
    p.onEcho(() => {
      delivered++;
      if (running) p.send();
    });
  }
  for (const p of pairs) for (let i = 0; i < WINDOW; i++) p.send();
  await sleep(500);
  const d0 = delivered;
  const c0 = pids.reduce((s, pid) => s + cpuS(pid), 0);
  const t0 = performance.now();
  await sleep(ms);
  const frames = delivered - d0;
  const secs = (performance.now() - t0) / 1000;
  const cpu = pids.reduce((s, pid) => s + cpuS(pid), 0) - c0;
  running = false;
  await sleep(300);
  // each echo is two frames through the server (there and back)
  return { fps: (frames * 2) / secs, cpuPer100k: (cpu / (frames * 2)) * 100_000 };
}

const DATA = 'x'.repeat(120);

async function pinholeRelayPairs(deviceUrl: string, controllerUrl: string, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const { d, c, session } = await pinholePair(deviceUrl, controllerUrl);
    const dframe = JSON.stringify({ type: 'relay', data: DATA, session });
    d.on('message', () => d.send(dframe)); // the device echoes
    const cframe = JSON.stringify({ type: 'relay', data: DATA });
    out.push({ send: () => c.send(cframe), onEcho: (f: () => void) => void c.on('message', f), close: () => (d.terminate(), c.terminate()) });
  }
  return out;
}

async function barePairs(url: string, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const [a, b] = await Promise.all([open(url), open(url)]);
    a.send(`p${i}`);
    await sleep(5);
    b.send(`p${i}`);
    await sleep(5);
    b.on('message', (m) => b.send(m, { binary: false }));
    const frame = JSON.stringify({ type: 'relay', data: DATA });
    out.push({ send: () => a.send(frame), onEcho: (f: () => void) => void a.on('message', f), close: () => (a.terminate(), b.terminate()) });
  }
  return out;
}

/** p50 and p90 of `iters` sequential round trips controller -> device -> controller. */
async function rtt(deviceUrl: string, controllerUrl: string, iters: number): Promise<{ p50: number; p90: number }> {
  const { d, c, session } = await pinholePair(deviceUrl, controllerUrl);
  const dframe = JSON.stringify({ type: 'relay', data: DATA, session });
  d.on('message', () => d.send(dframe));
  const cframe = JSON.stringify({ type: 'relay', data: DATA });
  const t: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    const got = new Promise((r) => c.once('message', r));
    c.send(cframe);
    await got;
    if (i >= iters / 10) t.push(performance.now() - t0);
  }
  d.terminate();
  c.terminate();
  t.sort((a, b) => a - b);
  return { p50: t[Math.floor(t.length / 2)]!, p90: t[Math.floor(t.length * 0.9)]! };
}

async function failover(redis: string): Promise<number> {
  // Two nodes in children; a raw device that reconnects to the other node at once and re-registers.
  const a = await startChild('pinhole', redis);
  const b = await startChild('pinhole', redis);
  const d = await open(a.url);
  await hello(d);
  const room = freshRoom();
  const reg = nextMsg(d);
  d.send(JSON.stringify({ type: 'register', v: PROTOCOL_VERSION, room }));
  await reg;
  const t0 = performance.now();
  a.proc.kill('SIGKILL');
  // The device's part: reconnect to the other node and register until the room is free (its old node's key expires).
  for (;;) {
    const s = await open(b.url);
    await hello(s);
    const r = nextMsg(s);
    s.send(JSON.stringify({ type: 'register', v: PROTOCOL_VERSION, room }));
    const m = await r;
    if (m.type === 'registered') break;
    s.terminate();
    await sleep(100);
  }
  const ms = performance.now() - t0;
  b.proc.kill('SIGKILL');
  return ms;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, Number(args[2]), args[3]);
  const quick = args.includes('--quick');
  const ci = args.indexOf('--conns');
  const conns = ci >= 0 ? Number(args[ci + 1]) : quick ? 1000 : 10_000;
  const relayMs = quick ? 2000 : 5000;
  const oi = args.indexOf('--only');
  const parts = new Set(oi >= 0 ? (args[oi + 1] ?? '').split(',') : ['idle', 'relay', 'rtt', 'failover']);
  for (const p of parts) if (!['idle', 'relay', 'rtt', 'failover'].includes(p)) throw new Error(`--only: unknown part ${p} (idle,relay,rtt,failover)`);
  const pairsN = 50;
  const rport = await freePort();
  const redisProc = spawn('redis-server', ['--port', String(rport), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await sleep(300);
  const redis = `redis://127.0.0.1:${rport}`;
  const redisPid = redisProc.pid!;
  const rows: string[] = [];
  const row = (label: string, value: string, note = ''): void => {
    rows.push(`${label.padEnd(48)} ${value.padStart(14)}  ${note}`);
    console.error(rows.at(-1));
  };
  try {
    // Idle capacity.
    if (parts.has('idle')) {
      const idleFig: Record<string, { rssPerConnKiB: number; rawPerConnKiB: number; idleCpuPct: number }> = {};
      for (const [name, kind, r] of [
        ['single node', 'pinhole', undefined],
        ['clustered', 'pinhole', redis],
        ['PeerJS server', 'peerjs', undefined],
        ['bare ws forwarder', 'ws', undefined],
      ] as const) {
        const p = await startChild(kind, r);
        idleFig[name] = await idle(kind, p, conns);
        p.proc.kill('SIGKILL');
        row(
          `idle RSS per connection, ${name}`,
          `${idleFig[name]!.rssPerConnKiB.toFixed(2)} KiB`,
          `after a full GC (${idleFig[name]!.rawPerConnKiB.toFixed(2)} KiB before it); idle CPU ${idleFig[name]!.idleCpuPct.toFixed(1)} % at ${conns}`,
        );
      }
      const ratio = idleFig.clustered!.rssPerConnKiB / idleFig['single node']!.rssPerConnKiB;
      row('  clustered / single per connection', `${ratio.toFixed(2)}x`, `target <= ${TARGET_CLUSTERED_RSS_VS_SINGLE}x`);
    }

    // Relay: same node, cross node, bare forwarder.
    if (parts.has('relay')) {
      const bare = await startChild('ws');
      const bp = await barePairs(bare.url, pairsN);
      const bf = await relay(bp, [bare.pid], relayMs);
      for (const p of bp) p.close();
      bare.proc.kill('SIGKILL');
      const single = await startChild('pinhole');
      const sp = await pinholeRelayPairs(single.url, single.url, pairsN);
      const sf = await relay(sp, [single.pid], relayMs);
      for (const p of sp) p.close();
      single.proc.kill('SIGKILL');
      const na = await startChild('pinhole', redis);
      const nb = await startChild('pinhole', redis);
      const same = await pinholeRelayPairs(na.url, na.url, pairsN);
      const sameC = await relay(same, [na.pid], relayMs);
      for (const p of same) p.close();
      const cross = await pinholeRelayPairs(na.url, nb.url, pairsN);
      const crossC = await relay(cross, [na.pid, nb.pid, redisPid], relayMs);
      for (const p of cross) p.close();
      row('relay, bare ws forwarder', `${Math.round(bf.fps)} fr/s`, `CPU ${bf.cpuPer100k.toFixed(2)} s per 100k frames`);
      row('relay, single node', `${Math.round(sf.fps)} fr/s`, `CPU ${sf.cpuPer100k.toFixed(2)} s per 100k frames`);
      row('relay, clustered, same node', `${Math.round(sameC.fps)} fr/s`, `CPU ${sameC.cpuPer100k.toFixed(2)} s per 100k frames`);
      row('relay, clustered, cross node', `${Math.round(crossC.fps)} fr/s`, `CPU ${crossC.cpuPer100k.toFixed(2)} s per 100k (both nodes + Redis)`);
      row('  cross / same throughput', `${(crossC.fps / sameC.fps).toFixed(2)}x`, `target >= ${TARGET_CROSS_VS_SAME_THROUGHPUT}x`);
      row('  same-node CPU per frame / bare forwarder', `${(sameC.cpuPer100k / bf.cpuPer100k).toFixed(2)}x`, `target <= ${TARGET_SAME_CPU_VS_BARE}x`);
      row('  single-node CPU per frame / bare forwarder', `${(sf.cpuPer100k / bf.cpuPer100k).toFixed(2)}x`);
      na.proc.kill('SIGKILL');
      nb.proc.kill('SIGKILL');
    }

    // Command round trip.
    if (parts.has('rtt')) {
      const na = await startChild('pinhole', redis);
      const nb = await startChild('pinhole', redis);
      const iters = quick ? 1000 : 5000;
      const rs = await rtt(na.url, na.url, iters);
      const rc = await rtt(na.url, nb.url, iters);
      row('round trip, same node', `${rs.p50.toFixed(3)} ms`, `p90 ${rs.p90.toFixed(3)} ms`);
      row('round trip, cross node', `${rc.p50.toFixed(3)} ms`, `p90 ${rc.p90.toFixed(3)} ms`);
      row('  cross adds at p50', `${(rc.p50 - rs.p50).toFixed(3)} ms`, `target <= ${TARGET_CROSS_ADDS_P50_MS} ms`);
      na.proc.kill('SIGKILL');
      nb.proc.kill('SIGKILL');
    }

    // Fail-over.
    if (parts.has('failover')) {
      execFileSync('redis-cli', ['-p', String(rport), 'FLUSHALL']);
      const fo = await failover(redis);
      row('fail-over: node killed -> room registered elsewhere', `${Math.round(fo)} ms`, 'bound: NODE_TTL_MS (3 s) + reconnect');
    }
  } finally {
    redisProc.kill('SIGKILL');
  }
  console.log(`server bench (${conns} idle connections, ${pairsN} relay pairs, ${process.platform}, node ${process.version})`);
  for (const r of rows) console.log(r);
  process.exit(0);
}

void main();
