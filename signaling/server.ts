/**
 * The signaling server's I/O shell: HTTP (/healthz), WebSocket signaling and
 * the STUN binding server. All decisions live in the pure Router
 * (./router.ts); this file only turns socket events into router inputs and
 * router actions into socket operations and log lines.
 *
 * Logs: one JSON object per line through `cfg.log`. The first line is always
 *   {"event":"listening","ws":"ws://HOST:PORT","http":"http://HOST:PORT/healthz","metrics":"http://HOST:PORT/metrics","stun":"udp://HOST:PORT"}
 * with the real bound ports ("stun": null when STUN is off; "metrics" on the
 * metrics listener when there is one; "node": the cluster node id when clustered), plus
 * "stunAlt":"udp://ALT:PORT+1" when an alternate STUN address is set. No line
 * ever carries a room name, a session id, relay data or a message body.
 */

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { nanoid } from 'nanoid';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { CLOSE_GOING_AWAY, CLOSE_LEAVE, encode, HELLO_NONCE_BYTES, MAX_SIGNAL_BYTES, PinholeError, parseClientMessage } from '../protocol/index.js';
import { ClusterNode, type ClusterStats } from './cluster.js';
import type { ServerMetrics } from './metrics.js';
import { type AllowedOrigins, checkOrigin, parseAllowedOrigins } from './origin.js';
import { loadPage, PAGE_DIR, servePage } from './page.js';
import { clientAddress, isTrustedProxy, trustedProxySet } from './proxy.js';
import { type Action, ADMIT_TIMEOUT_MS, addressKey, type ConnId, DEFAULT_ROUTER_LIMITS, Router, type RouterLimits, type RouterStats } from './router.js';
import { altHostProblem, type StunEndpoint, type StunServerHandle, type StunStats, startStunServer } from './stun.js';

/** Default WebSocket/HTTP port. */
export const DEFAULT_SIGNAL_PORT = 8080;

/** Default STUN port (the IANA-assigned STUN port). */
export const DEFAULT_STUN_PORT = 3478;

/** Default bind address: every IPv4 interface. */
export const DEFAULT_SIGNAL_HOST = '0.0.0.0';

/**
 * Largest WebSocket frame ws accepts, in bytes. A bit above MAX_SIGNAL_BYTES
 * so a frame slightly over the protocol limit gets a `too-large` error reply
 * (useful to a buggy client); anything bigger is cut off by ws with 1009.
 */
export const WS_MAX_PAYLOAD_BYTES = MAX_SIGNAL_BYTES + 16 * 1024;

/**
 * Interval, in ms, between WebSocket pings. A socket that has not answered
 * the previous ping is terminated, so a vanished peer is noticed within two
 * intervals (<= 30 s), and NAT/proxy idle timers are kept from firing.
 */
export const KEEPALIVE_INTERVAL_MS = 15_000;

/**
 * Interval, in ms, between router ticks: expiry, and dropping a controller
 * the device did not admit, are precise to about this much (a fifteenth of
 * ADMIT_TIMEOUT_MS, the shortest router deadline).
 */
export const TICK_INTERVAL_MS = 1_000;

/**
 * TCP connections from one address (addressKey: IPv6 per /64) that have not
 * completed their WebSocket upgrade, plain HTTP connections included: the
 * boards of a NAT'd office reconnecting together after an outage stay well
 * under it, and each upgrade takes one round trip; more at once from one
 * address is a flood of half-open upgrades, each holding a socket and a
 * parser. The excess is closed at once.
 */
export const MAX_PENDING_UPGRADES_PER_ADDR = 32;

/**
 * Time, in ms, a TCP connection gets to send its first request's headers
 * (an upgrade or /healthz), and any request to complete: a real client sends
 * them in its first packet; a connection that has not in this long is
 * half-open on purpose (slowloris) and is closed.
 */
export const UPGRADE_TIMEOUT_MS = 10_000;

