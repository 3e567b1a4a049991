// NAT lab: network namespaces + iptables NAT routers + a user-space delay router as the
// "internet". Every address is lab-internal (198.18.0.0/15 outside, 10.0.x.0/24 LANs,
// 100.64.x.0/24 between a carrier-grade NAT and its customer's router); nothing is routed
// to the host's own network. See docs/natlab.md.
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { RouterConfig } from './delay-router.js';
import { type Impairment, impairment, parseSeed } from './impair.js';

/** `cgnat`: a `cone` router whose WAN is behind the carrier's own `cone` NAT (two MASQUERADE layers). */
export type RouterKind = 'open' | 'cone' | 'symmetric' | 'udpblock' | 'cgnat';
export type Host = 'server' | 'dev' | 'ctl' | 'routerA' | 'routerB' | 'carrierA' | 'carrierB';
export type RouterName = 'a' | 'b';
export type Leg = 'server' | RouterName;

export interface LabOptions {
  a: RouterKind;
  /** Ignored when sameLan is set (ctl then sits behind router A). */
  b: RouterKind;
  /** One-way delay of each internet leg; a path between two sites crosses two legs. */
  delayMs?: number;
  /** dev and ctl on one bridged LAN behind router A; no router B. */
  sameLan?: boolean;
  /** TTL decrement per crossing of the internet. */
  hops?: number;
  /** Jitter, loss and duplication per crossing of the internet; default: none (PERFECT_INTERNET). */
  impair?: Partial<Impairment>;
  /** Seed of the impairment's PRNG; default: PINHOLE_NATLAB_SEED, else random. Read it back from `lab.seed`. */
  seed?: number;
  /**
   * UDP conntrack timeouts of every router namespace (routers and carriers), in seconds;
   * `null` keeps the kernel's defaults (30 s / 120 s). Default: DEFAULT_CONNTRACK_UDP.
   */
  conntrackUdp?: ConntrackUdp | null;
}

/** `net.netfilter.nf_conntrack_udp_timeout` and `…_timeout_stream` (per network namespace). */
export interface ConntrackUdp {
  /** A flow with no reply yet, or one that has not lasted 2 s (the kernel's rule). */
  unrepliedS: number;
  /** A flow that has seen replies and lasted over 2 s. */
  streamS: number;
}

/**
 * The routers' UDP conntrack timeouts: short, as on many home routers and carrier NATs,
 * so that a path kept open only by its own keepalives is tested (the kernel's 120 s would
 * hide a missing one).
 */
