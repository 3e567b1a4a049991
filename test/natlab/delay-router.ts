// User-space "internet" for the NAT lab: one TUN device per leg (server, router A's WAN,
// router B's WAN). IPv4 packets are forwarded by destination prefix after the sum of both
// legs' one-way delays, with the TTL lowered by `hops`, and optionally jitter, loss and
// duplication (impair.ts decides, from a seeded PRNG). Run as a child of lab.ts:
//   node delay-router.js --natlab-lab=<id> --owner=<pid> '<config json>'
// Protocol: prints one JSON line {"ready":true} once every TUN exists, then answers
// JSON-line commands on stdin. Exits when stdin closes, so it dies with its owner.
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import koffi from 'koffi';
import { type Impairment, InFlight, impairment } from './impair.js';

export interface LegConfig {
  name: string; // 'server' | 'a' | 'b'
  tun: string; // interface name in the host namespace before lab.ts moves it (<= 15 chars)
  delayMs: number; // one-way delay of this leg
  prefixes: string[]; // CIDRs reachable through this leg
}
export interface RouterConfig {
  hops: number; // TTL decrement per crossing
  legs: LegConfig[];
  impair: Impairment; // per crossing, every packet
  seed: number; // of the impairment's PRNG
}
export type RouterCommand =
  | { id: number; cmd: 'blackhole'; leg: string; on: boolean }
  | { id: number; cmd: 'delay'; leg: string; ms: number }
  | { id: number; cmd: 'impair'; impair: Partial<Impairment> }
  | { id: number; cmd: 'stats' };

// <linux/if_tun.h>
const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int)
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;
const READ_BUF_SIZE = 65536;

interface Leg extends LegConfig {
  fd: number;
  nets: Array<{ net: number; mask: number }>;
  blackholed: boolean;
  dead: boolean;
}

const stats = { forwarded: 0, noRoute: 0, ttlExpired: 0, blackholed: 0, notIpv4: 0, writeErrors: 0 };

function parseCidr(cidr: string): { net: number; mask: number } {
  const [addr, bitsStr] = cidr.split('/');
  const bits = Number(bitsStr ?? 32);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { net: (ipToInt(addr!) & mask) >>> 0, mask };
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

function openTun(name: string): number {
  const libc = koffi.load('libc.so.6');
  const ioctl = libc.func('int ioctl(int fd, unsigned long req, ...)');
  const fd = fs.openSync('/dev/net/tun', 'r+');
  const ifr = Buffer.alloc(IFREQ_SIZE);
  ifr.write(name, 0, IFNAMSIZ - 1, 'latin1');
  ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI, IFNAMSIZ);
  if (ioctl(fd, TUNSETIFF, 'void *', ifr) !== 0) {
    const errno = koffi.errno();
    fs.closeSync(fd);
    throw new Error(`TUNSETIFF ${name} failed, errno ${errno}`);
  }
  return fd;
}

/** Recomputes the IPv4 header checksum in place. */
export function fixIpv4Checksum(pkt: Buffer): void {
  const ihl = (pkt[0]! & 0x0f) * 4;
  pkt.writeUInt16BE(0, 10);
  let sum = 0;
  for (let i = 0; i < ihl; i += 2) sum += pkt.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  pkt.writeUInt16BE(~sum & 0xffff, 10);
}

