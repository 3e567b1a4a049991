/**
 * The controller API, in the manner of Johnny-Five:
 *
 *   const dev = await connect({ server, code });
 *   await dev.write(20, 1);
 *   dev.on('change', (c) => ...);
 *   await dev.close();
 *
 * Commands go over the relay at once and move to the direct path when it
 * opens; `dev.path` tells which is in use.
 */
import { EventEmitter } from 'node:events';
import {
  DEFAULT_BLINK_INTERVAL_MS,
  DEFAULT_BLINK_TIMES,
  PROTOCOL_VERSION,
  PeerSession,
  preloadDirect,
  PinholeError,
  SignalClient,
  iceConfigFor,
  parseCode,
  parseIncoming,
  type ChangeNotification,
  type IceServer,
  type Level,
  type Methods,
  type Method,
  type Path,
  type PinMode,
  type ServerMessage,
} from '../link/index.js';

/** Default time for connecting and for each command, in ms: long enough for a slow relay, short enough for a person. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Options of connect(). */
export interface ConnectOptions {
  /** Signaling server URL, ws:// or wss://. */
  server: string;
  /** The device's pairing code, as typed (case and dashes do not matter). */
  code: string;
  /** Timeout for connecting and for each command, in ms (default DEFAULT_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Try the direct path (default true). */
  direct?: boolean;
  /** Extra ICE servers after the server's own STUN. */
  iceServers?: IceServer[];
}

/** A pin change pushed by the device. `ts` is the device's clock, in ms. */
export type Change = ChangeNotification['params'];

/** Result of device.info. */
export type DeviceInfo = Methods['device.info']['result'];

export interface DeviceEvents {
  change: [c: Change];
  path: [path: Path, previous: Path];
  /** The session ended: the device left or the connection died. */
  close: [reason: PinholeError | undefined];
  /** Diagnostic state of the direct attempt. */
  rtc: [state: string];
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: PinholeError) => void;
  timer: NodeJS.Timeout;
}

/** A connected device. */
export class Device extends EventEmitter<DeviceEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  /** @internal use connect() */
  constructor(
    private readonly signal: SignalClient,
    private readonly session: PeerSession,
    private readonly timeoutMs: number,
  ) {
    super();
    session.on('message', (m) => this.onPayload(m));
    session.on('path', (p, prev) => this.emit('path', p, prev));
    session.on('rtc', (s) => this.emit('rtc', s));
    signal.on('message', (m) => this.onServer(m));
    signal.on('close', () => {
      session.detachSignal();
      if (session.path === 'none') this.shutdown(new PinholeError('server-unreachable', 'lost the signaling server and no direct path'));
    });
  }

  /** The path commands travel on: 'relay', 'direct', 'turn', or 'none'. */
  get path(): Path {
    return this.session.path;
  }

  /** Drives an output pin. */
  async write(pin: number, value: Level): Promise<void> {
    await this.call('gpio.write', { pin, value });
  }

  /** Reads a pin. */
  async read(pin: number): Promise<Level> {
    return (await this.call('gpio.read', { pin })).value;
  }

  /** Sets a pin's direction. */
  async mode(pin: number, mode: PinMode): Promise<void> {
    await this.call('gpio.mode', { pin, mode });
  }

  /** Toggles a pin on the device's own clock (defaults: 20 toggles, 300 ms, as in the original script). Resolves when done. */
  async blink(pin: number, opts: { times?: number; intervalMs?: number } = {}): Promise<Methods['gpio.blink']['result']> {
    const times = opts.times ?? DEFAULT_BLINK_TIMES;
    const intervalMs = opts.intervalMs ?? DEFAULT_BLINK_INTERVAL_MS;
    return this.call('gpio.blink', { pin, times, intervalMs }, this.timeoutMs + times * intervalMs);
  }

  /** Subscribes to a pin's edges (emitted as 'change'); resolves with its current value. */
  async watch(pin: number): Promise<Level> {
    return (await this.call('gpio.watch', { pin })).value;
  }

  /** Stops watching a pin. */
  async unwatch(pin: number): Promise<void> {
    await this.call('gpio.unwatch', { pin });
  }

  /** Device name, backend, board and allowed pins. */
  info(): Promise<DeviceInfo> {
    return this.call('device.info', {});
  }

  /** Resolves true once the path is a data channel ('direct' or 'turn'), false if not within `timeoutMs`. */
  whenDirect(timeoutMs: number): Promise<boolean> {
    if (this.path === 'direct' || this.path === 'turn') return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.off('path', on);
        resolve(false);
      }, timeoutMs);
      const on = (p: Path): void => {
        if (p !== 'direct' && p !== 'turn') return;
        clearTimeout(t);
        this.off('path', on);
        resolve(true);
      };
      this.on('path', on);
    });
  }

  /** Sends one request and waits for its result. Rejects with a PinholeError whose code is the device's or 'timeout'. */
  call<M extends Method>(method: M, params: Methods[M]['params'], timeoutMs = this.timeoutMs): Promise<Methods[M]['result']> {
    if (this.closed) return Promise.reject(new PinholeError('link-closed', 'device connection is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PinholeError('timeout', `${method} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.session.send({ jsonrpc: '2.0', id, method, params });
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e instanceof PinholeError ? e : new PinholeError('link-closed', (e as Error).message));
      }
    });
  }

  /** Ends the session and the server connection. */
  async close(): Promise<void> {
    this.shutdown(undefined);
    await this.session.close();
    this.signal.close();
  }

  private onPayload(m: unknown): void {
    const msg = parseIncoming(m);
    if (!msg) return;
    if (msg.kind === 'change') {
      this.emit('change', msg.change);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error) p.reject(new PinholeError(msg.error.data.code, msg.error.message));
    else p.resolve(msg.result);
  }

  private onServer(m: ServerMessage): void {
    if (m.type === 'peer-left') {
      // The device left the server; a live direct path may still carry us.
      this.session.detachSignal();
      if (this.session.path === 'none') this.shutdown(new PinholeError('peer-left', 'the device disconnected'));
      return;
    }
    if (m.type === 'peer') {
      // The device is back on the server (same session): the relay works again.
      this.session.attachSignal(this.signal);
      return;
    }
    this.session.handleServerMessage(m);
  }

  private shutdown(reason: PinholeError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    const err = reason ?? new PinholeError('link-closed', 'device connection closed');
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.emit('close', reason);
  }
}

