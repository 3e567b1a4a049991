/**
 * The `many` group: one device serving up to eight controllers at once.
 *
 * The device runs in a process of its own (bench/device-child.ts), so its
 * RSS and CPU are its alone; the controllers run in this process through the
 * controller API, each with its own state dir. They pair once, one after
 * another, each with the fresh code the device offers after the last pairing
 * (in a device process that then stops); every measurement connects by name.
 *
 * Per path (direct first, then relay), a fresh device process on the same
 * state dir: its idle RSS and CPU with 0, 1, 4 and 8 controllers connected,
 * then the command round trip of one controller while the seven others each
 * watch a pin of their own that the device drives at EDGE_HZ, against the
 * same controller's round trip with the others gone (blocks take turns).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Change, connect, type Device, type Path } from '../controller/index.js';
import type { Level } from '../protocol/rpc.js';
// Types only: the device's own code must not load in this process (nor this file's in its).
import type { FromChild, ToChild } from './device-child.js';
import { BENCH_PIN, benchStateDir, COMMAND_TIMEOUT_MS, controllerState, DIRECT_TIMEOUT_MS } from './pinhole.js';
import { type Summary, summarize, timeBlock, warmUp } from './stats.js';

/** The name the bench device gives itself (the controllers save it under this name). */
const DEVICE_NAME = 'bench-board';
/** Connected controllers at which the device's RSS and CPU are taken (0, the baseline, comes first). */
export const MANY_COUNTS = [1, 4, 8] as const;
/** Controllers paired with the device: the most any figure connects. */
const CONTROLLERS = MANY_COUNTS[MANY_COUNTS.length - 1];
/** The pins the watchers watch, one each (BENCH_PIN is the writer's). */
export const WATCH_PINS = [21, 22, 23, 24, 25, 26, 27] as const;
/** Edges a second the device drives on each watched pin. */
export const EDGE_HZ = 10;
/** Edges run this long before a loaded block is timed, so that every pin has had some. */
const EDGE_LEAD_MS = 200;
/** After the edges stop, the last notifications get this long to arrive before they are counted. */
const EDGE_DRAIN_MS = 200;
/** Watchers must see at least this share of the edges driven (the rest can only be in flight at the end). */
const MIN_EDGES_SEEN = 0.9;
/**
 * A fresh device process waits this long before its baseline, in ms: V8's memory
 * reducer first runs about 8 s after start-up and hands back pages the start-up used,
 * which would otherwise come off the RSS of whichever count happens to be measured then.
 */
const FRESH_SETTLE_MS = 10_000;
/** Longest wait for the device process to start, register and offer a code, in ms (it loads werift and makes a DTLS certificate). */
const CHILD_START_TIMEOUT_MS = 20_000;
/** Longest wait for the device process to answer a request or to exit, in ms. */
const CHILD_REPLY_TIMEOUT_MS = 10_000;

/** How long each part of the group runs. */
export interface ManyPlan {
  /** After the controllers of a count are connected, the device settles this long before its CPU is taken, in ms. */
  settleMs: number;
  /** The window over which the device's idle CPU is taken, in ms. */
  idleWindowMs: number;
  /** Untimed round trips of the writer first. */
  warmup: number;
  warmupMaxMs: number;
  /** Each timed block of round trips lasts this long, in ms. */
  blockMs: number;
  /** Blocks of each figure, loaded and alone taking turns (L S S L ...). */
  rounds: number;
}

/** The device's idle resources with `count` controllers connected on `path`. */
export interface ResourceFigure {
  path: 'relay' | 'direct';
  count: number;
  /** process.memoryUsage().rss in the device process after two full GCs, each followed by half a second for V8 to hand pages back, in bytes. */
  rssBytes: number;
  /**
   * heapUsed + external (Buffers and ArrayBuffers) at the same moment, in bytes: what the
   * device's JS holds, without the pages V8 and malloc keep or return at their own pace.
   */
  heapBytes: number;
  /** User + system CPU time of the device process over the idle window, as % of one core. */
  cpuPct: number;
}

