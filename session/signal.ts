/**
 * The signaling socket as the core sees it: a text socket to the server whose
 * every frame is checked by parseServerMessage before anyone sees it. The
 * platform shells (platform/node's `ws`, platform/browser's WebSocket) open
 * the socket and feed this class; the greeting, the waiting for answers and
 * the routing live here once. `routeSignal` is the one place that sends what
 * the server says to a role's handlers.
 */
import { type ClientMessage, encode, PinholeError, PROTOCOL_VERSION, parseServerMessage, type ServerMessage, type SignalErrorCode } from '../protocol/index.js';
import { Emitter } from '../transport/index.js';

/** Events of a signaling socket. */
export interface SignalEvents {
  message: [msg: ServerMessage];
  invalid: [reason: string];
  close: [code: number, reason: string];
}

/** What a platform's socket gives the channel: send a text frame, close with a code. */
export interface TextSocket {
  send(text: string): void;
  close(code: number): void;
}

/** A connected signaling socket (platform/node's SignalClient, platform/browser's BrowserSignal). */
export class SignalChannel extends Emitter<SignalEvents> {
  private ended = false;
  private hello: string | undefined;
  /** Settles with the socket's first frame (the server's hello), or an Error if the socket closed first. */
  private greet: (first: ServerMessage | Error) => void = () => undefined;
  private readonly greeting: Promise<ServerMessage | Error>;

  protected constructor(private readonly socket: TextSocket) {
    super();
    this.greeting = new Promise((r) => (this.greet = r));
  }

  /** The shell's socket delivered a frame. */
  protected received(frame: string | Uint8Array): void {
    const m = parseServerMessage(frame);
    if (this.hello === undefined) {
      this.hello = m.ok && m.value.type === 'hello' ? m.value.nonce : '';
      this.greet(m.ok ? m.value : new Error(`its first frame is invalid: ${m.reason}`));
      return;
    }
    if (m.ok) this.emit('message', m.value);
    else this.emit('invalid', m.reason);
  }

  /** The shell's socket closed (or died); the shell calls this once, also after close(). */
  protected closed(code: number, reason: string): void {
    this.greet(new Error(`it closed the connection (${code}) before saying hello`));
    this.ended = true;
    this.onEnd();
    this.emit('close', code, reason);
  }

  /** The shell's own clean-up when the socket ends (timers). */
  protected onEnd(): void {}

  /** True while the socket is open. */
  get isOpen(): boolean {
    return !this.ended && this.socketOpen();
  }

  /** The shell's view: is its socket open now? */
  protected socketOpen(): boolean {
    return true;
  }

  /**
   * Waits for the server's `hello` on a freshly opened channel, at most until
   * `deadline` (Date.now() ms). Rejects with `server-unreachable` (also for a
   * server that does not greet: one of protocol 1), or `version` for a hello
   * of another version, closing the channel.
   */
  protected static async greeted<C extends SignalChannel>(c: C, url: string, deadline: number, timeoutMs: number): Promise<C> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<Error>((r) => {
      timer = setTimeout(
        () => r(new Error(`no hello within ${timeoutMs} ms (not a pinhole server of protocol ${PROTOCOL_VERSION}?)`)),
        Math.max(1, deadline - Date.now()),
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

  /** Sends one message; a closed socket drops it silently (the link resends after reconnecting). */
  send(m: ClientMessage): void {
    if (this.isOpen) this.socket.send(encode(m));
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
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    this.socket.close(code);
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
  /** The server is draining: move to another server within `reconnectMs`. */
  goaway?(reconnectMs: number): void;
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
    case 'goaway':
      return r.goaway?.(m.reconnectMs);
    case 'hello':
    case 'registered':
    case 'joined':
      return;
  }
}

/** Routes everything `signal` emits (messages, invalid frames, its close) until the returned function is called. */
export function routeSignal(signal: SignalChannel, r: ServerRoutes): () => void {
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
