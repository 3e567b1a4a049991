/**
 * STUN binding server (RFC 5389) on UDP, built on the `stun` package.
 *
 * A peer sends a Binding request; we answer with a Binding success response
 * that echoes its transaction id and carries XOR-MAPPED-ADDRESS = the source
 * address and port we saw. That is all ICE needs to learn a server-reflexive
 * candidate.
 *
 * Deliberate choices:
 * - Responses are kept small (XOR-MAPPED-ADDRESS, plus FINGERPRINT only when
 *   the request had one; no SOFTWARE, no MAPPED-ADDRESS) so that a spoofed
 *   request gains an attacker almost nothing as a reflector.
 * - RFC 3489 (legacy, no magic cookie) requests and requests for other
 *   methods are dropped silently: they would need a different reply format.
 * - A request with CHANGE-REQUEST (RFC 5780 NAT behaviour discovery) gets
 *   420 Unknown Attribute, as RFC 5780 asks of a server without an alternate
 *   address. To add RFC 5780 later: bind a second socket/address, answer
 *   CHANGE-REQUEST from it, and add OTHER-ADDRESS and RESPONSE-ORIGIN in
 *   `bindingResponse` (the `stun` package encodes both attributes).
 * - Malformed datagrams and socket errors are counted and logged, never thrown.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import stun from 'stun';

/** Options of `startStunServer`. */
export interface StunServerOptions {
  /** Address to bind, e.g. '0.0.0.0' or '127.0.0.1'. An IPv6 address binds a udp6 socket. */
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Receives one event per notable occurrence (never packet contents). Default: none. */
  log?: (event: string, fields?: Record<string, string | number | boolean>) => void;
}

/** Counters of a running STUN server. */
export interface StunStats {
  /** Binding success responses sent. */
  answered: number;
  /** 420 error responses sent (CHANGE-REQUEST). */
  refused: number;
  /** Datagrams dropped: undecodable, legacy, not a Binding request. */
  dropped: number;
}

/** A running STUN server. */
export interface StunServerHandle {
  host: string;
  /** The real bound port. */
  port: number;
  stats(): StunStats;
  /** Closes the socket; resolves once it is closed. Safe to call twice. */
  close(): Promise<void>;
}

const C = stun.constants;

/** Builds the reply to one Binding request, or `drop` to ignore it. Exported for tests. */
export function bindingResponse(req: stun.StunResponse, rinfo: { address: string; port: number }): stun.StunRequest | 'drop' {
  if (req.type !== C.STUN_BINDING_REQUEST || req.isLegacy()) return 'drop';
  if (!net.isIP(rinfo.address) || rinfo.port <= 0) return 'drop';
  if (req.hasAttribute(C.STUN_ATTR_CHANGE_REQUEST)) {
    // RFC 5780 section 7.2: no alternate address, so 420 naming CHANGE-REQUEST.
    const err = stun.createMessage(C.STUN_BINDING_ERROR_RESPONSE, req.transactionId);
    err.addError(C.STUN_CODE_UNKNOWN_ATTRIBUTE);
    err.addUnknownAttributes([C.STUN_ATTR_CHANGE_REQUEST]);
    if (req.hasAttribute(C.STUN_ATTR_FINGERPRINT)) err.addFingerprint();
    return err;
  }
  const res = stun.createMessage(C.STUN_BINDING_RESPONSE, req.transactionId);
  res.addXorAddress(rinfo.address, rinfo.port);
  // RFC 5780 hook: OTHER-ADDRESS and RESPONSE-ORIGIN go here.
  if (req.hasAttribute(C.STUN_ATTR_FINGERPRINT)) res.addFingerprint();
  return res;
}

/** Starts a STUN binding server; resolves once the socket is bound. */
export async function startStunServer(opts: StunServerOptions): Promise<StunServerHandle> {
  const log = opts.log ?? (() => {});
  const type = net.isIPv6(opts.host) ? 'udp6' : 'udp4';
  const socket = dgram.createSocket({ type });
  const server = stun.createServer({ type, socket });
  const counts: StunStats = { answered: 0, refused: 0, dropped: 0 };

  // The package emits 'error' for undecodable datagrams and for error
  // responses it receives; without a listener EventEmitter would throw.
  server.on('error', () => {
    counts.dropped++;
  });
  server.on('bindingRequest', (req, rinfo) => {
    try {
      const reply = bindingResponse(req, rinfo);
      if (reply === 'drop') {
        counts.dropped++;
        return;
      }
      if (reply.type === C.STUN_BINDING_RESPONSE) counts.answered++;
      else counts.refused++;
      server.send(reply, rinfo.port, rinfo.address, (err) => {
        if (err) log('stun-error', { op: 'send', reason: errCode(err) });
      });
    } catch (e) {
      counts.dropped++;
      log('stun-error', { op: 'reply', reason: errCode(e) });
    }
  });
  // Our own socket: the package does not forward its errors, so we must.
  socket.on('error', (e) => log('stun-error', { op: 'socket', reason: errCode(e) }));

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    socket.once('error', onError);
    socket.bind(opts.port, opts.host, () => {
      socket.off('error', onError);
      resolve();
    });
  });

  const port = socket.address().port;
  let closing: Promise<void> | null = null;
  return {
    host: opts.host,
    port,
    stats: () => ({ ...counts }),
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close();
        try {
          socket.close(() => resolve());
        } catch {
          resolve(); // already closed
        }
      });
      return closing;
    },
  };
}

function errCode(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string') return (e as { code: string }).code;
  return e instanceof Error ? e.name : 'unknown';
}
