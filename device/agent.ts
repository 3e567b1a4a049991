/**
 * The device agent's shell. It keeps two rooms on the signaling server, each
 * on its own WebSocket with its own reconnect loop:
 *
 *   - the **home** room, named after the device's identity key (deviceRoom):
 *     paired controllers find the device there with no code; the handshake
 *     admits only controllers in the trusted list;
 *   - the **pairing** room, the public half of the pairing code it prints:
 *     the first controller that tries the code spends it (one guess per
 *     code), and a fresh code is printed at once for the next one.
 *
 * Each room serves one controller session at a time over a PeerSession
 * (handshake, sealed relay, direct when the data channel opens). GPIO and
 * sockets come from outside; state files from the state dir.
 */
import { EventEmitter } from 'node:events';
import type { Gpio } from './gpio.js';
import { CommandHandler } from './handler.js';
import { RecentResults } from './recent.js';
import { SafeState } from './safe-state.js';
import type { Level } from './gpio.js';
import {
  CLOSE_LEAVE,
  PROTOCOL_VERSION,
  PeerSession,
  preloadDirect,
  PinholeError,
  SignalClient,
  deviceRoom,
  formatPairingCode,
  generatePairingCode,
  parsePairingCode,
  iceConfigFor,
  loadOrCreateIdentity,
  loadOrCreateDtlsCert,
  TrustedControllers,
  fingerprintOf,
  type DtlsKeyPair,
  type Identity,
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
/**
 * Time a controller has to finish the handshake, in ms: 1.5 relay round trips
 * plus key generation take well under a second; a peer that stalls must not
 * hold the room (and, for a pairing room, its one attempt) for longer.
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Fresh codes tried when the server says a room is taken (4-symbol rooms collide once in ~800k). */
const ROOM_TAKEN_RETRIES = 5;

/** Configuration of a device agent. */
export interface DeviceConfig {
  /** Signaling server URL, ws:// or wss://. */
  server: string;
  /** First pairing code (`RRRR-SSS-SSS`, see parsePairingCode); default: generated. Every later code is generated. */
  code?: string;
  /** Offer a pairing code at all (default true). False: only already-paired controllers can connect. */
  pairing?: boolean;
  /** Name shown by `info` and saved by controllers at pairing. */
  name: string;
  /** Directory with the identity, DTLS certificate and trusted controllers (created 0700). */
  stateDir: string;
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
  /**
   * Safe state: levels to set on these output pins once no controller has been
   * connected for `afterMs` (also after start-up). Off by default.
   */
  safeState?: { pins: ReadonlyMap<number, Level>; afterMs: number };
  /** Receives every DeviceEvent, from the first `code` on. */
  onEvent?: (e: DeviceEvent) => void;
}

/** What the agent reports as it runs (the CLI prints these). */
export type DeviceEvent =
  | { event: 'code'; code: string }
  | { event: 'controller'; session: string; name: string; fingerprint: string; paired: boolean }
  | { event: 'controller-left'; session: string }
  | { event: 'refused'; session: string; code: string; message: string }
  | { event: 'security'; session: string; code: string }
  | { event: 'path'; session: string; path: Path; previous: Path }
  | { event: 'disconnected'; retryMs: number }
  | { event: 'safe-state'; pins: Record<string, Level> }
  | { event: 'error'; code: string; message: string };

export interface DeviceAgentEvents {
  event: [e: DeviceEvent];
}

interface Current {
  id: string;
  session: PeerSession;
  handler: CommandHandler | undefined;
  /** Counted in the safe-state watchdog (secured, not yet ended). */
  counted: boolean;
}

/** What a room is for. */
type RoomKind = { kind: 'home' } | { kind: 'pairing'; secret: string; display: string; spent: boolean };

/**
 * One room on the server: a WebSocket registered under `room`, reconnecting
 * with capped backoff, serving one session at a time.
 */
class Registration {
  private signal: SignalClient | undefined;
  private current: Current | undefined;
  private stunPort = 0;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;

  constructor(
    private readonly agent: DeviceAgent,
    public room: string,
    readonly kind: RoomKind,
  ) {}

  get path(): Path {
    return this.current?.session.path ?? 'none';
  }

  get busy(): boolean {
    return this.current !== undefined;
  }

  async connect(): Promise<void> {
    const signal = await SignalClient.connect(this.agent.cfg.server);
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
    // A frame the protocol does not allow (an injected plain `signal`, say) is an event, not noise.
    signal.on('invalid', () => this.agent.emit('event', { event: 'security', session: this.current?.id ?? '', code: 'server-invalid' }));
    signal.on('close', () => this.onSignalClosed(signal));
    this.current?.session.attachSignal(signal);
    for (const m of early) if (m.type !== 'registered' && m.type !== 'error') this.onMessage(m);
  }

  private async register(signal: SignalClient): Promise<void> {
    for (let tries = 0; ; tries++) {
      signal.send({ type: 'register', v: PROTOCOL_VERSION, room: this.room });
      const r = await signal.next((m) => (m.type === 'registered' || m.type === 'error' ? m : undefined), REGISTER_TIMEOUT_MS, 'registration');
      if (r.type === 'registered') {
        this.stunPort = r.stunPort;
        if (this.kind.kind === 'pairing') this.agent.emit('event', { event: 'code', code: this.kind.display });
        return;
      }
      if (r.code === 'room-taken' && this.kind.kind === 'pairing' && tries < ROOM_TAKEN_RETRIES) {
        this.renew();
        continue;
      }
      throw new PinholeError(r.code, r.message);
    }
  }

  /** A new random code for this pairing room (before it is registered). */
  private renew(): void {
    if (this.kind.kind !== 'pairing') return;
    const c = generatePairingCode();
    this.room = c.room;
    this.kind.secret = c.secret;
    this.kind.display = formatPairingCode(c);
  }

  private onMessage(m: ServerMessage): void {
    switch (m.type) {
      case 'peer':
        // The same session again means we reconnected to the server: keep its Link (and any direct path).
        if (this.current?.id === m.session) {
          if (this.signal) this.current.session.attachSignal(this.signal);
        } else this.startSession(m.session);
        return;
      case 'peer-left':
        if (this.current?.id === m.session) {
          this.agent.emit('event', { event: 'controller-left', session: m.session });
          void this.endSession();
        }
        return;
      case 'error':
        if (m.code === 'expired') {
          // Unused rooms expire on the server. Home: take it again. Pairing: a fresh code.
          this.renew();
          if (this.signal) void this.register(this.signal).catch((e) => this.agent.report(e));
        } else if (m.code !== 'no-peer') this.agent.emit('event', { event: 'error', code: m.code, message: m.message });
        // (no-peer: a frame we sent crossed the controller's leaving; `peer-left` follows.)
        return;
      default:
        this.current?.session.handleServerMessage(m);
    }
  }

  /** Synchronous, so a frame that arrives right behind `peer` already finds its session. */
  private startSession(id: string): void {
    void this.endSession(); // the old session closes in the background
    const { cfg } = this.agent;
    const state = this.agent.state;
    const kind = this.kind;
    const session = new PeerSession({
      role: 'device',
      sid: id,
      direct: cfg.direct ?? true,
      rtc: { ...iceConfigFor(cfg.server, this.stunPort, cfg.iceServers), ...(state.dtls ? { dtlsKeys: state.dtls.keys } : {}) },
      security: {
        role: 'device',
        identity: state.identity,
        name: cfg.name,
        certFp: state.dtls?.fingerprint ?? null,
        // Re-read on every handshake, so `pinhole device --revoke` takes effect without a restart.
        isTrusted: (k) => TrustedControllers.load(cfg.stateDir).find(k) !== undefined,
        ...(kind.kind === 'pairing'
          ? {
              pairingSecret: () => (kind.spent ? undefined : kind.secret),
              onPairingAttempt: () => {
                kind.spent = true;
                this.agent.offerNewCode();
              },
            }
          : {}),
      },
    });
    const cur: Current = { id, session, handler: undefined, counted: false };
    const timer = setTimeout(() => {
      if (!session.isSecured) session.refuse('bad-handshake', `the controller did not finish the handshake within ${HANDSHAKE_TIMEOUT_MS} ms`);
    }, HANDSHAKE_TIMEOUT_MS);
    timer.unref();
    session.on('refused', () => clearTimeout(timer));
    session.on('secured', (r) => {
      clearTimeout(timer);
      // The name we show is the one in our trust list, not whatever the controller calls itself today.
      const trusted = TrustedControllers.load(cfg.stateDir);
      const name = r.paired ? trusted.add(r.peer.name, r.peer.publicKey, Date.now()).name : (trusted.find(r.peer.publicKey)?.name ?? r.peer.name);
      const send = (payload: unknown): void => {
        try {
          session.send(payload);
        } catch {
          /* link closed or overflowing: the controller times out and says so */
        }
      };
      // One memory of recent ids for the agent's life: a controller that reconnects resends the same ids.
      cur.handler = new CommandHandler(
        { gpio: cfg.gpio, allowedPins: cfg.allowedPins, name: cfg.name, version: cfg.version, recent: this.agent.recent, peer: fingerprintOf(r.peer.publicKey) },
        send,
      );
      cur.counted = true;
      this.agent.safe?.connected();
      const handler = cur.handler;
      session.on('message', (m) => void handler.handle(m).then(send));
      this.agent.emit('event', { event: 'controller', session: id, name, fingerprint: fingerprintOf(r.peer.publicKey), paired: r.paired });
    });
    session.on('refused', (code, message) => {
      this.agent.emit('event', { event: 'refused', session: id, code, message });
      if (this.current === cur) void this.endSession();
    });
    session.on('security', (code) => this.agent.emit('event', { event: 'security', session: id, code }));
    session.on('path', (path, previous) => this.agent.emit('event', { event: 'path', session: id, path, previous }));
    this.current = cur;
    if (this.signal) session.attachSignal(this.signal);
  }

  private async endSession(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (!c) return;
    c.handler?.dispose(); // before the safe state can run: a blink must not write after it
    if (c.counted) this.agent.safe?.disconnected();
    await c.session.close();
    // A spent pairing room has done its one job: leave it, so the old code is unknown to the server.
    // (Unless another session started meanwhile: it is refused as code-spent and ends this way too.)
    if (this.kind.kind === 'pairing' && this.kind.spent && !this.current) await this.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.agent.forget(this);
    await this.endSession();
    // A pairing room is given up for good (a code lives as long as this process, and once), so a
    // retried code fails at once; the home room keeps its grace for a restarting agent.
    this.signal?.close(this.kind.kind === 'pairing' ? CLOSE_LEAVE : 1000);
  }

  private onSignalClosed(signal: SignalClient): void {
    if (signal !== this.signal) return;
    this.signal = undefined;
    this.current?.session.detachSignal();
    // A spent pairing room is not worth coming back to: its session (if any) runs on direct or ends.
    if (this.kind.kind === 'pairing' && this.kind.spent) {
      if (!this.current) void this.stop();
      return;
    }
    if (!this.stopped) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    // Exponential backoff with full jitter, capped: a fleet of devices must not stampede a restarted server.
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempt++);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    if (this.kind.kind === 'home') this.agent.emit('event', { event: 'disconnected', retryMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((e) => {
        this.agent.report(e);
        if (!this.stopped) this.scheduleReconnect();
      });
    }, delay);
  }
}

