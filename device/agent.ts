/**
 * The device agent's shell: registers a code with the signaling server, then
 * serves one controller session at a time over a Link (relay first, direct
 * when the data channel opens). GPIO, clocks and sockets come from outside.
 */
import { EventEmitter } from 'node:events';
import type { Gpio } from './gpio.js';
import { CommandHandler } from './handler.js';
import {
  PROTOCOL_VERSION,
  PeerSession,
  preloadDirect,
  PinholeError,
  SignalClient,
  generateCode,
  iceConfigFor,
  parseCode,
  type IceServer,
  type Path,
  type ServerMessage,
} from '../link/index.js';

/** First reconnect delay after the server connection drops, in ms. */
export const RECONNECT_BASE_MS = 500;
/** Longest reconnect delay, in ms: a device waits at most this long to notice the server is back. */
export const RECONNECT_MAX_MS = 30_000;
/** Time to wait for `registered`, in ms: the server answers at once unless it is overloaded. */
export const REGISTER_TIMEOUT_MS = 5_000;

/** Configuration of a device agent. */
export interface DeviceConfig {
  /** Signaling server URL, ws:// or wss://. */
  server: string;
  /** Fixed pairing code; default: a fresh generated code, renewed when it expires. */
  code?: string;
  /** Name shown by `info`. */
  name: string;
  /** The GPIO backend (sim by default in the CLI). */
  gpio: Gpio;
  /** Pins a controller may touch; undefined = all. */
  allowedPins?: ReadonlySet<number>;
  /** Try the direct path (default true). */
  direct?: boolean;
  /** Extra ICE servers after the server's own STUN. */
  iceServers?: IceServer[];
  /** pinhole version reported by `info`. */
  version: string;
  /** Receives every DeviceEvent, from the first `code` on. */
  onEvent?: (e: DeviceEvent) => void;
}

/** What the agent reports as it runs (the CLI prints these). */
export type DeviceEvent =
  | { event: 'code'; code: string }
  | { event: 'controller'; session: string }
  | { event: 'controller-left'; session: string }
  | { event: 'path'; session: string; path: Path; previous: Path }
  | { event: 'disconnected'; retryMs: number }
  | { event: 'error'; code: string; message: string };

export interface DeviceAgentEvents {
  event: [e: DeviceEvent];
}

/** A running device agent. */
export class DeviceAgent extends EventEmitter<DeviceAgentEvents> {
  private signal: SignalClient | undefined;
  private current: { id: string; session: PeerSession; handler: CommandHandler } | undefined;
  private code: string;
  private readonly fixedCode: boolean;
  private stunPort = 0;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;

  private constructor(private readonly cfg: DeviceConfig) {
    super();
    if (cfg.onEvent) this.on('event', cfg.onEvent);
    if (cfg.code !== undefined) {
      const p = parseCode(cfg.code);
      if (!p.ok) throw new PinholeError('bad-code', p.reason);
      this.code = p.code;
      this.fixedCode = true;
    } else {
      this.code = generateCode();
      this.fixedCode = false;
    }
  }

  /** Connects and registers; resolves once the code is registered. Rejects with a PinholeError. */
  static async start(cfg: DeviceConfig): Promise<DeviceAgent> {
    const agent = new DeviceAgent(cfg);
    if (cfg.direct ?? true) await preloadDirect();
    await agent.connect();
    return agent;
  }

  /** The code registered now (normalised). */
  get pairingCode(): string {
    return this.code;
  }

  /** The current session's path, or 'none' with no controller. */
  get path(): Path {
    return this.current?.session.path ?? 'none';
  }

