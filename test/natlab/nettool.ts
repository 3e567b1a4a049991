// Plain-socket probes that run inside lab namespaces (no pinhole code involved):
//   echo <port> <addr>... [--reply-after ms]
//                                    UDP "STUN-like" echo: replies with the sender's address as seen here
//                                    (after a delay: an idle mapping's reply, for conntrack timeouts)
//   probe <ip:port>... [--count N] [--interval ms] [--ttl N] [--timeout ms]
//                                    one socket sends to every target; prints mapped addresses and RTTs
//   punch <server ip:port> [--timeout ms]
//                                    learns its mapping, prints {"mapped"}, reads {"peer","at"} on stdin,
//                                    then punches towards the peer from the same socket
//   tcp-echo <port> <addr>           TCP server answering the peer address, then closing
//   tcp-probe <ip:port> [--timeout ms]
// Every command prints JSON lines on stdout; the last line is the result.
import dgram from 'node:dgram';
import net from 'node:net';
import { createInterface } from 'node:readline';

export interface ProbeResult {
  localPort: number;
  results: Array<{ target: string; mapped: string[]; rtts: number[] }>;
}
export interface PunchResult {
  ok: boolean;
  from?: string;
  afterMs?: number;
  sent: number;
}

const DEFAULT_PROBE_TIMEOUT_MS = 1500;
const DEFAULT_PROBE_INTERVAL_MS = 50;
const MAPPING_RETRY_MS = 200;
const PUNCH_INTERVAL_MS = 20;
const DEFAULT_PUNCH_TIMEOUT_MS = 3000;
// After success keep sending so the peer also sees our packets, then exit.
const PUNCH_LINGER_MS = 400;

const out = (obj: object): void => void process.stdout.write(JSON.stringify(obj) + '\n');

function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  return [s.slice(0, i), Number(s.slice(i + 1))];
}

function parseArgs(argv: string[]): { pos: string[]; flags: Map<string, string> } {
  const pos: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) flags.set(a.slice(2), argv[++i] ?? '');
    else pos.push(a);
  }
  return { pos, flags };
}

function udpEcho(port: number, addrs: string[], replyAfterMs: number): void {
  let bound = 0;
  for (const addr of addrs) {
    // One socket per address so replies leave from the address that was asked.
    const s = dgram.createSocket('udp4');
    s.on('message', (msg, rinfo) => {
      let id: unknown = null;
      try {
        id = (JSON.parse(msg.toString()) as { id?: unknown }).id ?? null;
      } catch {
        /* not ours: still answer */
      }
      const reply = (): void => s.send(JSON.stringify({ id, mapped: `${rinfo.address}:${rinfo.port}`, via: addr }), rinfo.port, rinfo.address);
      if (replyAfterMs > 0) setTimeout(reply, replyAfterMs);
      else reply();
    });
    s.bind(port, addr, () => {
      if (++bound === addrs.length) out({ ready: true });
    });
  }
}