/** Command round trips of one controller on `path`. */
export interface LoadedRtt {
  path: 'relay' | 'direct';
  /** With the seven others gone (the same device and session). */
  alone: Summary;
  /** While the seven others watch, EDGE_HZ edges a second on each pin. */
  loaded: Summary;
  edgesDriven: number;
  edgesSeen: number;
}

export interface ManyResult {
  resources: ResourceFigure[];
  rtt: LoadedRtt[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A device agent in a child process, and what its events say about its sessions. */
class DeviceChild {
  /** Secured sessions by id and the path the device sends on. */
  readonly sessions = new Map<string, Path>();
  /** The pairing code offered now. */
  code = '';
  pid = 0;
  /** Refusals and errors the device reported, for messages when a wait times out. */
  private readonly problems: string[] = [];
  private readonly listeners = new Set<(m: FromChild) => void>();
  private exited: Promise<void>;

  private constructor(private readonly proc: ChildProcess) {
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.on('message', (m: FromChild) => {
      if (m.type === 'event') {
        const e = m.e;
        if (e.event === 'code') this.code = e.code;
        else if (e.event === 'controller') this.sessions.set(e.session, 'relay');
        else if (e.event === 'path' && this.sessions.has(e.session)) this.sessions.set(e.session, e.path);
        else if (e.event === 'controller-left') this.sessions.delete(e.session);
        else if (e.event === 'refused' || e.event === 'error') this.problems.push(`${e.event} ${e.code}: ${e.message}`);
      } else if (m.type === 'failed') this.problems.push(`failed: ${m.message}`);
      for (const l of [...this.listeners]) l(m);
    });
  }

  /** Forks the device process with --expose-gc; resolves once it is registered and offers a code. */
  static async start(server: string, stateDir: string): Promise<DeviceChild> {
    const script = fileURLToPath(new URL('./device-child.js', import.meta.url));
    const proc = fork(script, [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const child = new DeviceChild(proc);
    try {
      const ready = await child.request({ type: 'start', server, stateDir, name: DEVICE_NAME }, 'ready', CHILD_START_TIMEOUT_MS);
      child.pid = ready.pid;
      child.code ||= ready.code;
    } catch (e) {
      proc.kill();
      throw e;
    }
    return child;
  }

  get secured(): number {
    return this.sessions.size;
  }

  get direct(): number {
    return [...this.sessions.values()].filter((p) => p === 'direct').length;
  }

  /** Sends `m`; resolves with the next message of type `reply`. */
  request<T extends FromChild['type']>(m: ToChild, reply: T, timeoutMs = CHILD_REPLY_TIMEOUT_MS): Promise<Extract<FromChild, { type: T }>> {
    const answer = this.next((x) => (x.type === reply ? (x as Extract<FromChild, { type: T }>) : undefined), timeoutMs, `the device's ${reply}`);
    this.proc.send(m);
    return answer;
  }

  /** Resolves once `ok()` holds, checked after each message from the device. */
  async until(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (ok()) return;
    await this.next(() => (ok() ? true : undefined), timeoutMs, what);
  }

  /** The first message `pick` maps to a value; rejects on `failed` or after timeoutMs, naming what the device reported. */
  private next<T>(pick: (m: FromChild) => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(on);
      };
      const fail = (why: string): void => {
        done();
        reject(new Error(`${what}: ${why}${this.problems.length ? `; the device reported: ${this.problems.slice(-3).join(' | ')}` : ''}`));
      };
      const timer = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      const on = (m: FromChild): void => {
        if (m.type === 'failed') return fail('the device process failed');
        const v = pick(m);
        if (v === undefined) return;
        done();
        resolve(v);
      };
      this.listeners.add(on);
    });
  }

  /**
   * The device process's CPU time so far (user + system, every thread), in µs:
   * what /proc/PID/stat's utime + stime count, at µs rather than 10 ms resolution.
   */
  async cpuUs(): Promise<number> {
    const c = await this.request({ type: 'cpu' }, 'cpu');
    return c.userUs + c.systemUs;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.connected) this.proc.send({ type: 'stop' } satisfies ToChild);
    const t = setTimeout(() => this.proc.kill(), CHILD_REPLY_TIMEOUT_MS);
    await this.exited;
    clearTimeout(t);
  }
}

