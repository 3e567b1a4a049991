/**
 * pinhole itself: an in-process signaling server, a device agent on the
 * simulated board and a controller, as in cli/demo.ts. Times commands on one
 * path, the set-up of fresh connections, and the session handshake.
 *
 * Every device and controller has a real identity and state dir (a temp dir
 * under this run's root, removed by removeBenchState()); the loopback runners
 * pair with the device's code, as a user does the first time.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { connect, Device } from '../controller/index.js';
import type { HandshakeIdentity } from '../crypto/handshake.js';
import { deriveSealKeys, Opener, Sealer } from '../crypto/seal.js';
import { Board, CommandHandler, DeviceAgent, type DeviceEvent, SimGpio } from '../device/index.js';
import { nodeAead } from '../platform/node/aead.js';
import { nodeCurve25519 } from '../platform/node/curve25519.js';
import { preloadDirect } from '../platform/node/direct.js';
import { loadOrCreateDtlsCert } from '../platform/node/dtls-cert.js';
import { SignalClient } from '../platform/node/signal-client.js';
import { loadOrCreateIdentity } from '../platform/node/state-files.js';
import { deviceRoom, generatePairingCode, parsePairingCode } from '../protocol/code.js';
import { PinholeError } from '../protocol/errors.js';
import { encodeData } from '../protocol/frames.js';
import type { Level } from '../protocol/rpc.js';
import { PROTOCOL_VERSION, type ServerMessage } from '../protocol/signaling.js';
import { VERSION } from '../protocol/version.js';
import { PeerSession, type SessionSecurity } from '../session/session.js';
import { resolveSignalConfig, type SignalServer, startSignalServer } from '../signaling/index.js';
import { LOOPBACK } from './baselines.js';
import { type Runner, type Summary, summarize, withTimeout } from './stats.js';

/** The pin the commands drive. */
export const BENCH_PIN = 20;
/** Timeout of connect() and of each command, in ms. */
export const COMMAND_TIMEOUT_MS = 10_000;
/** Longest wait for the direct path on both ends, in ms. */
export const DIRECT_TIMEOUT_MS = 15_000;
/**
 * Per-socket message rate given to the bench's server. The default (1000/s)
 * is a flood guard that a back-to-back loop on loopback would hit; the bench
 * measures latency, not that policy.
 */
const BENCH_RATE_MSGS_PER_SEC = 1_000_000;
/**
 * Joins and registrations per minute (and burst) from one address given to
 * the bench's server, and its rooms per address. The defaults (JOIN_RATE_PER_MIN
 * 20, REGISTER_RATE_PER_MIN 30, MAX_ROOMS_PER_ADDR 32...) guard codes against
 * guessing and the server against floods; the bench pairs a fresh device
 * dozens of times a minute from 127.0.0.1.
 */
const BENCH_JOINS = 1_000_000;

/** A signaling server on 127.0.0.1 with free TCP and STUN ports, quiet logs. */
export function startBenchServer(): Promise<SignalServer> {
  return startSignalServer(
    resolveSignalConfig({
      host: LOOPBACK,
      port: 0,
      stunPort: 0,
      log: () => undefined,
      limits: {
        rateMsgsPerSec: BENCH_RATE_MSGS_PER_SEC,
        rateBurst: BENCH_RATE_MSGS_PER_SEC,
        joinRatePerMin: BENCH_JOINS,
        joinBurst: BENCH_JOINS,
        registerRatePerMin: BENCH_JOINS,
        registerBurst: BENCH_JOINS,
        maxRoomsPerAddr: BENCH_JOINS,
      },
    }),
  );
}

let stateRoot: string | undefined;

/** A fresh, empty state dir (0700) under this run's temp root. */
export function benchStateDir(label: string): string {
  stateRoot ??= mkdtempSync(join(tmpdir(), 'pinhole-bench-'));
  return mkdtempSync(join(stateRoot, `${label}-`));
}

/** Removes every state dir the run made. */
export function removeBenchState(): void {
  if (stateRoot) rmSync(stateRoot, { recursive: true, force: true });
  stateRoot = undefined;
}

/**
 * A controller state dir with its identity and DTLS certificate already made,
 * so that timed connections do not include creating them (a controller does
 * that once per installation).
 */
