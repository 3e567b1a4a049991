/**
 * A hostile signaling server for tests (issue 4): a WebSocket man in the
 * middle in front of a REAL pinhole signaling server.
 *
 *   device / controller  ──ws──▶  HostileServer (127.0.0.1:0)  ──ws──▶  real server (127.0.0.1:0)
 *
 * Every client connection gets its own upstream connection; frames are
 * forwarded both ways, one for one, in order. A test can:
 *   - tamper: `onUp(conn, text)` sees each client→server frame, `onDown(conn, text)`
 *     each server→client frame, and returns the text to forward (the same or
 *     rewritten), an array of texts (forward several), or null (drop it);
 *   - record: `frames` holds every frame as the proxy received it (before tampering);
 *   - inject: `inject(conn, text)` sends a frame to a client as if from the server.
 *
 * A connection learns its role from its first `register` (device) or `join`
 * (controller), and its session id from `joined` / `peer`.
 *
 * Relay frames to and from a device name a session (the real server tags
 * what it forwards to a device with the controller's session, and routes a
 * device's by the session it names). So tampering keeps that meaning: a
 * `relay` without a session that a test injects into a device, or puts in
 * place of a device's own frame, is tagged with the device's session (the one
 * its frame named, or else the latest it heard of in `peer`): `relayText(data)`
 * stands for "this data, in the session under test". The clients only
 * speak WebSocket, so /healthz is not proxied. STUN is not proxied either: the
 * clients derive the STUN host from our URL (127.0.0.1) and the port from the
 * real server's `registered` / `joined`, which we pass through.
 */

import type { AddressInfo } from 'node:net';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { resolveSignalConfig, type SignalServer, startSignalServer } from '../../signaling/index.js';
import { LOOPBACK_LIMITS } from './helpers.js';

/** One client connection through the proxy. */
export interface HostileConn {
  /** 1, 2, ... in connection order. */
  readonly id: number;
  /** From the first `register` (device) or `join` (controller); undefined before. */
  role: 'device' | 'controller' | undefined;
  /** The room of that `register` / `join`. */
  room: string | undefined;
  /** The session id the server gave this connection (`joined`, `peer`), latest first seen. */
  session: string | undefined;
  /** False once either side closed. */
  open: boolean;
}

/** A tamper hook: return the text to forward, several texts, or null to drop the frame. */
export type Tamper = (conn: HostileConn, text: string) => string | string[] | null;

/** A frame as the proxy received it: `up` = client→server, `down` = server→client. */
export interface RecordedFrame {
  conn: HostileConn;
  dir: 'up' | 'down';
  text: string;
}

/** A relay frame pulled out of the recording. */
export interface RecordedRelay {
  conn: HostileConn;
  dir: 'up' | 'down';
  /** The relay `data` string: a handshake message (starts with '{') or a sealed frame. */
  data: string;
  /** The whole WebSocket frame, ready for `inject`. */
  text: string;
}

export interface HostileServer {
  /** ws:// URL of the proxy: give it to the device and the controller. */
  readonly url: string;
  /** The real server behind the proxy. */
  readonly real: SignalServer;
  /** Every connection so far. */
  readonly conns: HostileConn[];
  /** Every frame, in order, as the proxy received it. */
  readonly frames: RecordedFrame[];
  /** Client→server hook (null: forward as is). */
  onUp: Tamper | null;
  /** Server→client hook (null: forward as is). */
  onDown: Tamper | null;
  /** The relay frames recorded so far, optionally only those of one role and direction. */
  relays(filter?: { role?: 'device' | 'controller'; dir?: 'up' | 'down' }): RecordedRelay[];
  /** Sends a frame to a client as if it came from the server (a session-less relay to a device is tagged with `conn.session`). */
  inject(conn: HostileConn, text: string): void;
  /** Cuts a client's connection as a network failure would (no close frame; the upstream closes too). */
  kill(conn: HostileConn): void;
  /** The latest open connection of a role (optionally in a room). */
  latest(role: 'device' | 'controller', room?: string): HostileConn | undefined;
  /** Turns tampering off (both hooks null). */
  reset(): void;
  /** Closes every connection, the proxy and the real server. */
  close(): Promise<void>;
}

/** The `{type:'relay', data}` frame carrying `data`, as the server would send it. */
export function relayText(data: string): string {
  return JSON.stringify({ type: 'relay', data });
}

/** `text` with `session` added if it is a relay frame naming none (and `session` is known); else `text` unchanged. */
function tagSession(text: string, session: string | undefined): string {
  const m = parseFrameText(text);
  if (session === undefined || m?.type !== 'relay' || m.session !== undefined) return text;
  return JSON.stringify({ ...m, session });
}