/**
 * Period, in ms, of the http server's check of headersTimeout/requestTimeout
 * (node's default is 30 s, which would let a half-open upgrade live three
 * times UPGRADE_TIMEOUT_MS). At most this; shorter with a shorter timeout.
 */
const HTTP_TIMEOUT_CHECK_MS = 1_000;

/**
 * Bytes queued to one socket beyond which it is a slow consumer and is
 * terminated: ~16 full signaling frames or 64 link frames; a reader this far
 * behind is not keeping up, and buffering for it without limit costs memory.
 */
export const MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * The `goaway.reconnectMs` of a drain, in ms: clients spread their reconnects
 * over this, so a drained node's devices do not land on the others at once,
 * and all have moved well within DRAIN_MS.
 */
export const GOAWAY_RECONNECT_MS = 1_000;

/**
 * Longest drain, in ms (SIGTERM with `pinhole signal`): from `goaway` to the
 * close of the sockets still open. Clients move within GOAWAY_RECONNECT_MS
 * plus a connect; the rest is a margin for a slow one.
 */
export const DRAIN_MS = 5_000;

/** Configuration of `startSignalServer`. `resolveSignalConfig` fills the defaults. */
export interface SignalServerConfig {
  /** Bind address for HTTP/WebSocket and STUN. Default '0.0.0.0'. IPv6 literals work too. */
  host: string;
  /** HTTP/WebSocket TCP port. Default 8080; 0 picks a free port. */
  port: number;
  /** STUN UDP port. Default 3478; 0 picks a free port; null (or -1 given to the resolver) runs no STUN, and peers are told stunPort 0. */
  stunPort: number | null;
  /**
   * A second IP address of this machine for RFC 5780 NAT behaviour discovery
   * (`pinhole doctor`); STUN then also listens on stunPort + 1 and on both
   * ports of this address. Needs `host` to be a specific IP of the same
   * family. Default null (one STUN socket, no discovery).
   */
  stunAltHost: string | null;
  /**
   * Address the STUN server binds; default null: `host`. Behind a reverse proxy
   * `host` is loopback while STUN must face the clients (UDP passes no HTTP proxy).
   */
  stunHost: string | null;
  /** Receives each log line (one JSON object, no newline). Default: writes the line to stdout. */
  log: (line: string) => void;
  /** Clock for the router, in ms. Default Date.now. */
  clock: () => number;
  /** Router limit overrides (rates, caps, TTLs). Default: the router's named constants. */
  limits: Partial<RouterLimits>;
  /** Ping interval, in ms. Default KEEPALIVE_INTERVAL_MS. */
  keepaliveIntervalMs: number;
  /** Router tick interval, in ms. Default TICK_INTERVAL_MS. */
  tickIntervalMs: number;
  /** Connections not yet upgraded allowed per address. Default MAX_PENDING_UPGRADES_PER_ADDR. */
  maxPendingUpgradesPerAddr: number;
  /** Time to send the request headers / finish a request, in ms. Default UPGRADE_TIMEOUT_MS. */
  upgradeTimeoutMs: number;
  /**
   * Web pages whose WebSocket upgrades are accepted, by their `Origin`
   * header: `'*'` (default: a page on any origin, a static copy included) or
   * a list of origins, normalised (`https://h[:port]`, see origin.ts). An
   * upgrade with no Origin (Node clients) is always accepted; one from
   * another origin gets HTTP 403 and an `origin-refused` log line.
   */
  allowedOrigins: AllowedOrigins;
  /**
   * Serve the controller page at `/` (default true), from the build in
   * dist/page (page.ts). A server without a built page answers 404 there.
   */
  page: boolean;
  // --- clustering and metrics (./cluster.ts, ./metrics.ts) ---
  /**
   * Reverse proxies whose X-Forwarded-For names the client (./proxy.ts), as
   * IP addresses; default none: every limit sees the socket's own address.
   * Their sockets are not held to maxPendingUpgradesPerAddr.
   */
  trustedProxies: readonly string[];
  /** redis://HOST:PORT[/DB]: join the cluster of that Redis. Default null: a single node, all in memory. */
  redis: string | null;
  /** This node's id in the cluster (default: random). */
  nodeId: string | undefined;
  /** A separate listener for GET /metrics (then not served on `port`); default null: on the main port. */
  metrics: { host: string; port: number } | null;
  /** Longest drain, in ms. Default DRAIN_MS. */
  drainMs: number;
}