/** One controller: its own state dir and name, paired with the bench device. */
interface Controller {
  dir: string;
  name: string;
}

/** Pairs CONTROLLERS controllers, one after another, each with the code the device offers after the last pairing. */
async function pairControllers(child: DeviceChild, server: string): Promise<Controller[]> {
  const out: Controller[] = [];
  for (let i = 1; i <= CONTROLLERS; i++) {
    const c = { dir: await controllerState(), name: `bench-controller-${i}` };
    const code = child.code;
    const dev = await connect({ server, code, stateDir: c.dir, name: c.name, replace: true, direct: false, timeoutMs: COMMAND_TIMEOUT_MS });
    if (dev.pairedAs?.name !== DEVICE_NAME) throw new Error(`${c.name} did not pair (saved as ${dev.pairedAs?.name})`);
    await dev.close();
    await child.until(() => child.secured === 0 && child.code !== code, COMMAND_TIMEOUT_MS, `${c.name} leaving and the next code`);
    out.push(c);
  }
  return out;
}

/** Connects `c` by name on `path`; with `direct`, resolves once both ends send on the data channel. */
async function connectOn(child: DeviceChild, c: Controller, path: 'relay' | 'direct'): Promise<Device> {
  const want = { secured: child.secured + 1, direct: child.direct + (path === 'direct' ? 1 : 0) };
  const dev = await connect({ device: DEVICE_NAME, stateDir: c.dir, name: c.name, direct: path === 'direct', timeoutMs: COMMAND_TIMEOUT_MS });
  try {
    if (path === 'direct' && !(await dev.whenDirect(DIRECT_TIMEOUT_MS))) throw new Error(`${c.name}: the direct path did not open`);
    await child.until(() => child.secured >= want.secured && child.direct >= want.direct, DIRECT_TIMEOUT_MS, `the device serving ${c.name} on ${path}`);
  } catch (e) {
    await dev.close();
    throw e;
  }
  return dev;
}

/** Closes `devs`; resolves once the device has seen them leave. */
async function closeAll(child: DeviceChild, devs: Device[]): Promise<void> {
  const left = child.secured - devs.length;
  await Promise.all(devs.map((d) => d.close()));
  await child.until(() => child.secured === left, COMMAND_TIMEOUT_MS, 'the device seeing controllers leave');
}

/** The device's memory after full GCs and its CPU over an idle window, after settling. */
async function idle(child: DeviceChild, plan: ManyPlan, settleMs = plan.settleMs): Promise<Omit<ResourceFigure, 'path' | 'count'>> {
  await sleep(settleMs);
  const cpu0 = await child.cpuUs();
  const t0 = performance.now();
  await sleep(plan.idleWindowMs);
  const cpuPct = (100 * ((await child.cpuUs()) - cpu0)) / 1000 / (performance.now() - t0);
  const mem = await child.request({ type: 'memory' }, 'memory');
  if (!mem.gc) throw new Error('the device process has no gc() (started without --expose-gc)');
  return { rssBytes: mem.rss, heapBytes: mem.heapUsed + mem.external, cpuPct };
}

/**
 * The writer's round trips, alternating: blocks with the watchers connected,
 * each watching its pin while the device drives edges, and blocks with the
 * watchers gone. `watchers` are connected on entry; closed on return.
 */
