/**
 * `pinhole doctor`'s I/O shell: asks the signaling server where its STUN
 * server is (GET /healthz), runs the RFC 5780 tests over UDP sockets and
 * hands the outcomes to the pure `classifyNat` (./nat-behaviour.ts).
 *
 * Three local sockets, so that no test disturbs another's NAT state:
 * - the mapping socket: latency samples and mapping tests I-III (it talks to
 *   the primary and the alternate address), then hairpinning;
 * - the filtering socket: only ever sends to the primary address, so a
 *   response from another IP or port can only get in if the NAT's filter
 *   lets it (RFC 5780 section 4.5 asks for this separation);
 * - the hairpin socket: learns its own mapping, then it and the mapping
 *   socket send to each other's public address.
 * The filtering chain runs in parallel with the mapping chain and the
 * hairpinning test that follows it; the run takes about one `timeoutMs` plus
 * a few round trips when some tests get no answer, as negative filtering
 * results do.
 *
 * Only the server's own addresses (from the URL and its OTHER-ADDRESS) and
 * our own public addresses are ever sent to.
 */
import dgram from 'node:dgram';
import dns from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type StunLib from 'stun';
import { PinholeError } from '../protocol/index.js';
import { classifyNat, type Endpoint, formatEndpoint, type NatObservations, type NatReport, type Probe, sameEndpoint, validOther } from './nat-behaviour.js';

/**
 * How long one test waits for its answer, ms (retransmits included), and the
 * limit for the /healthz request. 1.5 s fits four transmissions (see
 * STUN_RTO_MS) and answers over a 500 ms round trip, while a run with
 * negative filtering results (which must wait it out) stays around 2 s.
 */
export const DEFAULT_DOCTOR_TIMEOUT_MS = 1500;

/**
 * First retransmission interval of a STUN request, ms, doubled after each
 * one (RFC 5389 section 7.2.1 style; its 500 ms default would fit only two
 * tries in the default timeout). One lost datagram must not read as "UDP
 * blocked" or as a filtering result: sends go out at 0, 200, 600, 1400 ms.
 */
export const STUN_RTO_MS = 200;

/** Plain binding requests timed for the latency line; the lowest is shown (as netcheck does), so one slow sample does not count. */
export const LATENCY_SAMPLES = 3;

/** STUN port assumed when a server's /healthz says `stun: true` but has no `stunPort` (older servers; the IANA STUN port). */
export const FALLBACK_STUN_PORT = 3478;

// Loaded by runDoctor, not at the top: the controller's other commands import this module and should not pay for `stun`.
let stun: typeof StunLib;
let C: typeof StunLib.constants;

/** CHANGE-REQUEST flags (RFC 5780 section 7.2); the same values as signaling/stun.ts's. */
const CHANGE_IP = 0x04;
const CHANGE_PORT = 0x02;

/** Options of `runDoctor`. */
export interface DoctorOptions {
  /** The signaling server's URL, ws:// or wss://. */
  server: string;
  /** Per-test and HTTP timeout, ms. Default DEFAULT_DOCTOR_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** One probe as shown in `--json` output. */
export interface ProbeSummary {
  to?: string;
  result: Probe['kind'];
  mapped?: string;
  from?: string;
  rttMs?: number;
  code?: number;
}

/** What `runDoctor` returns: the classification plus what was asked and seen. */
export interface DoctorReport extends NatReport {
  server: string;
  /** The primary STUN address tested, "udp://IP:PORT", or null when the server runs none. */
  stun: string | null;
  /** The alternate STUN address (OTHER-ADDRESS, or the server's /healthz), or null. */
  stunAlt: string | null;
  /** The mapping socket's local address, "IP:PORT", or null. */
  localAddress: string | null;
  /** The raw outcome of every test. */
  tests: {
    mapping: { t1: ProbeSummary; t2: ProbeSummary; t3: ProbeSummary };
    filtering: { t1: ProbeSummary; t2: ProbeSummary; t3: ProbeSummary };
    hairpin: NatObservations['hairpin'];
    latencySamplesMs: number[];
  };
  /** Wall time of the whole run, ms. */
  durationMs: number;
}

/** The STUN part of a server's /healthz answer. */
export interface ServerStunInfo {
  /** 0 = the server runs no STUN. */
  stunPort: number;
  stunAltHost: string | null;
  stunAltPort: number | null;
}

/** Runs every test and classifies them. Throws PinholeError('server-unreachable') when /healthz cannot be read. */
export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  const t0 = performance.now();
  stun ??= (await import('stun')).default;
  C = stun.constants;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DOCTOR_TIMEOUT_MS;
  const url = parseServerUrl(opts.server);
  const info = await fetchStunInfo(url, timeoutMs);
  const skipped: Probe = { kind: 'skipped' };

