// Physics of the NAT lab, checked with plain sockets (no pinhole code): mappings per router
// kind, delay, TTL, a UDP hole punch, WAN outages, cleanup. Needs root; skipped otherwise.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { cleanupStale, createLab, DEFAULT_CONNTRACK_UDP, type Host, type Lab, labAvailable, NETTOOL } from './lab.js';
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
// Echo replies around the routers' unreplied UDP timeout (DEFAULT_CONNTRACK_UDP, 10 s): one
// comes well before it, one after it; the kernel's default (30 s) would let both through.
const IDLE_REPLY_EARLY_MS = 6_000;
const IDLE_REPLY_LATE_MS = 12_000;
const IDLE_PROBE_TIMEOUT_MS = 13_500;
// Impaired-internet probe: packets, their spacing, the impairment.
const IMPAIRED_PACKETS = 300;
const IMPAIRED_INTERVAL_MS = 2;
const IMPAIRED = { jitterMs: 5, loss: 0.1 } as const;
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

async function probe(lab: Lab, host: Host, targets: string[], extra: string[] = [], execTimeoutMs?: number): Promise<ProbeResult> {
  const r = await lab.exec(host, [process.execPath, NETTOOL, 'probe', ...targets, ...extra], execTimeoutMs ? { timeoutMs: execTimeoutMs } : {});
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
    for (const [host, wan] of [
      ['dev', lab().addrs.routerA],
      ['ctl', lab().addrs.routerB],
    ] as const) {
      const r = await probe(lab(), host, serverTargets(lab()));
      const mapped = r.results.map((x) => x.mapped);
      assert.deepEqual(
        mapped.map((m) => m.length),
        [1, 1],
        `${host}: one reply per target`,
      );
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
    const st = await lab().routerStats();
    assert.deepEqual([st.lost, st.duplicated, st.reordered], [0, 0, 0], 'the default internet is perfect');
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

  test(`issue 10: an idle UDP mapping expires after the routers' ${DEFAULT_CONNTRACK_UDP.unrepliedS} s unreplied timeout`, { timeout: 30_000 }, async () => {
    const echos = await Promise.all(
      [IDLE_REPLY_EARLY_MS, IDLE_REPLY_LATE_MS].map((ms, i) =>
        startServer(lab(), 'server', ['echo', String(ECHO_PORT + 10 + i), lab().serverAddrs[0], '--reply-after', String(ms)]),
      ),
    );
    try {
      // One socket, two flows (one per echo port); neither sees any traffic until its reply.
      const r = await probe(
        lab(),
        'dev',
        [0, 1].map((i) => `${lab().serverAddrs[0]}:${ECHO_PORT + 10 + i}`),
        ['--timeout', String(IDLE_PROBE_TIMEOUT_MS)],
        IDLE_PROBE_TIMEOUT_MS + 5_000,
      );
      assert.equal(r.results[0]!.mapped.length, 1, `the reply after ${IDLE_REPLY_EARLY_MS} ms passes`);
      assert.deepEqual(r.results[1]!.mapped, [], `the reply after ${IDLE_REPLY_LATE_MS} ms meets no mapping`);
    } finally {
      for (const e of echos) e.kill();
    }
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

describe('natlab: carrier-grade NAT (cgnat) ↔ cone', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'cgnat', b: 'cone', delayMs: DELAY_MS });

  test('issue 10: two NAT layers, 100.64/10 between them; the conntrack timeouts are set in both', async () => {
    assert.equal(lab().addrs.routerA, '100.64.1.2');
    assert.equal(lab().addrs.carrierA, '198.18.1.1');
    assert.equal(lab().publicAddr('a'), lab().addrs.carrierA);
    assert.equal(lab().addrs.carrierB, null);
    const route = await lab().exec('routerA', ['ip', 'route', 'show', 'default']);
    assert.match(route.stdout, /default via 100\.64\.1\.1 dev wan0/);
    for (const host of ['routerA', 'carrierA'] as const) {
      const r = await lab().exec(host, ['cat', '/proc/sys/net/netfilter/nf_conntrack_udp_timeout', '/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream']);
      assert.deepEqual(r.stdout.trim().split('\n').map(Number), [DEFAULT_CONNTRACK_UDP.unrepliedS, DEFAULT_CONNTRACK_UDP.streamS], host);
    }
  });

  test("issue 10: the mapping is endpoint-independent end to end (both layers keep the port), on the carrier's address", async () => {
    const r = await probe(lab(), 'dev', serverTargets(lab()));
    const mapped = r.results.map((x) => x.mapped[0]!);
    assert.ok(mapped[0] && mapped[1], JSON.stringify(r));
    assert.equal(mapped[0], mapped[1]);
    assert.equal(ip(mapped[0]!), lab().addrs.carrierA);
    assert.equal(port(mapped[0]!), String(r.localPort));
  });

  test('issue 10: TTL drops by 2 (router A and the carrier) + hops', async () => {
    const needed = 2 + lab().hops + 1;
    const target = [serverTargets(lab())[0]!];
    const short = await probe(lab(), 'dev', target, ['--ttl', String(needed - 1), '--timeout', String(NO_REPLY_TIMEOUT_MS)]);
    assert.deepEqual(short.results[0]!.mapped, [], `TTL ${needed - 1} must expire in transit`);
    assert.equal((await probe(lab(), 'dev', target, ['--ttl', String(needed)])).results[0]!.mapped.length, 1);
  });

  test('issue 10: simultaneous and staggered hole punches cgnat ↔ cone succeed', async (t) => {
    for (const stagger of [0, PUNCH_STAGGER_MS]) {
      const { mapped, results } = await punchPair(lab(), PUNCH_TIMEOUT_MS, stagger);
      t.diagnostic(`stagger ${stagger} ms: mapped ${mapped.join(' / ')}; ${results.map((r) => `ok=${r.ok} after ${r.afterMs} ms`).join(' / ')}`);
      assert.ok(results[0]!.ok && results[1]!.ok, JSON.stringify(results));
      assert.equal(results[1]!.from, mapped[0]);
    }
  });

  test("issue 10: setWanUp('link') on a cgnat router cuts its link to the carrier and restores it", async () => {
    const target = [serverTargets(lab())[0]!];
    await lab().setWanUp('a', false, { mode: 'link' });
    assert.deepEqual((await probe(lab(), 'dev', target, ['--timeout', String(NO_REPLY_TIMEOUT_MS)])).results[0]!.mapped, []);
    await lab().setWanUp('a', true, { mode: 'link' });
    assert.equal((await probe(lab(), 'dev', target)).results[0]!.mapped.length, 1);
  });
});

describe('natlab: impaired internet (jitter, loss)', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withLab({ a: 'cone', b: 'cone', delayMs: DELAY_MS, impair: IMPAIRED });

  test(`issue 10: ${IMPAIRED.loss * 100}% loss per crossing and 0–${IMPAIRED.jitterMs} ms jitter, seen by a plain UDP probe`, async (t) => {
    const r = await probe(lab(), 'dev', [serverTargets(lab())[0]!], ['--count', String(IMPAIRED_PACKETS), '--interval', String(IMPAIRED_INTERVAL_MS)]);
    const rtts = r.results[0]!.rtts;
    const st = await lab().routerStats();
    t.diagnostic(
      `seed ${lab().seed}: ${rtts.length}/${IMPAIRED_PACKETS} answered, RTT ${Math.min(...rtts)}–${Math.max(...rtts)} ms; router ${JSON.stringify(st)}`,
    );
    // A round trip crosses twice: answered with probability (1 − p)²; ± 5σ.
    const expect = (1 - IMPAIRED.loss) ** 2;
    const sigma = Math.sqrt((expect * (1 - expect)) / IMPAIRED_PACKETS);
    assert.ok(Math.abs(rtts.length / IMPAIRED_PACKETS - expect) < 5 * sigma, `answered ${rtts.length}/${IMPAIRED_PACKETS}, expected ≈ ${expect}`);
    assert.ok(st.lost! > 0 && st.reordered! > 0, JSON.stringify(st));
    assert.ok(Math.min(...rtts) >= 4 * DELAY_MS - 1);
    // Two crossings of up to jitterMs each spread the RTTs.
    assert.ok(Math.max(...rtts) - Math.min(...rtts) > IMPAIRED.jitterMs, `RTT spread ${Math.max(...rtts) - Math.min(...rtts)} ms`);
    assert.deepEqual(lab().impairment, { jitterMs: IMPAIRED.jitterMs, loss: IMPAIRED.loss, duplicate: 0 });
  });

  test('issue 10: setImpairment back to perfect: nothing lost', async () => {
    await lab().setImpairment({ jitterMs: 0, loss: 0 });
    const r = await probe(lab(), 'dev', [serverTargets(lab())[0]!], ['--count', '50', '--interval', String(IMPAIRED_INTERVAL_MS)]);
    assert.equal(r.results[0]!.rtts.length, 50);
    await assert.rejects(lab().setImpairment({ loss: 2 }), RangeError);
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
    assert.deepEqual(
      blocked.results.map((x) => x.mapped),
      [[], []],
    );
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
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`ph-${id}-`));
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
