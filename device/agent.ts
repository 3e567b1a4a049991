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
 * (handshake, sealed relay, direct when the data channel opens). Once the
 * handshake has secured a session the device `admit`s it, so the server
 * keeps the controller (it drops one left unadmitted). GPIO and sockets come
 * from outside; state files from the state dir.
 *
 * A refused registration that can clear up (the room is still held by an
 * earlier instance, the server or this address is at a limit) is retried
 * with capped backoff, and each retry is reported; so is registering every
 * fresh pairing code, so a device with pairing on always ends up with a
 * valid code.
 */
import { EventEmitter } from 'node:events';
import { fingerprintOf, type Identity } from '../crypto/index.js';
import {
  type DtlsKeyPair,
  type IceServer,
  loadOrCreateDtlsCert,
  loadOrCreateIdentity,
  nodeAead,
  nodeCurve25519,
  preloadDirect,
  routeServerMessage,
  routeSignal,
  type ServerRoutes,
  SignalClient,
  TrustedControllers,
  weriftDialer,
} from '../platform/node/index.js';
import {
  CLOSE_LEAVE,
  deviceRoom,
  type ErrorCode,
  formatPairingCode,
  generatePairingCode,
  type Level,
  makeRegisterProof,
  type PairingCode,
  PinholeError,
  PROTOCOL_VERSION,
  type Rights,
  type ServerMessage,
  type SignalErrorCode,
} from '../protocol/index.js';
import { Backoff, iceConfigFor, PeerSession } from '../session/index.js';
import type { Path } from '../transport/index.js';
import { Board } from './board.js';
import type { Gpio } from './gpio/gpio.js';
import { CommandHandler } from './handler.js';
import { RecentResults } from './recent.js';
import { SafeState } from './safe-state.js';

/** First reconnect delay after the server connection drops or a registration is refused, in ms. */
export const RECONNECT_BASE_MS = 500;
/** Longest reconnect (and registration retry) delay, in ms: a device waits at most this long to notice the server is back or a limit has cleared. */
export const RECONNECT_MAX_MS = 30_000;
/** Part of each reconnect delay drawn at random: a fleet of devices must not stampede a restarted server. */
const RECONNECT_JITTER = 0.5;
/** Time to wait for `registered`, in ms: the server answers at once unless it is overloaded. */
export const REGISTER_TIMEOUT_MS = 5_000;
/**
 * Time a controller has to finish the handshake, in ms: 1.5 relay round trips
 * plus key generation take well under a second; a peer that stalls must not
 * hold the room (and, for a pairing room, its one attempt) for longer.
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Time a controller in the pairing room has to start the handshake (its
 * first message, with the PAKE), in ms: an honest one sends it as soon as it
 * has joined. One that stays silent holds the room and makes the real user's
 * attempt `code-spent`; after this the device drops it and prints a fresh
 * code (the one the silent one may know is given up too).
 */
export const HANDSHAKE_START_MS = 5_000;
/** SHIM (device branch): controllers served at once unless DeviceConfig.maxControllers says otherwise. */
export const DEFAULT_MAX_CONTROLLERS = 8;

/** Fresh codes tried when the server says a room is taken (4-symbol rooms collide once in ~800k). */
const ROOM_TAKEN_RETRIES = 5;

/**
 * Registration errors that waiting can clear up: at start they are retried
 * (DeviceAgent.start waits); any other error then ends the start. Once the
 * device is running, every error is retried.
 */
const RETRY_AT_START: ReadonlySet<string> = new Set<ErrorCode>([
  'room-taken',
  'rate-limited',
  'register-limited',
  'too-many-rooms',
  'join-limited',
  'expired',
  'timeout',
]);

/** Configuration of a device agent. */
export interface DeviceConfig {
  /** Signaling server URL, ws:// or wss://. */
  server: string;
  /** First pairing code, parsed (parsePairingCode); default: generated. Every later code is generated. */
  code?: PairingCode;
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
  /** SHIM (device branch): sessions served at once, 1..MAX_CONTROLLERS_LIMIT (default DEFAULT_MAX_CONTROLLERS). */
  maxControllers?: number;
  /** SHIM (device branch): rights of controllers that pair from now on (default FULL_RIGHTS). */
  pairRights?: Rights;
}