/** What `resolveSignalConfig` accepts: any subset; `stunPort` may also be -1 (no STUN). */
export type SignalServerConfigInput = Partial<SignalServerConfig>;

const stdoutLine = (line: string): void => {
  process.stdout.write(line + '\n');
};

/** Fills the defaults and checks the values; throws PinholeError('usage') on a bad value. */
export function resolveSignalConfig(partial: SignalServerConfigInput = {}): SignalServerConfig {
  const port = partial.port ?? DEFAULT_SIGNAL_PORT;
  const rawStun = partial.stunPort === undefined ? DEFAULT_STUN_PORT : partial.stunPort;
  const stunPort = rawStun === null || rawStun === -1 ? null : rawStun;
  const host = partial.host ?? DEFAULT_SIGNAL_HOST;
  if (!isPort(port)) throw new PinholeError('usage', `port must be an integer 0..65535, got ${String(port)}`);
  if (stunPort !== null && !isPort(stunPort)) throw new PinholeError('usage', `stunPort must be an integer 0..65535, -1 or null, got ${String(stunPort)}`);
  if (typeof host !== 'string' || host.length === 0) throw new PinholeError('usage', 'host must be a non-empty string');
  const stunHost = partial.stunHost ?? null;
  if (stunHost !== null && (typeof stunHost !== 'string' || stunHost.length === 0)) throw new PinholeError('usage', 'stunHost must be a non-empty string');
  if (stunHost !== null && stunPort === null) throw new PinholeError('usage', 'a STUN host needs STUN: stunPort must not be off');
  const stunAltHost = partial.stunAltHost ?? null;
  if (stunAltHost !== null) {
    if (stunPort === null) throw new PinholeError('usage', 'a STUN alternate host needs STUN: stunPort must not be off');
    if (stunPort === 65535) throw new PinholeError('usage', 'with a STUN alternate host the STUN port must leave room for port + 1 (at most 65534)');
    const problem = altHostProblem(stunHost ?? host, stunAltHost);
    if (problem) throw new PinholeError('usage', problem);
  }
  const keepaliveIntervalMs = partial.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS;
  const tickIntervalMs = partial.tickIntervalMs ?? TICK_INTERVAL_MS;
  if (!(keepaliveIntervalMs > 0) || !(tickIntervalMs > 0)) throw new PinholeError('usage', 'intervals must be positive');
  const admitTimeoutMs = partial.limits?.admitTimeoutMs ?? ADMIT_TIMEOUT_MS;
  if (tickIntervalMs > admitTimeoutMs / 2)
    throw new PinholeError('usage', `the tick interval (${tickIntervalMs} ms) must be at most half the admission timeout (${admitTimeoutMs} ms)`);
  const maxPendingUpgradesPerAddr = partial.maxPendingUpgradesPerAddr ?? MAX_PENDING_UPGRADES_PER_ADDR;
  const upgradeTimeoutMs = partial.upgradeTimeoutMs ?? UPGRADE_TIMEOUT_MS;
  if (!(Number.isInteger(maxPendingUpgradesPerAddr) && maxPendingUpgradesPerAddr > 0))
    throw new PinholeError('usage', 'maxPendingUpgradesPerAddr must be a positive integer');
  if (!(upgradeTimeoutMs > 0)) throw new PinholeError('usage', 'upgradeTimeoutMs must be positive');
  const origins = parseAllowedOrigins(partial.allowedOrigins ?? '*');
  if (!origins.ok) throw new PinholeError('usage', origins.reason);
  const trustedProxies = partial.trustedProxies ?? [];
  trustedProxySet(trustedProxies);
  const redis = partial.redis ?? null;
  if (redis !== null && !/^rediss?:\/\/[^\s/]+(\/\d{1,2})?$/.test(redis)) throw new PinholeError('usage', `redis must be redis://HOST:PORT[/DB], got ${redis}`);
  const metrics = partial.metrics ?? null;
  if (metrics !== null && (!isPort(metrics.port) || typeof metrics.host !== 'string' || metrics.host.length === 0))
    throw new PinholeError('usage', 'metrics needs a host and a port 0..65535');
  const drainMs = partial.drainMs ?? DRAIN_MS;
  if (!(drainMs >= 0)) throw new PinholeError('usage', 'drainMs must be >= 0');
  return {
    redis,
    nodeId: partial.nodeId,
    metrics,
    drainMs,
    host,
    port,
    stunPort,
    stunAltHost,
    stunHost,
    log: partial.log ?? stdoutLine,
    clock: partial.clock ?? Date.now,
    limits: { ...partial.limits },
    keepaliveIntervalMs,
    tickIntervalMs,
    maxPendingUpgradesPerAddr,
    upgradeTimeoutMs,
    allowedOrigins: origins.value,
    trustedProxies,
    page: partial.page ?? true,
  };
}

