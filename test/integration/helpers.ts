// Shared helpers for loopback integration tests: real server, real agent, real CLI processes.
// Every device and controller gets its own temp state dir (identity, DTLS cert, trust list),
// removed when the test file ends; nothing is written to ~/.config.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';
import WebSocket from 'ws';
import { DeviceAgent, type DeviceConfig, type DeviceEvent, SimGpio } from '../../device/index.js';
import { deviceRoom, type PairingCode } from '../../protocol/code.js';
import { makeRegisterProof, PROTOCOL_VERSION, parseServerMessage, type ServerMessage } from '../../protocol/signaling.js';
import { VERSION } from '../../protocol/version.js';
import { resolveSignalConfig, type SignalServer, type SignalServerConfigInput, startSignalServer } from '../../signaling/index.js';

/** Compiled CLI entry point (dist/bin/pinhole.js). */
export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pinhole.js');

const tempDirs: string[] = [];
const children = new Set<ChildProcess>();
const agents = new Set<DeviceAgent>();
after(async () => {
  // A test that failed half-way may leave a device running (a process, or an agent that keeps
  // reconnecting): it must not keep the file alive.
  for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await Promise.all([...agents].map((a) => a.stop()));
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh, empty state dir (mode 0700), removed when the test file ends. */
export function stateDir(label = 'state'): string {
  const d = mkdtempSync(join(tmpdir(), `pinhole-test-${label}-`));
  tempDirs.push(d);
  return d;
}

/**
 * The environment of a spawned CLI: no PINHOLE_SERVER from the caller's shell, and
 * XDG_CONFIG_HOME in a fresh temp dir, so a command without --state-dir never touches
 * ~/.config. (Tests still pass --state-dir: bin/pinhole.ts does not hand XDG_CONFIG_HOME
 * or HOME to main(), see pairing.test.ts.)
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { PINHOLE_SERVER: _ignored, ...env } = process.env;
  return { ...env, XDG_CONFIG_HOME: stateDir('xdg'), ...extra };
}

/** Polls `cond` every 20 ms until it returns a value other than undefined/false; fails after `timeoutMs`. */
export async function waitFor<T>(cond: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = cond();
    if (v !== undefined && v !== false) return v;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: string[];
  json: Record<string, unknown>[];
  ms: number;
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').flatMap((l) => {
    try {
      const v: unknown = JSON.parse(l);
      return v !== null && typeof v === 'object' ? [v as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** Runs the CLI to completion (killed after `killAfterMs`). */
export function runCli(args: string[], opts: { stdin?: string; killAfterMs?: number; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv(opts.env) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    if (opts.stdin !== undefined) p.stdin.end(opts.stdin);
    const killer = setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs ?? 30_000);
    p.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, lines: stdout.split('\n').filter(Boolean), json: jsonLines(stdout), ms: performance.now() - t0 });
    });
  });
}

export interface Spawned {
  proc: ChildProcess;
  /** The first stdout line that matched. */
  line: string;
  /** All stdout so far. */
  out: () => string;
  /** All stderr so far. */
  err: () => string;
}