export const DEFAULT_CONNTRACK_UDP: Readonly<ConntrackUdp> = Object.freeze({ unrepliedS: 10, streamS: 30 });

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Lab {
  readonly id: string;
  readonly delayMs: number;
  readonly hops: number;
  readonly sameLan: boolean;
  readonly kinds: { a: RouterKind; b: RouterKind | null };
  /** The impairment the internet applies now, and the seed its PRNG started from. */
  readonly impairment: Readonly<Impairment>;
  readonly seed: number;
  /** The routers' UDP conntrack timeouts, or null for the kernel's defaults. */
  readonly conntrackUdp: Readonly<ConntrackUdp> | null;
  /** Two addresses of the server namespace (RFC 5780 needs two). */
  readonly serverAddrs: [string, string];
  /**
   * Each host's own address (LAN address for dev/ctl, WAN address for routers and
   * carriers). Behind `cgnat` the router's WAN address is in 100.64/10 and the address
   * the internet sees is the carrier's (`carrierA`/`carrierB`, null for other kinds).
   */
  readonly addrs: Readonly<{
    server: [string, string];
    dev: string;
    ctl: string;
    routerA: string;
    routerB: string | null;
    carrierA: string | null;
    carrierB: string | null;
  }>;
  /** The address a site's traffic comes from on the internet: the carrier's behind `cgnat`, else the router's. */
  publicAddr(router: RouterName): string;
  netns(host: Host): string;
  /** Spawns cmd inside the host's namespace via `ip netns exec`; killed by destroy(). */
  run(host: Host, cmd: string[], opts?: SpawnOptions): ChildProcess;
  exec(host: Host, cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /**
   * 'blackhole' (default): the delay router silently drops the leg, the WAN link stays up
   * (an upstream outage). 'link': the router's WAN interface goes down (routes vanish, the
   * router answers ICMP unreachable).
   */
  setWanUp(router: RouterName, up: boolean, opts?: { mode?: 'blackhole' | 'link' }): Promise<void>;
  setDelay(leg: Leg, ms: number): Promise<void>;
  /** Changes the internet's impairment from now on (fields not given keep their value). */
  setImpairment(imp: Partial<Impairment>): Promise<void>;
  /** Forwarding counters of the delay router, including the impairment's lost / duplicated / reordered. */
  routerStats(): Promise<Record<string, number>>;
  /**
   * A fresh directory (mode 0700) for one process of this lab, e.g. a peer's `--state-dir`,
   * under `$TMPDIR/pinhole-natlab-peers/<id>/<name>`; removed with everything else by
   * destroy() (and by cleanupStale() after a crash). The namespaces share the host's
   * filesystem, so a process inside the lab sees it at the same path.
   */
  tempDir(name: string): string;
  destroy(): Promise<void>;
}

export const DEFAULT_DELAY_MS = 20;
export const DEFAULT_HOPS = 4;
export const SERVER_ADDRS: [string, string] = ['198.18.0.10', '198.18.0.11'];
const SERVER_PREFIX = '198.18.0.0/24';
const WAN_ADDR: Record<RouterName, string> = { a: '198.18.1.1', b: '198.18.2.1' };
const WAN_PREFIX: Record<RouterName, string> = { a: '198.18.1.0/24', b: '198.18.2.0/24' };
// Between a carrier-grade NAT and its customer's router: the shared address space (RFC 6598), as carriers use.
const CGN_NET: Record<RouterName, string> = { a: '100.64.1', b: '100.64.2' };
// LAN /24 (first three octets): private behind NAT, internet-routable behind an 'open' router.
const NAT_LAN: Record<RouterName, string> = { a: '10.0.1', b: '10.0.2' };
const OPEN_LAN: Record<RouterName, string> = { a: '198.18.101', b: '198.18.102' };
const WAN_IF = 'wan0';
const TUN_TXQUEUELEN = 4096;
const ROUTER_READY_TIMEOUT_MS = 5000;
const ROUTER_CMD_TIMEOUT_MS = 3000;
const ROUTER_EXIT_WAIT_MS = 1000;
const DEFAULT_EXEC_TIMEOUT_MS = 10_000;
const SETUP_CMD_TIMEOUT_MS = 10_000;
const NS_PREFIX = 'ph-';
// Marker in the delay router's argv, used by cleanupStale() to find it.
const ROUTER_MARK = '--natlab-lab=';
const STATE_DIR = path.join(os.tmpdir(), 'pinhole-natlab');
/** Per-lab directories handed to processes in the lab (Lab.tempDir), one subdirectory per lab id. */
const PEERS_DIR = path.join(os.tmpdir(), 'pinhole-natlab-peers');

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUTER_JS = path.join(here, 'delay-router.js');
/** Path of the compiled nettool CLI, for `lab.run(host, [process.execPath, NETTOOL, ...])`. */
export const NETTOOL = path.join(here, 'nettool.js');

function iptablesBin(): string {
  return process.env.PINHOLE_NATLAB_IPTABLES || 'iptables';
}

// ---------------------------------------------------------------- availability

let availability: { ok: true } | { ok: false; reason: string } | undefined;

export function labAvailable(): { ok: true } | { ok: false; reason: string } {
  return (availability ??= checkAvailable());
}

function checkAvailable(): { ok: true } | { ok: false; reason: string } {
  const no = (reason: string) => ({ ok: false as const, reason: `natlab unavailable: ${reason}` });
  if (process.platform !== 'linux') return no(`needs Linux, not ${process.platform}`);
  if (process.getuid?.() !== 0) return no('needs root (network namespaces, iptables, TUN)');
  const works = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  if (!works('ip', ['-V'])) return no('`ip` (iproute2) not found');
  const ipt = iptablesBin();
  if (!works(ipt, ['--version'])) return no(`\`${ipt}\` not found (apt-get install iptables)`);
  if (!works(`${ipt}-restore`, ['-V'])) return no(`\`${ipt}-restore\` not found`);
  try {
    fs.accessSync('/dev/net/tun', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return no('/dev/net/tun missing or not accessible');
  }
  try {
    createRequire(import.meta.url).resolve('koffi');
  } catch {
    return no('koffi (FFI for the TUN ioctl) not installed');
  }
  if (!fs.existsSync(ROUTER_JS)) return no(`${ROUTER_JS} missing (build first)`);
  const probe = `${NS_PREFIX}probe-${process.pid}`;
  if (!works('ip', ['netns', 'add', probe])) return no('cannot create network namespaces');
  spawnSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
  return { ok: true };
}

// ---------------------------------------------------------------- process helpers

function run(cmd: string, args: string[], input?: string, timeoutMs = SETUP_CMD_TIMEOUT_MS): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    collect(child, input, timeoutMs).then(resolve, reject);
  });
}

