/**
 * pinhole itself: an in-process signaling server, a device agent on the
 * simulated board and a controller, as in cli/demo.ts. Times commands on one
 * path, and the set-up of fresh connections.
 */
import { EventEmitter } from 'node:events';
import { connect, Device } from '../controller/index.js';
import { CommandHandler, DeviceAgent, SimGpio } from '../device/index.js';
import { PeerSession, VERSION, type Level, type ServerMessage, type SignalClient } from '../link/index.js';
import { startSignalServer, resolveSignalConfig, type SignalServer } from '../signaling/index.js';
import { LOOPBACK } from './baselines.js';
import { summarize, withTimeout, type Runner, type Summary } from './stats.js';

/** The pin the commands drive. */
export const BENCH_PIN = 20;
/** Timeout of connect() and of each command, in ms. */
const COMMAND_TIMEOUT_MS = 10_000;
/** Longest wait for the direct path on both ends, in ms. */
const DIRECT_TIMEOUT_MS = 15_000;
/**
 * Per-socket message rate given to the bench's server. The default (1000/s)
 * is a flood guard that a back-to-back loop on loopback would hit; the bench
 * measures latency, not that policy.
 */
const BENCH_RATE_MSGS_PER_SEC = 1_000_000;

/** A signaling server on 127.0.0.1 with free TCP and STUN ports, quiet logs. */
export function startBenchServer(): Promise<SignalServer> {
  return startSignalServer(
    resolveSignalConfig({
      host: LOOPBACK,
      port: 0,
      stunPort: 0,
      log: () => undefined,
      limits: { rateMsgsPerSec: BENCH_RATE_MSGS_PER_SEC, rateBurst: BENCH_RATE_MSGS_PER_SEC },
    }),
  );
}

/** A device and a connected controller. */
interface Pair {
  agent: DeviceAgent;
  dev: Device;
  sim: SimGpio;
}

async function startDevice(url: string, direct: boolean): Promise<{ agent: DeviceAgent; sim: SimGpio }> {
  const sim = new SimGpio({ board: 'sim (bench)' });
  const agent = await DeviceAgent.start({ server: url, name: 'bench-board', gpio: sim, direct, version: VERSION });
  return { agent, sim };
}

async function closePair(p: Partial<Pair>): Promise<void> {
  await p.dev?.close();
  await p.agent?.stop();
  p.sim?.close();
}

/** Resolves once the device agent sends on the direct path (the controller's dev.whenDirect covers only its side). */
function deviceDirect(agent: DeviceAgent, timeoutMs: number): Promise<void> {
  if (agent.path === 'direct') return Promise.resolve();
  return withTimeout(
    new Promise<void>((resolve) => {
      const on = (): void => {
        if (agent.path !== 'direct') return;
        agent.off('event', on);
        resolve();
      };
      agent.on('event', on);
    }),
    timeoutMs,
    'device direct path',
  );
}

/**
 * A device and a controller whose round trip is `dev.write` + its ack on one
 * path: `direct` waits until both ends send directly; otherwise relay only.
 */
export async function openCommands(url: string, direct: boolean): Promise<Runner> {
  const p: Partial<Pair> = {};
  const want = direct ? 'direct' : 'relay';
  try {
    Object.assign(p, await startDevice(url, direct));
    p.dev = await connect({ server: url, code: p.agent!.pairingCode, direct, timeoutMs: COMMAND_TIMEOUT_MS });
    if (direct) {
      if (!(await p.dev.whenDirect(DIRECT_TIMEOUT_MS))) throw new Error('the direct path did not open');
      await deviceDirect(p.agent!, DIRECT_TIMEOUT_MS);
    }
  } catch (e) {
    await closePair(p);
    throw e;
  }
  const { dev, agent } = p as Pair;
  let value: Level = 0;
  return {
    roundTrip: () => dev.write(BENCH_PIN, (value = value === 1 ? 0 : 1)),
    verify: () => {
      const paths = `${dev.path}/${agent.path}`;
      if (paths !== `${want}/${want}`) throw new Error(`path changed during the run: controller/device ${paths}, wanted ${want}`);
    },
    close: () => closePair(p),
  };
}

