/**
 * Stored DTLS certificate vs werift's own: what a peer connection
 * costs to set up, on loopback, with and without `dtls: { keys }`.
 *
 *   node dist/bench/dtls.js [--runs N] [--cold-runs N] [--json]
 *
 * Two werift peer connections in one process, configured as platform/node/rtc.ts
 * configures them for a loopback server but with no STUN server at all
 * (`iceServers: []`, host candidates on 127.0.0.1 only, so gathering waits
 * for nothing), SDP handed over directly with its candidates, one ordered
 * data channel. Certificate modes:
 *
 *   own      no `dtls.keys`; werift makes the certificate itself, and each
 *            peer makes its own (werift caches one per process in a static,
 *            RTCDtlsTransport.localCertificate; it is cleared before each
 *            peer's createOffer/createAnswer, as if the peers were the two
 *            processes they are in real use: the first connection of a
 *            `pinhole control` process, or of a device agent).
 *   cached   no `dtls.keys`, werift's per-process certificate already made:
 *            every later connection of a long-running process before certificates were stored
 *            (and the bench's old "werift DC setup" row after its warm-up).
 *   stored   `dtls: { keys }`, each peer its own pair from generateDtlsKeys()
 *            made before timing (what platform/node/dtls-cert.ts loads from dtls.json).
 *
 * Modes take turns run by run (own, cached, stored, own, ...). Milestones,
 * from just before createOffer: the offer and the answer set (createOffer
 * includes the certificate when werift makes it), ICE `connected` on both
 * peers, DTLS `connected` on both, the data channel open. "DTLS phase" is
 * from the later ICE `connected` to the later DTLS `connected`; it includes
 * the ECDHE key generation every DTLS handshake does (werift: P-256 in JS,
 * @noble/curves), whatever the certificate, and a fixed 100 ms: werift's DTLS
 * client (the answerer: pinhole's device) sleeps 100 ms before its
 * ClientHello (RTCDtlsTransport.start, werift 0.25.2).
 *
 * --cold-runs: the same pair in a fresh Node process per run (werift loaded
 * before timing), `own` vs `stored`: the first connection of a process, with
 * cold JIT and cold curve tables.
 *
 * Experiment (not what pinhole runs): `stored` again, warm and cold, in child
 * processes where that one 100 ms sleep is cut to 0 (NO_CLIENT_DELAY, loaded
 * with --import before werift: it wraps timers/promises' setTimeout for
 * calls from RTCDtlsTransport.start only). --no-experiment skips it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RTCDataChannel, RTCDtlsTransport, RTCPeerConnection } from 'werift';
import { type DtlsKeyPair, generateDtlsKeys } from '../platform/node/rtc.js';
import { LOOPBACK } from './baselines.js';
import { percentile, withTimeout } from './stats.js';

/** Certificate mode of one set-up (see the header). */
export type CertMode = 'own' | 'cached' | 'stored';
export const CERT_MODES: readonly CertMode[] = ['own', 'cached', 'stored'];

/** One set-up's milestones, in ms from just before createOffer. */
export interface SetupSample {
  /** Offerer's description set (createOffer + setLocalDescription). */
  offer: number;
  /** Answerer's description set. */
  answer: number;
  /** ICE `connected`, offerer / answerer. */
  iceA: number;
  iceB: number;
  /** DTLS transport `connected`, offerer (DTLS server) / answerer (DTLS client). */
  dtlsA: number;
  dtlsB: number;
  /** The offerer's data channel open: the total. */
  open: number;
}

/** Derived phases of a sample, in ms. */
export function phases(s: SetupSample): { total: number; offer: number; dtls: number; afterDtls: number; ice: number } {
  const ice = Math.max(s.iceA, s.iceB);
  const dtls = Math.max(s.dtlsA, s.dtlsB);
  return { total: s.open, offer: s.offer, ice, dtls: dtls - ice, afterDtls: s.open - dtls };
}

/** Longest wait for one pair, in ms. */
const SETUP_TIMEOUT_MS = 10_000;

/** Peer-connection options as platform/node/rtc.ts with hostAddresses [127.0.0.1], minus STUN. */
function pcConfig(keys: DtlsKeyPair | undefined): ConstructorParameters<typeof RTCPeerConnection>[0] {
  const allowed = [LOOPBACK];
  return {
    iceServers: [],
    iceUseIpv6: false,
    iceAdditionalHostAddresses: allowed,
    iceInterfaceAddresses: { udp4: LOOPBACK },
    iceFilterCandidatePair: (pair) => allowed.includes(pair.remoteCandidate.host) && allowed.includes(pair.protocol.localCandidate?.host ?? ''),
    ...(keys ? { dtls: { keys: keys as never } } : {}),
  };
}