function collect(child: ChildProcess, input: string | undefined, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    child.stdin?.on('error', () => {}); // child may exit before reading its input
    child.stdin?.end(input ?? '');
  });
}

async function must(cmd: string, args: string[], input?: string): Promise<void> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) {
    const what = `${cmd} ${args.join(' ')}`;
    throw new Error(`natlab: \`${what}\` failed (${r.code ?? r.signal}): ${r.stderr.trim()}${input ? `\ninput:\n${input}` : ''}`);
  }
}

/** Runs `ip` commands (one per line) in one namespace, or the host namespace when ns is null. */
function ipBatch(ns: string | null, lines: string[]): Promise<void> {
  return must('ip', [...(ns ? ['-n', ns] : []), '-batch', '-'], lines.join('\n') + '\n');
}

function nsShell(ns: string, script: string): Promise<void> {
  return must('ip', ['netns', 'exec', ns, 'sh', '-ec', script]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

function nsPids(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  return (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number);
}

/** Kills everything inside the namespace, then deletes it. Synchronous so exit handlers can use it. */
function removeNsSync(ns: string): void {
  for (const pid of nsPids(ns)) killPid(pid);
  spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

// ---------------------------------------------------------------- iptables per kind

/** Rules of one NAT layer; `cgnat`'s customer router is a plain `cone` (its carrier gets `cone` rules too). */
function iptablesRules(kind: RouterKind): string {
  const lines: string[] = [];
  if (kind !== 'open') {
    // MASQUERADE keeps the source port when it can: endpoint-independent mapping.
    // --random-fully picks a fresh port per conntrack entry: address/port-dependent mapping.
    lines.push('*nat', `-A POSTROUTING -o ${WAN_IF} -j MASQUERADE${kind === 'symmetric' ? ' --random-fully' : ''}`, 'COMMIT');
    lines.push('*filter');
    if (kind === 'udpblock') lines.push(`-A FORWARD -p udp -i ${WAN_IF} -j DROP`, `-A FORWARD -p udp -o ${WAN_IF} -j DROP`);
    // Conntrack-only inbound: port-restricted filtering; silent like a home router.
    lines.push(
      `-A FORWARD -i ${WAN_IF} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
      `-A FORWARD -i ${WAN_IF} -j DROP`,
      `-A INPUT -i ${WAN_IF} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
      `-A INPUT -i ${WAN_IF} -j DROP`,
      'COMMIT',
    );
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- live labs and exit cleanup

const live = new Set<LabImpl>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of live) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      for (const lab of live) lab.destroySync();
      process.exit(128 + (os.constants.signals[sig] ?? 0));
    });
  }
}

interface StateFile {
  owner: number;
  created: string;
  netns: string[];
}

// ---------------------------------------------------------------- the lab

class LabImpl implements Lab {
  readonly serverAddrs: [string, string] = [...SERVER_ADDRS];
  readonly addrs: Lab['addrs'];
  readonly kinds: Lab['kinds'];
  private readonly ns: Partial<Record<Host, string>>;
  private readonly children = new Set<ChildProcess>();
  private router: ChildProcess | null = null;
  private routerErr = '';
  private nextCmdId = 1;
  private readonly pending = new Map<number, (r: { ok?: boolean; error?: string; stats?: Record<string, number> }) => void>();
  private destroyed = false;
  private stopping = false;
  private readonly stateFile: string;

