/**
 * The one-shot CLI: wall time of a fresh `node dist/bin/pinhole.js` process,
 * from spawn to exit, for `--help` (Node start-up and loading the CLI) and
 * for `pinhole control NAME write 20 1` against this process's signaling
 * server and a device agent on the simulated board (a paired controller
 * state dir, as after a user's first `--code` run).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DeviceAgent, SimGpio } from '../device/index.js';
import { VERSION } from '../protocol/index.js';
import { BENCH_PIN, benchStateDir } from './pinhole.js';
import { type Summary, summarize } from './stats.js';

/** The compiled CLI, next to this file's folder in dist/. */
const BIN = fileURLToPath(new URL('../bin/pinhole.js', import.meta.url));
/** A CLI run that has not exited by then has hung: kill it and fail the figure. */
const RUN_TIMEOUT_MS = 30_000;
/** The device's name: what `pinhole control NAME` names it by after pairing. */
const DEVICE_NAME = 'bench-board';

interface Run {
  code: number | null;
  ms: number;
  stderr: string;
}

/** Spawns the CLI with `args`; resolves when its stdio has closed. No PINHOLE_SERVER from the caller; XDG_CONFIG_HOME in a temp dir. */
function runCli(args: string[]): Promise<Run> {
  const { PINHOLE_SERVER: _unused, ...env } = process.env;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, XDG_CONFIG_HOME: benchStateDir('xdg') } });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr += String(d);
    });
    const killer = setTimeout(() => p.kill('SIGKILL'), RUN_TIMEOUT_MS);
    p.once('error', (e) => {
      clearTimeout(killer);
      reject(e);
    });
    p.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, ms: performance.now() - t0, stderr });
    });
  });
}

async function timed(args: string[], check?: () => void): Promise<number> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`pinhole ${args.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
  check?.();
  return r.ms;
}

/** Wall times of `--help` and of a one-shot `control NAME write 20 1`. */
export interface CliTimes {
  help: Summary;
  oneShot: Summary;
}

/**
 * `n` runs of each (after `warmup` untimed), taking turns, against a device
 * agent (direct path on, as `pinhole device` runs) on the server at `url`.
 * Pairs a fresh controller state dir first with the device's code, untimed.
 * Each write is checked on the simulated pin.
 */
export async function cliTimes(url: string, n: number, warmup: number): Promise<CliTimes> {
  const sim = new SimGpio({ board: 'sim (bench)' });
  let agent: DeviceAgent | undefined;
  try {
    agent = await DeviceAgent.start({ server: url, name: DEVICE_NAME, stateDir: benchStateDir('device'), gpio: sim, version: VERSION });
    const code = agent.pairingCode;
    if (!code) throw new Error('the bench device shows no pairing code');
    const stateDir = benchStateDir('controller');
    await timed(['control', '--server', url, '--code', code, '--name', 'bench-laptop', '--state-dir', stateDir, 'info']);
    const help: number[] = [];
    const oneShot: number[] = [];
    for (let i = 0; i < warmup + n; i++) {
      const h = await timed(['--help']);
      sim.setMode(BENCH_PIN, 'out');
      sim.write(BENCH_PIN, 0);
      const w = await timed(['control', DEVICE_NAME, '--state-dir', stateDir, 'write', String(BENCH_PIN), '1'], () => {
        if (sim.read(BENCH_PIN) !== 1) throw new Error(`one-shot write: pin ${BENCH_PIN} is not 1 on the device`);
      });
      if (i >= warmup) {
        help.push(h);
        oneShot.push(w);
      }
    }
    return { help: summarize(help), oneShot: summarize(oneShot) };
  } finally {
    await agent?.stop();
    sim.close();
  }
}
