/**
 * `npm run bench`: pinhole's command latency on both paths, the set-up time of
 * a connection, the session handshake, the stored DTLS certificate against
 * werift's own, and the same with the server far away, next to baselines
 * measured in the same run. Prints figures; asserts nothing. (bench/dtls.ts
 * has the longer DTLS measurement, with p90 and fresh processes.)
 *
 *   --quick        short run (fewer iterations and connections)
 *   --json         print one JSON object instead of the table
 *   --only LIST    only these groups of rows, comma-separated: rtt, connect,
 *                  handshake, dtls, cli, many, mqtt (default: all; mqtt needs mosquitto)
 */
import os from 'node:os';
import { iceConfigFor } from '../session/ice-config.js';
import { LOOPBACK, openUdpEcho, openWeriftEcho, openWsEcho, openWsRelayEcho, weriftSetupTimes } from './baselines.js';
import { cliTimes } from './cli.js';
import { keygenTimes, phases, setupTimes } from './dtls.js';
import { firstCommandFloorTimes } from './floor.js';
import { EDGE_HZ, MANY_COUNTS, type ManyPlan, manyControllers, type ResourceFigure, WATCH_PINS } from './many.js';
import { mqttUnavailable, openMqttRig } from './mqtt.js';
import {
  BENCH_PIN,
  connectTimes,
  handshakeTimes,
  memoryHandshakeTimes,
  openCommands,
  openInMemory,
  openSealing,
  pairedConnectTimes,
  removeBenchState,
  startBenchServer,
} from './pinhole.js';
import { startDelayProxy } from './proxy.js';
import { type LoopOptions, type Runner, type Summary, summarize, timeInterleaved } from './stats.js';

/** One-way delay the proxy adds in the far-away scenario, in ms. */
export const FAR_ONE_WAY_MS = 40;
/** Direct-path command RTT should be within this factor of the bare werift echo. */
export const TARGET_DIRECT_VS_WERIFT = 1.5;
/** connect → first ack should be within this factor of the first-command floor, near and far. */
export const TARGET_FIRST_ACK_VS_FLOOR = 1.2;
/** A one-shot `pinhole control NAME write` should exit within this many ms of `pinhole --help`. */
export const TARGET_ONESHOT_OVER_HELP_MS = 60;
/** Each direct session past the first should add at most this much to the device's RSS, in MB (10^6 bytes). */
export const TARGET_RSS_PER_DIRECT_MB = 10;
/** One controller's command round trip with seven others watching should be within this factor of its round trip alone (p50). */
export const TARGET_LOADED_VS_ALONE = 1.5;
/** Blocks in which the round-trip figures take turns. */
const INTERLEAVE_ROUNDS = 10;
/** Untimed floor connections first (the server's and ws's code paths warm up). */
const FLOOR_WARMUP = 1;
/** Untimed CLI runs of each kind first (the page cache holds the CLI's files). */
const CLI_WARMUP = 1;

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
  /** Runs of each CLI figure (--help, one-shot write), after one warm-up each. */
  cliRuns: number;
  /** The many-controllers group. */
  many: ManyPlan;
}

const FULL: Plan = {
  rtt: { warmup: 500, warmupMaxMs: 1_000, iterations: 5_000, maxMs: 5_000 },
  connections: 10,
  connectWarmup: 1,
  connectMaxMs: 20_000,
  handshakes: 20,
  memoryHandshakes: 200,
  cliRuns: 8,
  many: { settleMs: 2_000, idleWindowMs: 8_000, warmup: 1_000, warmupMaxMs: 2_000, blockMs: 2_000, rounds: 4 },
};
const QUICK: Plan = {
  rtt: { warmup: 100, warmupMaxMs: 300, iterations: 500, maxMs: 1_000 },
  connections: 3,
  connectWarmup: 0,
  connectMaxMs: 5_000,
  handshakes: 5,
  memoryHandshakes: 20,
  cliRuns: 3,
  many: { settleMs: 1_000, idleWindowMs: 3_000, warmup: 500, warmupMaxMs: 1_000, blockMs: 1_000, rounds: 2 },
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

/** Groups of rows, in the order they run. */
const GROUPS = ['rtt', 'connect', 'handshake', 'dtls', 'cli', 'many', 'mqtt'] as const;
type Group = (typeof GROUPS)[number];

const USAGE = `usage: node dist/bench/run.js [--quick] [--json] [--only ${GROUPS.join(',')}]`;
function parseArgs(argv: string[]): { quick: boolean; json: boolean; only: ReadonlySet<Group> } {
  const fail = (why: string): never => {
    process.stderr.write(`${USAGE}  (${why})\n`);
    process.exit(2);
  };
  let quick = false;
  let json = false;
  let only: Set<Group> | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--quick') quick = true;
    else if (a === '--json') json = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!list) fail('--only needs a list');
      only = new Set();
      for (const g of String(list).split(',')) {
        if (!(GROUPS as readonly string[]).includes(g)) fail(`unknown group ${g}`);
        only.add(g as Group);
      }
    } else fail(`unknown argument ${a}`);
  }
  return { quick, json, only: only ?? new Set(GROUPS) };
}
const args = parseArgs(process.argv.slice(2));
const json = args.json;
const plan = args.quick ? QUICK : FULL;
const wanted = (g: Group): boolean => args.only.has(g);
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
  return markdown(head, cells, (i) => i >= 1 && i <= 4);
}

