/**
 * `pinhole demo` (`npm start`): a signaling server on a free loopback port, a
 * device on the simulated board and a controller, all in one process. Runs
 * the original blink on pin 20 as individual commands so each one shows the
 * path it took, and when the link became direct.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../controller/index.js';
import { DeviceAgent, SimGpio } from '../device/index.js';
import { VERSION } from '../protocol/index.js';
import type { Output } from './commands.js';
import { defaultPageUrl, pairingLink } from './page-url.js';

/** The pin the original script blinked. */
export const DEMO_PIN = 20;
/** How long the demo waits for pairing, in ms. */
const DEMO_CONNECT_TIMEOUT_MS = 10_000;

export interface DemoOptions {
  times: number;
  intervalMs: number;
  direct: boolean;
  out: Output;
}

const secs = (ms: number): string => `+${(ms / 1000).toFixed(3)}s`;

/** Runs the demo; resolves with the exit code. */
export async function runDemo(o: DemoOptions): Promise<number> {
  const { out } = o;
  const { startSignalServer } = await import('../signaling/index.js');
  const server = await startSignalServer({ host: '127.0.0.1', port: 0, stunPort: 0, log: () => undefined });
  const sim = new SimGpio({ board: 'sim (demo)' });
  let agent: DeviceAgent | undefined;
  let dev: Awaited<ReturnType<typeof connect>> | undefined;
  // Throwaway identities: the demo pairs afresh each run and leaves nothing in ~/.config.
  const stateRoot = mkdtempSync(join(tmpdir(), 'pinhole-demo-'));
  try {
    out.line(
      { event: 'start', server: server.url, stunPort: server.stunPort, pin: DEMO_PIN, times: o.times, intervalMs: o.intervalMs },
      `pinhole demo: signaling server ${server.url} (STUN udp/${server.stunPort}), simulated board, blink pin ${DEMO_PIN}: ${o.times} toggles, ${o.intervalMs} ms apart`,
    );
    agent = await DeviceAgent.start({
      server: server.url,
      name: 'demo-board',
      stateDir: join(stateRoot, 'device'),
      gpio: sim,
      direct: o.direct,
      version: VERSION,
    });
    const code = agent.pairingCode!;
    // The demo's own controller spends the code at once: the link is shown for its shape, as `pinhole device` prints it.
    const link = pairingLink(defaultPageUrl(server.url), server.url, code);
    out.line({ event: 'code', code, link }, `device registered; pairing code: ${code} (pairing link: ${link})`);

    const t0 = performance.now();
    const at = (): number => performance.now() - t0;
    dev = await connect({
      server: server.url,
      code,
      stateDir: join(stateRoot, 'controller'),
      name: 'demo-laptop',
      direct: o.direct,
      timeoutMs: DEMO_CONNECT_TIMEOUT_MS,
    });
    out.line(
      { event: 'paired', ms: round(at()), path: dev.path, device: dev.fingerprint },
      `controller paired in ${round(at())} ms (CPace on the code, then a signed handshake; device ${dev.fingerprint}), path: ${dev.path}`,
    );
    let directAt: number | undefined;
    dev.on('path', (p, prev) => {
      if (p === 'direct' && directAt === undefined) directAt = at();
      out.line({ event: 'path', path: p, previous: prev, ms: round(at()) }, `  ${secs(at())}  path: ${prev} -> ${p}`);
    });

    const byPath: Record<string, number> = {};
    let value: 0 | 1 = 0;
    const start = at();
    for (let i = 0; i < o.times; i++) {
      // Keep the original cadence: toggle i is due at i * interval.
      const due = start + i * o.intervalMs;
      if (due > at()) await new Promise((r) => setTimeout(r, due - at()));
      value = value === 1 ? 0 : 1;
      const sent = at();
      await dev.write(DEMO_PIN, value);
      const rtt = round(at() - sent);
      byPath[dev.path] = (byPath[dev.path] ?? 0) + 1;
      out.line(
        { event: 'write', n: i + 1, pin: DEMO_PIN, value, path: dev.path, rttMs: rtt, ms: round(sent) },
        `  ${secs(sent)}  pin ${DEMO_PIN} <- ${value}   ${dev.path.padEnd(6)} ${rtt} ms`,
      );
    }
    const trace = sim.trace(DEMO_PIN);
    const wave = trace.map((e) => (e.value ? '▔' : '▁')).join('');
    out.line({ event: 'trace', pin: DEMO_PIN, values: trace.map((e) => e.value) }, `pin ${DEMO_PIN} on the board: ${wave}  (${trace.length} changes)`);
    const parts = Object.entries(byPath)
      .map(([p, n]) => `${n} ${p}`)
      .join(', ');
    const directText = directAt === undefined ? (o.direct ? 'the direct path did not open' : 'direct path disabled') : `direct after ${round(directAt)} ms`;
    out.line(
      { ok: true, cmd: 'demo', commands: o.times, byPath, directAtMs: directAt === undefined ? null : round(directAt), path: dev.path },
      `${o.times} commands: ${parts}; ${directText}`,
    );
    return 0;
  } finally {
    await dev?.close();
    await agent?.stop();
    sim.close();
    await server.close();
    rmSync(stateRoot, { recursive: true, force: true });
  }
}

const round = (ms: number): number => Math.round(ms * 100) / 100;