/**
 * Pairs with the device holding `code` and returns it, ready for commands.
 * Rejects with PinholeError: `bad-code`/`unknown-code` (no such device),
 * `device-offline`, `room-full`, `server-unreachable` or `timeout`.
 */
export async function connect(opts: ConnectOptions): Promise<Device> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const parsed = parseCode(opts.code);
  if (!parsed.ok) throw new PinholeError('bad-code', parsed.reason);
  const deadline = Date.now() + timeoutMs;
  if (opts.direct ?? true) void preloadDirect();
  const signal = await SignalClient.connect(opts.server, timeoutMs);
  try {
    signal.send({ type: 'join', v: PROTOCOL_VERSION, code: parsed.code });
    const r = await signal.next((m) => (m.type === 'joined' || m.type === 'error' ? m : undefined), timeoutMs, 'an answer to join');
    if (r.type === 'error') throw new PinholeError(r.code, r.message);
    if (r.waiting) {
      // The code is known but its device is not connected now: wait for it, up to the timeout.
      // The server gives up on an absent device after its grace period and says `expired`: still offline to us.
      const offline = (): PinholeError => new PinholeError('device-offline', `device is offline (waited ${timeoutMs} ms)`);
      const w = await signal
        .next((m) => (m.type === 'peer' || m.type === 'error' ? m : undefined), Math.max(1, deadline - Date.now()), 'the device')
        .catch((e: PinholeError) => {
          throw e.code === 'timeout' ? offline() : e;
        });
      if (w.type === 'error') throw w.code === 'expired' ? offline() : new PinholeError(w.code, w.message);
    }
    const session = new PeerSession({
      role: 'controller',
      direct: opts.direct ?? true,
      rtc: iceConfigFor(opts.server, r.stunPort, opts.iceServers),
    });
    const dev = new Device(signal, session, timeoutMs);
    session.attachSignal(signal);
    session.startDirect();
    return dev;
  } catch (e) {
    signal.close();
    throw e;
  }
}