  constructor(
    readonly id: string,
    private readonly opts: LabOptions,
    readonly delayMs: number,
    readonly hops: number,
    public impairment: Readonly<Impairment>,
    readonly seed: number,
    readonly conntrackUdp: Readonly<ConntrackUdp> | null,
  ) {
    this.kinds = { a: opts.a, b: opts.sameLan ? null : opts.b };
    const n = (s: string) => `${NS_PREFIX}${id}-${s}`;
    this.ns = { server: n('srv'), routerA: n('ra'), dev: n('dev'), ctl: n('ctl') };
    if (!this.sameLan) this.ns.routerB = n('rb');
    if (this.kinds.a === 'cgnat') this.ns.carrierA = n('ca');
    if (this.kinds.b === 'cgnat') this.ns.carrierB = n('cb');
    const lan = (r: RouterName) => (this.kinds[r] === 'open' ? OPEN_LAN[r] : NAT_LAN[r]);
    // Behind a carrier NAT the router's WAN is the customer side of the carrier's 100.64 link.
    const wanAddr = (r: RouterName) => (this.kinds[r] === 'cgnat' ? `${CGN_NET[r]}.2` : WAN_ADDR[r]);
    this.addrs = {
      server: this.serverAddrs,
      routerA: wanAddr('a'),
      routerB: this.sameLan ? null : wanAddr('b'),
      carrierA: this.kinds.a === 'cgnat' ? WAN_ADDR.a : null,
      carrierB: this.kinds.b === 'cgnat' ? WAN_ADDR.b : null,
      dev: `${lan('a')}.2`,
      ctl: this.sameLan ? `${lan('a')}.3` : `${lan('b')}.2`,
    };
    this.stateFile = path.join(STATE_DIR, `${id}.json`);
  }

  get sameLan(): boolean {
    return !!this.opts.sameLan;
  }

  publicAddr(router: RouterName): string {
    if (router === 'b' && this.sameLan) throw new Error(`natlab: lab ${this.id} has no router B`);
    return WAN_ADDR[router];
  }

  netns(host: Host): string {
    const ns = this.ns[host];
    if (!ns) throw new Error(`natlab: lab ${this.id} has no ${host}`);
    return ns;
  }

  private allNs(): string[] {
    return Object.values(this.ns).filter((x): x is string => !!x);
  }

