// Runs pinhole itself inside a NAT lab: the signaling server in `server`, the device agent
// (compiled CLI, simulated GPIO) in `dev`, the controller driver (driver.ts, the compiled
// controller API) in `ctl`, and optionally coturn in `server`. Used by cells.ts (the matrix,
// impaired and idle tests), fault.test.ts and turn.test.ts. Every address is a lab address.
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { DriverConfig, DriverResult } from './driver.js';
import { type Lab, NETTOOL } from './lab.js';
import type { PunchResult } from './nettool.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The compiled CLI (dist/bin/pinhole.js). */
export const CLI = path.join(here, '..', '..', 'bin', 'pinhole.js');
/** The compiled controller driver. */
export const DRIVER = path.join(here, 'driver.js');

export const WS_PORT = 8080;
export const STUN_PORT = 3478;
export const TURN_PORT = 3479;
export const TURN_USER = 'pinhole';
export const TURN_PASS = 'pinhole';
/** coturn's relay port range (its default, stated so the accounting rule matches). */
const TURN_RELAY_PORTS = [49152, 65535] as const;
/**
 * Fixed first pairing code of the lab's device (`RRRR-SSS-SSS`, alphabet symbols only):
 * room PH7N, secret AT8MAT. Single use: the device prints a fresh one once it is tried,
 * and each lab starts a new device with a new state dir, so every lab pairs once.
 */
export const CODE = 'PH7N-AT8-MAT';
/** Name of the lab's device (`--name`); a paired controller could reach it by this name. */
export const DEVICE_NAME = 'natlab';
/** Time for a process inside the lab to print its ready line. */
const READY_TIMEOUT_MS = 10_000;

/** The iptables binary the lab uses (see docs/natlab.md). */
const iptablesBin = (): string => process.env.PINHOLE_NATLAB_IPTABLES || 'iptables';

/** Collects a process's output lines and waits for one that matches. */
export class Lines {
  readonly all: string[] = [];
  private waiters: Array<{ match: (l: string) => boolean; resolve: (l: string) => void }> = [];
  private ended = false;
  private readonly onEnd: Array<() => void> = [];

  constructor(stream: NodeJS.ReadableStream) {
    createInterface({ input: stream })
      .on('line', (l) => {
        this.all.push(l);
        this.waiters = this.waiters.filter((w) => {
          if (!w.match(l)) return true;
          w.resolve(l);
          return false;
        });
      })
      .on('close', () => {
        this.ended = true;
        for (const f of this.onEnd.splice(0)) f();
      });
  }