  if (info.stunPort === 0) {
    const obs: NatObservations = {
      stunAvailable: false,
      local: null,
      mapping: { t1: skipped, t2: skipped, t3: skipped },
      filtering: { t1: skipped, t2: skipped, t3: skipped },
      hairpin: 'skipped',
      latencySamplesMs: [],
    };
    return finish(opts.server, obs, null, null, null, t0);
  }

  const primary: Endpoint = { address: await resolveHost(url.hostname), port: info.stunPort };
  const family = net.isIPv6(primary.address) ? 'udp6' : 'udp4';
  const sockets = await Promise.all([StunSocket.open(family), StunSocket.open(family), StunSocket.open(family)]);
  const [sMap, sFilt, sHp] = sockets;
  try {
    const localIp = await localAddressToward(family, primary);
    const local: Endpoint | null = localIp ? { address: localIp, port: sMap.port } : null;

    const mappingChain = async () => {
      const t1 = await sMap.transact(primary, 0, timeoutMs);
      const samples: number[] = t1.kind === 'answer' ? [t1.rttMs] : [];
      let t2: Probe = skipped;
      let t3: Probe = skipped;
      if (t1.kind === 'answer') {
        for (let i = 1; i < LATENCY_SAMPLES; i++) {
          const s = await sMap.transact(primary, 0, timeoutMs);
          if (s.kind === 'answer') samples.push(s.rttMs);
        }
        if (t1.other && validOther(t1.other, primary)) {
          t2 = await sMap.transact({ address: t1.other.address, port: primary.port }, 0, timeoutMs);
          if (t2.kind === 'answer' && !sameEndpoint(t2.mapped, t1.mapped)) t3 = await sMap.transact(t1.other, 0, timeoutMs);
        }
      }
      return { t1, t2, t3, samples };
    };

    const filteringChain = async () => {
      const t1 = await sFilt.transact(primary, 0, timeoutMs);
      if (t1.kind !== 'answer' || !t1.other || !validOther(t1.other, primary)) return { t1, t2: skipped, t3: skipped };
      // Both only send to the primary address, so running them together opens no extra filter.
      const [t2, t3] = await Promise.all([sFilt.transact(primary, CHANGE_IP | CHANGE_PORT, timeoutMs), sFilt.transact(primary, CHANGE_PORT, timeoutMs)]);
      return { t1, t2, t3 };
    };

    const mappingP = mappingChain();
    const hp1P = sHp.transact(primary, 0, timeoutMs);
    // Hairpinning waits for the mapping tests (it sends from the mapping socket), not for filtering.
    const hairpinP = (async (): Promise<NatObservations['hairpin']> => {
      const [m, hp1] = await Promise.all([mappingP, hp1P]);
      if (m.t1.kind !== 'answer' || hp1.kind !== 'answer') return 'skipped';
      return (await hairpinTest(sMap, m.t1.mapped, sHp, hp1.mapped, timeoutMs)) ? 'received' : 'not-received';
    })();
    const [mapping, filtering, hairpin] = await Promise.all([mappingP, filteringChain(), hairpinP]);

    const obs: NatObservations = {
      stunAvailable: true,
      local,
      mapping: { t1: mapping.t1, t2: mapping.t2, t3: mapping.t3 },
      filtering,
      hairpin,
      latencySamplesMs: mapping.samples,
    };
    const firstAnswer = [mapping.t1, filtering.t1].find((p) => p.kind === 'answer');
    const announcedAlt = firstAnswer?.kind === 'answer' && firstAnswer.other ? firstAnswer.other : null;
    const healthAlt = info.stunAltHost && info.stunAltPort ? { address: info.stunAltHost, port: info.stunAltPort } : null;
    const alt = announcedAlt ?? healthAlt;
    return finish(opts.server, obs, primary, alt, local, t0);
  } finally {
    await Promise.all(sockets.map((s) => s.close()));
  }
}

function finish(server: string, obs: NatObservations, primary: Endpoint | null, alt: Endpoint | null, local: Endpoint | null, t0: number): DoctorReport {
  const report = classifyNat(obs);
  return {
    server,
    stun: primary ? `udp://${formatEndpoint(primary)}` : null,
    stunAlt: alt ? `udp://${formatEndpoint(alt)}` : null,
    localAddress: local ? formatEndpoint(local) : null,
    ...report,
    tests: {
      mapping: { t1: summarize(obs.mapping.t1), t2: summarize(obs.mapping.t2), t3: summarize(obs.mapping.t3) },
      filtering: { t1: summarize(obs.filtering.t1), t2: summarize(obs.filtering.t2), t3: summarize(obs.filtering.t3) },
      hairpin: obs.hairpin,
      latencySamplesMs: obs.latencySamplesMs.map((x) => Math.round(x * 10) / 10),
    },
    durationMs: Math.round(performance.now() - t0),
  };
}

