/**
 * WebSocket shell to the signaling server, shared by device and controller.
 * Validates every frame with parseServerMessage before anyone sees it.
 * `connect` resolves once the server's `hello` has arrived; its nonce is kept
 * (`nonce`) for a device's registration proof. `routeSignal` is the one place
 * that sends what the server says to a role's handlers.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  type ClientMessage,
  encode,
  MAX_SIGNAL_BYTES,
  PinholeError,
  PROTOCOL_VERSION,
  parseServerMessage,
  type ServerMessage,
  type SignalErrorCode,
} from '../../protocol/index.js';

/** Time to open the WebSocket and get the server's `hello`, in ms: a server that does not answer in this long is down for a person waiting. */
export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Gap between our WebSocket pings to the server, in ms. The server pings too
 * (every 15 s) and drops us if we go silent; this side must notice a dead
 * server or a dead path by itself, since TCP alone can take minutes.
 */
export const SIGNAL_PING_MS = 5_000;
/**
 * Pings in a row without a pong after which the socket is declared dead and
 * terminated, so 'close' fires and the owner reconnects: 3 x 5 s, so a dead
 * server is noticed within 15-20 s, while a 10 s network blip is ridden out.
 */
export const SIGNAL_PING_MISSES = 3;

/** Events of a SignalClient. */
export interface SignalClientEvents {
  message: [msg: ServerMessage];
  invalid: [reason: string];
  close: [code: number, reason: string];
}

/** A connected signaling socket. */
export class SignalClient extends EventEmitter<SignalClientEvents> {
  private closed = false;
  private hello: string | undefined;
  /** Settles with the socket's first frame (the server's hello), or an Error if the socket closed first. */
  private greet: (first: ServerMessage | Error) => void = () => undefined;
  private readonly greeting: Promise<ServerMessage | Error>;

  private readonly pinger: NodeJS.Timeout;

  private constructor(
    private readonly ws: WebSocket,
    keepalive: { intervalMs: number; misses: number },
  ) {
    super();
    this.greeting = new Promise((r) => (this.greet = r));
    let missed = 0;
    ws.on('pong', () => void (missed = 0));
    this.pinger = setInterval(() => {
      if (++missed > keepalive.misses) {
        ws.terminate(); // 'close' follows (1006): the owner reconnects
        return;
      }
      try {
        ws.ping();
      } catch {
        /* closing */
      }
    }, keepalive.intervalMs);
    this.pinger.unref();
    ws.on('message', (data, isBinary) => {
      missed = 0; // any traffic proves the path works
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      const m = parseServerMessage(isBinary ? buf : buf.toString('utf8'));
      if (this.hello === undefined) {
        // The first frame is the server's hello; connect() checks it, nobody else sees it.
        this.hello = m.ok && m.value.type === 'hello' ? m.value.nonce : '';
        this.greet(m.ok ? m.value : new Error(`its first frame is invalid: ${m.reason}`));
        return;
      }
      if (m.ok) this.emit('message', m.value);
      else this.emit('invalid', m.reason);
    });
    ws.on('close', (code, reason) => {
      this.greet(new Error(`it closed the connection (${code}) before saying hello`));
      this.closed = true;
      clearInterval(this.pinger);
      this.emit('close', code, reason.toString());
    });
    ws.on('error', () => {
      /* 'close' follows */
    });
  }

  /**
   * Opens a socket to `url` (ws:// or wss://) and waits for the server's
   * `hello`. Rejects with `server-unreachable` (also for a server that does not
   * greet: one of protocol 1), or `version` for a hello of another version.
   * `keepalive` overrides SIGNAL_PING_MS / SIGNAL_PING_MISSES (tests shorten them).
   */
  static async connect(
    url: string,
    timeoutMs = CONNECT_TIMEOUT_MS,
    keepalive = { intervalMs: SIGNAL_PING_MS, misses: SIGNAL_PING_MISSES },
  ): Promise<SignalClient> {
    const t0 = Date.now();
    const c = await SignalClient.open(url, timeoutMs, keepalive);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Error>((r) => {
      timer = setTimeout(
        () => r(new Error(`no hello within ${timeoutMs} ms (not a pinhole server of protocol ${PROTOCOL_VERSION}?)`)),
        Math.max(1, timeoutMs - (Date.now() - t0)),
      );
    });
    const first = await Promise.race([c.greeting, late]);
    clearTimeout(timer);
    if (first instanceof Error || first.type !== 'hello' || first.v !== PROTOCOL_VERSION) {
      c.close();
      if (!(first instanceof Error) && first.type === 'hello')
        throw new PinholeError('version', `the signaling server speaks protocol ${first.v}, this build ${PROTOCOL_VERSION}`);
      throw new PinholeError(
        'server-unreachable',
        `cannot reach signaling server ${url}: ${first instanceof Error ? first.message : `it sent ${first.type} before hello`}`,
      );
    }
    return c;
  }

