/**
 * `npm run bench`: pinhole's command latency on both paths, the set-up time of
 * a connection, the session handshake, the stored DTLS certificate against
 * werift's own, and the same with the server far away, next to baselines
 * measured in the same run. Prints figures; asserts nothing. (bench/dtls.ts
 * has the longer DTLS measurement, with p90 and fresh processes.)
 *
 *   --quick  short run (fewer iterations and connections)
 *   --json   print one JSON object instead of the table
 */
import os from 'node:os';
import { iceConfigFor } from '../session/ice-config.js';
import { LOOPBACK, openUdpEcho, openWeriftEcho, openWsEcho, openWsRelayEcho, weriftSetupTimes } from './baselines.js';
import { keygenTimes, phases, setupTimes } from './dtls.js';
import { connectTimes, handshakeTimes, memoryHandshakeTimes, openCommands, openInMemory, openSealing, removeBenchState, startBenchServer } from './pinhole.js';
import { startDelayProxy } from './proxy.js';
import { summarize, timeInterleaved, type LoopOptions, type Runner, type Summary } from './stats.js';

/** One-way delay the proxy adds in the far-away scenario, in ms. */
export const FAR_ONE_WAY_MS = 40;
/** Direct-path command RTT should be within this factor of the bare werift echo. */
export const TARGET_DIRECT_VS_WERIFT = 1.5;
/** Blocks in which the round-trip figures take turns. */
const INTERLEAVE_ROUNDS = 10;

interface Plan {
  /** Per round-trip figure. The far relay (~160 ms each) is bounded by maxMs, so it gets few samples. */
  rtt: LoopOptions;
  connections: number;
  connectWarmup: number;
  /** Time budget of each set of pinhole connections, in ms. */
  connectMaxMs: number;
  /** Handshakes of each kind on loopback (pairing, paired), after one warm-up each. */
  handshakes: number;
  /** Handshakes of each kind in memory (CPU only), after a tenth as many warm-ups. */
  memoryHandshakes: number;
}

const FULL: Plan = {
  rtt: { warmup: 500, warmupMaxMs: 1_000, iterations: 5_000, maxMs: 5_000 },
  connections: 10,
  connectWarmup: 1,
  connectMaxMs: 20_000,
  handshakes: 20,
  memoryHandshakes: 200,
};
const QUICK: Plan = {
  rtt: { warmup: 100, warmupMaxMs: 300, iterations: 500, maxMs: 1_000 },
  connections: 3,
  connectWarmup: 0,
  connectMaxMs: 5_000,
  handshakes: 5,
  memoryHandshakes: 20,
};

/** A round-trip figure to measure. */
interface Spec {
  id: string;
  figure: string;
  vsId?: string;
  open: () => Promise<Runner>;
}

/** One line of the table. */
interface Row {
  id: string;
  figure: string;
  summary: Summary;
  /** p50 of this figure over p50 of `vsId`. */
  vsId?: string;
  ratio?: number;
}

const FLAGS = ['--quick', '--json'];
const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (!FLAGS.includes(a)) {
    process.stderr.write(`usage: node dist/bench/run.js [--quick] [--json]  (unknown argument ${a})\n`);
    process.exit(2);
  }
}
const json = args.has('--json');
const plan = args.has('--quick') ? QUICK : FULL;
const progress = (s: string): void => void process.stderr.write(`bench: ${s}\n`);

function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    os: `${os.platform()} ${os.release()} ${os.arch()}`,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}

const ms = (x: number): string => (Number.isNaN(x) ? '-' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(3));