  async setup(): Promise<void> {
    fs.mkdirSync(STATE_DIR, { recursive: true });
    const state: StateFile = { owner: process.pid, created: new Date().toISOString(), netns: this.allNs() };
    fs.writeFileSync(this.stateFile, JSON.stringify(state));

    // Sequential: the first `ip netns add` on a machine sets up /run/netns mounts.
    for (const ns of this.allNs()) await must('ip', ['netns', 'add', ns]);
    const routerReady = this.startRouter();
    routerReady.catch(() => {}); // awaited below; avoid an unhandled rejection meanwhile
    await Promise.all(
      this.allNs().map((ns) => {
        const fwd = [this.ns.routerA, this.ns.routerB, this.ns.carrierA, this.ns.carrierB].includes(ns);
        const ct = fwd && this.conntrackUdp;
        return nsShell(
          ns,
          [
            // IPv4-only lab: no stray IPv6 candidates or router solicitations.
            'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6',
            'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
            'echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter',
            'echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter',
            `echo ${fwd ? 1 : 0} > /proc/sys/net/ipv4/ip_forward`,
            // Per network namespace: the host's own values stay as they are.
            ...(ct
              ? [
                  `echo ${ct.unrepliedS} > /proc/sys/net/netfilter/nf_conntrack_udp_timeout`,
                  `echo ${ct.streamS} > /proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream`,
                  `test "$(cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout)" = ${ct.unrepliedS}`,
                  `test "$(cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream)" = ${ct.streamS}`,
                ]
              : []),
            'ip link set lo up',
          ].join('\n'),
        );
      }),
    );
    const tuns = await routerReady;

    // The namespace holding a site's TUN device: the carrier's behind a carrier NAT.
    const edge = (r: RouterName): string => (r === 'a' ? (this.ns.carrierA ?? this.ns.routerA!) : (this.ns.carrierB ?? this.ns.routerB!));
    // TUN devices were created in the host namespace; move them before anything else
    // touches them. The router's fds keep working after the move.
    await ipBatch(null, [
      `link set ${tuns.server} netns ${this.ns.server}`,
      `link set ${tuns.a} netns ${edge('a')}`,
      ...(this.ns.routerB ? [`link set ${tuns.b} netns ${edge('b')}`] : []),
    ]);
    const wan = (tun: string, addrs: string[]) => [
      `link set ${tun} name ${WAN_IF}`,
      ...addrs.map((a) => `addr add ${a}/32 dev ${WAN_IF}`),
      // Deeper queue towards the router process absorbs bursts while it is busy.
      `link set ${WAN_IF} txqueuelen ${TUN_TXQUEUELEN} up`,
      `route add default dev ${WAN_IF}`,
    ];
    const routers: Array<[RouterName, string]> = [['a', this.ns.routerA!]];
    if (this.ns.routerB) routers.push(['b', this.ns.routerB]);
    const restore = (ns: string, kind: RouterKind): Promise<void> | undefined => {
      const rules = iptablesRules(kind);
      return rules.trim() ? must('ip', ['netns', 'exec', ns, `${iptablesBin()}-restore`], rules) : undefined;
    };

    await Promise.all([
      ipBatch(this.ns.server!, wan(tuns.server, this.serverAddrs)),
      ...routers.map(async ([r, ns]) => {
        const kind = this.kinds[r]!;
        const tun = r === 'a' ? tuns.a : tuns.b;
        const lanBase = kind === 'open' ? OPEN_LAN[r] : NAT_LAN[r];
        // [namespace, address] of the hosts on this router's LAN.
        const dev: [string, string] = [this.ns.dev!, this.addrs.dev];
        const ctl: [string, string] = [this.ns.ctl!, this.addrs.ctl];
        const hosts = r === 'b' ? [ctl] : this.sameLan ? [dev, ctl] : [dev];
        let lines: string[];
        if (kind === 'cgnat') {
          // The carrier: TUN to the internet, a veth to its customer's router (that one's wan0), a cone NAT.
          const carrier = edge(r);
          await ipBatch(carrier, [
            ...wan(tun, [WAN_ADDR[r]]),
            `link add lan0 type veth peer name ${WAN_IF} netns ${ns}`,
            `addr add ${CGN_NET[r]}.1/24 dev lan0`,
            'link set lan0 up',
          ]);
          await restore(carrier, 'cone');
          lines = [`addr add ${CGN_NET[r]}.2/24 dev ${WAN_IF}`, `link set ${WAN_IF} up`, `route add default via ${CGN_NET[r]}.1 dev ${WAN_IF}`];
        } else {
          lines = wan(tun, [WAN_ADDR[r]]);
        }
        if (hosts.length === 1) {
          lines.push(`link add lan0 type veth peer name eth0 netns ${hosts[0]![0]}`, `addr add ${lanBase}.1/24 dev lan0`, 'link set lan0 up');
        } else {
          lines.push('link add br0 type bridge', `addr add ${lanBase}.1/24 dev br0`, 'link set br0 up');
          hosts.forEach(([hostNs], i) =>
            lines.push(`link add lan${i} type veth peer name eth0 netns ${hostNs}`, `link set lan${i} master br0`, `link set lan${i} up`),
          );
        }
        await ipBatch(ns, lines);
        await restore(ns, kind);
        await Promise.all(
          hosts.map(([hostNs, addr]) => ipBatch(hostNs, [`addr add ${addr}/24 dev eth0`, 'link set eth0 up', `route add default via ${lanBase}.1`])),
        );
      }),
    ]);
  }

