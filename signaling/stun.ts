/**
 * STUN binding server (RFC 5389) on UDP, built on the `stun` package, with
 * optional NAT behaviour discovery (RFC 5780) when given a second address.
 *
 * A peer sends a Binding request; we answer with a Binding success response
 * that echoes its transaction id and carries XOR-MAPPED-ADDRESS = the source
 * address and port we saw. That is all ICE needs to learn a server-reflexive
 * candidate.
 *
 * RFC 5780 (only with `altHost`): the server listens on four sockets, the
 * grid {primary IP, alternate IP} x {primary port, alternate port}, where the
 * alternate port is the primary port + 1. Every success response then also
 * carries OTHER-ADDRESS (the socket that differs in both IP and port from the
 * one the request arrived on: for a request to the primary socket, the
 * alternate IP and port; RFC 5780 section 6.1, table 1), RESPONSE-ORIGIN (the
 * socket the response leaves from) and MAPPED-ADDRESS (section 6.1 requires
 * it in this usage). A CHANGE-REQUEST attribute picks that socket: "change IP" (0x4)
 * flips the IP, "change port" (0x2) flips the port. `pinhole doctor` uses
 * this to classify NAT mapping and filtering (doctor/netcheck.ts).
 *
 * The `stun` package already knows OTHER-ADDRESS, RESPONSE-ORIGIN (encoded
 * as plain address attributes) and CHANGE-REQUEST (a uint32), so nothing is
 * built beside it: one package StunServer per socket decodes requests, and
 * the reply is sent through the StunServer of the socket the flags name.
 *
 * Deliberate choices:
 * - Responses are kept small (XOR-MAPPED-ADDRESS, the three RFC 5780
 *   addresses only when enabled, plus FINGERPRINT only when the request had
 *   one; no SOFTWARE, no MAPPED-ADDRESS otherwise) so that a spoofed request gains an
 *   attacker almost nothing as a reflector. A changed response is the same
 *   size as an unchanged one, and goes to the same requester.
 * - RFC 3489 (legacy, no magic cookie) requests and requests for other
 *   methods are dropped silently: they would need a different reply format.
 * - Without an alternate address, a request with CHANGE-REQUEST gets 420
 *   Unknown Attribute naming it (RFC 5780 section 6.1 asks this of a server
 *   that cannot honour it), and responses carry no OTHER-ADDRESS: a client
 *   then knows discovery is unavailable here.
 * - RESPONSE-PORT and PADDING (RFC 5780, optional) are not implemented.
 * - Malformed datagrams and socket errors are counted and logged, never thrown.
 */
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import net from 'node:net';
import type StunLib from 'stun';

// `stun` is loaded on first use: every CLI command imports this module (through the
// server's defaults), and only a running server or a test needs it.
const require = createRequire(import.meta.url);
let lib: typeof StunLib | undefined;
const stunLib = (): typeof StunLib => (lib ??= require('stun') as typeof StunLib);

/** CHANGE-REQUEST flag (RFC 5780 section 7.2): answer from the other IP address. */
export const CHANGE_IP = 0x04;
/** CHANGE-REQUEST flag (RFC 5780 section 7.2): answer from the other port. */
export const CHANGE_PORT = 0x02;

/**
 * Tries at finding a primary port P (with `port: 0` and an alternate host)
 * such that P and P + 1 are free on both addresses. Each try binds a fresh
 * random port; a clash needs another process to hold P + 1, so a handful of
 * tries is plenty and a bounded loop cannot spin forever.
 */
export const STUN_PORT_PICK_ATTEMPTS = 20;

/** Options of `startStunServer`. */
export interface StunServerOptions {
  /** Address to bind, e.g. '0.0.0.0' or '127.0.0.1'. An IPv6 address binds a udp6 socket. */
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  /**
   * A second IP address of this machine, same family as `host`. Enables RFC
   * 5780: four sockets (host and altHost, each on port and port + 1).
   * `host` must then be a specific IP address, not a wildcard. Default: none.
   */
  altHost?: string | null;
  /** Receives one event per notable occurrence (never packet contents). Default: none. */
  log?: (event: string, fields?: Record<string, string | number | boolean>) => void;
}

/** Counters of a running STUN server. */
export interface StunStats {
  /** Binding success responses sent. */
  answered: number;
  /** Of those, responses sent from another socket because of CHANGE-REQUEST. */
  changed: number;
  /** 420 error responses sent (CHANGE-REQUEST without an alternate address). */
  refused: number;
  /** Datagrams dropped: undecodable, legacy, not a Binding request. */
  dropped: number;
}

/** An IP address and port. */
export interface StunEndpoint {
  address: string;
  port: number;
}