/** Forgets werift's per-process certificate, so the next peer connection without keys makes one. */
function forgetWeriftCertificate(): void {
  RTCDtlsTransport.localCertificate = undefined;
  RTCDtlsTransport.localCertificatePromise = undefined;
}

const dcOpen = (dc: RTCDataChannel): Promise<void> =>
  new Promise((resolve) => {
    if (dc.readyState === 'open') return resolve();
    dc.stateChanged.subscribe((s) => {
      if (s === 'open') resolve();
    });
  });

/**
 * One fresh pair to an open data channel. `stored` needs two key pairs (one
 * per peer); `cached` expects werift's certificate to exist already.
 */
export async function setupOnce(mode: CertMode, stored?: [DtlsKeyPair, DtlsKeyPair]): Promise<SetupSample> {
  if (mode === 'stored' && !stored) throw new Error('stored mode needs two key pairs');
  const a = new RTCPeerConnection(pcConfig(mode === 'stored' ? stored![0] : undefined));
  const b = new RTCPeerConnection(pcConfig(mode === 'stored' ? stored![1] : undefined));
  const marks: Partial<SetupSample> = {};
  let t0 = 0;
  const mark = (k: keyof SetupSample): void => {
    marks[k] ??= performance.now() - t0;
  };
  a.iceConnectionStateChange.subscribe((s) => s === 'connected' && mark('iceA'));
  b.iceConnectionStateChange.subscribe((s) => s === 'connected' && mark('iceB'));
  try {
    const run = async (): Promise<void> => {
      const dc = a.createDataChannel('bench', { ordered: true });
      if (mode === 'own') forgetWeriftCertificate();
      t0 = performance.now();
      await a.setLocalDescription(await a.createOffer());
      mark('offer');
      a.dtlsTransports[0]!.onStateChange.subscribe((s) => s === 'connected' && mark('dtlsA'));
      // The answerer is another process in real use: it makes its own certificate too.
      if (mode === 'own') forgetWeriftCertificate();
      await b.setRemoteDescription(a.localDescription!);
      await b.setLocalDescription(await b.createAnswer());
      mark('answer');
      b.dtlsTransports[0]!.onStateChange.subscribe((s) => s === 'connected' && mark('dtlsB'));
      await a.setRemoteDescription(b.localDescription!);
      await dcOpen(dc);
      mark('open');
    };
    await withTimeout(run(), SETUP_TIMEOUT_MS, `werift pair (${mode} certificate)`);
    // DTLS `connected` on the client can trail the channel open by a tick; wait for the marks.
    const until = performance.now() + 1_000;
    while ((marks.dtlsA === undefined || marks.dtlsB === undefined || marks.iceA === undefined || marks.iceB === undefined) && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 1));
    }
    for (const k of ['offer', 'answer', 'iceA', 'iceB', 'dtlsA', 'dtlsB', 'open'] as const) {
      if (marks[k] === undefined) throw new Error(`werift pair (${mode}): no ${k} milestone`);
    }
    return marks as SetupSample;
  } finally {
    await Promise.all([a.close(), b.close()]).catch(() => undefined);
  }
}

/** `n` set-ups per mode (plus `warmup` untimed each), modes taking turns. Stored keys are made before timing. */
export async function setupTimes(modes: readonly CertMode[], n: number, warmup: number): Promise<Record<CertMode, SetupSample[]>> {
  const stored: [DtlsKeyPair, DtlsKeyPair] = [await generateDtlsKeys(), await generateDtlsKeys()];
  const out: Record<CertMode, SetupSample[]> = { own: [], cached: [], stored: [] };
  for (let i = 0; i < warmup + n; i++) {
    for (const mode of modes) {
      // `cached` must find werift's certificate: make it (untimed) if the previous run cleared it.
      if (mode === 'cached' && !RTCDtlsTransport.localCertificate) await RTCDtlsTransport.SetupCertificate();
      const s = await setupOnce(mode, stored);
      if (i >= warmup) out[mode].push(s);
    }
  }
  return out;
}