async function udpProbe(targets: string[], count: number, intervalMs: number, ttl: number | undefined, timeoutMs: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, r));
  if (ttl !== undefined) s.setTTL(ttl);
  const results = targets.map((target) => ({ target, mapped: [] as string[], rtts: [] as number[] }));
  const sentAt = new Map<string, number>();
  let pending = targets.length * count;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs + count * intervalMs);
    s.on('message', (msg) => {
      const now = performance.now();
      let r: { id?: string; mapped?: string };
      try {
        r = JSON.parse(msg.toString()) as typeof r;
      } catch {
        return;
      }
      const t0 = r.id !== undefined ? sentAt.get(r.id) : undefined;
      if (t0 === undefined || !r.mapped) return;
      sentAt.delete(r.id!);
      const res = results[Number(r.id!.split('/')[0])]!;
      res.rtts.push(Math.round((now - t0) * 100) / 100);
      if (!res.mapped.includes(r.mapped)) res.mapped.push(r.mapped);
      if (--pending === 0) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  for (let n = 0; n < count; n++) {
    targets.forEach((t, i) => {
      const id = `${i}/${n}`;
      const [host, port] = splitHostPort(t);
      sentAt.set(id, performance.now());
      s.send(JSON.stringify({ id }), port, host);
    });
    if (n + 1 < count) await new Promise((r) => setTimeout(r, intervalMs));
  }
  await done;
  out({ localPort: s.address().port, results } satisfies ProbeResult);
  s.close();
}

async function punch(server: string, timeoutMs: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, r));
  const [sHost, sPort] = splitHostPort(server);
  const mapped = await new Promise<string>((resolve) => {
    const ask = (): void => s.send(JSON.stringify({ id: 'map' }), sPort, sHost);
    const timer = setInterval(ask, MAPPING_RETRY_MS);
    s.once('message', (msg) => {
      clearInterval(timer);
      resolve((JSON.parse(msg.toString()) as { mapped: string }).mapped);
    });
    ask();
  });
  out({ mapped });

  const line = await new Promise<string>((r) => createInterface({ input: process.stdin }).once('line', r));
  const { peer, at } = JSON.parse(line) as { peer: string; at: number };
  const [pHost, pPort] = splitHostPort(peer);
  await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
  const start = performance.now();
  let sent = 0;
  let result: PunchResult | undefined;
  const send = (): void => void s.send(JSON.stringify({ punch: sent++ }), pPort, pHost);
  const ticker = setInterval(send, PUNCH_INTERVAL_MS);
  send();
  s.on('message', (_msg, rinfo) => {
    if (result || `${rinfo.address}:${rinfo.port}` !== peer) return;
    result = { ok: true, from: `${rinfo.address}:${rinfo.port}`, afterMs: Math.round(performance.now() - start), sent };
    setTimeout(finish, PUNCH_LINGER_MS);
  });
  const giveUp = setTimeout(() => {
    result = { ok: false, sent };
    finish();
  }, timeoutMs);
  function finish(): void {
    clearInterval(ticker);
    clearTimeout(giveUp);
    out({ ...result!, sent });
    s.close();
    process.exit(0);
  }
}

function tcpEcho(port: number, addr: string): void {
  const srv = net.createServer((c) => c.end(JSON.stringify({ mapped: `${c.remoteAddress}:${c.remotePort}` }) + '\n'));
  srv.listen(port, addr, () => out({ ready: true }));
}

function tcpProbe(target: string, timeoutMs: number): void {
  const [host, port] = splitHostPort(target);
  const t0 = performance.now();
  const c = net.connect({ host, port });
  let data = '';
  const timer = setTimeout(() => {
    out({ ok: false, error: 'timeout' });
    process.exit(0);
  }, timeoutMs);
  c.on('data', (d) => (data += d.toString()));
  c.on('end', () => {
    clearTimeout(timer);
    out({ ok: true, rttMs: Math.round(performance.now() - t0), ...(JSON.parse(data) as object) });
  });
  c.on('error', (e) => {
    clearTimeout(timer);
    out({ ok: false, error: e.message });
  });
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  const { pos, flags } = parseArgs(rest);
  const num = (k: string, d: number): number => (flags.has(k) ? Number(flags.get(k)) : d);
  switch (cmd) {
    case 'echo':
      return udpEcho(Number(pos[0]), pos.slice(1), num('reply-after', 0));
    case 'probe':
      return udpProbe(
        pos,
        num('count', 1),
        num('interval', DEFAULT_PROBE_INTERVAL_MS),
        flags.has('ttl') ? Number(flags.get('ttl')) : undefined,
        num('timeout', DEFAULT_PROBE_TIMEOUT_MS),
      );
    case 'punch':
      return punch(pos[0]!, num('timeout', DEFAULT_PUNCH_TIMEOUT_MS));
    case 'tcp-echo':
      return tcpEcho(Number(pos[0]), pos[1]!);
    case 'tcp-probe':
      return tcpProbe(pos[0]!, num('timeout', DEFAULT_PROBE_TIMEOUT_MS));
    default:
      process.stderr.write(`nettool: unknown command ${cmd}\n`);
      process.exit(2);
  }
}

// Only act as a CLI when run directly, so tests can import the result types.
if (process.argv[1]?.endsWith('nettool.js')) void main();