/** A running STUN server. */
export interface StunServerHandle {
  host: string;
  /** The real bound (primary) port. */
  port: number;
  /** The alternate address and port (RFC 5780), or null without `altHost`. */
  alt: StunEndpoint | null;
  stats(): StunStats;
  /** Closes the sockets; resolves once they are closed. Safe to call twice. */
  close(): Promise<void>;
}

/** Index of a socket in the RFC 5780 grid: [ip, port], 0 = primary, 1 = alternate. */
export type SocketIndex = readonly [ip: 0 | 1, port: 0 | 1];

/** Where a request arrived, when the server has the RFC 5780 grid. */
export interface Rfc5780Context {
  /** The four sockets' addresses: grid[ip][port], 0 = primary, 1 = alternate. */
  grid: readonly [readonly [StunEndpoint, StunEndpoint], readonly [StunEndpoint, StunEndpoint]];
  /** The socket the request arrived on. */
  at: SocketIndex;
}

/** A reply and the socket to send it from. */
export interface BindingReply {
  message: StunLib.StunRequest;
  /** The grid socket to send from; [0, 0] (the only socket) without RFC 5780. */
  from: SocketIndex;
}

/**
 * Builds the reply to one Binding request, or `drop` to ignore it. Pure
 * (exported for tests): `rfc5780` null means a single-socket server.
 */
export function bindingResponse(
  req: StunLib.StunResponse,
  rinfo: { address: string; port: number },
  rfc5780: Rfc5780Context | null = null,
): BindingReply | 'drop' {
  const C = stunLib().constants;
  if (req.type !== C.STUN_BINDING_REQUEST || req.isLegacy()) return 'drop';
  if (!net.isIP(rinfo.address) || rinfo.port <= 0) return 'drop';
  const change = req.getAttribute(C.STUN_ATTR_CHANGE_REQUEST);
  if (change && !rfc5780) {
    // RFC 5780 section 6.1: no alternate address, so 420 naming CHANGE-REQUEST.
    const err = stunLib().createMessage(C.STUN_BINDING_ERROR_RESPONSE, req.transactionId);
    err.addError(C.STUN_CODE_UNKNOWN_ATTRIBUTE);
    err.addUnknownAttributes([C.STUN_ATTR_CHANGE_REQUEST]);
    if (req.hasAttribute(C.STUN_ATTR_FINGERPRINT)) err.addFingerprint();
    return { message: err, from: [0, 0] };
  }
  const res = stunLib().createMessage(C.STUN_BINDING_RESPONSE, req.transactionId);
  res.addXorAddress(rinfo.address, rinfo.port);
  let from: SocketIndex = [0, 0];
  if (rfc5780) {
    const flags = change ? Number(change.value) : 0;
    const [ip, port] = rfc5780.at;
    from = [(flags & CHANGE_IP ? 1 - ip : ip) as 0 | 1, (flags & CHANGE_PORT ? 1 - port : port) as 0 | 1];
    // OTHER-ADDRESS: where a response would come from with both flags set.
    const other = rfc5780.grid[1 - ip]![1 - port]!;
    const origin = rfc5780.grid[from[0]][from[1]];
    res.addAttribute(C.STUN_ATTR_OTHER_ADDRESS, other.address, other.port);
    res.addAttribute(C.STUN_ATTR_RESPONSE_ORIGIN, origin.address, origin.port);
    // RFC 5780 section 6.1: this usage MUST carry MAPPED-ADDRESS as well (for older clients).
    res.addAddress(rinfo.address, rinfo.port);
  }
  if (req.hasAttribute(C.STUN_ATTR_FINGERPRINT)) res.addFingerprint();
  return { message: res, from };
}

/** Checks `host`/`altHost` for RFC 5780; returns a reason, or null when fine. */
export function altHostProblem(host: string, altHost: string): string | null {
  if (!net.isIP(altHost)) return `the STUN alternate host must be an IP address, got "${altHost}"`;
  if (!net.isIP(host)) return `with a STUN alternate host, --host must be an IP address (the primary), got "${host}"`;
  if (isUnspecified(host)) return `with a STUN alternate host, --host must be a specific address (the primary IP), not ${host}`;
  if (isUnspecified(altHost)) return `the STUN alternate host must be a specific address, not ${altHost}`;
  if (net.isIPv4(host) !== net.isIPv4(altHost)) return 'the STUN alternate host must be of the same family (IPv4/IPv6) as --host';
  if (normalizeIp(host) === normalizeIp(altHost)) return 'the STUN alternate host must differ from --host';
  return null;
}