  /** Resolves with the first line (already seen or future) that matches; rejects on timeout or end of stream. */
  waitFor(match: (l: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    const seen = this.all.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${what}: ${why}; output so far:\n${this.all.slice(-20).join('\n')}`));
      };
      const timer = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
      const waiter = {
        match,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.waiters.push(waiter);
      if (this.ended) fail('stream ended');
      else this.onEnd.push(() => fail('stream ended'));
    });
  }

  /** Lines that parse as JSON objects. */
  json(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const l of this.all) {
      try {
        const v = JSON.parse(l) as unknown;
        if (v && typeof v === 'object') out.push(v as Record<string, unknown>);
      } catch {
        /* not JSON */
      }
    }
    return out;
  }
}

export interface Proc {
  proc: ChildProcess;
  out: Lines;
  err: Lines;
}

function start(lab: Lab, host: 'server' | 'dev' | 'ctl', cmd: string[], env?: NodeJS.ProcessEnv): Proc {
  const proc = lab.run(host, cmd, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
  return { proc, out: new Lines(proc.stdout!), err: new Lines(proc.stderr!) };
}

const isEvent = (name: string) => (l: string) => {
  try {
    return (JSON.parse(l) as { event?: string }).event === name;
  } catch {
    return false;
  }
};

export const serverUrl = (lab: Lab): string => `ws://${lab.serverAddrs[0]}:${WS_PORT}`;

/**
 * IP length from which a TCP segment to the signaling port counts as a relayed frame: a
 * `relay` message carrying a sealed link *data* frame (a command, an answer, a change, a
 * signal; the smallest, `{"sig":{"kind":"go"}}`, is about 182 bytes) is longer. Shorter:
 * pure TCP ACKs (52), empty WebSocket pings (58), `admit` (about 110) and a sealed bare
 * link ack (about 140-144), which one side may still send on the relay in the moment the other
 * moves to the data channel, and which carries nothing of the session's data.
 */
export const RELAY_FRAME_MIN_IP_LEN = 160;

/**
 * `pinhole signal` in the server namespace, on every server address. Also installs an
 * accounting rule (no target) that counts TCP segments of at least RELAY_FRAME_MIN_IP_LEN
 * bytes arriving at the WebSocket port: read it with serverFrames().
 */
export async function startSignal(lab: Lab): Promise<Proc> {
  const rule = `*filter\n-A INPUT -p tcp --dport ${WS_PORT} -m length --length ${RELAY_FRAME_MIN_IP_LEN}:65535\nCOMMIT\n`;
  const r = await lab.exec('server', [`${iptablesBin()}-restore`, '--noflush'], { input: rule });
  if (r.code !== 0) throw new Error(`server accounting rule: ${r.stderr}`);
  const p = start(lab, 'server', [process.execPath, CLI, 'signal', '--host', '0.0.0.0', '--port', String(WS_PORT), '--stun-port', String(STUN_PORT)]);
  await p.out.waitFor(isEvent('listening'), READY_TIMEOUT_MS, 'signaling server');
  return p;
}

/** Reads the packet count of an accounting rule in the server namespace, found by a fragment of its `iptables -nvxL` line. */
async function serverCounter(lab: Lab, chain: string, fragment: string): Promise<number> {
  const r = await lab.exec('server', [iptablesBin(), '-nvxL', chain]);
  const row = r.stdout.split('\n').find((l) => l.includes(fragment));
  if (!row) throw new Error(`no accounting rule "${fragment}" in:\n${r.stdout}${r.stderr}`);
  return Number(row.trim().split(/\s+/)[0]);
}

/** Data-carrying TCP segments the signaling server has received from both peers (see startSignal). */
export function serverFrames(lab: Lab): Promise<number> {
  return serverCounter(lab, 'INPUT', `tcp dpt:${WS_PORT} length ${RELAY_FRAME_MIN_IP_LEN}:65535`);
}

/** The device's state dir (identity, DTLS certificate, trusted controllers), fresh per lab. */
export const deviceStateDir = (lab: Lab): string => lab.tempDir('dev-state');
/** The controller's state dir (identity, DTLS certificate, paired devices), fresh per lab. */
export const controllerStateDir = (lab: Lab): string => lab.tempDir('ctl-state');

/**
 * `pinhole device --json` (simulated GPIO) in the dev namespace with its own state dir and
 * the fixed first pairing code; resolves once that code is registered.
 */
export async function startDevice(lab: Lab, opts: { iceServers?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Proc> {
  const ice = (opts.iceServers ?? []).flatMap((s) => ['--ice-server', s]);
  const p = start(
    lab,
    'dev',
    [process.execPath, CLI, 'device', '--server', serverUrl(lab), '--code', CODE, '--name', DEVICE_NAME, '--state-dir', deviceStateDir(lab), '--json', ...ice],
    opts.env,
  );
  await p.out.waitFor(isEvent('code'), READY_TIMEOUT_MS, 'device registration');
  return p;
}

/** The device's path events (from its --json output), oldest first. */
export function devicePaths(dev: Proc): string[] {
  return dev.out
    .json()
    .filter((e) => e.event === 'path')
    .map((e) => String(e.path));
}

/**
 * Runs the controller driver in the ctl namespace and returns its result line. With a
 * hook, the driver pauses after its wait for a data channel (`beforePhase2`, e.g. to wait
 * for the device's side of the switch) and after step 3 (`afterPhase2`, e.g. to read
 * counters before the driver closes); each hook runs before the driver goes on.
 */
export async function runDriver(
  lab: Lab,
  cfg: Omit<DriverConfig, 'server' | 'code' | 'stateDir' | 'pause'>,
  opts: {
    timeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    beforePhase2?: (path: string) => Promise<void>;
    afterPhase2?: () => Promise<void>;
  } = {},
): Promise<{ result: DriverResult; stderr: string }> {
  const pause = !!(opts.beforePhase2 || opts.afterPhase2);
  const full: DriverConfig = { server: serverUrl(lab), code: CODE, stateDir: controllerStateDir(lab), ...cfg, pause };
  const proc = lab.run('ctl', [process.execPath, DRIVER, JSON.stringify(full)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  proc.stdin!.on('error', () => {});
  const out = new Lines(proc.stdout!);
  const err = new Lines(proc.stderr!);
  const exited = new Promise<void>((r) => proc.once('close', () => r()));
  const timeoutMs = opts.timeoutMs ?? cfg.directWaitMs + (cfg.idleMs ?? 0) + 30_000;
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const isResult = (l: string): boolean => {
    try {
      return 'ok' in (JSON.parse(l) as object);
    } catch {
      return false;
    }
  };
  try {
    if (pause) {
      const l = await out.waitFor((x) => isEvent('phase2-ready')(x) || isResult(x), left(), 'driver (before phase 2)');
      if (!isResult(l)) {
        await opts.beforePhase2?.(String((JSON.parse(l) as { path: string }).path));
        proc.stdin!.write('go\n');
        const l2 = await out.waitFor((x) => isEvent('phase2-done')(x) || isResult(x), left(), 'driver (after phase 2)');
        if (!isResult(l2)) {
          await opts.afterPhase2?.();
          proc.stdin!.write('go\n');
        }
      }
    }
    const line = await out.waitFor(isResult, left(), 'driver result');
    await exited;
    return { result: JSON.parse(line) as DriverResult, stderr: err.all.join('\n') };
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(`${(e as Error).message}\ndriver stderr:\n${err.all.join('\n')}`);
  }
}

/** Resolves once the device has reported one of `paths`; rejects after timeoutMs. */
export async function deviceReaches(dev: Proc, paths: string[], timeoutMs: number): Promise<void> {
  await dev.out.waitFor(
    (l) => {
      try {
        const e = JSON.parse(l) as { event?: string; path?: string };
        return e.event === 'path' && paths.includes(String(e.path));
      } catch {
        return false;
      }
    },
    timeoutMs,
    `device path ${paths.join('/')}`,
  );
}

// ---------------------------------------------------------------- routers that accept WAN input

/**
 * Removes both NAT routers' INPUT filter: unsolicited packets to a router's WAN address
 * are then accepted by the router itself and their conntrack entries confirmed, so a
 * peer's early packet makes the router give the LAN host's own later packet to that peer
 * a different port (see docs/natlab.md, "Why the INPUT drop matters"). A harsher cone.
 */
export async function acceptWanInput(lab: Lab): Promise<void> {
  for (const r of ['routerA', 'routerB'] as const) {
    const x = await lab.exec(r, [iptablesBin(), '-F', 'INPUT']);
    if (x.code !== 0) throw new Error(`${r}: ${x.stderr}`);
  }
}

/** UDP port of the plain echo server plainPunch() learns mappings from. */
const PUNCH_ECHO_PORT = 3480;

/**
 * A plain UDP hole punch (nettool, no pinhole code) between dev and ctl through the
 * mappings an echo server reports; ctl starts `staggerMs` after dev. The control
 * experiment for what pinhole's coordinated start avoids.
 */
export async function plainPunch(lab: Lab, staggerMs: number, timeoutMs: number): Promise<PunchResult[]> {
  const echo = lab.run('server', [process.execPath, NETTOOL, 'echo', String(PUNCH_ECHO_PORT), lab.serverAddrs[0]], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Lines(echo.stdout!).waitFor((l) => l.includes('ready'), READY_TIMEOUT_MS, 'echo server');
    const target = `${lab.serverAddrs[0]}:${PUNCH_ECHO_PORT}`;
    const procs = (['dev', 'ctl'] as const).map((h) =>
      lab.run(h, [process.execPath, NETTOOL, 'punch', target, '--timeout', String(timeoutMs)], { stdio: ['pipe', 'pipe', 'pipe'] }),
    );
    const outs = procs.map((p) => new Lines(p.stdout!));
    const mapped = await Promise.all(
      outs.map(async (o) => (JSON.parse(await o.waitFor((l) => l.includes('"mapped"'), READY_TIMEOUT_MS, 'mapping')) as { mapped: string }).mapped),
    );
    const at = Date.now() + 100;
    procs[0]!.stdin!.write(JSON.stringify({ peer: mapped[1], at }) + '\n');
    procs[1]!.stdin!.write(JSON.stringify({ peer: mapped[0], at: at + staggerMs }) + '\n');
    return await Promise.all(
      outs.map(async (o) => JSON.parse(await o.waitFor((l) => l.includes('"ok"'), timeoutMs + READY_TIMEOUT_MS, 'punch result')) as PunchResult),
    );
  } finally {
    echo.kill();
  }
}

// ---------------------------------------------------------------- TURN (coturn)

/** Whether coturn's `turnserver` is installed (Debian package `coturn`). */
export function turnAvailable(): boolean {
  return spawnSync('turnserver', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** `turn:USER:PASS@ADDR:PORT` for the lab's coturn, as passed to --ice-server. */
export const turnUrl = (lab: Lab): string => `turn:${TURN_USER}:${TURN_PASS}@${turnAddr(lab)}:${TURN_PORT}`;
/** coturn listens and relays on the server's second address (the signaling STUN answers on the first). */
export const turnAddr = (lab: Lab): string => lab.serverAddrs[1];

/**
 * coturn in the server namespace: UDP/TCP on turnAddr:TURN_PORT, no TLS/DTLS, one static
 * long-term-credential user, no config file, no CLI, log to stdout. The lab's internet range
 * 198.18.0.0/15 is allowed as peer explicitly: the usual hardened coturn configurations
 * (and newer coturn releases' defaults) deny special-purpose ranges, 198.18/15 among them.
 * The 10/8 LAN host candidates need nothing: the server cannot reach them anyway.
 */
export async function startTurn(lab: Lab): Promise<Proc & { dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinhole-natlab-turn-'));
  const addr = turnAddr(lab);
  const p = start(lab, 'server', [
    'turnserver',
    '-n', // no configuration file
    '--listening-ip',
    addr,
    '--relay-ip',
    addr,
    '--listening-port',
    String(TURN_PORT),
    `--min-port=${TURN_RELAY_PORTS[0]}`,
    `--max-port=${TURN_RELAY_PORTS[1]}`,
    '--lt-cred-mech',
    `--user=${TURN_USER}:${TURN_PASS}`,
    '--realm=pinhole',
    '--fingerprint',
    '--no-tls',
    '--no-dtls',
    '--no-cli',
    '--log-file=stdout',
    '--simple-log',
    '--verbose',
    `--pidfile=${path.join(dir, 'turnserver.pid')}`,
    `--userdb=${path.join(dir, 'turndb')}`,
    '--allowed-peer-ip=198.18.0.0-198.19.255.255',
  ]);
  const ready = (l: string) => /Total (UDP|General) servers|IPv4\. UDP listener opened on/i.test(l);
  await p.out.waitFor(ready, READY_TIMEOUT_MS, 'turnserver');
  // Accounting only (no target): counts what coturn sends from its relay ports, i.e. data
  // it relays from one peer to the other. Read it with turnRelayedPackets().
  const rule = `*filter\n-A OUTPUT -p udp -s ${addr} --sport ${TURN_RELAY_PORTS[0]}:${TURN_RELAY_PORTS[1]}\nCOMMIT\n`;
  const r = await lab.exec('server', [`${iptablesBin()}-restore`, '--noflush'], { input: rule });
  if (r.code !== 0) throw new Error(`turn accounting rule: ${r.stderr}`);
  return { ...p, dir };
}

/** Packets coturn has sent from its relay ports (see startTurn). */
export function turnRelayedPackets(lab: Lab): Promise<number> {
  return serverCounter(lab, 'OUTPUT', `udp spts:${TURN_RELAY_PORTS[0]}:${TURN_RELAY_PORTS[1]}`);
}
