/**
 * The device of the bench's `many` group, in a process of its own so that its
 * RSS and CPU are its alone: a DeviceAgent on SimGpio registered on the
 * bench's server. Forked by bench/many.ts (with --expose-gc); everything goes
 * over IPC: it reports its pid, every DeviceEvent (each new pairing code among
 * them), its CPU time and its memory after full GCs, and drives edges on sim
 * input pins on request.
 */

import type { DeviceEvent } from '../device/index.js';
import { DeviceAgent, SimGpio } from '../device/index.js';
import type { Level } from '../protocol/rpc.js';
import { VERSION } from '../protocol/version.js';

/** What the bench sends the device process. */
export type ToChild =
  /** `name`: the name the device gives itself. */
  | { type: 'start'; server: string; stateDir: string; name: string }
  /** Run full GCs, each followed by a pause, then answer `memory`. */
  | { type: 'memory' }
  /** Answer `cpu` with this process's CPU time so far (process.cpuUsage(): every thread, µs). */
  | { type: 'cpu' }
  /** Drive edges on these pins from outside the board, `hz` edges a second on each, spread over the period; answer `toggling`. */
  | { type: 'toggle'; pins: number[]; hz: number }
  /** Stop driving edges; answer `toggled` with how many were driven since `toggle`. */
  | { type: 'untoggle' }
  /** Stop the agent and exit. */
  | { type: 'stop' };

/** What the device process sends the bench. */
export type FromChild =
  | { type: 'ready'; pid: number; code: string }
  | { type: 'event'; e: DeviceEvent }
  /** process.memoryUsage() after the GC, in bytes; `gc`: whether a GC ran (--expose-gc). */
  | { type: 'memory'; rss: number; heapUsed: number; external: number; gc: boolean }
  | { type: 'cpu'; userUs: number; systemUs: number }
  | { type: 'toggling' }
  | { type: 'toggled'; edges: number; errors: number }
  | { type: 'failed'; message: string };

/** Full GCs before memory is read. */
const GC_PASSES = 2;
/** Wait after each GC, in ms: V8 unmaps freed pages from a background thread, some 100s of ms later. */
const GC_RELEASE_MS = 500;

const send = (m: FromChild): void => void process.send?.(m);

let agent: DeviceAgent | undefined;
let sim: SimGpio | undefined;
/** The level each driven pin is at, kept across toggle requests so that every flip is an edge. */
const levels = new Map<number, Level>();
let timers: NodeJS.Timeout[] = [];
let edges = 0;
let errors = 0;

function toggle(board: SimGpio, pins: number[], hz: number): void {
  const periodMs = 1000 / hz;
  for (const [i, pin] of pins.entries()) {
    const flip = (): void => {
      const level: Level = levels.get(pin) === 1 ? 0 : 1;
      try {
        board.drive(pin, level);
        levels.set(pin, level);
        edges++;
      } catch {
        errors++;
      }
    };
    // Pins take turns within the period, so edges do not all land at once.
    timers.push(setTimeout(() => timers.push(setInterval(flip, periodMs)), (i * periodMs) / pins.length));
  }
}

function untoggle(): { edges: number; errors: number } {
  for (const t of timers) clearTimeout(t);
  timers = [];
  const out = { edges, errors };
  edges = 0;
  errors = 0;
  return out;
}

async function stop(): Promise<void> {
  untoggle();
  await agent?.stop();
  sim?.close();
  process.exit(0);
}

async function onMessage(m: ToChild): Promise<void> {
  switch (m.type) {
    case 'start': {
      sim = new SimGpio({ board: 'sim (bench)' });
      agent = await DeviceAgent.start({
        server: m.server,
        name: m.name,
        stateDir: m.stateDir,
        gpio: sim,
        version: VERSION,
        onEvent: (e) => send({ type: 'event', e }),
      });
      send({ type: 'ready', pid: process.pid, code: agent.pairingCode ?? '' });
      return;
    }
    case 'memory': {
      // V8 hands freed pages back from a background thread after a GC: give it time, twice.
      for (let i = 0; i < GC_PASSES; i++) {
        globalThis.gc?.();
        await new Promise((r) => setTimeout(r, GC_RELEASE_MS));
      }
      const { rss, heapUsed, external } = process.memoryUsage();
      send({ type: 'memory', rss, heapUsed, external, gc: globalThis.gc !== undefined });
      return;
    }
    case 'cpu': {
      const u = process.cpuUsage();
      send({ type: 'cpu', userUs: u.user, systemUs: u.system });
      return;
    }
    case 'toggle':
      if (!sim) throw new Error('toggle before start');
      toggle(sim, m.pins, m.hz);
      send({ type: 'toggling' });
      return;
    case 'untoggle':
      send({ type: 'toggled', ...untoggle() });
      return;
    case 'stop':
      await stop();
      return;
  }
}

process.on('message', (m: ToChild) => {
  onMessage(m).catch((e: unknown) => send({ type: 'failed', message: e instanceof Error ? (e.stack ?? e.message) : String(e) }));
});
// The bench went away: so does its device.
process.on('disconnect', () => void stop());
