/**
 * WebSocket shell to the signaling server, shared by device and controller.
 * Validates every frame with parseServerMessage before anyone sees it.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { MAX_SIGNAL_BYTES, encode, parseServerMessage, type ClientMessage, type ServerMessage } from './protocol.js';
import { PinholeError } from './errors.js';

/** Time to open the WebSocket before giving up, in ms: a server that does not answer in this long is down for a person waiting. */
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

  private readonly pinger: NodeJS.Timeout;

  private constructor(
    private readonly ws: WebSocket,
    keepalive: { intervalMs: number; misses: number },
  ) {
    super();
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
      if (m.ok) this.emit('message', m.value);
      else this.emit('invalid', m.reason);
    });
    ws.on('close', (code, reason) => {
      this.closed = true;
      clearInterval(this.pinger);
      this.emit('close', code, reason.toString());
    });
    ws.on('error', () => {
      /* 'close' follows */
    });
  }

  /**
   * Opens a socket to `url` (ws:// or wss://). Rejects with `server-unreachable`.
   * `keepalive` overrides SIGNAL_PING_MS / SIGNAL_PING_MISSES (tests shorten them).
   */
  static connect(url: string, timeoutMs = CONNECT_TIMEOUT_MS, keepalive = { intervalMs: SIGNAL_PING_MS, misses: SIGNAL_PING_MISSES }): Promise<SignalClient> {
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
