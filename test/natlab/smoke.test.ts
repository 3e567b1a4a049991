// Physics of the NAT lab, checked with plain sockets (no pinhole code): mappings per router
// kind, delay, TTL, a UDP hole punch, WAN outages, cleanup. Needs root; skipped otherwise.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import fs from 'node:fs';
import { createLab, cleanupStale, labAvailable, NETTOOL, type Lab, type Host } from './lab.js';
import type { ProbeResult, PunchResult } from './nettool.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;

const ECHO_PORT = 3478;
const DELAY_MS = 20;
// Timer and scheduling overhead on a busy 2-core machine, per round trip.
const RTT_SLACK_MS = 15;
const RTT_SAMPLES = 10;
const NO_REPLY_TIMEOUT_MS = 800;
const PUNCH_TIMEOUT_MS = 3000;
const PUNCH_FAIL_TIMEOUT_MS = 1500;
// Both punchers start at the same wall-clock instant, this far in the future.
const PUNCH_START_LEAD_MS = 100;
const LINE_TIMEOUT_MS = 5000;
// Long enough for dozens of dev's packets to hit router B before ctl sends anything.
const PUNCH_STAGGER_MS = 500;
const LAB_TIMEOUT_MS = 60_000;

function lines(stream: Readable): () => Promise<string> {
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  createInterface({ input: stream }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else queue.push(l);
  });
  return () =>
    new Promise((resolve, reject) => {
      const l = queue.shift();
      if (l !== undefined) return resolve(l);
      const timer = setTimeout(() => reject(new Error('no output line in time')), LINE_TIMEOUT_MS);
      waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
}

function tool(lab: Lab, host: Host, args: string[]): ChildProcess {
  return lab.run(host, [process.execPath, NETTOOL, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}

async function startServer(lab: Lab, host: Host, args: string[]): Promise<ChildProcess> {
  const p = tool(lab, host, args);
  assert.deepEqual(JSON.parse(await lines(p.stdout!)()), { ready: true });
  return p;
}

async function probe(lab: Lab, host: Host, targets: string[], extra: string[] = []): Promise<ProbeResult> {
  const r = await lab.exec(host, [process.execPath, NETTOOL, 'probe', ...targets, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ProbeResult;
}

const serverTargets = (lab: Lab) => lab.serverAddrs.map((a) => `${a}:${ECHO_PORT}`);

/** Hole punch dev ↔ ctl through the server-learned mappings; ctl starts `staggerMs` after dev. */
async function punchPair(lab: Lab, timeoutMs: number, staggerMs = 0): Promise<{ mapped: string[]; results: PunchResult[] }> {
  const server = serverTargets(lab)[0]!;
  const procs = (['dev', 'ctl'] as const).map((h) => tool(lab, h, ['punch', server, '--timeout', String(timeoutMs)]));
  const next = procs.map((p) => lines(p.stdout!));
  const mapped = (await Promise.all(next.map((n) => n()))).map((l) => (JSON.parse(l) as { mapped: string }).mapped);
  const at = Date.now() + PUNCH_START_LEAD_MS;
  procs[0]!.stdin!.write(JSON.stringify({ peer: mapped[1], at }) + '\n');
  procs[1]!.stdin!.write(JSON.stringify({ peer: mapped[0], at: at + staggerMs }) + '\n');
  const results = (await Promise.all(next.map((n) => n()))).map((l) => JSON.parse(l) as PunchResult);
  return { mapped, results };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const port = (hostPort: string) => hostPort.slice(hostPort.lastIndexOf(':') + 1);
const ip = (hostPort: string) => hostPort.slice(0, hostPort.lastIndexOf(':'));

/** Creates a lab with a UDP echo on both server addresses for the tests of one describe(). */
function withLab(opts: Parameters<typeof createLab>[0]): () => Lab {
  let lab: Lab | undefined;
  before(async () => {
    lab = await createLab(opts);
    await startServer(lab, 'server', ['echo', String(ECHO_PORT), ...lab.serverAddrs]);
    await startServer(lab, 'server', ['tcp-echo', String(ECHO_PORT), lab.serverAddrs[0]]);
  });
  after(async () => {
    await lab?.destroy();
  });
  return () => lab!;
}

test('natlab is available on this machine', { skip }, () => {
  assert.ok(avail.ok);
});

describe('natlab: cone ↔ cone', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'cone', b: 'cone', delayMs: DELAY_MS });

  test('mapping is endpoint-independent (same port towards both server addresses)', async () => {
    for (const [host, wan] of [['dev', lab().addrs.routerA], ['ctl', lab().addrs.routerB]] as const) {
      const r = await probe(lab(), host, serverTargets(lab()));
      const mapped = r.results.map((x) => x.mapped);
      assert.deepEqual(mapped.map((m) => m.length), [1, 1], `${host}: one reply per target`);
      assert.equal(mapped[0]![0], mapped[1]![0], `${host}: same mapping for both destinations`);
      assert.equal(ip(mapped[0]![0]!), wan);
    }
  });

  test('RTT through the internet ≈ 2 legs × delay × 2 directions', async (t) => {
    const r = await probe(lab(), 'dev', [serverTargets(lab())[0]!], ['--count', String(RTT_SAMPLES)]);
    const rtts = r.results[0]!.rtts;
    assert.equal(rtts.length, RTT_SAMPLES);
    const expected = 4 * DELAY_MS;
    t.diagnostic(`RTT ms: min ${Math.min(...rtts)} median ${median(rtts)} max ${Math.max(...rtts)} (expected ${expected})`);
    assert.ok(Math.min(...rtts) >= expected - 1, `RTT ${Math.min(...rtts)} below ${expected}`);
    assert.ok(median(rtts) <= expected + RTT_SLACK_MS, `median RTT ${median(rtts)} too high`);
  });

  test('TTL drops by 1 (router A) + hops (internet) on the way', async () => {
    const needed = 1 + lab().hops + 1;
    const target = [serverTargets(lab())[0]!];
    const short = await probe(lab(), 'dev', target, ['--ttl', String(needed - 1), '--timeout', String(NO_REPLY_TIMEOUT_MS)]);
    assert.deepEqual(short.results[0]!.mapped, [], `TTL ${needed - 1} must expire in transit`);
    const enough = await probe(lab(), 'dev', target, ['--ttl', String(needed)]);
    assert.equal(enough.results[0]!.mapped.length, 1, `TTL ${needed} must arrive (checksum valid)`);
  });

  test('ICMP ping: RTT and TTL', async (t) => {
    if (spawnSync('ping', ['-V'], { stdio: 'ignore' }).status !== 0) return t.skip('ping (iputils-ping) not installed');
    const r = await lab().exec('dev', ['ping', '-c', '3', '-i', '0.2', '-n', lab().serverAddrs[0]]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const ttls = [...r.stdout.matchAll(/ttl=(\d+)/g)].map((m) => Number(m[1]));
    const times = [...r.stdout.matchAll(/time=([\d.]+)/g)].map((m) => Number(m[1]));
    t.diagnostic(`ping ttl ${ttls.join(',')} time ${times.join(',')} ms`);
    // Server replies with TTL 64; internet lowers it by hops, router A by 1.
    assert.ok(ttls.every((x) => x === 64 - lab().hops - 1));
    assert.ok(times.every((x) => x >= 4 * DELAY_MS - 1));
  });

  test('TCP reaches the server', async () => {
    const r = await lab().exec('dev', [process.execPath, NETTOOL, 'tcp-probe', serverTargets(lab())[0]!]);
    const res = JSON.parse(r.stdout.trim()) as { ok: boolean; mapped?: string };
    assert.ok(res.ok, r.stdout);
    assert.equal(ip(res.mapped!), lab().addrs.routerA);
  });

  test('simultaneous-open UDP hole punch dev ↔ ctl succeeds', async (t) => {
    const { mapped, results } = await punchPair(lab(), PUNCH_TIMEOUT_MS);
    t.diagnostic(`mapped ${mapped.join(' / ')}; ${results.map((r) => `ok=${r.ok} after ${r.afterMs} ms`).join(' / ')}`);
    assert.ok(results[0]!.ok && results[1]!.ok, JSON.stringify(results));
    assert.equal(results[0]!.from, mapped[1]);
    assert.equal(results[1]!.from, mapped[0]);
  });

  test('staggered hole punch (ctl starts later) still succeeds: early packets leave no conntrack entry', async (t) => {
    const { results } = await punchPair(lab(), PUNCH_TIMEOUT_MS, PUNCH_STAGGER_MS);
    t.diagnostic(results.map((r) => `ok=${r.ok} after ${r.afterMs} ms, sent ${r.sent}`).join(' / '));
    assert.ok(results[0]!.ok && results[1]!.ok, JSON.stringify(results));
  });

  test('setWanUp: blackhole and link modes cut and restore the WAN', async () => {
    const target = [serverTargets(lab())[0]!];
    const quick = ['--timeout', String(NO_REPLY_TIMEOUT_MS)];
    for (const mode of ['blackhole', 'link'] as const) {
      await lab().setWanUp('a', false, { mode });
      assert.deepEqual((await probe(lab(), 'dev', target, quick)).results[0]!.mapped, [], `${mode}: WAN down`);
      assert.equal((await probe(lab(), 'ctl', target)).results[0]!.mapped.length, 1, `${mode}: router B unaffected`);
      await lab().setWanUp('a', true, { mode });
      assert.equal((await probe(lab(), 'dev', target)).results[0]!.mapped.length, 1, `${mode}: WAN back`);
    }
  });
});

describe('natlab: symmetric ↔ symmetric', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'symmetric', b: 'symmetric', delayMs: DELAY_MS });

  test('mapping depends on the destination', async () => {
    const r = await probe(lab(), 'dev', serverTargets(lab()));
    const [m0, m1] = r.results.map((x) => x.mapped[0]!);
    assert.ok(m0 && m1, JSON.stringify(r));
    assert.equal(ip(m0), lab().addrs.routerA);
    assert.notEqual(port(m0), port(m1));
  });

  test('hole punch fails (negative control)', async () => {
    const { results } = await punchPair(lab(), PUNCH_FAIL_TIMEOUT_MS);
    assert.ok(!results[0]!.ok && !results[1]!.ok, JSON.stringify(results));
  });
});

describe('natlab: udpblock ↔ cone', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'udpblock', b: 'cone', delayMs: DELAY_MS });

  test('UDP behind udpblock gets no answer; the cone side does', async () => {
    const blocked = await probe(lab(), 'dev', serverTargets(lab()), ['--timeout', String(NO_REPLY_TIMEOUT_MS)]);
    assert.deepEqual(blocked.results.map((x) => x.mapped), [[], []]);
    const fine = await probe(lab(), 'ctl', serverTargets(lab()));
    assert.equal(fine.results[0]!.mapped.length, 1);
  });

  test('TCP still passes udpblock (room for a relay fallback)', async () => {
    const r = await lab().exec('dev', [process.execPath, NETTOOL, 'tcp-probe', serverTargets(lab())[0]!]);
    const res = JSON.parse(r.stdout.trim()) as { ok: boolean; mapped?: string };
    assert.ok(res.ok, r.stdout);
    assert.equal(ip(res.mapped!), lab().addrs.routerA);
  });
});

