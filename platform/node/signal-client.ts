/**
 * WebSocket shell to the signaling server, shared by device and controller.
 * Validates every frame with parseServerMessage before anyone sees it.
 * `connect` resolves once the server's `hello` has arrived; its nonce is kept
 * (`nonce`) for a device's registration proof. `routeSignal` is the one place
 * that sends what the server says to a role's handlers.
 */
import WebSocket from 'ws';
import { MAX_SIGNAL_BYTES, PinholeError } from '../../protocol/index.js';
import { SignalChannel } from '../../session/index.js';

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
/** Time a closing socket gets for the closing handshake before it is cut, in ms: a server that is gone never answers it. */
const CLOSE_GRACE_MS = 1_000;

/** A signaling socket over `ws`, with pings of its own: the core's SignalChannel fed by a Node WebSocket. */
export class SignalClient extends SignalChannel {
  private readonly pinger: NodeJS.Timeout;

  private constructor(
    private readonly ws: WebSocket,
    keepalive: { intervalMs: number; misses: number },
  ) {
    super({ send: (text) => ws.send(text), close: (code) => this.closeWs(code) });
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
      this.received(isBinary ? buf : buf.toString('utf8'));
    });
    ws.on('close', (code, reason) => this.closed(code, reason.toString()));
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
    const deadline = Date.now() + timeoutMs;
    return SignalChannel.greeted(await SignalClient.open(url, timeoutMs, keepalive), url, deadline, timeoutMs);
  }

  /** Opens the WebSocket. */
  private static open(url: string, timeoutMs: number, keepalive: { intervalMs: number; misses: number }): Promise<SignalClient> {
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        // The server takes no compression; offering it costs a zlib context for nothing.
        ws = new WebSocket(url, { maxPayload: MAX_SIGNAL_BYTES * 2, handshakeTimeout: timeoutMs, perMessageDeflate: false });
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

  protected override socketOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  protected override onEnd(): void {
    clearInterval(this.pinger);
  }

  private closeWs(code: number): void {
    this.ws.close(code);
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }
}

export { type RelayMessage, routeServerMessage, routeSignal, type ServerRoutes } from '../../session/index.js';
