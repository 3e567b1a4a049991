// Controller driver for the NAT-lab tests, run inside the ctl namespace:
//
//   node dist/test/natlab/driver.js '<DriverConfig as JSON>'
//
// It uses the compiled controller API (the same connect() users call) and prints exactly
// one JSON line, a DriverResult, on stdout (its last line). It judges nothing: the test asserts. Steps:
//   1. connect() (pairs by code: CPace + signed handshake over the relay, state in
//      `stateDir`); write(20,1) (the first acked command: timed from before connect());
//      read(20); write(21,0) (an output), watch(21) + write(21,1) -> a pushed rising 'change'.
//   2. whenDirect(directWaitMs): a data channel ('direct' or 'turn') or not; then, with
//      idleMs, no command at all for that long (only the link's own keepalives flow).
//   3. again write(20,0), read(20), write(21,0) -> falling 'change', with the path of
//      each command and any path change while they ran.
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { type Change, connect, type Device, type Path } from '../../controller/index.js';

export interface DriverConfig {
  server: string;
  /** The pairing code the device printed (single use). */
  code: string;
  /** The controller's state dir (identity, DTLS certificate, paired devices): one per lab. */
  stateDir: string;
  /** Name the device records for this controller. */
  name?: string;
  /** Extra ICE servers (TURN), as for connect(). */
  iceServers?: Array<{ urls: string; username?: string; credential?: string }>;
  /** How long step 2 waits for a data channel, in ms. */
  directWaitMs: number;
  /** Idle time after step 2 (and after the first pause), in ms: no command, no watch change. Default 0. */
  idleMs?: number;
  /** Timeout of connect() and of each command, in ms. */
  timeoutMs?: number;
  /** How long to wait for a pushed change, in ms. */
  changeTimeoutMs?: number;
  /**
   * Pause around step 3: print `{"event":"phase2-ready","path":…}` and wait for a line on
   * stdin; after it, print `{"event":"phase2-done"}` and wait again (before closing). The
   * test uses the first pause to let the device's side of the switch land too (each side
   * moves to the data channel when its own probe is answered), and both to read packet
   * counters around exactly step 3.
   */
  pause?: boolean;
}

export interface CommandRecord {
  cmd: string;
  /** Path before the command was sent and when its answer arrived. */
  pathBefore: Path;
  pathAfter: Path;
  rttMs: number;
  value?: number;
}

export interface ChangeRecord {
  pin: number;
  value: number;
  edge: string;
  /** Path when the change arrived. */
  path: Path;
  /** From the write that caused it to the change's arrival, in ms. */
  afterMs: number;
}

export interface DriverResult {
  ok: boolean;
  error?: string;
  errorCode?: string;
  /** Where it failed: connect, phase1, wait, idle, phase2. */
  stage?: string;
  /** connect() start -> connect() resolved, in ms. */
  connectMs?: number;
  /** connect() start -> first command acked, in ms. */
  firstCmdMs?: number;
  /** connect() start -> first switch to a data channel, in ms; null if never. */
  directMs: number | null;
  /** whenDirect(directWaitMs) result. */
  reachedDirect?: boolean;
  phase1: CommandRecord[];
  change1?: ChangeRecord | null;
  /** Path changes during the idle time (idleMs), and the path at its end. */
  pathChangesInIdle?: number;
  pathAfterIdle?: Path;
  /** Path after step 2 (and the idle time), before step 3's commands. */
  pathBeforePhase2?: Path;
  phase2: CommandRecord[];
  change2?: ChangeRecord | null;
  /** Path changes during step 3 (there should be none). */
  pathChangesInPhase2?: number;
  finalPath?: Path;
  /** Every path change, with ms since connect() start. */
  paths: Array<{ path: Path; previous: Path; atMs: number }>;
  /** Diagnostic states of the direct attempt ('go rtt=…', ICE and connection states). */
  rtc: Array<{ state: string; atMs: number }>;
  totalMs?: number;
}

const round = (x: number): number => Math.round(x * 10) / 10;