/** What the agent reports as it runs (the CLI prints these). */
export type DeviceEvent =
  | { event: 'code'; code: string }
  | { event: 'controller'; session: string; name: string; fingerprint: string; paired: boolean; path: Path; controllers: number }
  | { event: 'controller-left'; session: string; name?: string; controllers: number }
  | { event: 'busy'; session: string; controllers: number }
  | { event: 'refused'; session: string; code: string; message: string }
  | { event: 'security'; session: string; code: string }
  | { event: 'path'; session: string; name: string; path: Path; previous: Path }
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
  /** SHIM: its name once secured. */
  name?: string;
}

/** What a room is for. */
type RoomKind = { kind: 'home' } | { kind: 'pairing'; secret: string; display: string; spent: boolean };

/** What a room needs from its agent: settings, the loaded state, and the parts the agent's rooms share. */
interface RoomDeps {
  /** Signaling server URL. */
  server: string;
  identity: Identity;
  /** The DTLS certificate; undefined with the direct path off. */
  dtls: AgentState['dtls'];
  /** Try the direct path. */
  direct: boolean;
  iceServers: IceServer[] | undefined;
  /** The device's name, sent in the handshake. */
  name: string;
  /** The trust list as the state dir holds it now. */
  trusted: () => TrustedControllers;
  /** Rights of controllers that pair from now on. */
  pairRights: Rights | undefined;
  /** A command handler for a secured controller (its fingerprint, its name in the trust list), answering through `send`. */
  newHandler: (peer: string, who: string, send: (payload: unknown) => void) => CommandHandler;
  /** The safe-state watchdog, told when a controller comes and goes; undefined when not configured. */
  watchdog: Pick<SafeState, 'connected' | 'disconnected'> | undefined;
  /** Reports an event. */
  emit: (e: DeviceEvent) => void;
  /** The current pairing code was tried or given up: offer a fresh one. */
  codeSpent: () => void;
  /** This room stopped for good. */
  stopped: (r: Registration) => void;
}

/**
 * One room on the server: a WebSocket registered under `room`, reconnecting
 * and retrying refused registrations with capped backoff, serving one
 * session at a time.
 */
class Registration {
  private signal: SignalClient | undefined;
  private current: Current | undefined;
  private stunPort = 0;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff({ baseMs: RECONNECT_BASE_MS, maxMs: RECONNECT_MAX_MS, jitter: RECONNECT_JITTER });
  /** What the server says to this room, once registered. */
  private readonly routes: ServerRoutes = {
    relay: (m) => this.current?.session.handleServerMessage(m),
    peer: (session) => this.onPeer(session),
    peerLeft: (session) => {
      if (this.current?.id !== session) return;
      this.deps.emit({ event: 'controller-left', session, ...(this.current.name !== undefined ? { name: this.current.name } : {}), controllers: 0 });
      void this.endSession();
    },
    error: (code, message) => this.onError(code, message),
    // A frame the protocol does not allow (an injected plain `signal`, say) is an event, not noise.
    invalid: () => this.deps.emit({ event: 'security', session: this.current?.id ?? '', code: 'server-invalid' }),
  };

  constructor(
    private readonly deps: RoomDeps,
    public room: string,
    readonly kind: RoomKind,
  ) {}

  get path(): Path {
    return this.current?.session.path ?? 'none';
  }

  get busy(): boolean {
    return this.current !== undefined;
  }

  /** This room, in messages. */
  private get label(): string {
    return this.kind.kind === 'home' ? "the device's own room" : `pairing code ${this.kind.display}`;
  }