async function loadedRtt(
  child: DeviceChild,
  writer: Device,
  watchers: Device[],
  controllers: readonly Controller[],
  path: 'relay' | 'direct',
  plan: ManyPlan,
): Promise<LoadedRtt> {
  let value: Level = 0;
  const write = (): Promise<void> => {
    value = value === 1 ? 0 : 1;
    return writer.write(BENCH_PIN, value);
  };
  await warmUp(write, plan);
  const alone: number[] = [];
  const loaded: number[] = [];
  let edgesDriven = 0;
  let edgesSeen = 0;
  let others = watchers;
  try {
    // Blocks in the order L S S L L S S L ... (L: loaded, S: alone), so that a drift in
    // the machine's load falls on both alike and the watchers reconnect once per two blocks.
    for (let k = 0; k < 2 * plan.rounds; k++) {
      if (((k + 1) >> 1) % 2 === 1) {
        if (others.length > 0) await closeAll(child, others);
        others = [];
        await timeBlock(write, alone, Number.POSITIVE_INFINITY, plan.blockMs);
        continue;
      }
      if (others.length === 0) for (const c of controllers) others.push(await connectOn(child, c, path));
      await Promise.all(
        others.map((d, i) => {
          const pin = WATCH_PINS[i]!;
          d.on('change', (c: Change) => {
            if (c.pin === pin) edgesSeen++;
          });
          return d.watch(pin);
        }),
      );
      await child.request({ type: 'toggle', pins: [...WATCH_PINS], hz: EDGE_HZ }, 'toggling');
      await sleep(EDGE_LEAD_MS);
      await timeBlock(write, loaded, Number.POSITIVE_INFINITY, plan.blockMs);
      const t = await child.request({ type: 'untoggle' }, 'toggled');
      if (t.errors > 0) throw new Error(`the device could not drive ${t.errors} edges`);
      edgesDriven += t.edges;
      await sleep(EDGE_DRAIN_MS);
      // The next loaded block watches again: one listener per Device.
      for (const d of others) d.removeAllListeners('change');
    }
  } finally {
    await closeAll(child, others);
  }
  if (edgesSeen < MIN_EDGES_SEEN * edgesDriven) throw new Error(`watchers saw ${edgesSeen} of ${edgesDriven} edges`);
  const paths = `${writer.path}/${[...child.sessions.values()].join(',')}`;
  if (paths !== `${path}/${path}`) throw new Error(`the writer's path changed during the run: controller/device ${paths}, wanted ${path}`);
  return { path, alone: summarize(alone), loaded: summarize(loaded), edgesDriven, edgesSeen };
}

/** One path's figures in a fresh device process: idle resources at 0 and MANY_COUNTS controllers, then the loaded round trip. */
async function onPath(
  server: string,
  deviceDir: string,
  controllers: readonly Controller[],
  path: 'relay' | 'direct',
  plan: ManyPlan,
  progress: (s: string) => void,
): Promise<{ resources: ResourceFigure[]; rtt: LoadedRtt }> {
  const child = await DeviceChild.start(server, deviceDir);
  const devs: Device[] = [];
  try {
    const resources: ResourceFigure[] = [];
    progress(`many (${path}): device pid ${child.pid}, idle with 0 controllers`);
    resources.push({ path, count: 0, ...(await idle(child, plan, FRESH_SETTLE_MS)) });
    for (const count of MANY_COUNTS) {
      while (devs.length < count) devs.push(await connectOn(child, controllers[devs.length]!, path));
      progress(`many (${path}): idle with ${count} connected`);
      resources.push({ path, count, ...(await idle(child, plan)) });
    }
    progress(
      `many (${path}): one controller's writes, ${WATCH_PINS.length} others watching at ${EDGE_HZ} Hz and alone, ${plan.rounds} blocks of ${plan.blockMs / 1000} s each`,
    );
    const watchers = devs.splice(1);
    const rtt = await loadedRtt(child, devs[0]!, watchers, controllers.slice(1), path, plan);
    return { resources, rtt };
  } finally {
    await Promise.allSettled(devs.map((d) => d.close()));
    await child.stop();
  }
}

/** The whole group: pairs the controllers, then measures the direct path and the relay, each in a fresh device process. */
export async function manyControllers(server: string, plan: ManyPlan, progress: (s: string) => void): Promise<ManyResult> {
  const deviceDir = benchStateDir('device');
  progress(`many: pairing ${CONTROLLERS} controllers, one code each`);
  const pairing = await DeviceChild.start(server, deviceDir);
  let controllers: Controller[];
  try {
    controllers = await pairControllers(pairing, server);
  } finally {
    await pairing.stop();
  }
  const out: ManyResult = { resources: [], rtt: [] };
  for (const path of ['direct', 'relay'] as const) {
    const r = await onPath(server, deviceDir, controllers, path, plan, progress);
    out.resources.push(...r.resources);
    out.rtt.push(r.rtt);
  }
  return out;
}