/** Counters of a running server. */
export interface SignalServerStats extends RouterStats {
  /** WebSocket connections currently open at the transport level. */
  sockets: number;
  /** TCP connections that have not (yet) upgraded to a WebSocket. */
  pendingUpgrades: number;
  /** Connections closed at once for exceeding MAX_PENDING_UPGRADES_PER_ADDR, since start. */
  pendingRefused: number;
  /** STUN counters, or null when STUN is off. */
  stun: StunStats | null;
  /** The cluster side, or null when not clustered. */
  cluster: ClusterStats | null;
}

/** A running signaling server. */
export interface SignalServer {
  /** WebSocket URL, e.g. ws://127.0.0.1:8080 (host as configured). */
  url: string;
  host: string;
  /** Bound TCP port. */
  port: number;
  /** Bound STUN UDP port, or null when STUN is off. */
  stunPort: number | null;
  /** The alternate STUN address and port (RFC 5780), or null when not configured. */
  stunAlt: StunEndpoint | null;
  /** URL of GET /metrics (on the main port, or the metrics listener). */
  metricsUrl: string;
  stats(): SignalServerStats;
  /**
   * Drains: every socket gets `goaway`, the cluster's rooms are given up, and
   * the server closes once its sockets are gone or after `drainMs`.
   */
  drain(): Promise<void>;
  /** Terminates every socket and closes the listeners; resolves when all are closed. Safe to call twice. */
  close(): Promise<void>;
}

interface Peer {
  ws: WebSocket;
  alive: boolean;
  /** Why the shell ended the socket, for the router's leave log; null = the peer closed it. */
  why: string | null;
  /** Source address, as the socket reported it. */
  addr?: string;
  closed: Promise<void>;
  /** The TCP socket under `ws`: relayed frames to it are corked until the end of the loop's turn (see `batch`). */
  socket: Duplex;
  corked: boolean;
}