/** Spawns a long-running CLI process and resolves when a stdout line matches. */
export function spawnUntil(args: string[], match: RegExp, timeoutMs = 10_000, env: Record<string, string> = {}): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(env) });
    children.add(proc);
    let buf = '';
    let err = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`no line matching ${match} within ${timeoutMs} ms; stdout: ${buf} stderr: ${err}`));
    }, timeoutMs);
    proc.stderr!.on('data', (d) => (err += d));
    proc.stdout!.on('data', (d) => {
      buf += d;
      const line = buf.split('\n').find((l) => match.test(l));
      if (line) {
        clearTimeout(timer);
        resolve({ proc, line, out: () => buf, err: () => err });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before ${match}; stdout: ${buf} stderr: ${err}`));
    });
  });
}

/** Waits for a child to exit; resolves with its code. */
export function exited(proc: ChildProcess): Promise<number | null> {
  return new Promise((r) => (proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', (c) => r(c))));
}

/**
 * A real server on loopback with free ports, quiet logs. Every test device and
 * controller comes from 127.0.0.1, so by default the per-address join and
 * registration limits are raised (pass `{}` to keep the defaults).
 */
export const LOOPBACK_LIMITS = { joinRatePerMin: 6000, joinBurst: 1000, registerRatePerMin: 6000, registerBurst: 1000, maxRoomsPerAddr: 1000 };
export function startServer(limits: SignalServerConfigInput['limits'] = LOOPBACK_LIMITS, extra: SignalServerConfigInput = {}): Promise<SignalServer> {
  return startSignalServer(resolveSignalConfig({ host: '127.0.0.1', port: 0, stunPort: 0, log: () => undefined, limits, ...extra }));
}

/** A device that shows pairing codes: the latest one, and a way to wait for the one after. */
export interface CodeSource {
  /** The code the device printed last (undefined before the first, or with pairing off). */
  readonly code: string | undefined;
  /** Waits for a code other than `prev`, printed after `prev` was (each code is good for one attempt). */
  nextCode(prev: string, timeoutMs?: number): Promise<string>;
}

/** Waits for a code other than `prev` among `codes()` after `prev`'s last appearance. */
function nextCodeIn(codes: () => string[], prev: string, timeoutMs: number): Promise<string> {
  return waitFor(
    () => {
      const all = codes();
      return all.slice(all.lastIndexOf(prev) + 1).find((c) => c !== prev);
    },
    timeoutMs,
    `a pairing code after ${prev}`,
  );
}

export type TestDevice = Awaited<ReturnType<typeof startDevice>>;

/**
 * A real device agent on the simulated board, in its own state dir (or `stateDir`, to restart one).
 * `board` and `version` set what `info` reports (a hostile device may report anything there).
 */
export async function startDevice(
  server: SignalServer,
  opts: {
    code?: PairingCode;
    pins?: number[];
    direct?: boolean;
    name?: string;
    stateDir?: string;
    pairing?: boolean;
    board?: string;
    version?: string;
    maxControllers?: number;
    safeState?: DeviceConfig['safeState'];
  } = {},
) {
  const gpio = new SimGpio(opts.board !== undefined ? { board: opts.board } : {});
  const dir = opts.stateDir ?? stateDir('device');
  const events: DeviceEvent[] = [];
  const codes: string[] = [];
  const name = opts.name ?? 'test-board';
  const agent = await DeviceAgent.start({
    server: server.url,
    name,
    stateDir: dir,
    gpio,
    version: opts.version ?? VERSION,
    code: opts.code,
    pairing: opts.pairing ?? true,
    allowedPins: opts.pins ? new Set(opts.pins) : undefined,
    direct: opts.direct ?? true,
    ...(opts.maxControllers !== undefined ? { maxControllers: opts.maxControllers } : {}),
    ...(opts.safeState ? { safeState: opts.safeState } : {}),
    onEvent: (e) => {
      events.push(e);
      if (e.event === 'code') codes.push(e.code);
    },
  });
  agents.add(agent);
  return {
    gpio,
    agent,
    name,
    stateDir: dir,
    events,
    get code(): string | undefined {
      return codes.at(-1);
    },
    nextCode: (prev: string, timeoutMs = 5000) => nextCodeIn(() => codes, prev, timeoutMs),
  };
}

/**
 * A `pinhole device` process in its own state dir (or `stateDir`, to restart one), once it is
 * online: `--json` by default (online at the first code event); with `json: false`, online at
 * its "is online" line. Its codes are read from either output.
 */
export async function spawnDevice(
  server: SignalServer,
  opts: { name?: string; stateDir?: string; args?: string[]; json?: boolean; env?: Record<string, string> } = {},
) {
  const dir = opts.stateDir ?? stateDir('device');
  const name = opts.name ?? 'cli-board';
  const json = opts.json ?? true;
  const args = ['device', '--server', server.url, '--state-dir', dir, '--name', name, ...(json ? ['--json'] : []), ...(opts.args ?? [])];
  const s = await spawnUntil(args, json ? /"event":"code"/ : / is online; /, 10_000, opts.env);
  const events = (): Record<string, unknown>[] => jsonLines(s.out());
  const codes = (): string[] =>
    s
      .out()
      .split('\n')
      .flatMap((l) => {
        const m = /^pairing code: (\S+)$/.exec(l) ?? /^\{"event":"code","code":"([^"]+)"/.exec(l);
        return m ? [m[1]!] : [];
      });
  return {
    ...s,
    name,
    stateDir: dir,
    events,
    get code(): string | undefined {
      return codes().at(-1);
    },
    nextCode: (prev: string, timeoutMs = 5000) => nextCodeIn(codes, prev, timeoutMs),
    /** SIGTERM; resolves with the exit code. */
    stop: (): Promise<number | null> => {
      if (s.proc.exitCode === null) s.proc.kill('SIGTERM');
      return exited(s.proc);
    },
  };
}

/**
 * Pairs a controller state dir with `device` once, by running
 * `pinhole control --server URL --code CODE --name NAME --state-dir DIR --json info`
 * with the device's current code, and waits for the device's next code (the
 * one just used is spent). Later commands use `pinhole control DEVICE --state-dir DIR`.
 */
export async function pair(server: SignalServer, device: CodeSource, opts: { name?: string; stateDir?: string } = {}) {
  const dir = opts.stateDir ?? stateDir('controller');
  const name = opts.name ?? 'test-laptop';
  const code = device.code;
  assert.ok(code, 'the device shows no pairing code');
  const r = await runCli(['control', '--server', server.url, '--code', code, '--name', name, '--state-dir', dir, '--json', 'info']);
  assert.equal(r.code, 0, `pairing failed: ${r.stderr}`);
  await device.nextCode(code);
  const info = r.json.at(-1)!;
  return { name, stateDir: dir, device: String(info.name), info };
}

/** A raw `ws` client with a queue of parsed server messages (the server's hello taken off it: see `nonce`). */
export class RawClient {
  readonly queue: ServerMessage[] = [];
  private waiter: (() => void) | null = null;
  readonly closed: Promise<{ code: number }>;
  isClosed = false;
  /** The nonce of the server's hello on this socket. */
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

  static async open(url: string, opts: { localAddress?: string; headers?: Record<string, string> } = {}): Promise<RawClient> {
    const c = await new Promise<RawClient>((resolve, reject) => {
      const ws = new WebSocket(url, opts);
      const c = new RawClient(ws);
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
    const hello = await c.expect('hello');
    assert.equal(hello.v, PROTOCOL_VERSION);
    c.nonce = hello.nonce;
    return c;
  }

  /** Registers a fresh key's device room, with its proof (and `maxControllers`, if given); resolves with the room once registered. */
  async registerHome(maxControllers?: number): Promise<string> {
    const sk = ed25519.utils.randomSecretKey();
    const key = { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
    const room = deviceRoom(key.publicKey);
    this.send({ type: 'register', v: PROTOCOL_VERSION, room, proof: makeRegisterProof(key, this.nonce, room), maxControllers });
    assert.equal((await this.expect('registered')).room, room);
    return room;
  }

  send(m: unknown): void {
    this.ws.send(typeof m === 'string' || Buffer.isBuffer(m) ? m : JSON.stringify(m));
  }

  /** The next message, failing after `ms`. */
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

  /** The next message, which must be of `type`. */
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