  private startRouter(): Promise<Record<Leg, string>> {
    const tun = (leg: string) => `ph${this.id}${leg}`; // <= 15 chars (IFNAMSIZ)
    const legs: RouterConfig['legs'] = [
      { name: 'server', tun: tun('s'), delayMs: this.delayMs, prefixes: [SERVER_PREFIX] },
      { name: 'a', tun: tun('a'), delayMs: this.delayMs, prefixes: [WAN_PREFIX.a, ...(this.kinds.a === 'open' ? [`${OPEN_LAN.a}.0/24`] : [])] },
    ];
    if (!this.sameLan)
      legs.push({ name: 'b', tun: tun('b'), delayMs: this.delayMs, prefixes: [WAN_PREFIX.b, ...(this.kinds.b === 'open' ? [`${OPEN_LAN.b}.0/24`] : [])] });
    const cfg: RouterConfig = { hops: this.hops, legs, impair: { ...this.impairment }, seed: this.seed };
    const child = spawn(process.execPath, [ROUTER_JS, `${ROUTER_MARK}${this.id}`, `--owner=${process.pid}`, JSON.stringify(cfg)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // One blocking TUN read per leg sits on the libuv pool; leave room for writes and timers.
      env: { ...process.env, UV_THREADPOOL_SIZE: String(legs.length + 4) },
    });
    this.router = child;
    // Unreferenced: a forgotten lab must not keep the test process alive (the exit handler cleans up).
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as Array<{ unref?: () => void } | null>) s?.unref?.();
    child.stderr!.on('data', (d: Buffer) => (this.routerErr = (this.routerErr + d.toString()).slice(-2000)));
    child.stdin!.on('error', () => {});
    return new Promise((resolve, reject) => {
      const ref = child.stdout as unknown as { ref(): void; unref(): void };
      ref.ref();
      const timer = setTimeout(() => fail(new Error('delay router not ready in time')), ROUTER_READY_TIMEOUT_MS);
      const fail = (e: Error) => {
        clearTimeout(timer);
        ref.unref();
        reject(new Error(`${e.message}${this.routerErr ? `: ${this.routerErr.trim()}` : ''}`));
      };
      child.on('close', (code, signal) => {
        if (!this.stopping) process.stderr.write(`natlab: lab ${this.id}: delay router exited (${code ?? signal}) ${this.routerErr.trim()}\n`);
        fail(new Error(`delay router exited (${code ?? signal})`));
        for (const done of this.pending.values()) done({ error: 'delay router exited' });
        this.pending.clear();
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as { ready?: boolean; id?: number; ok?: boolean; error?: string; stats?: Record<string, number> };
        if (msg.ready) {
          clearTimeout(timer);
          ref.unref();
          resolve({ server: tun('s'), a: tun('a'), b: tun('b') });
        } else if (msg.id !== undefined) {
          this.pending.get(msg.id)?.(msg);
          this.pending.delete(msg.id);
        }
      });
    });
  }

  private routerCmd(cmd: object): Promise<{ ok?: boolean; error?: string; stats?: Record<string, number> }> {
    if (this.destroyed || !this.router) return Promise.reject(new Error('natlab: lab destroyed'));
    if (this.router.exitCode !== null || this.router.signalCode !== null) return Promise.reject(new Error('natlab: delay router is not running'));
    const id = this.nextCmdId++;
    const ref = this.router.stdout as unknown as { ref(): void; unref(): void };
    ref.ref();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('natlab: delay router did not answer'));
      }, ROUTER_CMD_TIMEOUT_MS);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        if (this.pending.size <= 1) ref.unref();
        if (r.error) reject(new Error(`natlab: delay router: ${r.error}`));
        else resolve(r);
      });
      this.router!.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n');
    });
  }

  run(host: Host, cmd: string[], opts: SpawnOptions = {}): ChildProcess {
    if (this.destroyed) throw new Error('natlab: lab destroyed');
    const child = spawn('ip', ['netns', 'exec', this.netns(host), ...cmd], opts);
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  exec(host: Host, cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const child = this.run(host, cmd, { stdio: ['pipe', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
    return collect(child, opts.input, opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS);
  }

  async setWanUp(router: RouterName, up: boolean, opts: { mode?: 'blackhole' | 'link' } = {}): Promise<void> {
    const ns = this.netns(router === 'a' ? 'routerA' : 'routerB');
    if ((opts.mode ?? 'blackhole') === 'blackhole') {
      await this.routerCmd({ cmd: 'blackhole', leg: router, on: !up });
    } else if (up) {
      // Bringing a link down flushes its routes; restore the default route.
      const via = this.kinds[router] === 'cgnat' ? `via ${CGN_NET[router]}.1 ` : '';
      await ipBatch(ns, [`link set ${WAN_IF} up`, `route replace default ${via}dev ${WAN_IF}`]);
    } else {
      await ipBatch(ns, [`link set ${WAN_IF} down`]);
    }
  }

  async setDelay(leg: Leg, ms: number): Promise<void> {
    await this.routerCmd({ cmd: 'delay', leg, ms });
  }

  async setImpairment(imp: Partial<Impairment>): Promise<void> {
    const next = impairment({ ...this.impairment, ...imp });
    await this.routerCmd({ cmd: 'impair', impair: next });
    this.impairment = next;
  }

  async routerStats(): Promise<Record<string, number>> {
    return (await this.routerCmd({ cmd: 'stats' })).stats ?? {};
  }

  tempDir(name: string): string {
    if (this.destroyed) throw new Error('natlab: lab destroyed');
    if (!/^[\w.-]+$/.test(name) || name === '.' || name === '..') throw new Error(`natlab: bad temp dir name ${JSON.stringify(name)}`);
    const dir = path.join(PEERS_DIR, this.id, name);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    return dir;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.stopping = true;
    const router = this.router;
    if (router && router.exitCode === null && router.signalCode === null) {
      // Router first: closing its TUN fds removes the WAN devices cleanly.
      // A referenced timer: the router itself is unref'd and must not let the loop go idle here.
      const exited = new Promise<void>((r) => {
        const timer = setTimeout(r, ROUTER_EXIT_WAIT_MS);
        router.once('exit', () => {
          clearTimeout(timer);
          r();
        });
      });
      router.kill('SIGKILL');
      await exited;
    }
    this.destroySync();
  }

  /** Idempotent and synchronous, so the process 'exit' handler can call it. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = this.stopping = true;
    live.delete(this);
    for (const c of this.children) c.kill('SIGKILL');
    this.children.clear();
    if (this.router?.pid) killPid(this.router.pid);
    for (const ns of this.allNs()) removeNsSync(ns);
    fs.rmSync(path.join(PEERS_DIR, this.id), { recursive: true, force: true });
    fs.rmSync(this.stateFile, { force: true });
  }
}

export async function createLab(opts: LabOptions): Promise<Lab> {
  const avail = labAvailable();
  if (!avail.ok) throw new Error(avail.reason);
  const imp = impairment(opts.impair);
  const seed = parseSeed(opts.seed ?? process.env.PINHOLE_NATLAB_SEED ?? randomBytes(4).readUInt32BE(0));
  const ct = opts.conntrackUdp === undefined ? DEFAULT_CONNTRACK_UDP : opts.conntrackUdp;
  if (ct && !(Number.isInteger(ct.unrepliedS) && ct.unrepliedS > 0 && Number.isInteger(ct.streamS) && ct.streamS > 0))
    throw new RangeError(`natlab: conntrackUdp timeouts must be positive whole seconds, got ${JSON.stringify(ct)}`);
  const lab = new LabImpl(randomBytes(3).toString('hex'), opts, opts.delayMs ?? DEFAULT_DELAY_MS, opts.hops ?? DEFAULT_HOPS, imp, seed, ct);
  installExitHandlers();
  live.add(lab);
  try {
    await lab.setup();
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}

// ---------------------------------------------------------------- stale cleanup

function labIdOfNs(ns: string): string | null {
  const m = /^ph-([0-9a-f]{6})-/.exec(ns);
  return m ? m[1]! : null;
}

function ownerAlive(id: string): boolean {
  try {
    const st = JSON.parse(fs.readFileSync(path.join(STATE_DIR, `${id}.json`), 'utf8')) as StateFile;
    return alive(st.owner);
  } catch {
    return false;
  }
}

/**
 * Deletes `ph-*` namespaces left by crashed runs, with every process inside them, and
 * kills orphaned delay routers. Labs whose owning process is still alive are kept unless
 * `all` is set (another test run on this machine may be using them).
 */
export function cleanupStale(opts: { all?: boolean } = {}): { namespaces: string[]; pids: number[] } {
  const removed: string[] = [];
  const pids: number[] = [];
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const ns of list
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(NS_PREFIX))) {
    const id = labIdOfNs(ns);
    if (!opts.all && id && ownerAlive(id)) continue;
    if (!opts.all && ns === `${NS_PREFIX}probe-${process.pid}`) continue;
    pids.push(...nsPids(ns));
    removeNsSync(ns);
    removed.push(ns);
  }
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const mark = argv.find((a) => a.startsWith(ROUTER_MARK));
    if (!mark) continue;
    const owner = Number(argv.find((a) => a.startsWith('--owner='))?.slice('--owner='.length));
    if (opts.all || !alive(owner)) {
      killPid(Number(entry));
      pids.push(Number(entry));
    }
  }
  // Temp dirs first: their owner is read from the state files removed below.
  if (fs.existsSync(PEERS_DIR))
    for (const id of fs.readdirSync(PEERS_DIR)) {
      if (opts.all || !ownerAlive(id)) fs.rmSync(path.join(PEERS_DIR, id), { recursive: true, force: true });
    }
  if (fs.existsSync(STATE_DIR))
    for (const f of fs.readdirSync(STATE_DIR)) {
      const id = f.replace(/\.json$/, '');
      if (opts.all || !ownerAlive(id)) fs.rmSync(path.join(STATE_DIR, f), { force: true });
    }
  return { namespaces: removed, pids };
}