/** Starts HTTP + WebSocket signaling and (unless disabled) STUN. Resolves once all listen. */
export async function startSignalServer(input: SignalServerConfigInput = {}): Promise<SignalServer> {
  const cfg = resolveSignalConfig(input);
  const emit = (event: string, fields: Record<string, unknown> = {}): void => {
    try {
      cfg.log(JSON.stringify({ event, ...fields }));
    } catch {
      // a broken log sink must not take the server down
    }
  };

  // Errors before the first line are held back so `listening` stays first.
  let listening = false;
  const early: Array<[string, Record<string, unknown>]> = [];
  const log = (event: string, fields: Record<string, unknown> = {}): void => {
    if (listening) emit(event, fields);
    else if (early.length < 100) early.push([event, fields]);
  };

  const stun: StunServerHandle | null =
    cfg.stunPort === null
      ? null
      : await startStunServer({ host: cfg.stunHost ?? cfg.host, port: cfg.stunPort, altHost: cfg.stunAltHost, log: (e, f) => log(e, f) });

  const proxies = trustedProxySet(cfg.trustedProxies);
  const router = new Router({
    stunPort: stun?.port ?? 0,
    newSession: () => nanoid(),
    newNonce: () => randomBytes(HELLO_NONCE_BYTES),
    limits: cfg.limits,
    cluster: cfg.redis !== null,
  });
  const peers = new Map<ConnId, Peer>();
  let nextId = 1;
  // Loaded here, not at the top: the CLI's config imports this module's defaults, and no other command should pay for prom-client.
  const { ServerMetrics } = await import('./metrics.js');
  const metrics = new ServerMetrics(() => ({ ...router.stats, sockets: peers.size }), cfg.redis !== null);
  const hot = metrics.hot;
  let cluster: ClusterNode | null = null;

  const apply = (actions: Action[]): void => {
    for (const a of actions) {
      if (a.kind === 'log') {
        log(a.event, a.fields ?? {});
        continue;
      }
      if (a.kind === 'claim' || a.kind === 'locate' || a.kind === 'release') {
        cluster?.act(a);
        continue;
      }
      if (a.kind === 'send' && a.msg.type === 'error') metrics.refused(a.msg.code);
      const p = peers.get(a.conn);
      if (!p) {
        // A socket of another node whose controller is in a room here.
        if (cluster?.isRemote(a.conn)) {
          if (a.kind === 'send') cluster.sendRemote(a.conn, encode(a.msg), a.msg.type === 'relay');
          else cluster.closeRemote(a.conn, a.code, a.reason);
        }
        continue;
      }
      if (p.ws.readyState !== WebSocket.OPEN) continue;
      if (a.kind === 'send') {
        const text = encode(a.msg);
        if (a.msg.type === 'relay') {
          hot.frames.local++;
          hot.bytes.local += text.length;
          batch(p);
        }
        write(a.conn, p, text);
      } else {
        p.ws.close(a.code, a.reason);
      }
    }
  };

  // The relayed frames one turn of the event loop brings a socket leave in one write: the
  // socket stays corked until then. A write costs more than the JS that makes a frame.
  const corked: Peer[] = [];
  const uncorkAll = (): void => {
    for (const p of corked) {
      p.corked = false;
      p.socket.uncork();
    }
    corked.length = 0;
  };
  const batch = (p: Peer): void => {
    if (p.corked) return;
    p.corked = true;
    p.socket.cork();
    if (corked.push(p) === 1) setImmediate(uncorkAll);
  };

  const write = (conn: ConnId, p: Peer, text: string | Buffer): void => {
    p.ws.send(text, { binary: false });
    if (p.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      p.why = 'slow-consumer';
      log('slow-consumer', { conn });
      p.ws.terminate();
    }
  };

  const feed = (conn: ConnId, fn: () => Action[]): void => {
    try {
      apply(fn());
    } catch (e) {
      // A bug must cost one socket, not the server.
      log('internal-error', { conn, reason: e instanceof Error ? e.name : 'unknown' });
      const p = peers.get(conn);
      if (p) {
        p.why = 'internal-error';
        p.ws.terminate();
      }
    }
  };

  const onConnection = (ws: WebSocket, req: http.IncomingMessage, socket: Duplex): void => {
    const id = nextId++;
    let resolveClosed!: () => void;
    const peer: Peer = { ws, alive: true, why: null, closed: new Promise<void>((r) => (resolveClosed = r)), socket, corked: false };
    peers.set(id, peer);
    ws.on('error', (e: Error & { code?: string }) => {
      // ws closes the socket itself after an error (bad UTF-8 -> 1007, too big -> 1009).
      log('socket-error', { conn: id, reason: e.code ?? e.name });
    });
    ws.on('pong', () => {
      peer.alive = true;
    });
    ws.on('message', (data: RawData) => {
      const raw = toBuffer(data);
      let parsed: ReturnType<typeof parseClientMessage>;
      try {
        if (cluster?.forwardRelay(id, raw)) return;
        parsed = parseClientMessage(raw);
      } catch (e) {
        // A parser bug must cost one frame, never the server: input here is hostile.
        log('parser-error', { conn: id, reason: (e as Error).name });
        parsed = { ok: false, code: 'bad-message', reason: 'unparseable frame' };
      }
      if (cluster) return cluster.frame(id, parsed);
      const now = cfg.clock();
      feed(id, () =>
        router.handle(
          parsed.ok ? { kind: 'message', conn: id, msg: parsed.value } : { kind: 'invalid', conn: id, code: parsed.code, reason: parsed.reason },
          now,
        ),
      );
    });
    ws.on('close', (code: number) => {
      peers.delete(id);
      cluster?.socketClosed(id);
      feed(id, () => router.handle({ kind: 'close', conn: id, reason: peer.why ?? `closed-${code}`, leave: code === CLOSE_LEAVE }, cfg.clock()));
      resolveClosed();
    });
    const addr = clientAddress(req.socket.remoteAddress ?? 'unknown', req.headers['x-forwarded-for'], proxies);
    peer.addr = addr;
    feed(id, () => router.handle({ kind: 'open', conn: id, addr }, cfg.clock()));
  };

  const page = cfg.page ? loadPage() : undefined;
  if (cfg.page && !page) log('page-missing', { dir: PAGE_DIR });
  const wss = new WebSocketServer({ noServer: true, maxPayload: WS_MAX_PAYLOAD_BYTES, clientTracking: false, perMessageDeflate: false });
  wss.on('error', (e: Error & { code?: string }) => log('server-error', { reason: e.code ?? e.name }));

  // Bounded by the socket timer below and by headersTimeout/requestTimeout, checked often enough to matter.
  const httpServer = http.createServer(
    {
      headersTimeout: cfg.upgradeTimeoutMs,
      requestTimeout: cfg.upgradeTimeoutMs,
      connectionsCheckingInterval: Math.max(10, Math.min(HTTP_TIMEOUT_CHECK_MS, Math.floor(cfg.upgradeTimeoutMs / 2))),
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics' && cfg.metrics === null) return serveMetrics(metrics, req, res);
      if (path === '/healthz') {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          return reply(res, 405, { ok: false, error: 'method-not-allowed' }, { Allow: 'GET, HEAD' });
        }
        const s = router.stats;
        // stunPort/stunAltHost/stunAltPort let `pinhole doctor` find STUN from the server URL alone.
        return reply(res, 200, {
          ok: true,
          conns: s.conns,
          rooms: s.rooms,
          devices: s.devices,
          controllers: s.controllers,
          joinLimited: s.joinLimited,
          stun: stun !== null,
          stunPort: stun?.port ?? 0,
          stunAltHost: stun?.alt?.address ?? null,
          stunAltPort: stun?.alt?.port ?? null,
        });
      }
      if (page && servePage(page, req, res)) return;
      reply(res, 404, { ok: false, error: 'not-found' });
    },
  );
  // TCP connections that have not upgraded, by address key: capped, and timed until their first request.
  const pending = new Map<net.Socket, { key: string; timer: NodeJS.Timeout | undefined }>();
  const pendingPerAddr = new Map<string, number>();
  let pendingRefused = 0;
  const unpend = (socket: net.Socket): void => {
    const p = pending.get(socket);
    if (!p) return;
    pending.delete(socket);
    clearTimeout(p.timer);
    const n = (pendingPerAddr.get(p.key) ?? 1) - 1;
    if (n <= 0) pendingPerAddr.delete(p.key);
    else pendingPerAddr.set(p.key, n);
  };
  httpServer.on('connection', (socket: net.Socket) => {
    const key = addressKey(socket.remoteAddress ?? 'unknown');
    const n = pendingPerAddr.get(key) ?? 0;
    // A trusted proxy carries many clients' upgrades; the timer below still bounds each.
    if (n >= cfg.maxPendingUpgradesPerAddr && !isTrustedProxy(socket.remoteAddress ?? '', proxies)) {
      pendingRefused++;
      socket.destroy();
      return;
    }
    pendingPerAddr.set(key, n + 1);
    // Until its first request's headers are in; afterwards headersTimeout/requestTimeout and keep-alive rule.
    const timer = setTimeout(() => socket.destroy(), cfg.upgradeTimeoutMs);
    timer.unref();
    pending.set(socket, { key, timer });
    socket.once('close', () => unpend(socket));
  });
  const firstRequest = (socket: net.Socket): void => {
    const p = pending.get(socket);
    if (p) clearTimeout(p.timer);
  };
  httpServer.on('request', (req: http.IncomingMessage) => firstRequest(req.socket));
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    firstRequest(req.socket);
    // Before the upgrade: a refused page never gets a socket, so it never reaches the router.
    const origin = checkOrigin(cfg.allowedOrigins, req.headers.origin);
    if (!origin.allow) {
      log('origin-refused', { origin: origin.origin });
      return refuseUpgrade(socket, 403, 'Forbidden');
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      unpend(req.socket);
      onConnection(ws, req, socket);
    });
  });
  httpServer.on('clientError', (_e, socket: Duplex) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    socket.destroy();
  });

  try {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(cfg.port, cfg.host, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await stun?.close();
    throw e;
  }
  httpServer.on('error', (e: Error & { code?: string }) => log('server-error', { reason: e.code ?? e.name }));

  // Clustering and the metrics listener.
  let metricsServer: http.Server | null = null;
  try {
    if (cfg.redis !== null) {
      cluster = await ClusterNode.start(
        { redis: cfg.redis, ...(cfg.nodeId ? { nodeId: cfg.nodeId } : {}), limits: { ...DEFAULT_ROUTER_LIMITS, ...cfg.limits }, metrics },
        {
          newConnId: () => nextId++,
          handle: (conn, input) => feed(conn, () => router.handle(input, cfg.clock())),
          sendText: (conn, text) => {
            const p = peers.get(conn);
            if (!p || p.ws.readyState !== WebSocket.OPEN) return false;
            batch(p);
            write(conn, p, text);
            return true;
          },
          closeSocket: (conn, code, reason) => peers.get(conn)?.ws.close(code, reason),
          addrOf: (conn) => peers.get(conn)?.addr,
          log,
        },
      );
    }
    if (cfg.metrics !== null) metricsServer = await listenMetrics(metrics, cfg.metrics.host, cfg.metrics.port);
  } catch (e) {
    await cluster?.close();
    httpServer.closeAllConnections();
    await new Promise<void>((r) => httpServer.close(() => r()));
    await stun?.close();
    throw e;
  }

  const addr = httpServer.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
  const h = urlHost(cfg.host);
  const url = `ws://${h}:${port}`;
  const ma = metricsServer?.address();
  const metricsUrl = metricsServer && typeof ma === 'object' && ma ? `http://${urlHost(cfg.metrics!.host)}:${ma.port}/metrics` : `http://${h}:${port}/metrics`;
  emit('listening', {
    ws: url,
    http: `http://${h}:${port}/healthz`,
    metrics: metricsUrl,
    ...(cluster ? { node: cluster.node } : {}),
    stun: stun ? `udp://${urlHost(cfg.stunHost ?? cfg.host)}:${stun.port}` : null,
    ...(stun?.alt ? { stunAlt: `udp://${urlHost(stun.alt.address)}:${stun.alt.port}` } : {}),
  });
  listening = true;
  for (const [e, f] of early.splice(0)) emit(e, f);

  const tick = setInterval(() => feed(0, () => router.handle({ kind: 'tick' }, cfg.clock())), cfg.tickIntervalMs);
  tick.unref();
  const keepalive = setInterval(() => {
    for (const [id, p] of peers) {
      if (p.ws.readyState !== WebSocket.OPEN) continue;
      if (!p.alive) {
        p.why = 'keepalive-timeout';
        log('keepalive-timeout', { conn: id });
        p.ws.terminate();
        continue;
      }
      p.alive = false;
      try {
        p.ws.ping();
      } catch {
        p.ws.terminate();
      }
    }
  }, cfg.keepaliveIntervalMs);
  keepalive.unref();

  let closing: Promise<void> | null = null;
  let draining: Promise<void> | null = null;
  const server: SignalServer = {
    url,
    host: cfg.host,
    port,
    stunPort: stun?.port ?? null,
    stunAlt: stun?.alt ?? null,
    metricsUrl,
    stats: () => ({
      ...router.stats,
      sockets: peers.size,
      pendingUpgrades: pending.size,
      pendingRefused,
      stun: stun?.stats() ?? null,
      cluster: cluster?.stats ?? null,
    }),
    drain() {
      draining ??= (async () => {
        emit('draining', { sockets: peers.size });
        feed(0, () => router.handle({ kind: 'drain', reconnectMs: GOAWAY_RECONNECT_MS }, cfg.clock()));
        await cluster?.drain();
        const t0 = Date.now();
        while (peers.size > 0 && Date.now() - t0 < cfg.drainMs) await new Promise((r) => setTimeout(r, 50));
        for (const p of peers.values()) {
          p.why = 'drained';
          p.ws.close(CLOSE_GOING_AWAY, 'server restart');
        }
        await server.close();
      })();
      return draining;
    },
    close() {
      closing ??= (async () => {
        clearInterval(tick);
        clearInterval(keepalive);
        await cluster?.close();
        if (metricsServer) await new Promise<void>((r) => metricsServer!.close(() => r()));
        const waits: Promise<void>[] = [];
        for (const p of peers.values()) {
          p.why = 'server-closing';
          waits.push(p.closed);
          p.ws.terminate();
        }
        const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeAllConnections();
        await Promise.all([...waits, httpClosed, new Promise<void>((r) => wss.close(() => r())), stun?.close()]);
        emit('closed');
      })();
      return closing;
    },
  };
  return server;
}

/** GET /metrics: Prometheus text. */
function serveMetrics(metrics: ServerMetrics, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, { ok: false, error: 'method-not-allowed' }, { Allow: 'GET, HEAD' });
  metrics.scrape().then(
    ({ text, contentType }) => {
      res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : text);
    },
    () => reply(res, 500, { ok: false, error: 'internal-error' }),
  );
}

/** A listener of its own for GET /metrics (--metrics-host/--metrics-port): for operators who keep it off the public port. */
async function listenMetrics(metrics: ServerMetrics, host: string, port: number): Promise<http.Server> {
  const s = http.createServer({ headersTimeout: UPGRADE_TIMEOUT_MS, requestTimeout: UPGRADE_TIMEOUT_MS }, (req, res) => {
    if ((req.url ?? '/').split('?')[0] === '/metrics') return serveMetrics(metrics, req, res);
    reply(res, 404, { ok: false, error: 'not-found' });
  });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve();
    });
  });
  return s;
}

function reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

/** Answers an upgrade request with a plain HTTP error and closes the connection once it is written. */
function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function isPort(p: unknown): p is number {
  return Number.isInteger(p) && (p as number) >= 0 && (p as number) <= 65535;
}

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