/** A Markdown table; columns where `right(i)` are right-aligned. */
function markdown(head: string[], cells: string[][], right: (i: number) => boolean): string {
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => `| ${c.map((x, i) => (right(i) ? x.padStart(width[i]!) : x.padEnd(width[i]!))).join(' | ')} |`;
  return [line(head), `|${width.map((w, i) => (right(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`, ...cells.map(line)].join('\n');
}

/** Bytes in the MB of the memory figures. */
const MB = 1e6;
/** The per-extra-session figure compares the most controllers with the fewest (both on direct). */
const MANY_MOST = MANY_COUNTS[MANY_COUNTS.length - 1];
const MANY_FEWEST = MANY_COUNTS[0];

/** Memory per extra direct session: (figure at the most direct sessions − at one) / the sessions between, in MB. */
interface PerExtra {
  rssMb: number;
  heapMb: number;
}

/** The device's idle RSS, JS memory and CPU, each beside the same device process with no controller. */
function resourceTable(figures: readonly ResourceFigure[], perExtra: PerExtra | undefined): string {
  const versus = (x: number, base: number, unit: string, digits: number): string =>
    Number.isFinite(x) && Number.isFinite(base) && base > 0 ? `${(x / base).toFixed(2)}× (${x >= base ? '+' : ''}${(x - base).toFixed(digits)}${unit})` : '';
  const cells = figures.map((f) => {
    const base = figures.find((b) => b.path === f.path && b.count === 0);
    const label =
      f.count === 0
        ? `device, no controller (${f.path} run's baseline)`
        : `device, ${f.count} controller${f.count > 1 ? 's' : ''} ${f.path === 'direct' ? 'on direct' : 'idle on relay'}`;
    const [rss, heap, cpu] = [f.rssBytes / MB, f.heapBytes / MB, f.cpuPct];
    const vs = (x: number, b: number | undefined, unit: string, digits: number): string => (f === base || b === undefined ? '' : versus(x, b, unit, digits));
    return [
      label,
      rss.toFixed(1),
      vs(rss, base && base.rssBytes / MB, ' MB', 1),
      heap.toFixed(1),
      vs(heap, base && base.heapBytes / MB, ' MB', 1),
      cpu.toFixed(2),
      vs(cpu, base?.cpuPct, ' pts', 2),
    ];
  });
  if (perExtra) {
    cells.push([
      `per extra direct session ((${MANY_MOST} direct − ${MANY_FEWEST} direct) / ${MANY_MOST - MANY_FEWEST})`,
      perExtra.rssMb.toFixed(1),
      `${(perExtra.rssMb / TARGET_RSS_PER_DIRECT_MB).toFixed(2)}× the target ${TARGET_RSS_PER_DIRECT_MB} MB`,
      perExtra.heapMb.toFixed(2),
      '',
      '',
      '',
    ]);
  }
  const head = ['figure', 'RSS MB', 'RSS vs no controller', 'heap+ext MB', 'heap+ext vs no controller', 'CPU % of a core', 'CPU vs no controller'];
  return markdown(head, cells, (i) => i === 1 || i === 3 || i === 5);
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
    for (const [i, s] of specs.entries()) add(s.id, s.figure, sums[i]!, s.vsId);
  };

  let many: Awaited<ReturnType<typeof manyControllers>> | undefined;

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

      if (wanted('rtt')) {
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
      }

      if (wanted('connect')) {
        progress('connections: werift pairs, the first-command floor (bare ws), pinhole, both far away too');
        add('werift-setup', 'werift DC setup', await weriftSetupTimes(stunPort, plan.connections, plan.connectWarmup));
        add('floor', 'first-command floor (bare ws, 2 relay RTTs)', await firstCommandFloorTimes(server.url, plan.connections, FLOOR_WARMUP));
        const near = await connectTimes(server.url, plan.connections, plan.connectWarmup, plan.connectMaxMs);
        add('first-ack', 'connect → first ack', near.firstAck, 'floor');
        add('to-direct', 'connect → direct', near.direct, 'werift-setup');
        const nearPaired = await pairedConnectTimes(server.url, plan.connections, plan.connectWarmup, plan.connectMaxMs);
        add('paired-first-ack', 'connect → first ack, paired', nearPaired.firstAck, 'floor');
        add('paired-to-direct', 'connect → direct, paired', nearPaired.direct, 'werift-setup');
        add('far-floor', 'far: first-command floor', await firstCommandFloorTimes(farUrl, plan.connections, FLOOR_WARMUP));
        const far = await connectTimes(farUrl, plan.connections, plan.connectWarmup, plan.connectMaxMs);
        add('far-first-ack', 'far: connect → first ack', far.firstAck, 'far-floor');
        add('far-to-direct', 'far: connect → direct', far.direct, 'to-direct');
        const farPaired = await pairedConnectTimes(farUrl, plan.connections, plan.connectWarmup, plan.connectMaxMs);
        add('far-paired-first-ack', 'far: connect → first ack, paired', farPaired.firstAck, 'far-floor');
        add('far-paired-to-direct', 'far: connect → direct, paired', farPaired.direct, 'paired-to-direct');
      }

      if (wanted('handshake')) {
        progress('handshake: in memory, then joined → secured on loopback (pairing by code, paired)');
        const mem = await memoryHandshakeTimes(plan.memoryHandshakes, Math.ceil(plan.memoryHandshakes / 10));
        add('hs-mem-paired', 'handshake CPU, paired', mem.paired);
        add('hs-mem-pairing', 'handshake CPU, pairing', mem.pairing, 'hs-mem-paired');
        const hs = await handshakeTimes(server.url, plan.handshakes, 1);
        add('hs-paired', 'joined → secured, paired', hs.paired);
        add('hs-pairing', 'joined → secured, pairing', hs.pairing, 'hs-paired');
      }

      if (wanted('dtls')) {
        progress('DTLS certificate: generateDtlsKeys, werift pairs without STUN (own certificate vs stored)');
        add('dtls-keygen', 'generateDtlsKeys()', summarize(await keygenTimes(plan.connections, plan.connectWarmup)));
        const dc = await setupTimes(['own', 'stored'], plan.connections, plan.connectWarmup);
        add('dc-own', 'werift DC setup, no STUN, own cert', summarize(dc.own.map((x) => phases(x).total)));
        add('dc-stored', 'werift DC setup, no STUN, stored cert', summarize(dc.stored.map((x) => phases(x).total)), 'dc-own');
        add('dtls-own', '  DTLS phase, own cert', summarize(dc.own.map((x) => phases(x).dtls)));
        add('dtls-stored', '  DTLS phase, stored cert', summarize(dc.stored.map((x) => phases(x).dtls)), 'dtls-own');
      }

      if (wanted('cli')) {
        progress(`one-shot CLI: fresh processes, --help and control NAME write ${BENCH_PIN} 1, taking turns`);
        const cli = await cliTimes(server.url, plan.cliRuns, CLI_WARMUP);
        add('cli-help', 'pinhole --help (process wall time)', cli.help);
        add('cli-write', `pinhole control NAME write ${BENCH_PIN} 1 (one-shot)`, cli.oneShot, 'cli-help');
      }

      if (wanted('many')) {
        progress('many controllers: the device in a process of its own, idle RSS and CPU by count, round trips with watchers');
        many = await manyControllers(server.url, plan.many, progress);
        for (const r of many.rtt) {
          add(`many-alone-${r.path}`, `${r.path}: one controller, the others gone`, r.alone);
          add(`many-loaded-${r.path}`, `${r.path}: one controller, ${WATCH_PINS.length} others watching at ${EDGE_HZ} Hz`, r.loaded, `many-alone-${r.path}`);
        }
      }

      if (wanted('mqtt')) {
        const why = mqttUnavailable();
        if (why) progress(`mqtt: skipped: ${why}`);
        else {
          progress('mqtt: mosquitto, a device and the bridge on the direct path; MQTT set -> pin and edge -> state beside the API round trip');
          const rig = await openMqttRig(server.url);
          try {
            await measure([
              { id: 'mqtt-api', figure: 'controller API write round trip, direct', open: () => openCommands(server.url, true) },
              { id: 'mqtt-set', figure: 'MQTT set → pin changes on the device, direct', vsId: 'mqtt-api', open: async () => rig.set() },
              { id: 'mqtt-edge', figure: 'device edge → state published on MQTT, direct', vsId: 'mqtt-api', open: async () => rig.edge() },
            ]);
          } finally {
            await rig.close();
          }
        }
      }
    } finally {
      await proxy.close();
    }
  } finally {
    await server.close();
    removeBenchState();
  }

  const row = (id: string): Row | undefined => rows.find((r) => r.id === id);
  const p50 = (id: string): number => row(id)?.summary.p50 ?? NaN;
  const has = (...ids: string[]): boolean => ids.every((id) => row(id) !== undefined);
  const target: Record<string, number | boolean> = {};
  if (has('direct', 'werift')) {
    const direct = row('direct') as Row;
    Object.assign(target, {
      directVsWerift: direct.ratio ?? NaN,
      directVsWeriftP99: direct.summary.p99 / (row('werift') as Row).summary.p99,
      directVsWeriftLimit: TARGET_DIRECT_VS_WERIFT,
      directVsWeriftMet: (direct.ratio ?? Infinity) <= TARGET_DIRECT_VS_WERIFT,
    });
  }
  if (has('relay')) target.relayVsWsRelay = row('relay')?.ratio ?? NaN;
  // connect → first ack beside the floor, by pairing code and by name (paired).
  const firstAcks = [
    { key: '', label: 'by code (pairing)', near: 'first-ack', far: 'far-first-ack' },
    { key: 'Paired', label: 'by name (paired)', near: 'paired-first-ack', far: 'far-paired-first-ack' },
  ].filter((f) => has(f.near, f.far));
  for (const f of firstAcks) {
    const near = row(f.near)?.ratio ?? NaN;
    const far = row(f.far)?.ratio ?? NaN;
    Object.assign(target, {
      [`firstAck${f.key}VsFloor`]: near,
      [`farFirstAck${f.key}VsFloor`]: far,
      [`firstAck${f.key}VsFloorMet`]: near <= TARGET_FIRST_ACK_VS_FLOOR && far <= TARGET_FIRST_ACK_VS_FLOOR,
    });
  }
  if (firstAcks.length) target.firstAckVsFloorLimit = TARGET_FIRST_ACK_VS_FLOOR;
  if (has('cli-help', 'cli-write')) {
    const over = p50('cli-write') - p50('cli-help');
    Object.assign(target, {
      oneShotOverHelpMs: over,
      oneShotVsHelp: row('cli-write')?.ratio ?? NaN,
      oneShotOverHelpLimitMs: TARGET_ONESHOT_OVER_HELP_MS,
      oneShotOverHelpMet: over <= TARGET_ONESHOT_OVER_HELP_MS,
    });
  }
  const directFigure = (count: number): ResourceFigure | undefined => many?.resources.find((f) => f.path === 'direct' && f.count === count);
  const [most, fewest] = [directFigure(MANY_MOST), directFigure(MANY_FEWEST)];
  const perExtra: PerExtra | undefined =
    most && fewest
      ? {
          rssMb: (most.rssBytes - fewest.rssBytes) / (MANY_MOST - MANY_FEWEST) / MB,
          heapMb: (most.heapBytes - fewest.heapBytes) / (MANY_MOST - MANY_FEWEST) / MB,
        }
      : undefined;
  if (perExtra) {
    Object.assign(target, {
      rssPerExtraDirectMb: perExtra.rssMb,
      heapPerExtraDirectMb: perExtra.heapMb,
      rssPerExtraDirectLimitMb: TARGET_RSS_PER_DIRECT_MB,
      rssPerExtraDirectMet: perExtra.rssMb <= TARGET_RSS_PER_DIRECT_MB,
    });
  }
  const loadedPaths = (many?.rtt ?? []).map((r) => r.path);
  for (const path of loadedPaths) {
    const ratio = row(`many-loaded-${path}`)?.ratio ?? NaN;
    const key = path === 'direct' ? 'Direct' : 'Relay';
    Object.assign(target, {
      [`loadedVsAlone${key}`]: ratio,
      [`loadedVsAlone${key}P99`]: (row(`many-loaded-${path}`)?.summary.p99 ?? NaN) / (row(`many-alone-${path}`)?.summary.p99 ?? NaN),
      [`loadedVsAlone${key}Met`]: ratio <= TARGET_LOADED_VS_ALONE,
    });
  }
  if (loadedPaths.length) target.loadedVsAloneLimit = TARGET_LOADED_VS_ALONE;
  const totalS = (performance.now() - t0) / 1000;
  const m = machine();
  const groups = GROUPS.filter(wanted);
  if (json) {
    const figures = Object.fromEntries(rows.map((r) => [r.id, { figure: r.figure, ...r.summary, ...(r.vsId ? { vs: r.vsId, ratio: r.ratio } : {}) }]));
    process.stdout.write(
      `${JSON.stringify({ machine: m, quick: plan === QUICK, groups, farOneWayMs: FAR_ONE_WAY_MS, farIce, figures, ...(many ? { many } : {}), target, totalS }, null, 2)}\n`,
    );
    return;
  }
  const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  const x = (r: number | boolean | undefined): string => (typeof r === 'number' ? r.toFixed(2) : '-');
  const out: string[] = [
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Node ${m.node}, ${m.os}`,
    `run: ${plan === QUICK ? 'quick' : 'full'}${groups.length < GROUPS.length ? ` (only ${groups.join(', ')})` : ''}; round trips: ≤${plan.rtt.iterations} per figure after ≤${plan.rtt.warmup} warm-up, ≤${plan.rtt.maxMs / 1000} s each, all interleaved in ${INTERLEAVE_ROUNDS} blocks; connections: ≤${plan.connections} fresh per figure, ≤${plan.connectMaxMs / 1000} s (p50/p99 over them)`,
    '',
    table(rows),
    '',
  ];
  if (many) {
    out.push(
      `device process (many): RSS and heap+ext (heapUsed + external) after two full GCs 0.5 s apart, MB = 10^6 bytes; CPU = its user + system time over ${plan.many.idleWindowMs / 1000} s idle, ${plan.many.settleMs / 1000} s after the last controller connected`,
      '',
      resourceTable(many.resources, perExtra),
      '',
    );
  }
  if (has('direct', 'werift')) {
    out.push(
      `pinhole direct / bare werift echo: ${x(target.directVsWerift)}× at p50, ${x(target.directVsWeriftP99)}× at p99 (target ≤ ${TARGET_DIRECT_VS_WERIFT}×: ${met(target.directVsWeriftMet as boolean)})`,
    );
  }
  if (has('relay')) out.push(`pinhole relay / ws relay echo: ${x(target.relayVsWsRelay)}× at p50`);
  if (has('memory', 'direct', 'werift')) {
    out.push(
      `pinhole's own layers (Device, Link, JSON, CommandHandler; no network): ${ms(p50('memory'))} ms at p50; direct minus werift echo: ${ms(p50('direct') - p50('werift'))} ms at p50`,
    );
  }
  if (has('far-relay', 'far-direct')) {
    out.push(
      `far away (+${FAR_ONE_WAY_MS} ms each way, TCP only; STUN and the data channel stay local): relay ${ms(p50('far-relay'))} ms vs direct ${ms(p50('far-direct'))} ms at p50`,
    );
  }
  for (const f of firstAcks) {
    out.push(
      `connect → first ack ${f.label} / first-command floor: ${x(row(f.near)?.ratio)}× near (${ms(p50(f.near))} vs ${ms(p50('floor'))} ms), ${x(row(f.far)?.ratio)}× far (${ms(p50(f.far))} vs ${ms(p50('far-floor'))} ms), at p50 (target ≤ ${TARGET_FIRST_ACK_VS_FLOOR}×: ${met(target[`firstAck${f.key}VsFloorMet`] === true)})`,
    );
  }
  if (has('floor', 'first-ack', 'paired-first-ack', 'hs-mem-pairing', 'hs-mem-paired')) {
    // The bare floor does no crypto: how much of the near gap is the handshake's own CPU.
    const withCpu = (ack: string, hs: string): string => `${ms(p50(ack))} vs ${ms(p50('floor') + p50(hs))} ms, ${x(p50(ack) / (p50('floor') + p50(hs)))}×`;
    out.push(
      `  near, beside floor + the handshake's CPU (in memory): by code ${withCpu('first-ack', 'hs-mem-pairing')}; by name ${withCpu('paired-first-ack', 'hs-mem-paired')}`,
    );
  }
  if (has('hs-pairing', 'hs-paired', 'hs-mem-pairing', 'hs-mem-paired')) {
    out.push(
      `handshake (relay only): joined → secured ${ms(p50('hs-pairing'))} ms pairing (CPace + SIGMA-I), ${ms(p50('hs-paired'))} ms paired, at p50; CPU alone ${ms(p50('hs-mem-pairing'))} / ${ms(p50('hs-mem-paired'))} ms`,
    );
  }
  if (has('dc-stored', 'dc-own', 'dtls-keygen')) {
    out.push(
      `DTLS certificate: stored vs werift's own, set-up ${ms(p50('dc-stored'))} vs ${ms(p50('dc-own'))} ms, DTLS phase ${ms(p50('dtls-stored'))} vs ${ms(p50('dtls-own'))} ms, at p50; generateDtlsKeys() ${ms(p50('dtls-keygen'))} ms`,
    );
  }
  if (has('cli-help', 'cli-write')) {
    out.push(
      `one-shot CLI: control write ${ms(p50('cli-write'))} ms vs --help ${ms(p50('cli-help'))} ms at p50: +${ms(target.oneShotOverHelpMs as number)} ms, ${x(target.oneShotVsHelp)}× (target ≤ --help + ${TARGET_ONESHOT_OVER_HELP_MS} ms: ${met(target.oneShotOverHelpMet as boolean)})`,
    );
  }
  if (perExtra && most && fewest) {
    out.push(
      `RSS per extra direct session: (${(most.rssBytes / MB).toFixed(1)} − ${(fewest.rssBytes / MB).toFixed(1)} MB) / ${MANY_MOST - MANY_FEWEST} = ${perExtra.rssMb.toFixed(1)} MB; heap+ext ${perExtra.heapMb.toFixed(2)} MB (target RSS ≤ ${TARGET_RSS_PER_DIRECT_MB} MB: ${met(target.rssPerExtraDirectMet === true)})`,
    );
  }
  for (const r of many?.rtt ?? []) {
    const key = r.path === 'direct' ? 'Direct' : 'Relay';
    out.push(
      `${r.path}: one controller's write with ${WATCH_PINS.length} others watching at ${EDGE_HZ} Hz / alone: ${x(target[`loadedVsAlone${key}`])}× at p50 (${ms(r.loaded.p50)} vs ${ms(r.alone.p50)} ms), ${x(target[`loadedVsAlone${key}P99`])}× at p99; watchers saw ${r.edgesSeen} of ${r.edgesDriven} edges (target p50 ≤ ${TARGET_LOADED_VS_ALONE}×: ${met(target[`loadedVsAlone${key}Met`] === true)})`,
    );
  }
  if (has('mqtt-api', 'mqtt-set', 'mqtt-edge')) {
    const r = (id: string): Row => row(id) as Row;
    out.push(
      `mqtt (direct): set → pin ${ms(r('mqtt-set').summary.p50)} / ${ms(r('mqtt-set').summary.p99)} ms, edge → state ${ms(r('mqtt-edge').summary.p50)} / ${ms(r('mqtt-edge').summary.p99)} ms (p50 / p99), beside the API write round trip ${ms(r('mqtt-api').summary.p50)} / ${ms(r('mqtt-api').summary.p99)} ms; both MQTT figures are one way through mosquitto`,
    );
  }
  if (wanted('rtt') || wanted('connect')) out.push(`  ICE config derived from the proxy's URL: ${farIce}`);
  out.push(`total ${totalS.toFixed(1)} s`);
  process.stdout.write(`${out.join('\n')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