/** Set-up times of fresh connections, from connect() start. */
export interface ConnectTimes {
  /** Until the first command is acknowledged (it goes over the relay). */
  firstAck: Summary;
  /** Until dev.whenDirect resolves. */
  direct: Summary;
}

/** Fewest timed connections kept even when they overrun the time budget. */
const MIN_CONNECTIONS = 3;

/**
 * Connects `n` times (plus `warmup` untimed) to a fresh device each time;
 * times the first ack and the direct path. Stops early once `maxMs` is spent
 * and MIN_CONNECTIONS are timed.
 */
export async function connectTimes(url: string, n: number, warmup: number, maxMs: number): Promise<ConnectTimes> {
  const acks: number[] = [];
  const directs: number[] = [];
  const end = performance.now() + maxMs;
  for (let i = 0; i < warmup + n && (acks.length < MIN_CONNECTIONS || performance.now() < end); i++) {
    const p: Partial<Pair> = {};
    try {
      Object.assign(p, await startDevice(url, true));
      const t0 = performance.now();
      p.dev = await connect({ server: url, code: p.agent!.pairingCode, timeoutMs: COMMAND_TIMEOUT_MS });
      const dev = p.dev;
      const directAt = dev.whenDirect(DIRECT_TIMEOUT_MS).then((ok) => (ok ? performance.now() - t0 : NaN));
      await dev.write(BENCH_PIN, 1);
      const ack = performance.now() - t0;
      const d = await directAt;
      if (Number.isNaN(d)) throw new Error('the direct path did not open');
      if (i >= warmup) {
        acks.push(ack);
        directs.push(d);
      }
    } finally {
      await closePair(p);
    }
  }
  return { firstAck: summarize(acks), direct: summarize(directs) };
}

/** Stands in for a SignalClient: relay frames go straight to the other end, a microtask later. */
class MemorySignal extends EventEmitter {
  deliver: (m: ServerMessage) => void = () => undefined;
  send(m: { type: string; data?: string }): void {
    if (m.type !== 'relay' || m.data === undefined) return;
    const data = m.data;
    queueMicrotask(() => this.deliver({ type: 'relay', data } as ServerMessage));
  }
  close(): void {
    this.removeAllListeners();
  }
}

/**
 * pinhole's own layers with no network: the controller's Device and
 * PeerSession/Link, the device's PeerSession/Link and CommandHandler on the
 * simulated board, wired as the agent wires them; frames are handed over in
 * memory. Its round trip is the CPU pinhole adds to a command.
 */
export async function openInMemory(): Promise<Runner> {
  const sim = new SimGpio({ board: 'sim (bench)' });
  const toDevice = new MemorySignal();
  const toController = new MemorySignal();
  const controllerSession = new PeerSession({ role: 'controller', direct: false, rtc: { iceServers: [] } });
  const deviceSession = new PeerSession({ role: 'device', direct: false, rtc: { iceServers: [] } });
  toDevice.deliver = (m) => deviceSession.handleServerMessage(m);
  toController.deliver = (m) => controllerSession.handleServerMessage(m);
  const dev = new Device(toDevice as unknown as SignalClient, controllerSession, COMMAND_TIMEOUT_MS);
  const send = (payload: unknown): void => deviceSession.send(payload);
  const handler = new CommandHandler({ gpio: sim, name: 'bench-board', version: VERSION }, send);
  deviceSession.on('message', (m) => void handler.handle(m).then(send));
  controllerSession.attachSignal(toDevice as unknown as SignalClient);
  deviceSession.attachSignal(toController as unknown as SignalClient);
  let value: Level = 0;
  return {
    roundTrip: () => dev.write(BENCH_PIN, (value = value === 1 ? 0 : 1)),
    close: async () => {
      await dev.close();
      handler.dispose();
      await deviceSession.close();
      sim.close();
    },
  };
}
