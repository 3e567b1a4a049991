// Shared helpers for loopback integration tests: real server, real agent, real CLI processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { startSignalServer, resolveSignalConfig, type SignalServer } from '../../signaling/index.js';
import { DeviceAgent, SimGpio } from '../../device/index.js';
import { VERSION } from '../../link/index.js';

/** Compiled CLI entry point (dist/bin/pinhole.js). */
export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pinhole.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: string[];
  json: Record<string, unknown>[];
  ms: number;
}

/** Runs the CLI to completion (killed after `killAfterMs`). */
export function runCli(args: string[], opts: { stdin?: string; killAfterMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    if (opts.stdin !== undefined) p.stdin.end(opts.stdin);
    const killer = setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs ?? 30_000);
    p.on('close', (code) => {
      clearTimeout(killer);
      const lines = stdout.split('\n').filter(Boolean);
      const json = lines.flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
      resolve({ code, stdout, stderr, lines, json, ms: performance.now() - t0 });
    });
  });
}

/** Spawns a long-running CLI process and resolves when a stdout line matches. */
export function spawnUntil(args: string[], match: RegExp, timeoutMs = 10_000): Promise<{ proc: ChildProcess; line: string; out: () => string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
        resolve({ proc, line, out: () => buf });
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

/** A real server on loopback with free ports, quiet logs. */
export function startServer(): Promise<SignalServer> {
  return startSignalServer(resolveSignalConfig({ host: '127.0.0.1', port: 0, stunPort: 0, log: () => undefined }));
}

/** A real device agent on the simulated board. */
export async function startDevice(server: SignalServer, opts: { code?: string; pins?: number[]; direct?: boolean } = {}) {
  const gpio = new SimGpio();
  const agent = await DeviceAgent.start({
    server: server.url,
    name: 'test-board',
    gpio,
    version: VERSION,
    code: opts.code,
    allowedPins: opts.pins ? new Set(opts.pins) : undefined,
    direct: opts.direct ?? true,
  });
  return { gpio, agent, code: agent.pairingCode };
}