/** `n` timings of generateDtlsKeys() (plus `warmup` untimed), in ms. */
export async function keygenTimes(n: number, warmup: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < warmup + n; i++) {
    const t = performance.now();
    await generateDtlsKeys();
    if (i >= warmup) out.push(performance.now() - t);
  }
  return out;
}

// ---------------------------------------------------------------- the script

const here = fileURLToPath(import.meta.url);

/**
 * Loaded with `node --import` before werift: werift's DTLS client awaits
 * `setTimeout(100)` from timers/promises in RTCDtlsTransport.start before its
 * ClientHello; this makes exactly those calls wait 0 ms. An experiment to show
 * what that sleep costs; pinhole itself never does this.
 */
const NO_CLIENT_DELAY =
  'data:text/javascript,' +
  encodeURIComponent(
    [
      "import tp from 'node:timers/promises';",
      "import { syncBuiltinESMExports } from 'node:module';",
      'const orig = tp.setTimeout;',
      'tp.setTimeout = function (ms, ...rest) {',
      '  if (ms === 100 && /RTCDtlsTransport\\.start/.test(new Error().stack ?? "")) { globalThis.__pinholeNoDelayHits = (globalThis.__pinholeNoDelayHits ?? 0) + 1; return orig(0, ...rest); }',
      '  return orig(ms, ...rest);',
      '};',
      'syncBuiltinESMExports();',
    ].join('\n'),
  );

/** Calls NO_CLIENT_DELAY cut short in this process (0 without it). */
const noDelayHits = (): number => (globalThis as { __pinholeNoDelayHits?: number }).__pinholeNoDelayHits ?? 0;

/**
 * `--child MODE [KEYS.json]`: one pair in this fresh process, as a JSON line
 * (werift is loaded before timing). `stored` reads its two key pairs from the
 * file, as an agent reads dtls.json: nothing of werift's certificate code has
 * run before the timing in either mode.
 */
async function child(mode: CertMode, keysFile: string | undefined): Promise<void> {
  const stored = mode === 'stored' ? (JSON.parse(fs.readFileSync(keysFile!, 'utf8')) as [DtlsKeyPair, DtlsKeyPair]) : undefined;
  const s = await setupOnce(mode, stored);
  process.stdout.write(JSON.stringify({ sample: s, noDelayHits: noDelayHits() }) + '\n');
}

/** `--child-warm MODE N`: setupTimes([MODE], N, 2) in this process, as one JSON line. */
async function childWarm(mode: CertMode, n: number): Promise<void> {
  const r = await setupTimes([mode], n, 2);
  process.stdout.write(JSON.stringify({ samples: r[mode], noDelayHits: noDelayHits() }) + '\n');
}