export async function controllerState(): Promise<string> {
  const dir = benchStateDir('controller');
  loadOrCreateIdentity(dir);
  await loadOrCreateDtlsCert(dir, (await preloadDirect()).generateDtlsKeys);
  return dir;
}

/** A device and a connected controller. */
interface Pair {
  agent: DeviceAgent;
  dev: Device;
  sim: SimGpio;
}

/** A device agent with a fresh state dir (identity and DTLS certificate are made before it registers). */
export async function startDevice(url: string, direct: boolean): Promise<{ agent: DeviceAgent; sim: SimGpio }> {
  const sim = new SimGpio({ board: 'sim (bench)' });
  try {
    const agent = await DeviceAgent.start({ server: url, name: 'bench-board', stateDir: benchStateDir('device'), gpio: sim, direct, version: VERSION });
    return { agent, sim };
  } catch (e) {
    sim.close();
    throw e;
  }
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
    p.dev = await connect({
      server: url,
      code: p.agent!.pairingCode!,
      stateDir: await controllerState(),
      name: 'bench-laptop',
      replace: true,
      direct,
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
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
  const toggle = (): Level => {
    value = value === 1 ? 0 : 1;
    return value;
  };
  return {
    roundTrip: () => dev.write(BENCH_PIN, toggle()),
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

/** Times, from `t0`, a first write's ack and the switch to the direct path (which must happen). */
async function firstAckAndDirect(dev: Device, t0: number): Promise<{ ack: number; direct: number }> {
  const directAt = dev.whenDirect(DIRECT_TIMEOUT_MS).then((ok) => (ok ? performance.now() - t0 : NaN));
  await dev.write(BENCH_PIN, 1);
  const ack = performance.now() - t0;
  const direct = await directAt;
  if (Number.isNaN(direct)) throw new Error('the direct path did not open');
  return { ack, direct };
}

/**
 * Connects `n` times (plus `warmup` untimed) to a fresh device each time,
 * pairing with its code (CPace and the signed handshake included); times the
 * first ack and the direct path. One controller state dir for all of them,
 * as one laptop pairing one board after another. Stops early once `maxMs` is
 * spent and MIN_CONNECTIONS are timed.
 */
export async function connectTimes(url: string, n: number, warmup: number, maxMs: number): Promise<ConnectTimes> {
  const acks: number[] = [];
  const directs: number[] = [];
  const stateDir = await controllerState();
  const end = performance.now() + maxMs;
  for (let i = 0; i < warmup + n && (acks.length < MIN_CONNECTIONS || performance.now() < end); i++) {
    const p: Partial<Pair> = {};
    try {
      Object.assign(p, await startDevice(url, true));
      const t0 = performance.now();
      p.dev = await connect({ server: url, code: p.agent!.pairingCode!, stateDir, name: 'bench-laptop', replace: true, timeoutMs: COMMAND_TIMEOUT_MS });
      const { ack, direct: d } = await firstAckAndDirect(p.dev, t0);
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

/**
 * Connects `n` times (plus `warmup` untimed) by name to one device paired
 * once before (untimed): the everyday case, a paired session (SIGMA-I with
 * pinned keys, no CPace) in the device's own room. Times the first ack and
 * the direct path; the next connection starts once the device has seen the
 * last one leave. Stops early once `maxMs` is spent and MIN_CONNECTIONS are timed.
 */
export async function pairedConnectTimes(url: string, n: number, warmup: number, maxMs: number): Promise<ConnectTimes> {
  const acks: number[] = [];
  const directs: number[] = [];
  const stateDir = await controllerState();
  const { agent, sim } = await startDevice(url, true);
  try {
    const pairing = await connect({ server: url, code: agent.pairingCode!, stateDir, name: 'bench-laptop', replace: true, timeoutMs: COMMAND_TIMEOUT_MS });
    const name = pairing.pairedAs?.name;
    if (!name) throw new Error('the bench controller did not pair');
    let left = nextDeviceEvent(agent, (e) => e.event === 'controller-left', COMMAND_TIMEOUT_MS, 'the pairing controller leaving');
    await pairing.close();
    await left;
    const end = performance.now() + maxMs;
    for (let i = 0; i < warmup + n && (acks.length < MIN_CONNECTIONS || performance.now() < end); i++) {
      const t0 = performance.now();
      const dev = await connect({ device: name, stateDir, timeoutMs: COMMAND_TIMEOUT_MS });
      left = nextDeviceEvent(agent, (e) => e.event === 'controller-left', COMMAND_TIMEOUT_MS, 'the controller leaving');
      left.catch(() => undefined); // awaited below; not an unhandled rejection if a write fails first
      try {
        const { ack, direct: d } = await firstAckAndDirect(dev, t0);
        if (i >= warmup) {
          acks.push(ack);
          directs.push(d);
        }
      } finally {
        await dev.close();
      }
      await left;
    }
  } finally {
    await agent.stop();
    sim.close();
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

/** An Ed25519 identity held in memory (what crypto/identity.ts keeps in identity.json), signing as a Node role's does. */
function memoryIdentity(): HandshakeIdentity {
  return nodeCurve25519.ed25519(ed25519.utils.randomSecretKey());
}

/** Session id of the in-memory sessions (the server would mint one per join). */
let memorySid = 0;

/**
 * A controller and a device PeerSession wired to each other in memory, relay
 * only, with real identities and the real handshake: `pairing` runs CPace on
 * a fresh code's secret (first pairing), otherwise the device already trusts
 * the controller and the controller expects the device's key (a paired
 * session). `secured` resolves when the controller is secured (as connect()
 * waits for), `bothSecured` when the device is too.
 */
function memorySessions(pairing: boolean): {
  controller: PeerSession;
  device: PeerSession;
  toDevice: MemorySignal;
  toController: MemorySignal;
  start: () => void;
  /** When the controller was secured (performance.now()). */
  secured: Promise<number>;
  bothSecured: Promise<void>;
} {
  const ctlId = memoryIdentity();
  const devId = memoryIdentity();
  const sid = `bench-memory-${++memorySid}`;
  const secret = generatePairingCode().secret;
  let spent = false;
  const ctlSecurity: SessionSecurity = pairing
    ? { role: 'controller', identity: ctlId, name: 'bench-laptop', certFp: null, pairingSecret: secret }
    : { role: 'controller', identity: ctlId, name: 'bench-laptop', certFp: null, expectDevice: devId.publicKey };
  const devSecurity: SessionSecurity = {
    role: 'device',
    identity: devId,
    name: 'bench-board',
    certFp: null,
    isTrusted: (k) => !pairing && Buffer.compare(Buffer.from(k), Buffer.from(ctlId.publicKey)) === 0,
    ...(pairing
      ? {
          pairingSecret: () => (spent ? undefined : secret),
          onPairingAttempt: () => {
            spent = true;
          },
        }
      : {}),
  };
  const controller = new PeerSession({
    role: 'controller',
    sid,
    direct: false,
    rtc: { iceServers: [] },
    security: ctlSecurity,
    aead: nodeAead,
    curve25519: nodeCurve25519,
  });
  const device = new PeerSession({ role: 'device', sid, direct: false, rtc: { iceServers: [] }, security: devSecurity, curve25519: nodeCurve25519 });
  const toDevice = new MemorySignal();
  const toController = new MemorySignal();
  toDevice.deliver = (m) => device.handleServerMessage(m);
  toController.deliver = (m) => controller.handleServerMessage(m);
  // Resolves with the moment `secured` was emitted (read synchronously: the device's
  // handling of c2 is already queued as a microtask and would otherwise be counted).
  const whenSecured = (s: PeerSession): Promise<number> =>
    new Promise((resolve, reject) => {
      s.once('secured', () => resolve(performance.now()));
      s.once('refused', (code, message) => reject(new Error(`in-memory handshake refused: ${code}: ${message}`)));
    });
  const secured = whenSecured(controller);
  const bothSecured = Promise.all([secured, whenSecured(device)]).then(() => undefined);
  return {
    controller,
    device,
    toDevice,
    toController,
    secured,
    bothSecured,
    // The device listens first; the controller's attach sends c1.
    start: () => {
      device.attachSignal(toController as unknown as SignalClient);
      controller.attachSignal(toDevice as unknown as SignalClient);
    },
  };
}

/**
 * pinhole's own layers with no network: the controller's Device and
 * PeerSession/Link, the device's PeerSession/Link and CommandHandler on the
 * simulated board, wired as the agent wires them, after a real (paired)
 * handshake; frames are sealed and handed over in memory. Its round trip is
 * the CPU pinhole adds to a command.
 */
export async function openInMemory(): Promise<Runner> {
  const sim = new SimGpio({ board: 'sim (bench)' });
  const m = memorySessions(false);
  const dev = new Device(m.toDevice as unknown as SignalClient, m.controller, COMMAND_TIMEOUT_MS);
  const send = (payload: unknown): void => m.device.send(payload);
  const handler = new CommandHandler({ board: new Board(sim), name: 'bench-board', version: VERSION, who: 'bench' }, send);
  m.device.on('message', (msg) => void handler.handle(msg).then(send));
  const close = async (): Promise<void> => {
    await dev.close();
    handler.dispose();
    await m.device.close();
    sim.close();
  };
  try {
    m.start();
    await withTimeout(m.bothSecured, COMMAND_TIMEOUT_MS, 'in-memory handshake');
  } catch (e) {
    await close();
    throw e;
  }
  let value: Level = 0;
  const toggle = (): Level => {
    value = value === 1 ? 0 : 1;
    return value;
  };
  return {
    roundTrip: () => dev.write(BENCH_PIN, toggle()),
    close,
  };
}

/** Handshake times: first pairing (CPace + SIGMA-I) and a paired session (SIGMA-I with pinned keys). */
export interface HandshakeTimes {
  pairing: Summary;
  paired: Summary;
}

/**
 * The handshake's CPU alone: `n` fresh in-memory session pairs of each kind
 * (plus `warmup`), interleaved, from the controller's first message to the
 * controller being secured (what connect() waits for; the device is secured
 * half a relay trip later).
 */
export async function memoryHandshakeTimes(n: number, warmup: number): Promise<HandshakeTimes> {
  const out = { pairing: [] as number[], paired: [] as number[] };
  for (let i = 0; i < warmup + n; i++) {
    for (const kind of ['pairing', 'paired'] as const) {
      const m = memorySessions(kind === 'pairing');
      const t0 = performance.now();
      m.start();
      const ms = (await withTimeout(m.secured, COMMAND_TIMEOUT_MS, 'in-memory handshake')) - t0;
      await m.bothSecured;
      if (i >= warmup) out[kind].push(ms);
      await m.controller.close();
      await m.device.close();
    }
  }
  return { pairing: summarize(out.pairing), paired: summarize(out.paired) };
}

/**
 * Joins `room` as a controller would and times the handshake: from `joined`
 * to the controller's `secured`, over the real relay. Relay only (no direct
 * attempt), so nothing else competes. Closes the session after.
 */
async function timeJoinToSecured(url: string, room: string, security: SessionSecurity): Promise<number> {
  const signal = await SignalClient.connect(url, COMMAND_TIMEOUT_MS);
  let session: PeerSession | undefined;
  try {
    signal.send({ type: 'join', v: PROTOCOL_VERSION, room });
    const r = await signal.next((m) => (m.type === 'joined' || m.type === 'error' ? m : undefined), COMMAND_TIMEOUT_MS, 'an answer to join');
    if (r.type === 'error') throw new PinholeError(r.code, r.message);
    if (r.waiting) throw new Error(`room ${room}: the device is not connected`);
    const t0 = performance.now();
    const s = new PeerSession({ role: 'controller', sid: r.session, direct: false, rtc: { iceServers: [] }, security, curve25519: nodeCurve25519 });
    session = s;
    signal.on('message', (m) => s.handleServerMessage(m));
    const secured = new Promise<number>((resolve, reject) => {
      s.once('secured', () => resolve(performance.now() - t0));
      s.once('refused', (code, message) => reject(new Error(`handshake refused: ${code}: ${message}`)));
    });
    s.attachSignal(signal);
    return await withTimeout(secured, COMMAND_TIMEOUT_MS, 'handshake');
  } finally {
    await session?.close();
    signal.close();
  }
}

/** Resolves with the next device event that `pick` accepts; rejects after timeoutMs. */
function nextDeviceEvent(agent: DeviceAgent, pick: (e: DeviceEvent) => boolean, timeoutMs: number, what: string): Promise<DeviceEvent> {
  let on: ((e: DeviceEvent) => void) | undefined;
  return withTimeout(
    new Promise<DeviceEvent>((resolve) => {
      on = (e: DeviceEvent): void => {
        if (pick(e)) resolve(e);
      };
      agent.on('event', on);
    }),
    timeoutMs,
    what,
  ).finally(() => agent.off('event', on!));
}

/**
 * The handshake on loopback through the bench's server, from `joined` to the
 * controller's `secured`: `n` pairings (plus `warmup`) with the device's
 * current code (each spends it; the device offers the next), interleaved with
 * `n` sessions of the same controller in the device's own room once paired.
 * Both relay only; one device agent (relay only) for all of them.
 */
export async function handshakeTimes(url: string, n: number, warmup: number): Promise<HandshakeTimes> {
  const { agent, sim } = await startDevice(url, false);
  try {
    const ctlDir = benchStateDir('controller');
    const identity = loadOrCreateIdentity(ctlDir);
    const pairing: number[] = [];
    const paired: number[] = [];
    let devicePublicKey: Uint8Array | undefined;
    for (let i = 0; i < warmup + n; i++) {
      // Pairing: spend the current code; the device registers a fresh one for the next.
      const code = agent.pairingCode!;
      const nextCode = nextDeviceEvent(agent, (e) => e.event === 'code' && e.code !== code, COMMAND_TIMEOUT_MS, 'the next pairing code');
      const secured = nextDeviceEvent(agent, (e) => e.event === 'controller', COMMAND_TIMEOUT_MS, 'the device secured');
      const left = nextDeviceEvent(agent, (e) => e.event === 'controller-left', COMMAND_TIMEOUT_MS, 'the controller leaving');
      const parsed = parsePairingCode(code);
      if (!parsed.ok) throw new Error(`the device printed a bad code ${code}: ${parsed.reason}`);
      const ms = await timeJoinToSecured(url, parsed.room, { role: 'controller', identity, name: 'bench-laptop', certFp: null, pairingSecret: parsed.secret });
      const e = (await secured) as Extract<DeviceEvent, { event: 'controller' }>;
      if (!e.paired) throw new Error('the pairing session did not pair');
      await Promise.all([nextCode, left]);
      devicePublicKey ??= agent.state.identity.publicKey;
      if (i >= warmup) pairing.push(ms);

      // Paired: the device's own room, which admits only trusted controllers.
      const left2 = nextDeviceEvent(agent, (x) => x.event === 'controller-left', COMMAND_TIMEOUT_MS, 'the controller leaving');
      const ms2 = await timeJoinToSecured(url, deviceRoom(devicePublicKey), {
        role: 'controller',
        identity,
        name: 'bench-laptop',
        certFp: null,
        expectDevice: devicePublicKey,
      });
      await left2;
      if (i >= warmup) paired.push(ms2);
    }
    return { pairing: summarize(pairing), paired: summarize(paired) };
  } finally {
    await agent.stop();
    sim.close();
  }
}

/**
 * The sealing a command round trip costs on the direct path, alone: the
 * request frame sealed and opened, then the answer frame, as the data channel
 * carries them since every frame there is sealed (docs/security.md).
 */
export async function openSealing(): Promise<Runner> {
  const secret = new Uint8Array(32).fill(9);
  const c = deriveSealKeys(secret, 'bench-session', 'direct');
  const out = { sealer: new Sealer(c.c2d, 'c2d', 'bench-session', { aead: nodeAead }), opener: new Opener(c.c2d, 'c2d', 'bench-session', { aead: nodeAead }) };
  const back = { sealer: new Sealer(c.d2c, 'd2c', 'bench-session', { aead: nodeAead }), opener: new Opener(c.d2c, 'd2c', 'bench-session', { aead: nodeAead }) };
  const request = encodeData(7, 6, JSON.stringify({ jsonrpc: '2.0', id: 'AbCdEfGh:7', method: 'gpio.write', params: { pin: BENCH_PIN, value: 1 } }));
  const answer = encodeData(7, 7, JSON.stringify({ jsonrpc: '2.0', id: 'AbCdEfGh:7', result: {} }));
  let opened = 0;
  return {
    roundTrip: async () => {
      if (out.opener.open(out.sealer.seal(request)).ok && back.opener.open(back.sealer.seal(answer)).ok) opened++;
    },
    verify: () => {
      if (opened === 0) throw new Error('sealing: no frame opened');
    },
    close: async () => undefined,
  };
}