  /** The nonce of this socket's `hello` (base64url): what a registration proof on this socket signs. */
  get nonce(): string {
    return this.hello!;
  }

  /** Opens the WebSocket. */
  private static open(url: string, timeoutMs: number, keepalive: { intervalMs: number; misses: number }): Promise<SignalClient> {
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(url, { maxPayload: MAX_SIGNAL_BYTES * 2, handshakeTimeout: timeoutMs });
      } catch (e) {
        reject(new PinholeError('server-unreachable', `bad server URL ${url}: ${(e as Error).message}`));
        return;
      }
      const fail = (why: string): void => {
        clearTimeout(timer);
        ws.terminate();
        reject(new PinholeError('server-unreachable', `cannot reach signaling server ${url}: ${why}`));
      };
      const timer = setTimeout(() => fail(`no answer in ${timeoutMs} ms`), timeoutMs);
      ws.once('open', () => {
        clearTimeout(timer);
        ws.removeAllListeners('error');
        resolve(new SignalClient(ws, keepalive));
      });
      ws.once('error', (e) => fail((e as Error).message));
    });
  }

  /** True while the socket is open. */
  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends one message; a closed socket drops it silently (the link resends after reconnecting). */
  send(m: ClientMessage): void {
    if (this.isOpen) this.ws.send(encode(m));
  }

  /** Resolves with the next message that `pick` accepts, or rejects on close/timeout. */
  next<T>(pick: (m: ServerMessage) => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('message', onMsg);
        this.off('close', onClose);
      };
      const onMsg = (m: ServerMessage): void => {
        const v = pick(m);
        if (v !== undefined) {
          done();
          resolve(v);
        }
      };
      const onClose = (): void => {
        done();
        reject(new PinholeError('server-unreachable', `signaling server closed the connection while waiting for ${what}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new PinholeError('timeout', `no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('message', onMsg);
      this.on('close', onClose);
    });
  }

  /** Closes the socket (code 1000; CLOSE_LEAVE to give up a room for good). */
  close(code = 1000): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    this.ws.close(code);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }
}

/** A relay frame from the server. */
export type RelayMessage = Extract<ServerMessage, { type: 'relay' }>;

/**
 * Where a role sends what the server says once it is in a room. `hello`,
 * `registered` and `joined` are answers a caller awaits with next(), so no
 * route gets them.
 */
export interface ServerRoutes {
  /** Relay data: the PeerSession's. */
  relay(m: RelayMessage): void;
  /** A peer is in the room under `session` (a new session, or the same one after a reconnect). */
  peer?(session: string): void;
  /** The peer of `session` left the room. */
  peerLeft?(session: string): void;
  /** An error from the server (a code parseServerMessage has checked). */
  error?(code: SignalErrorCode, message: string): void;
  /** The server sent a frame the protocol does not allow. */
  invalid?(reason: string): void;
  /** The socket closed. */
  closed?(): void;
}

/** Sends one server message to its route. */
export function routeServerMessage(m: ServerMessage, r: ServerRoutes): void {
  switch (m.type) {
    case 'relay':
      return r.relay(m);
    case 'peer':
      return r.peer?.(m.session);
    case 'peer-left':
      return r.peerLeft?.(m.session);
    case 'error':
      return r.error?.(m.code, m.message);
    case 'hello':
    case 'registered':
    case 'joined':
      return;
  }
}

/** Routes everything `signal` emits (messages, invalid frames, its close) until the returned function is called. */
export function routeSignal(signal: SignalClient, r: ServerRoutes): () => void {
  const onMessage = (m: ServerMessage): void => routeServerMessage(m, r);
  const onInvalid = (reason: string): void => r.invalid?.(reason);
  const onClose = (): void => r.closed?.();
  signal.on('message', onMessage);
  signal.on('invalid', onInvalid);
  signal.on('close', onClose);
  return () => {
    signal.off('message', onMessage);
    signal.off('invalid', onInvalid);
    signal.off('close', onClose);
  };
}