/** Runs this script in a child process (optionally with NO_CLIENT_DELAY) and returns its last line, parsed. */
function spawnSelf<T>(args: string[], noDelay: boolean, timeoutMs: number): T & { noDelayHits: number } {
  const r = spawnSync(process.execPath, [...(noDelay ? ['--import', NO_CLIENT_DELAY] : []), here, ...args], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${args.join(' ')}${noDelay ? ' (no client delay)' : ''} failed: ${r.stderr || r.error?.message}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as T & { noDelayHits: number };
  if (noDelay && out.noDelayHits === 0) throw new Error('the no-client-delay experiment did not take effect (werift changed?)');
  return out;
}

/** A cold variant: a certificate mode, with or without werift's client delay. */
interface ColdVariant {
  label: string;
  mode: CertMode;
  noDelay: boolean;
}

/** `n` cold runs per variant, each in a fresh process, variants taking turns. */
async function coldTimes(variants: readonly ColdVariant[], n: number): Promise<Record<string, SetupSample[]>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinhole-dtls-bench-'));
  try {
    const keysFile = path.join(dir, 'keys.json');
    fs.writeFileSync(keysFile, JSON.stringify([await generateDtlsKeys(), await generateDtlsKeys()]), { mode: 0o600 });
    const out: Record<string, SetupSample[]> = Object.fromEntries(variants.map((v) => [v.label, []]));
    for (let i = 0; i < n; i++) {
      for (const v of variants) out[v.label]!.push(spawnSelf<{ sample: SetupSample }>(['--child', v.mode, keysFile], v.noDelay, SETUP_TIMEOUT_MS * 2).sample);
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** p50/p90 (nearest rank), min, max of samples. */
export function p5090(xs: readonly number[]): { n: number; p50: number; p90: number; min: number; max: number } {
  const s = [...xs].sort((x, y) => x - y);
  return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}

const f1 = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(1));

function table(title: string, byMode: Record<string, SetupSample[]>): string[] {
  const modes = Object.keys(byMode);
  const rows: string[] = [title, '', `| phase (ms, p50 / p90) | ${modes.join(' | ')} |`, `|---|${modes.map(() => '---:|').join('')}`];
  const ph = Object.fromEntries(Object.entries(byMode).map(([m, ss]) => [m, ss.map(phases)]));
  const line = (label: string, key: keyof ReturnType<typeof phases>): string =>
    `| ${label} | ${Object.values(ph)
      .map((list) => {
        const q = p5090(list.map((p) => p[key]));
        return `${f1(q.p50)} / ${f1(q.p90)}`;
      })
      .join(' | ')} |`;
  rows.push(
    line('createOffer → data channel open', 'total'),
    line('  offer set (createOffer + setLocalDescription)', 'offer'),
    line('  createOffer → both ICE connected', 'ice'),
    line('  DTLS phase: ICE connected → DTLS connected', 'dtls'),
    line('  DTLS connected → data channel open (SCTP)', 'afterDtls'),
  );
  const counts = Object.values(byMode).map((x) => x.length);
  rows.push('', `n = ${counts.join(' / ')}`);
  return rows;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv[1] as CertMode, argv[2]);
  if (argv[0] === '--child-warm') return childWarm(argv[1] as CertMode, Number(argv[2]));
  const num = (flag: string, dflt: number): number => {
    const i = argv.indexOf(flag);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  const runs = num('--runs', 30);
  const coldRuns = num('--cold-runs', 20);
  const experiment = !argv.includes('--no-experiment');
  const json = argv.includes('--json');
  const t0 = performance.now();
  const log = (s: string): void => void process.stderr.write(`dtls bench: ${s}\n`);

  log(`generateDtlsKeys × ${runs}`);
  const keygen = await keygenTimes(runs, 3);
  log(`warm: ${runs} set-ups per mode (${CERT_MODES.join(', ')}), interleaved`);
  const warm: Record<string, SetupSample[]> = { ...(await setupTimes(CERT_MODES, runs, 2)) };
  if (experiment) {
    log(`warm, experiment: ${runs} set-ups with a stored certificate and werift's 100 ms client delay cut to 0 (child process)`);
    warm['stored, no client delay'] = spawnSelf<{ samples: SetupSample[] }>(['--child-warm', 'stored', String(runs)], true, runs * SETUP_TIMEOUT_MS).samples;
  }
  const variants: ColdVariant[] = [
    { label: 'own', mode: 'own', noDelay: false },
    { label: 'stored', mode: 'stored', noDelay: false },
    ...(experiment ? [{ label: 'stored, no client delay', mode: 'stored' as const, noDelay: true }] : []),
  ];
  log(`cold: ${coldRuns} fresh processes per variant (${variants.map((v) => v.label).join('; ')})`);
  const cold = coldRuns > 0 ? await coldTimes(variants, coldRuns) : {};
  const cpus = os.cpus();
  const load = os.loadavg().map((x) => x.toFixed(2));
  const machine = `${cpus[0]?.model.trim() ?? '?'}, ${cpus.length} cores, Node ${process.version}, ${os.platform()} ${os.release()}, load ${load.join(' ')}`;
  if (json) {
    process.stdout.write(JSON.stringify({ machine, keygen: p5090(keygen), warm, cold, totalS: (performance.now() - t0) / 1000 }, null, 1) + '\n');
    return;
  }
  const k = p5090(keygen);
  const out = [
    `machine: ${machine}`,
    '',
    `generateDtlsKeys(): p50 ${f1(k.p50)} ms, p90 ${f1(k.p90)} ms (n ${k.n}, min ${f1(k.min)}, max ${f1(k.max)})`,
    '',
    ...table('warm (one process, werift loaded and used before):', warm),
    '',
    ...(coldRuns > 0 ? table('cold (a fresh process per run; werift imported before timing):', cold) : []),
    '',
    `total ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  ];
  process.stdout.write(out.join('\n') + '\n');
}

if (process.argv[1] === here) {
  main().then(
    // werift may keep handles open after close(); the figures are printed.
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`dtls bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