/** Starts a STUN binding server; resolves once every socket is bound. */
export async function startStunServer(opts: StunServerOptions): Promise<StunServerHandle> {
  const C = stunLib().constants;
  const log = opts.log ?? (() => {});
  const type = net.isIPv6(opts.host) ? 'udp6' : 'udp4';
  const counts: StunStats = { answered: 0, changed: 0, refused: 0, dropped: 0 };
  const altHost = opts.altHost ?? null;
  if (altHost !== null) {
    const problem = altHostProblem(opts.host, altHost);
    if (problem) throw new Error(problem);
  }

  // sockets[ip][port]; without altHost only [0][0] exists.
  const sockets = altHost === null ? [[await bindSocket(type, opts.host, opts.port)]] : await bindGrid(type, opts.host, altHost, opts.port);
  const port = sockets[0]![0]!.address().port;
  const grid: Rfc5780Context['grid'] | null =
    altHost === null
      ? null
      : [
          [
            { address: opts.host, port },
            { address: opts.host, port: port + 1 },
          ],
          [
            { address: altHost, port },
            { address: altHost, port: port + 1 },
          ],
        ];

  const servers: StunLib.StunServer[][] = sockets.map((row) => row.map((socket) => stunLib().createServer({ type, socket })));
  sockets.forEach((row, ip) =>
    row.forEach((socket, p) => {
      const server = servers[ip]![p]!;
      const at: SocketIndex = [ip as 0 | 1, p as 0 | 1];
      // The package emits 'error' for undecodable datagrams and for error
      // responses it receives; without a listener EventEmitter would throw.
      server.on('error', () => {
        counts.dropped++;
      });
      server.on('bindingRequest', (req, rinfo) => {
        try {
          const reply = bindingResponse(req, rinfo, grid ? { grid, at } : null);
          if (reply === 'drop') {
            counts.dropped++;
            return;
          }
          if (reply.message.type === C.STUN_BINDING_RESPONSE) {
            counts.answered++;
            if (reply.from[0] !== at[0] || reply.from[1] !== at[1]) counts.changed++;
          } else counts.refused++;
          servers[reply.from[0]]![reply.from[1]]!.send(reply.message, rinfo.port, rinfo.address, (err) => {
            if (err) log('stun-error', { op: 'send', reason: errCode(err) });
          });
        } catch (e) {
          counts.dropped++;
          log('stun-error', { op: 'reply', reason: errCode(e) });
        }
      });
      // Our own socket: the package does not forward its errors, so we must.
      socket.on('error', (e) => log('stun-error', { op: 'socket', reason: errCode(e) }));
    }),
  );

  let closing: Promise<void> | null = null;
  return {
    host: opts.host,
    port,
    alt: altHost === null ? null : { address: altHost, port: port + 1 },
    stats: () => ({ ...counts }),
    close() {
      closing ??= Promise.all(
        sockets.flat().map((socket, i) => {
          servers.flat()[i]!.close();
          return closeSocket(socket);
        }),
      ).then(() => undefined);
      return closing;
    },
  };
}

/** Binds one UDP socket; rejects with the bind error (e.g. EADDRINUSE). */
function bindSocket(type: 'udp4' | 'udp6', host: string, port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type });
  return new Promise<dgram.Socket>((resolve, reject) => {
    const onError = (e: Error) => {
      closeSocket(socket).finally(() => reject(e));
    };
    socket.once('error', onError);
    socket.bind(port, host, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * Binds the four RFC 5780 sockets: [host, altHost] x [P, P + 1]. With port 0,
 * P is a free port for which P + 1 is free too, on both addresses.
 */
async function bindGrid(type: 'udp4' | 'udp6', host: string, altHost: string, port: number): Promise<dgram.Socket[][]> {
  if (port === 65535) throw new Error('the STUN port must leave room for the alternate port (port + 1): use 65534 or less');
  const attempts = port === 0 ? STUN_PORT_PICK_ATTEMPTS : 1;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    const bound: dgram.Socket[] = [];
    try {
      const pp = await bindSocket(type, host, port);
      bound.push(pp);
      const p = pp.address().port;
      if (p === 65535) throw Object.assign(new Error('no room for port + 1'), { code: 'EADDRINUSE' });
      const pa = await bindSocket(type, host, p + 1);
      bound.push(pa);
      const ap = await bindSocket(type, altHost, p);
      bound.push(ap);
      const aa = await bindSocket(type, altHost, p + 1);
      bound.push(aa);
      return [
        [pp, pa],
        [ap, aa],
      ];
    } catch (e) {
      last = e;
      await Promise.all(bound.map(closeSocket));
      if (errCode(e) !== 'EADDRINUSE') throw e;
    }
  }
  throw last;
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

function isUnspecified(ip: string): boolean {
  return ip === '0.0.0.0' || normalizeIp(ip) === '::';
}

function normalizeIp(ip: string): string {
  if (!net.isIPv6(ip)) return ip;
  // Canonical form via the URL parser: [0:0::1] and [::1] compare equal.
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

function errCode(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string') return (e as { code: string }).code;
  return e instanceof Error ? e.name : 'unknown';
}