function summarize(p: Probe): ProbeSummary {
  switch (p.kind) {
    case 'skipped':
      return { result: 'skipped' };
    case 'timeout':
      return { to: formatEndpoint(p.to), result: 'timeout' };
    case 'error':
      return { to: formatEndpoint(p.to), result: 'error', code: p.code };
    case 'answer':
      return {
        to: formatEndpoint(p.to),
        result: 'answer',
        from: formatEndpoint(p.from),
        mapped: formatEndpoint(p.mapped),
        rttMs: Math.round(p.rttMs * 10) / 10,
      };
  }
}

function parseServerUrl(server: string): URL {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new PinholeError('usage', `--server ${server} is not a URL; use ws://host:port`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new PinholeError('usage', `--server must be ws:// or wss://, not ${u.protocol}`);
  return u;
}

/** GET /healthz on the server's HTTP port and reads the STUN fields. */
export async function fetchStunInfo(server: URL, timeoutMs: number): Promise<ServerStunInfo> {
  const target = new URL('/healthz', server);
  target.protocol = server.protocol === 'wss:' ? 'https:' : 'http:';
  const where = `${server.host}`;
  const body = await new Promise<string>((resolve, reject) => {
    const get = target.protocol === 'https:' ? https.get : http.get;
    // agent: false: no keep-alive socket left behind to hold an embedding process open.
    const req = get(target, { headers: { accept: 'application/json' }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
        if (text.length > 64 * 1024) req.destroy(new Error('answer too large'));
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', reject);
    req.on('close', () => clearTimeout(timer));
  }).catch((e: Error & { code?: string }) => {
    throw new PinholeError('server-unreachable', `cannot reach the server at ${where}: ${e.code ?? e.message}`);
  });
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(body) as Record<string, unknown>;
  } catch {
    throw new PinholeError('server-unreachable', `${where} answered /healthz with something other than JSON: not a pinhole server?`);
  }
  if (j === null || typeof j !== 'object' || j.ok !== true)
    throw new PinholeError('server-unreachable', `${where} did not answer /healthz like a pinhole server`);
  const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;
  const stunPort = isPort(j.stunPort) ? j.stunPort : j.stun === true ? FALLBACK_STUN_PORT : 0;
  const stunAltHost = typeof j.stunAltHost === 'string' && net.isIP(j.stunAltHost) ? j.stunAltHost : null;
  const stunAltPort = isPort(j.stunAltPort) && j.stunAltPort > 0 ? j.stunAltPort : null;
  return { stunPort, stunAltHost, stunAltPort };
}

async function resolveHost(hostname: string): Promise<string> {
  const h = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (net.isIP(h)) return h;
  try {
    return (await dns.lookup(h)).address;
  } catch (e) {
    throw new PinholeError('server-unreachable', `cannot resolve ${h}: ${(e as { code?: string }).code ?? 'lookup failed'}`);
  }
}

/** The source IP the kernel picks towards `to` (a connected UDP socket sends nothing). Null if it cannot tell. */
async function localAddressToward(type: 'udp4' | 'udp6', to: Endpoint): Promise<string | null> {
  const s = dgram.createSocket({ type });
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.connect(to.port, to.address, () => resolve());
    });
    return s.address().address;
  } catch {
    return null;
  } finally {
    s.close();
  }
}

/**
 * Hairpinning: each socket sends a Binding request to the other's public
 * address. A request arriving at either one means the NAT hairpins. Both
 * directions are tried because a filtering NAT may drop one of them.
 */
async function hairpinTest(a: StunSocket, aPublic: Endpoint, b: StunSocket, bPublic: Endpoint, timeoutMs: number): Promise<boolean> {
  const ab = stun.createMessage(C.STUN_BINDING_REQUEST);
  const ba = stun.createMessage(C.STUN_BINDING_REQUEST);
  const ids = new Set([ab.transactionId.toString('hex'), ba.transactionId.toString('hex')]);
  return new Promise<boolean>((resolve) => {
    let done = false;
    const timers: NodeJS.Timeout[] = [];
    const end = (ok: boolean) => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      a.onRequest = b.onRequest = null;
      resolve(ok);
    };
    a.onRequest = b.onRequest = (id) => {
      if (ids.has(id)) end(true);
    };
    for (const at of retransmitSchedule(timeoutMs)) {
      timers.push(
        setTimeout(() => {
          a.sendRaw(ab.toBuffer(), bPublic);
          b.sendRaw(ba.toBuffer(), aPublic);
        }, at),
      );
    }
    timers.push(setTimeout(() => end(false), timeoutMs));
  });
}