describe('natlab: open ↔ cone', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'open', b: 'cone', delayMs: DELAY_MS });

  test('open: the host keeps its own (internet-routable) address', async () => {
    const r = await probe(lab(), 'dev', serverTargets(lab()));
    assert.equal(lab().addrs.dev, '198.18.101.2');
    assert.equal(ip(r.results[0]!.mapped[0]!), lab().addrs.dev);
    assert.equal(port(r.results[0]!.mapped[0]!), String(r.localPort));
  });

  test('open: unsolicited inbound UDP reaches the host', async () => {
    const echo = await startServer(lab(), 'dev', ['echo', String(ECHO_PORT), lab().addrs.dev]);
    const r = await probe(lab(), 'ctl', [`${lab().addrs.dev}:${ECHO_PORT}`]);
    echo.kill();
    assert.equal(ip(r.results[0]!.mapped[0]!), lab().addrs.routerB);
  });
});

describe('natlab: same LAN behind one cone router', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'cone', b: 'cone', sameLan: true, delayMs: DELAY_MS });

  test('dev and ctl talk directly on the LAN and share the WAN address', async () => {
    assert.equal(lab().addrs.routerB, null);
    const echo = await startServer(lab(), 'ctl', ['echo', String(ECHO_PORT), lab().addrs.ctl]);
    const direct = await probe(lab(), 'dev', [`${lab().addrs.ctl}:${ECHO_PORT}`]);
    echo.kill();
    assert.equal(ip(direct.results[0]!.mapped[0]!), lab().addrs.dev, 'no NAT on the LAN');
    assert.ok(direct.results[0]!.rtts[0]! < DELAY_MS, 'LAN path skips the internet delay');
    for (const host of ['dev', 'ctl'] as const) {
      const r = await probe(lab(), host, [serverTargets(lab())[0]!]);
      assert.equal(ip(r.results[0]!.mapped[0]!), lab().addrs.routerA);
    }
  });
});