/** Parses a frame's JSON, or undefined. */
export function parseFrameText(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const asText = (d: RawData): string => (Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d)).toString('utf8');

/** A close code ws lets us send on (1005/1006/1015 are only ever reported). */
const sendableClose = (code: number): number => (code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000);

/** Starts a real signaling server and a hostile proxy in front of it, both on loopback. `record: false` keeps no frames (soak tests measure memory). */
export async function startHostileServer(opts: { record?: boolean } = {}): Promise<HostileServer> {
  const record = opts.record ?? true;
  // Loopback limits: every test here pairs from 127.0.0.1, which the per-address buckets would soon refuse.
  const real = await startSignalServer(resolveSignalConfig({ host: '127.0.0.1', port: 0, stunPort: 0, log: () => undefined, limits: LOOPBACK_LIMITS }));
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const sockets = new Map<HostileConn, WebSocket>(); // conn -> client socket
  const upstreams = new Set<WebSocket>();

  const h: HostileServer = {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    real,
    conns: [],
    frames: [],
    onUp: null,
    onDown: null,
    relays(filter = {}) {
      const out: RecordedRelay[] = [];
      for (const f of h.frames) {
        if (filter.dir && f.dir !== filter.dir) continue;
        if (filter.role && f.conn.role !== filter.role) continue;
        const m = parseFrameText(f.text);
        if (m?.type === 'relay' && typeof m.data === 'string') out.push({ conn: f.conn, dir: f.dir, data: m.data, text: f.text });
      }
      return out;
    },
    inject(conn, text) {
      const ws = sockets.get(conn);
      if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error(`inject: connection ${conn.id} is not open`);
      ws.send(conn.role === 'device' ? tagSession(text, conn.session) : text);
    },
    kill(conn) {
      sockets.get(conn)?.terminate();
    },
    latest(role, room) {
      return [...h.conns].reverse().find((c) => c.open && c.role === role && (room === undefined || c.room === room));
    },
    reset() {
      h.onUp = h.onDown = null;
    },
    async close() {
      for (const ws of [...wss.clients, ...upstreams]) ws.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      await real.close();
    },
  };

  wss.on('connection', (client) => {
    const conn: HostileConn = { id: h.conns.length + 1, role: undefined, room: undefined, session: undefined, open: true };
    h.conns.push(conn);
    sockets.set(conn, client);
    const upstream = new WebSocket(real.url);
    upstreams.add(upstream);
    const early: string[] = []; // client frames sent before the upstream socket opened

    /** Applies a hook and sends what it returns; a device's relay put in place of its own keeps the session that one named. */
    const forward = (to: WebSocket, hook: Tamper | null, text: string): void => {
      const out = hook ? hook(conn, text) : text;
      const named = to === upstream && conn.role === 'device' ? parseFrameText(text)?.session : undefined;
      const session = typeof named === 'string' ? named : undefined;
      for (const t of out === null ? [] : Array.isArray(out) ? out : [out]) if (to.readyState === WebSocket.OPEN) to.send(tagSession(t, session));
    };

    client.on('message', (d) => {
      const text = asText(d);
      const m = parseFrameText(text);
      if (conn.role === undefined && (m?.type === 'register' || m?.type === 'join')) {
        conn.role = m.type === 'register' ? 'device' : 'controller';
        conn.room = typeof m.room === 'string' ? m.room : undefined;
      }
      if (record) h.frames.push({ conn, dir: 'up', text });
      if (upstream.readyState === WebSocket.OPEN) forward(upstream, h.onUp, text);
      else early.push(text);
    });
    upstream.on('open', () => {
      for (const t of early.splice(0)) forward(upstream, h.onUp, t);
    });
    upstream.on('message', (d) => {
      const text = asText(d);
      const m = parseFrameText(text);
      if ((m?.type === 'joined' || m?.type === 'peer') && typeof m.session === 'string') conn.session = m.session;
      if (record) h.frames.push({ conn, dir: 'down', text });
      forward(client, h.onDown, text);
    });

    // Either side closing closes the other, with the same code when it can be sent
    // (a device gives up a spent pairing room with CLOSE_LEAVE, which the real server must see).
    const end = (other: WebSocket, code: number): void => {
      conn.open = false;
      if (other.readyState === WebSocket.OPEN) other.close(sendableClose(code));
      else if (other.readyState === WebSocket.CONNECTING) other.terminate();
    };
    client.on('close', (code) => end(upstream, code));
    upstream.on('close', (code) => {
      upstreams.delete(upstream);
      end(client, code);
    });
    client.on('error', () => undefined);
    upstream.on('error', () => client.terminate());
  });
  return h;
}