/** Send times (ms after the start) of a request and its retransmissions within `timeoutMs`. */
export function retransmitSchedule(timeoutMs: number): number[] {
  const at: number[] = [];
  for (let t = 0, rto = STUN_RTO_MS; t < timeoutMs; t += rto, rto *= 2) at.push(t);
  return at;
}

interface Pending {
  to: Endpoint;
  sentAt: number;
  resolve: (p: Probe) => void;
}

/** One UDP socket doing STUN client transactions, matched by transaction id. */
class StunSocket {
  private readonly pending = new Map<string, Pending>();
  /** Called with the transaction id of every Binding request received (hairpinning). */
  onRequest: ((id: string) => void) | null = null;

  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (buf, rinfo) => this.receive(buf, rinfo));
    socket.on('error', () => {}); // send errors surface as timeouts
  }

  static async open(type: 'udp4' | 'udp6'): Promise<StunSocket> {
    const socket = dgram.createSocket({ type });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new StunSocket(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  sendRaw(buf: Buffer, to: Endpoint): void {
    this.socket.send(buf, to.port, to.address, () => {});
  }

  /** Sends a Binding request (with CHANGE-REQUEST when flags != 0) and retransmits until answered or `timeoutMs`. */
  transact(to: Endpoint, changeFlags: number, timeoutMs: number): Promise<Probe> {
    const msg = stun.createMessage(C.STUN_BINDING_REQUEST);
    if (changeFlags) msg.addAttribute(C.STUN_ATTR_CHANGE_REQUEST, changeFlags);
    const buf = msg.toBuffer();
    const id = msg.transactionId.toString('hex');
    return new Promise<Probe>((resolve) => {
      const timers: NodeJS.Timeout[] = [];
      const entry: Pending = {
        to,
        sentAt: performance.now(),
        resolve: (p) => {
          for (const t of timers) clearTimeout(t);
          this.pending.delete(id);
          resolve(p);
        },
      };
      this.pending.set(id, entry);
      for (const at of retransmitSchedule(timeoutMs)) {
        timers.push(
          setTimeout(() => {
            // RTT is measured from the latest transmission (Karn: the answer cannot be told apart).
            entry.sentAt = performance.now();
            this.sendRaw(buf, to);
          }, at),
        );
      }
      timers.push(setTimeout(() => entry.resolve({ kind: 'timeout', to }), timeoutMs));
    });
  }

  private receive(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    let msg: StunLib.StunResponse;
    try {
      msg = stun.decode(buf);
    } catch {
      return;
    }
    const id = msg.transactionId.toString('hex');
    if (msg.type === C.STUN_BINDING_REQUEST) {
      this.onRequest?.(id);
      return;
    }
    const p = this.pending.get(id);
    if (!p) return;
    if (msg.type === C.STUN_BINDING_ERROR_RESPONSE) {
      p.resolve({ kind: 'error', to: p.to, code: errorCode(buf) });
      return;
    }
    if (msg.type !== C.STUN_BINDING_RESPONSE) return;
    const mapped = msg.getXorAddress() ?? msg.getAddress();
    if (!mapped) return;
    const otherAttr = msg.getAttribute(C.STUN_ATTR_OTHER_ADDRESS)?.value as Endpoint | undefined;
    p.resolve({
      kind: 'answer',
      to: p.to,
      from: { address: rinfo.address, port: rinfo.port },
      mapped: { address: mapped.address, port: mapped.port },
      other: otherAttr ? { address: otherAttr.address, port: otherAttr.port } : null,
      rttMs: performance.now() - p.sentAt,
    });
  }

  close(): Promise<void> {
    for (const p of [...this.pending.values()]) p.resolve({ kind: 'timeout', to: p.to });
    return new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

/**
 * ERROR-CODE (0x0009) of a raw STUN message, read by hand: the `stun`
 * package's decoder misreads the class/number split. 0 when absent.
 */
export function errorCode(buf: Buffer): number {
  let off = 20;
  while (off + 4 <= buf.length) {
    const type = buf.readUInt16BE(off);
    const len = buf.readUInt16BE(off + 2);
    if (off + 4 + len > buf.length) break;
    if (type === 0x0009 && len >= 4) return (buf[off + 6]! & 0x07) * 100 + buf[off + 7]!;
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return 0;
}