/** Loaded state: identity, and the DTLS certificate when the direct path is on. */
interface AgentState {
  identity: Identity;
  dtls: { keys: DtlsKeyPair; fingerprint: string } | undefined;
}

/** A running device agent. */
export class DeviceAgent extends EventEmitter<DeviceAgentEvents> {
  /** @internal */
  readonly state: AgentState;
  /** @internal recent request ids and their results, across sessions (at-most-once execution). */
  readonly recent = new RecentResults();
  /** @internal the safe-state watchdog, when configured. */
  readonly safe: SafeState | undefined;
  private readonly rooms = new Set<Registration>();
  private pairing: Registration | undefined;
  private stopped = false;

  private constructor(
    /** @internal */ readonly cfg: DeviceConfig,
    state: AgentState,
  ) {
    super();
    this.state = state;
    if (cfg.onEvent) this.on('event', cfg.onEvent);
    if (cfg.safeState && cfg.safeState.pins.size > 0) {
      this.safe = new SafeState({
        gpio: cfg.gpio,
        pins: cfg.safeState.pins,
        afterMs: cfg.safeState.afterMs,
        onApplied: (pins) => this.emit('event', { event: 'safe-state', pins: Object.fromEntries([...pins].map(([p, v]) => [String(p), v])) }),
        onError: (pin, e) => this.emit('event', { event: 'error', code: 'hardware', message: `safe state: pin ${pin}: ${(e as Error).message}` }),
      });
    }
  }