let stdinLines: string[] | undefined;
let wake: (() => void) | undefined;
/** Prints `what` and waits for the next line on stdin. */
async function pause(what: object): Promise<void> {
  if (!stdinLines) {
    const lines: string[] = (stdinLines = []);
    createInterface({ input: process.stdin }).on('line', (l) => {
      lines.push(l);
      wake?.();
    });
  }
  process.stdout.write(JSON.stringify(what) + '\n');
  while (stdinLines.length === 0) await new Promise<void>((r) => (wake = r));
  wake = undefined;
  stdinLines.shift();
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as DriverConfig;
  const timeoutMs = cfg.timeoutMs ?? 10_000;
  const changeTimeoutMs = cfg.changeTimeoutMs ?? 3_000;
  const res: DriverResult = { ok: false, directMs: null, phase1: [], phase2: [], paths: [], rtc: [] };
  const t0 = performance.now();
  const since = (): number => round(performance.now() - t0);
  let stage = 'connect';
  let dev: Device | undefined;
  try {
    dev = await connect({
      server: cfg.server,
      code: cfg.code,
      stateDir: cfg.stateDir,
      name: cfg.name ?? 'natlab-ctl',
      timeoutMs,
      ...(cfg.iceServers ? { iceServers: cfg.iceServers } : {}),
    });
    const d = dev;
    res.connectMs = since();
    d.on('path', (path, previous) => {
      res.paths.push({ path, previous, atMs: since() });
      if ((path === 'direct' || path === 'turn') && res.directMs === null) res.directMs = since();
    });
    d.on('rtc', (state) => res.rtc.push({ state, atMs: since() }));

    // biome-ignore lint/suspicious/noConfusingVoidType: a command resolves to a reading or to nothing
    const cmd = async (into: CommandRecord[], name: string, f: () => Promise<number | void>): Promise<number | void> => {
      const pathBefore = d.path;
      const s = performance.now();
      const value = await f();
      into.push({ cmd: name, pathBefore, pathAfter: d.path, rttMs: round(performance.now() - s), ...(typeof value === 'number' ? { value } : {}) });
      return value;
    };
    // Resolves once both the write is acked and the pin's change has arrived (or not, after changeTimeoutMs).
    const change = async (pin: number, write: () => Promise<unknown>): Promise<ChangeRecord | null> => {
      const s = performance.now();
      let on: ((c: Change) => void) | undefined;
      let timer: NodeJS.Timeout | undefined;
      const seen = new Promise<ChangeRecord | null>((resolve) => {
        timer = setTimeout(() => resolve(null), changeTimeoutMs);
        on = (c: Change): void => {
          if (c.pin === pin) resolve({ pin: c.pin, value: c.value, edge: c.edge, path: d.path, afterMs: round(performance.now() - s) });
        };
        d.on('change', on);
      });
      try {
        await write();
        return await seen;
      } finally {
        clearTimeout(timer);
        d.off('change', on!);
      }
    };

    stage = 'phase1';
    await cmd(res.phase1, 'write 20 1', () => d.write(20, 1));
    res.firstCmdMs = since();
    await cmd(res.phase1, 'read 20', () => d.read(20));
    // Pin 21 becomes an output first: the sim reports an output's own changes to watchers.
    await cmd(res.phase1, 'write 21 0', () => d.write(21, 0));
    await cmd(res.phase1, 'watch 21', () => d.watch(21));
    res.change1 = await change(21, () => cmd(res.phase1, 'write 21 1', () => d.write(21, 1)));

    stage = 'wait';
    res.reachedDirect = await d.whenDirect(cfg.directWaitMs);
    if (cfg.pause) await pause({ event: 'phase2-ready', path: d.path });
    if (cfg.idleMs) {
      stage = 'idle';
      const n = res.paths.length;
      await new Promise((r) => setTimeout(r, cfg.idleMs));
      res.pathChangesInIdle = res.paths.length - n;
      res.pathAfterIdle = d.path;
    }
    res.pathBeforePhase2 = d.path;

    stage = 'phase2';
    const before = res.paths.length;
    await cmd(res.phase2, 'write 20 0', () => d.write(20, 0));
    await cmd(res.phase2, 'read 20', () => d.read(20));
    res.change2 = await change(21, () => cmd(res.phase2, 'write 21 0', () => d.write(21, 0)));
    res.pathChangesInPhase2 = res.paths.length - before;
    res.finalPath = d.path;
    if (cfg.pause) await pause({ event: 'phase2-done', path: d.path });
    res.ok = true;
  } catch (e) {
    res.error = (e as Error).message;
    res.errorCode = (e as { code?: string }).code;
    res.stage = stage;
  } finally {
    res.totalMs = since();
    if (dev) await dev.close().catch(() => undefined);
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}

// werift may keep handles open after close(); the result is printed, so leave now.
main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(e), directMs: null, phase1: [], phase2: [], paths: [], rtc: [] }) + '\n');
    process.exit(1);
  },
);