function table(rows: Row[]): string {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const cells = rows.map((r) => [
    r.figure,
    String(r.summary.n),
    ms(r.summary.mean),
    ms(r.summary.p50),
    ms(r.summary.p99),
    r.vsId && r.ratio !== undefined ? `${r.ratio.toFixed(2)}× ${byId.get(r.vsId)?.figure ?? r.vsId}` : '',
  ]);
  const head = ['figure', 'n', 'mean ms', 'p50 ms', 'p99 ms', 'vs baseline (p50)'];
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => `| ${c.map((x, i) => (i >= 1 && i <= 4 ? x.padStart(width[i]!) : x.padEnd(width[i]!))).join(' | ')} |`;
  return [line(head), `|${width.map((w, i) => (i >= 1 && i <= 4 ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`, ...cells.map(line)].join('\n');
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const rows: Row[] = [];
  const add = (id: string, figure: string, summary: Summary, vsId?: string): void => {
    const base = vsId ? rows.find((r) => r.id === vsId) : undefined;
    rows.push({ id, figure, summary, ...(base ? { vsId, ratio: summary.p50 / base.summary.p50 } : {}) });
  };

  // Opens every runner of a phase, times them interleaved, closes them.
  const measure = async (specs: Spec[]): Promise<void> => {
    const runners: Runner[] = [];
    let sums: Summary[];
    try {
      for (const s of specs) runners.push(await s.open());
      sums = await timeInterleaved(runners, plan.rtt, INTERLEAVE_ROUNDS);
      for (const r of runners) r.verify?.();
    } finally {
      await Promise.allSettled(runners.map((r) => r.close()));
    }
    specs.forEach((s, i) => add(s.id, s.figure, sums[i]!, s.vsId));
  };

  const server = await startBenchServer();
  const stunPort = server.stunPort ?? 0;
  let farIce = '';
  try {
    const proxy = await startDelayProxy(server.port, FAR_ONE_WAY_MS);
    try {
      const farUrl = `ws://${LOOPBACK}:${proxy.port}`;
      // What device and controller derive from the proxy's URL: STUN stays on 127.0.0.1, unproxied.
      const ice = iceConfigFor(farUrl, stunPort);
      farIce = `${ice.iceServers.map((s) => s.urls).join(', ')}; host addresses ${ice.hostAddresses?.join(', ') ?? 'all'}`;
      progress(`server ${server.url}, STUN udp/${stunPort}; far-away proxy ${farUrl} (+${FAR_ONE_WAY_MS} ms each way)`);

      progress('round trips: baselines and pinhole, interleaved');
      await measure([
        { id: 'udp', figure: 'UDP echo (dgram)', open: openUdpEcho },
        { id: 'ws', figure: 'ws echo', open: openWsEcho },
        { id: 'ws-relay', figure: 'ws relay echo', vsId: 'ws', open: openWsRelayEcho },
        { id: 'werift', figure: 'werift DC echo', open: () => openWeriftEcho(stunPort) },
        { id: 'direct', figure: 'pinhole write, direct', vsId: 'werift', open: () => openCommands(server.url, true) },
        { id: 'relay', figure: 'pinhole write, relay', vsId: 'ws-relay', open: () => openCommands(server.url, false) },
        { id: 'memory', figure: 'pinhole layers, in memory', open: openInMemory },
        { id: 'sealing', figure: 'sealing, one command round trip', vsId: 'memory', open: openSealing },
        { id: 'far-direct', figure: 'far: pinhole write, direct', vsId: 'direct', open: () => openCommands(farUrl, true) },
        { id: 'far-relay', figure: 'far: pinhole write, relay', vsId: 'far-direct', open: () => openCommands(farUrl, false) },
      ]);

      progress('connections: werift pairs, pinhole, pinhole far away');
      add('werift-setup', 'werift DC setup', await weriftSetupTimes(stunPort, plan.connections, plan.connectWarmup));
      const near = await connectTimes(server.url, plan.connections, plan.connectWarmup, plan.connectMaxMs);
      add('first-ack', 'connect → first ack', near.firstAck);
      add('to-direct', 'connect → direct', near.direct, 'werift-setup');
      const far = await connectTimes(farUrl, plan.connections, plan.connectWarmup, plan.connectMaxMs);
      add('far-first-ack', 'far: connect → first ack', far.firstAck, 'first-ack');
      add('far-to-direct', 'far: connect → direct', far.direct, 'to-direct');

      progress('handshake: in memory, then joined → secured on loopback (pairing by code, paired)');
      const mem = await memoryHandshakeTimes(plan.memoryHandshakes, Math.ceil(plan.memoryHandshakes / 10));
      add('hs-mem-paired', 'handshake CPU, paired', mem.paired);
      add('hs-mem-pairing', 'handshake CPU, pairing', mem.pairing, 'hs-mem-paired');
      const hs = await handshakeTimes(server.url, plan.handshakes, 1);
      add('hs-paired', 'joined → secured, paired', hs.paired);
      add('hs-pairing', 'joined → secured, pairing', hs.pairing, 'hs-paired');

      progress('DTLS certificate: generateDtlsKeys, werift pairs without STUN (own certificate vs stored)');
      add('dtls-keygen', 'generateDtlsKeys()', summarize(await keygenTimes(plan.connections, plan.connectWarmup)));
      const dc = await setupTimes(['own', 'stored'], plan.connections, plan.connectWarmup);
      add('dc-own', 'werift DC setup, no STUN, own cert', summarize(dc.own.map((x) => phases(x).total)));
      add('dc-stored', 'werift DC setup, no STUN, stored cert', summarize(dc.stored.map((x) => phases(x).total)), 'dc-own');
      add('dtls-own', '  DTLS phase, own cert', summarize(dc.own.map((x) => phases(x).dtls)));
      add('dtls-stored', '  DTLS phase, stored cert', summarize(dc.stored.map((x) => phases(x).dtls)), 'dtls-own');
    } finally {
      await proxy.close();
    }
  } finally {
    await server.close();
    removeBenchState();
  }

  const fig = (id: string): Summary => rows.find((r) => r.id === id)!.summary;
  const direct = rows.find((r) => r.id === 'direct')!;
  const relay = rows.find((r) => r.id === 'relay')!;
  const target = {
    directVsWerift: direct.ratio ?? NaN,
    directVsWeriftP99: direct.summary.p99 / fig('werift').p99,
    relayVsWsRelay: relay.ratio ?? NaN,
    limit: TARGET_DIRECT_VS_WERIFT,
    met: (direct.ratio ?? Infinity) <= TARGET_DIRECT_VS_WERIFT,
  };
  const totalS = (performance.now() - t0) / 1000;
  const m = machine();
  if (json) {
    const figures = Object.fromEntries(rows.map((r) => [r.id, { figure: r.figure, ...r.summary, ...(r.vsId ? { vs: r.vsId, ratio: r.ratio } : {}) }]));
    process.stdout.write(JSON.stringify({ machine: m, quick: plan === QUICK, farOneWayMs: FAR_ONE_WAY_MS, farIce, figures, target, totalS }, null, 2) + '\n');
    return;
  }
  const out: string[] = [
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Node ${m.node}, ${m.os}`,
    `run: ${plan === QUICK ? 'quick' : 'full'}; round trips: ≤${plan.rtt.iterations} per figure after ≤${plan.rtt.warmup} warm-up, ≤${plan.rtt.maxMs / 1000} s each, all interleaved in ${INTERLEAVE_ROUNDS} blocks; connections: ≤${plan.connections} fresh per figure, ≤${plan.connectMaxMs / 1000} s (p50/p99 over them)`,
    '',
    table(rows),
    '',
    `pinhole direct / bare werift echo: ${target.directVsWerift.toFixed(2)}× at p50, ${target.directVsWeriftP99.toFixed(2)}× at p99 (target ≤ ${TARGET_DIRECT_VS_WERIFT}×: ${target.met ? 'met' : 'NOT met'})`,
    `pinhole relay / ws relay echo: ${target.relayVsWsRelay.toFixed(2)}× at p50`,
    `pinhole's own layers (Device, Link, JSON, CommandHandler; no network): ${ms(fig('memory').p50)} ms at p50; direct minus werift echo: ${ms(fig('direct').p50 - fig('werift').p50)} ms at p50`,
    `far away (+${FAR_ONE_WAY_MS} ms each way, TCP only; STUN and the data channel stay local): relay ${ms(fig('far-relay').p50)} ms vs direct ${ms(fig('far-direct').p50)} ms at p50`,
    `handshake (relay only): joined → secured ${ms(fig('hs-pairing').p50)} ms pairing (CPace + SIGMA-I), ${ms(fig('hs-paired').p50)} ms paired, at p50; CPU alone ${ms(fig('hs-mem-pairing').p50)} / ${ms(fig('hs-mem-paired').p50)} ms`,
    `DTLS certificate: stored vs werift's own, set-up ${ms(fig('dc-stored').p50)} vs ${ms(fig('dc-own').p50)} ms, DTLS phase ${ms(fig('dtls-stored').p50)} vs ${ms(fig('dtls-own').p50)} ms, at p50; generateDtlsKeys() ${ms(fig('dtls-keygen').p50)} ms`,
    `  ICE config derived from the proxy's URL: ${farIce}`,
    `total ${totalS.toFixed(1)} s`,
  ];
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