  /** Loads state, connects and registers both rooms; resolves once both are registered. Rejects with a PinholeError. */
  static async start(cfg: DeviceConfig): Promise<DeviceAgent> {
    let first: { room: string; secret: string } | undefined;
    if (cfg.code !== undefined) {
      const p = parsePairingCode(cfg.code);
      if (!p.ok) throw new PinholeError('usage', `--code: ${p.reason}`);
      first = p;
    }
    const identity = loadOrCreateIdentity(cfg.stateDir);
    let dtls: AgentState['dtls'];
    if (cfg.direct ?? true) {
      const rtc = await preloadDirect();
      dtls = await loadOrCreateDtlsCert(cfg.stateDir, rtc.generateDtlsKeys);
    }
    const agent = new DeviceAgent(cfg, { identity, dtls });
    const home = new Registration(agent, deviceRoom(identity.publicKey), { kind: 'home' });
    agent.rooms.add(home);
    await home.connect();
    if (cfg.pairing ?? true) {
      try {
        await agent.openPairing(first);
      } catch (e) {
        await agent.stop();
        throw e;
      }
    }
    return agent;
  }

  /** Retried requests answered from memory instead of running again (at-most-once), since start. */
  get recentDuplicates(): number {
    return this.recent.duplicates;
  }

  /** This device's identity fingerprint (what a controller shows after pairing). */
  get fingerprint(): string {
    return this.state.identity.fingerprint;
  }