  /** Stops serving: closes the session and the server connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    await this.endSession();
    this.signal?.close();
  }

  private async connect(): Promise<void> {
    const signal = await SignalClient.connect(this.cfg.server);
    // `peer` can arrive in the same read as `registered` (a controller was waiting):
    // hold everything that comes before we are listening for real.
    const early: ServerMessage[] = [];
    const hold = (m: ServerMessage): void => void early.push(m);
    signal.on('message', hold);
    try {
      await this.register(signal);
    } catch (e) {
      signal.close();
      throw e;
    } finally {
      signal.off('message', hold);
    }
    this.attempt = 0;
    this.signal = signal;
    signal.on('message', (m) => this.onMessage(m));
    signal.on('close', () => this.onSignalClosed(signal));
    this.current?.session.attachSignal(signal);
    for (const m of early) if (m.type !== 'registered' && m.type !== 'error') this.onMessage(m);
  }

  private async register(signal: SignalClient): Promise<void> {
    for (let tries = 0; ; tries++) {
      signal.send({ type: 'register', v: PROTOCOL_VERSION, code: this.code });
      const r = await signal.next(
        (m) => (m.type === 'registered' || m.type === 'error' ? m : undefined),
        REGISTER_TIMEOUT_MS,
        'registration',
      );
      if (r.type === 'registered') {
        this.stunPort = r.stunPort;
        this.emit('event', { event: 'code', code: r.code });
        return;
      }
      if (r.code === 'code-taken' && !this.fixedCode && tries < 3) {
        this.code = generateCode();
        continue;
      }
      throw new PinholeError(r.code, r.message);
    }
  }

  private onMessage(m: ServerMessage): void {
    switch (m.type) {
      case 'peer':
        // The same session again means we reconnected to the server: keep its Link (and any direct path).
        if (this.current?.id === m.session) {
          if (this.signal) this.current.session.attachSignal(this.signal);
        } else void this.startSession(m.session);
        return;
      case 'peer-left':
        if (this.current?.id === m.session) {
          this.emit('event', { event: 'controller-left', session: m.session });
          void this.endSession();
        }
        return;
      case 'error':
        if (m.code === 'expired') {
          // Unused codes expire on the server; take a new one (or the same, if fixed) and show it.
          if (!this.fixedCode) this.code = generateCode();
          if (this.signal) void this.register(this.signal).catch((e) => this.report(e));
        } else this.emit('event', { event: 'error', code: m.code, message: m.message });
        return;
      default:
        this.current?.session.handleServerMessage(m);
    }
  }

  private async startSession(id: string): Promise<void> {
    await this.endSession();
    const session = new PeerSession({
      role: 'device',
      direct: this.cfg.direct ?? true,
      rtc: iceConfigFor(this.cfg.server, this.stunPort, this.cfg.iceServers),
    });
    const send = (payload: unknown): void => {
      try {
        session.send(payload);
      } catch {
        /* link closed or overflowing: the controller times out and says so */
      }
    };
    const handler = new CommandHandler(
      { gpio: this.cfg.gpio, allowedPins: this.cfg.allowedPins, name: this.cfg.name, version: this.cfg.version },
      send,
    );
    session.on('message', (m) => void handler.handle(m).then(send));
    session.on('path', (path, previous) => this.emit('event', { event: 'path', session: id, path, previous }));
    this.current = { id, session, handler };
    if (this.signal) session.attachSignal(this.signal);
    this.emit('event', { event: 'controller', session: id });
  }

  private async endSession(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (!c) return;
    c.handler.dispose();
    await c.session.close();
  }

  private onSignalClosed(signal: SignalClient): void {
    if (signal !== this.signal) return;
    this.signal = undefined;
    this.current?.session.detachSignal();
    if (!this.stopped) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    // Exponential backoff with full jitter, capped: a fleet of devices must not stampede a restarted server.
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempt++);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.emit('event', { event: 'disconnected', retryMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((e) => {
        this.report(e);
        if (!this.stopped) this.scheduleReconnect();
      });
    }, delay);
  }

  private report(e: unknown): void {
    const code = e instanceof PinholeError ? e.code : 'internal-error';
    this.emit('event', { event: 'error', code, message: (e as Error).message });
  }
}