function main(): void {
  const cfg = JSON.parse(process.argv[process.argv.length - 1]!) as RouterConfig;
  const legs: Leg[] = cfg.legs.map((l) => ({
    ...l,
    fd: openTun(l.tun),
    nets: l.prefixes.map(parseCidr),
    blackholed: false,
    dead: false,
  }));
  const byName = new Map(legs.map((l) => [l.name, l]));

  const route = (dst: number): Leg | undefined => {
    let best: Leg | undefined;
    let bestMask = -1;
    for (const leg of legs)
      for (const n of leg.nets)
        if ((dst & n.mask) >>> 0 === n.net && n.mask >>> 0 > bestMask) {
          best = leg;
          bestMask = n.mask >>> 0;
        }
    return best;
  };

  const deliver = (to: Leg, pkt: Buffer): void => {
    if (to.blackholed || to.dead) return void stats.blackholed++;
    try {
      fs.writeSync(to.fd, pkt);
      stats.forwarded++;
    } catch {
      stats.writeErrors++; // e.g. EIO while the device is down
    }
  };

  const handle = (from: Leg, pkt: Buffer): void => {
    if (pkt.length < 20 || pkt[0]! >> 4 !== 4) return void stats.notIpv4++;
    if (from.blackholed) return void stats.blackholed++;
    const to = route(pkt.readUInt32BE(16));
    if (!to || to === from) return void stats.noRoute++;
    const ttl = pkt[8]!;
    if (ttl <= cfg.hops) return void stats.ttlExpired++;
    pkt[8] = ttl - cfg.hops;
    fixIpv4Checksum(pkt);
    inFlight.send(`${from.name}>${to.name}`, performance.now(), from.delayMs + to.delayMs, { to, pkt });
    arm();
  };

  // Every packet in flight sits in one queue ordered by due time, served by one timer for
  // the earliest. Due times use the real clock: a setTimeout alone can fire early, since
  // Node starts it from the event loop's cached time.
  const inFlight = new InFlight<{ to: Leg; pkt: Buffer }>(impairment(cfg.impair), cfg.seed);
  let timer: NodeJS.Timeout | null = null;
  let timerDue = Infinity;
  const arm = (): void => {
    const min = inFlight.nextDue();
    if (min === Infinity || (timer && timerDue <= min)) return;
    if (timer) clearTimeout(timer);
    timerDue = min;
    timer = setTimeout(flush, Math.max(1, Math.ceil(min - performance.now())));
  };
  const flush = (): void => {
    timer = null;
    timerDue = Infinity;
    for (const { to, pkt } of inFlight.takeDue(performance.now())) deliver(to, pkt);
    arm();
  };

  // Blocking reads run on the libuv thread pool (one in flight per leg; lab.ts sizes the pool).
  const readLoop = (leg: Leg): void => {
    const buf = Buffer.allocUnsafe(READ_BUF_SIZE);
    const next = (): void =>
      fs.read(leg.fd, buf, 0, buf.length, null, (err, n) => {
        if (err) {
          if (err.code === 'EAGAIN' || err.code === 'EINTR') return next();
          leg.dead = true; // device gone (namespace deleted)
          process.stderr.write(`delay-router: leg ${leg.name} read failed: ${err.message}\n`);
          return;
        }
        handle(leg, Buffer.from(buf.subarray(0, n)));
        next();
      });
    next();
  };
  legs.forEach(readLoop);

  const reply = (obj: object): void => void process.stdout.write(JSON.stringify(obj) + '\n');
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let c: RouterCommand;
    try {
      c = JSON.parse(line) as RouterCommand;
    } catch {
      return reply({ error: 'bad json' });
    }
    if (c.cmd === 'stats') return reply({ id: c.id, ok: true, stats: { ...stats, ...inFlight.stats, inFlight: inFlight.size } });
    if (c.cmd === 'impair') {
      try {
        inFlight.setImpairment(impairment({ ...inFlight.impairment, ...c.impair }));
      } catch (e) {
        return reply({ id: c.id, error: (e as Error).message });
      }
      return reply({ id: c.id, ok: true });
    }
    const leg = byName.get(c.leg);
    if (!leg) return reply({ id: c.id, error: `no leg ${c.leg}` });
    if (c.cmd === 'blackhole') leg.blackholed = c.on;
    else if (c.cmd === 'delay') leg.delayMs = c.ms;
    reply({ id: c.id, ok: true });
  });
  rl.on('close', () => process.exit(0));
  reply({ ready: true, tuns: legs.map((l) => l.tun), impair: inFlight.impairment, seed: cfg.seed });
}

if (process.argv.some((a) => a.startsWith('--natlab-lab='))) {
  try {
    main();
  } catch (e) {
    process.stderr.write(`delay-router: ${(e as Error).message}\n`);
    process.exit(1);
  }
}