  /** The current pairing code, as displayed; undefined with pairing off. */
  get pairingCode(): string | undefined {
    const k = this.pairing?.kind;
    return k?.kind === 'pairing' ? k.display : undefined;
  }

  /** The path of a session in progress ('none' with no controller). */
  get path(): Path {
    for (const r of this.rooms) if (r.busy) return r.path;
    return 'none';
  }

  /** Stops serving: closes every session and server connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.rooms].map((r) => r.stop()));
    this.safe?.dispose();
  }

  /** @internal the current code was tried: open a new pairing room with a fresh code. */
  offerNewCode(): void {
    if (this.stopped) return;
    this.openPairing(undefined).catch((e) => this.report(e));
  }

  /** @internal */
  forget(r: Registration): void {
    this.rooms.delete(r);
    if (this.pairing === r) this.pairing = undefined;
  }

  /** @internal */
  report(e: unknown): void {
    const code = e instanceof PinholeError ? e.code : ((e as { code?: unknown })?.code as string | undefined) ?? 'internal-error';
    this.emit('event', { event: 'error', code: String(code), message: (e as Error).message });
  }

  private async openPairing(fixed: { room: string; secret: string } | undefined): Promise<void> {
    const c = fixed ?? generatePairingCode();
    const r = new Registration(this, c.room, { kind: 'pairing', secret: c.secret, display: formatPairingCode(c), spent: false });
    this.pairing = r;
    this.rooms.add(r);
    await r.connect();
  }
}
