/**
 * The browser's signaling socket: the core's SignalChannel fed by the page's
 * WebSocket. No pings of our own (a page cannot send WebSocket pings): the
 * browser answers the server's, and the server drops a silent socket, which
 * closes it here too.
 */
import { MAX_SIGNAL_BYTES, PinholeError } from '../../protocol/index.js';
import { SignalChannel } from '../../session/index.js';

/** Time to open the WebSocket and get the server's `hello`, in ms, when the caller gives none: as for Node's SignalClient. */
export const BROWSER_CONNECT_TIMEOUT_MS = 5_000;

export class BrowserSignal extends SignalChannel {
  private constructor(private readonly ws: WebSocket) {
    super({ send: (text) => ws.send(text), close: (code) => ws.close(code) });
    ws.onmessage = (ev: MessageEvent) => {
      const data: unknown = ev.data;
      if (typeof data === 'string') this.received(data);
      else if (data instanceof ArrayBuffer) {
        // Too long to be a signaling frame: the parser says so without decoding it all.
        this.received(data.byteLength > MAX_SIGNAL_BYTES * 2 ? new Uint8Array(MAX_SIGNAL_BYTES * 2 + 1) : new Uint8Array(data));
      }
    };
    ws.onclose = (ev: CloseEvent) => this.closed(ev.code, ev.reason);
  }

  /** Opens a WebSocket to `url` and waits for the server's hello (rejects with `server-unreachable` or `version`). */
  static async connect(url: string, timeoutMs = BROWSER_CONNECT_TIMEOUT_MS): Promise<BrowserSignal> {
    const deadline = Date.now() + timeoutMs;
    const ws = await new Promise<WebSocket>((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        reject(new PinholeError('server-unreachable', `bad server URL ${url}: ${(e as Error).message}`));
        return;
      }
      ws.binaryType = 'arraybuffer';
      const timer = setTimeout(() => fail(`no answer in ${timeoutMs} ms`), timeoutMs);
      const fail = (why: string): void => {
        clearTimeout(timer);
        ws.onopen = ws.onerror = null;
        ws.close();
        reject(new PinholeError('server-unreachable', `cannot reach signaling server ${url}: ${why}`));
      };
      ws.onopen = () => {
        clearTimeout(timer);
        ws.onopen = ws.onerror = null;
        resolve(ws);
      };
      // The browser tells a page nothing more about why (by design).
      ws.onerror = () => fail('the connection failed');
    });
    // No frame is missed: message events are tasks, and this runs in a microtask right after onopen's.
    return SignalChannel.greeted(new BrowserSignal(ws), url, deadline, timeoutMs);
  }

  protected override socketOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }
}