function labNamespaces(id: string): string[] {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`ph-${id}-`));
}

function routerPids(id: string): number[] {
  const pids: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(`--natlab-lab=${id}`)) pids.push(Number(pid));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

describe('natlab: lifecycle', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  test('destroy() removes namespaces and the delay router', async (t) => {
    const t0 = performance.now();
    const lab = await createLab({ a: 'cone', b: 'symmetric' });
    const created = performance.now() - t0;
    assert.equal(labNamespaces(lab.id).length, 5);
    const t1 = performance.now();
    await lab.destroy();
    t.diagnostic(`create ${created.toFixed(0)} ms, destroy ${(performance.now() - t1).toFixed(0)} ms`);
    assert.deepEqual(labNamespaces(lab.id), []);
    assert.deepEqual(routerPids(lab.id), []);
    await lab.destroy(); // idempotent
  });

  test('cleanupStale() removes what a SIGKILLed run left behind', async () => {
    const labUrl = new URL('./lab.js', import.meta.url).href;
    const script = `const m = await import(${JSON.stringify(labUrl)});
      const lab = await m.createLab({ a: 'cone', b: 'cone' });
      console.log(lab.id); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const id = await lines(child.stdout!)();
    child.kill('SIGKILL'); // no exit handlers run
    await new Promise((r) => child.once('exit', r));
    assert.equal(labNamespaces(id).length, 5, 'a crashed run leaves its namespaces');
    const res = cleanupStale();
    assert.ok(res.namespaces.some((n) => n.startsWith(`ph-${id}-`)));
    assert.deepEqual(labNamespaces(id), []);
    assert.deepEqual(routerPids(id), []);
  });
});