  /**
   * Connects and registers, retrying with capped backoff until registered or
   * stopped, and reports each retry (an `error` event ending "retrying in N s").
   * Rejects only with an error `fatal` accepts (by default none).
   */
  start(fatal: (e: PinholeError) => boolean = () => false): Promise<void> {
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        this.retryTimer = undefined;
        if (this.stopped) return resolve();
        this.connect().then(resolve, (e: unknown) => {
          if (this.stopped) return resolve();
          const err = e instanceof PinholeError ? e : new PinholeError('server-unreachable', (e as Error).message);
          if (fatal(err)) return reject(err);
          const delay = this.backoff.next();
          const why =
            err.code === 'room-taken' && this.kind.kind === 'home' ? 'another instance of this device (same state dir) is still connected' : err.message;
          this.deps.emit({ event: 'error', code: err.code, message: `${this.label}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s` });
          if (this.kind.kind === 'home' && err.code === 'server-unreachable') this.deps.emit({ event: 'disconnected', retryMs: delay });
          this.retryTimer = setTimeout(attempt, delay);
        });
      };
      attempt();
    });
  }

  /** One attempt: a new socket, registered. Throws PinholeError. */
  private async connect(): Promise<void> {
    const signal = await SignalClient.connect(this.deps.server);
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
    if (this.stopped) {
      signal.close(this.closeCode);
      return;
    }
    this.backoff.reset();
    this.signal = signal;
    routeSignal(signal, { ...this.routes, closed: () => this.onSignalClosed(signal) });
    if (this.current) this.reattach(signal);
    for (const m of early) if (m.type !== 'error') routeServerMessage(m, this.routes);
  }

  /** Registers on `signal` (the home room with a proof of our key); a taken pairing room is retried with fresh codes. */
  private async register(signal: SignalClient): Promise<void> {
    for (let tries = 0; ; tries++) {
      const proof = this.kind.kind === 'home' ? makeRegisterProof(this.deps.identity, signal.nonce, this.room) : undefined;
      signal.send({ type: 'register', v: PROTOCOL_VERSION, room: this.room, ...(proof ? { proof } : {}) });
      const r = await signal.next((m) => (m.type === 'registered' || m.type === 'error' ? m : undefined), REGISTER_TIMEOUT_MS, 'registration');
      if (r.type === 'registered') {
        this.stunPort = r.stunPort;
        if (this.kind.kind === 'pairing') this.deps.emit({ event: 'code', code: this.kind.display });
        return;
      }
      if (r.code === 'room-taken' && this.kind.kind === 'pairing') {
        this.renew(); // a later attempt tries a fresh code too
        if (tries < ROOM_TAKEN_RETRIES) continue;
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

  /** The current session gets the new socket; a secured one is admitted again (the server keeps an admission per session anyway). */
  private reattach(signal: SignalClient): void {
    const cur = this.current!;
    cur.session.attachSignal(signal);
    if (cur.session.isSecured) signal.send({ type: 'admit', session: cur.id });
  }

  private onPeer(session: string): void {
    // The same session again means we reconnected to the server: keep its Link (and any direct path).
    if (this.current?.id === session) {
      if (this.signal) this.reattach(this.signal);
    } else this.startSession(session);
  }

  private onError(code: SignalErrorCode, message: string): void {
    if (code === 'expired') {
      // Unused rooms expire on the server. Home: take it again. Pairing: a fresh code.
      this.renew();
      const signal = this.signal;
      if (signal) {
        this.register(signal).catch((e: Error) => {
          // Closing the socket reconnects with backoff, retrying until registered.
          this.deps.emit({
            event: 'error',
            code: e instanceof PinholeError ? e.code : 'server-unreachable',
            message: `${this.label}: ${e.message}; reconnecting`,
          });
          signal.close();
        });
      }
    } else if (code !== 'no-peer') this.deps.emit({ event: 'error', code, message });
    // (no-peer: a frame we sent crossed the controller's leaving; `peer-left` follows.)
  }

  /** Synchronous, so a frame that arrives right behind `peer` already finds its session. */
  private startSession(id: string): void {
    void this.endSession(); // the old session closes in the background
    const deps = this.deps;
    const kind = this.kind;
    /** A controller in the pairing room sent its first handshake message. */
    let started = false;
    const session = new PeerSession({
      role: 'device',
      sid: id,
      direct: deps.direct,
      dialer: weriftDialer,
      aead: nodeAead,
      curve25519: nodeCurve25519,
      rtc: { ...iceConfigFor(deps.server, this.stunPort, deps.iceServers), ...(deps.dtls ? { dtlsKeys: deps.dtls.keys } : {}) },
      security: {
        role: 'device',
        identity: deps.identity,
        name: deps.name,
        certFp: deps.dtls?.fingerprint ?? null,
        // Re-read on every handshake, so `pinhole device --revoke` takes effect without a restart.
        isTrusted: (k) => deps.trusted().find(k) !== undefined,
        ...(kind.kind === 'pairing'
          ? {
              pairingSecret: () => (kind.spent ? undefined : kind.secret),
              onPairingAttempt: () => {
                started = true;
                kind.spent = true;
                deps.codeSpent();
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
    // A silent controller in the pairing room: give the code up (it may know it) and offer a fresh one.
    const startTimer =
      kind.kind === 'pairing'
        ? setTimeout(() => {
            if (started || session.isSecured || this.current !== cur) return;
            if (!kind.spent) {
              kind.spent = true;
              deps.codeSpent();
            }
            session.refuse('bad-handshake', `the controller did not start the handshake within ${HANDSHAKE_START_MS} ms`);
          }, HANDSHAKE_START_MS)
        : undefined;
    startTimer?.unref();
    session.on('refused', () => {
      clearTimeout(timer);
      clearTimeout(startTimer);
    });
    session.on('secured', (r) => {
      clearTimeout(timer);
      clearTimeout(startTimer);
      // The server drops a controller the device has not admitted: this one proved itself.
      this.signal?.send({ type: 'admit', session: id });
      // The name we show is the one in our trust list, not whatever the controller calls itself today.
      const trusted = deps.trusted();
      const name = r.paired
        ? trusted.add(r.peer.name, r.peer.publicKey, Date.now(), deps.pairRights).name
        : (trusted.find(r.peer.publicKey)?.name ?? r.peer.name);
      const send = (payload: unknown): void => {
        try {
          session.send(payload);
        } catch {
          /* link closed or overflowing: the controller times out and says so */
        }
      };
      cur.handler = deps.newHandler(fingerprintOf(r.peer.publicKey), name, send);
      cur.counted = true;
      deps.watchdog?.connected();
      const handler = cur.handler;
      session.on('message', (m) => void handler.handle(m).then(send));
      cur.name = name;
      this.deps.emit({
        event: 'controller',
        session: id,
        name,
        fingerprint: fingerprintOf(r.peer.publicKey),
        paired: r.paired,
        path: session.path,
        controllers: 1,
      });
    });
    session.on('refused', (code, message) => {
      this.deps.emit({ event: 'refused', session: id, code, message });
      if (this.current === cur) void this.endSession();
    });
    session.on('security', (code) => this.deps.emit({ event: 'security', session: id, code }));
    session.on('path', (path, previous) => this.deps.emit({ event: 'path', session: id, name: cur.name ?? '', path, previous }));
    this.current = cur;
    if (this.signal) session.attachSignal(this.signal);
  }

  private async endSession(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (!c) return;
    c.handler?.dispose(); // before the safe state can run: a blink must not write after it
    if (c.counted) this.deps.watchdog?.disconnected();
    await c.session.close();
    // A spent pairing room has done its one job: leave it, so the old code is unknown to the server.
    // (Unless another session started meanwhile: it is refused as code-spent and ends this way too.)
    if (this.kind.kind === 'pairing' && this.kind.spent && !this.current) await this.stop();
  }

  /** How this room's socket is closed for good: a pairing room is given up at once, the home room keeps its grace. */
  private get closeCode(): number {
    return this.kind.kind === 'pairing' ? CLOSE_LEAVE : 1000;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.deps.stopped(this);
    await this.endSession();
    // A pairing room is given up for good (a code lives as long as this process, and once), so a
    // retried code fails at once; the home room keeps its grace for a restarting agent.
    this.signal?.close(this.closeCode);
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
    if (this.stopped) return;
    const delay = this.backoff.next();
    if (this.kind.kind === 'home') this.deps.emit({ event: 'disconnected', retryMs: delay });
    this.retryTimer = setTimeout(() => void this.start(), delay);
  }
}

/** Loaded state: identity, and the DTLS certificate when the direct path is on. */
interface AgentState {
  identity: Identity;
  dtls: { keys: DtlsKeyPair; fingerprint: string } | undefined;
}

/** A running device agent. */
export class DeviceAgent extends EventEmitter<DeviceAgentEvents> {
  /** @internal the loaded state (tests read the identity). */
  readonly state: AgentState;
  /** Recent request ids and their results, across sessions: a controller that reconnects resends the same ids. */
  private readonly recent = new RecentResults();
  /** The safe-state watchdog, when configured. */
  private readonly safe: SafeState | undefined;
  /** What every room of this agent is given. */
  private readonly deps: RoomDeps;
  private readonly rooms = new Set<Registration>();
  private pairing: Registration | undefined;
  private stopped = false;

  private constructor(
    /** @internal the configuration (tests read the state dir). */ readonly cfg: DeviceConfig,
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
    const { gpio, allowedPins, name, version, stateDir } = cfg;
    // One board for every session: preemption and `by` need to see all of them.
    const board = new Board(gpio);
    // Sessions secured and not yet ended (counted where the safe-state watchdog is told).
    let secured = 0;
    // The trust list as rights are read from it, at every command: parsed again only when the file changed.
    const rightsList = TrustedControllers.reader(stateDir);
    this.deps = {
      server: cfg.server,
      identity: state.identity,
      dtls: state.dtls,
      direct: cfg.direct ?? true,
      iceServers: cfg.iceServers,
      name,
      trusted: () => TrustedControllers.load(stateDir),
      pairRights: cfg.pairRights,
      newHandler: (peer, who, send) =>
        new CommandHandler(
          {
            board,
            allowedPins,
            name,
            version,
            recent: this.recent,
            peer,
            who,
            // Re-read at every command, so `pinhole device --allow/--read-only` applies at the next one. A controller
            // revoked while connected is no longer in the list: it may then only ask for info.
            rights: () => rightsList().findFingerprint(peer)?.rights ?? { access: 'read-only', pins: [] },
            controllers: () => secured,
          },
          send,
        ),
      watchdog: {
        connected: () => {
          secured++;
          this.safe?.connected();
        },
        disconnected: () => {
          secured--;
          this.safe?.disconnected();
        },
      },
      emit: (e) => this.emit('event', e),
      codeSpent: () => this.offerNewCode(),
      stopped: (r) => this.forget(r),
    };
  }

  /**
   * Loads state, connects and registers both rooms; resolves once both are
   * registered. A refusal that can clear up (the room is still held by an
   * earlier instance, a server limit) is retried, reported, while this waits.
   * Rejects with a PinholeError (`usage`, `server-unreachable`, `version`...)
   * or an IdentityError for unusable state files.
   */
  static async start(cfg: DeviceConfig): Promise<DeviceAgent> {
    const identity = loadOrCreateIdentity(cfg.stateDir);
    // A corrupt trust list refuses to start here, naming the file, rather than refusing every controller later.
    TrustedControllers.load(cfg.stateDir);
    let dtls: AgentState['dtls'];
    if (cfg.direct ?? true) {
      const rtc = await preloadDirect();
      dtls = await loadOrCreateDtlsCert(cfg.stateDir, rtc.generateDtlsKeys);
    }
    const agent = new DeviceAgent(cfg, { identity, dtls });
    const fatal = (e: PinholeError): boolean => !RETRY_AT_START.has(e.code);
    try {
      const home = new Registration(agent.deps, deviceRoom(identity.publicKey), { kind: 'home' });
      agent.rooms.add(home);
      await home.start(fatal);
      if (cfg.pairing ?? true) await agent.openPairing(cfg.code, fatal);
    } catch (e) {
      await agent.stop();
      throw e;
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

  /** The current code was tried (or given up): open a new pairing room with a fresh code, retrying until it is registered. */
  private offerNewCode(): void {
    if (this.stopped) return;
    this.openPairing(undefined).catch((e) => this.report(e));
  }

  private forget(r: Registration): void {
    this.rooms.delete(r);
    if (this.pairing === r) this.pairing = undefined;
  }

  private report(e: unknown): void {
    const code = e instanceof PinholeError ? e.code : (((e as { code?: unknown })?.code as string | undefined) ?? 'internal-error');
    this.emit('event', { event: 'error', code: String(code), message: (e as Error).message });
  }

  private async openPairing(fixed: PairingCode | undefined, fatal?: (e: PinholeError) => boolean): Promise<void> {
    const c = fixed ?? generatePairingCode();
    const r = new Registration(this.deps, c.room, { kind: 'pairing', secret: c.secret, display: formatPairingCode(c), spent: false });
    this.pairing = r;
    this.rooms.add(r);
    await r.start(fatal);
  }
}
