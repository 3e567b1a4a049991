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
 * The device serves many controller sessions at once: up to
 * `maxControllers` across both rooms (the home room registers with that
 * cap, the pairing room with 1; the device enforces its own count too, so a
 * server that ignores the cap cannot make it exceed it: a session past it is
 * refused with a plain handshake `fail{device-busy}`). Each session is its
 * own PeerSession (handshake, keys, sealed relay, direct path) with its own
 * CommandHandler (watches); the server tags every relay with its session and
 * the device names the session in every relay it sends. Once the handshake
 * has secured a session the device `admit`s it, so the server keeps the
 * controller (it drops one left unadmitted). A session ends when its
 * controller leaves (`peer-left`), is refused, or has no path left (its
 * relay went with the server socket and it has no data channel): no
 * session outlives every way to reach its controller. GPIO and sockets come
 * from outside; state files from the state dir.
 *
 * A refused registration that can clear up (the room is still held by an
 * earlier instance, the server or this address is at a limit) is retried
 * with capped backoff, and each retry is reported; so is registering every
 * fresh pairing code, so a device with pairing on always ends up with a
 * valid code.
 */
import { EventEmitter } from 'node:events';
import { encodeHandshake, fingerprintOf, type Identity } from '../crypto/index.js';
import {
  type DtlsKeyPair,
  type IceServer,
  loadOrCreateDtlsCert,
  loadOrCreateIdentity,
  nodeAead,
  nodeCurve25519,
  preloadDirect,
  type RelayMessage,
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
  FULL_RIGHTS,
  formatPairingCode,
  generatePairingCode,
  type Level,
  MAX_CONTROLLERS_LIMIT,
  makeRegisterProof,
  PAIRING_ROOM_CONTROLLERS,
  type PairingCode,
  PinholeError,
  PROTOCOL_VERSION,
  type Rights,
  type ServerMessage,
  type SignalErrorCode,
} from '../protocol/index.js';
import { Backoff, iceConfigFor, PeerSession, type RelaySocket, ServerList } from '../session/index.js';
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
 * Time a controller has to finish the handshake, in ms (each session its
 * own): 1.5 relay round trips plus key generation take well under a second;
 * a peer that stalls must not hold a place among the device's sessions (and,
 * for a pairing room, its one attempt) for longer.
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

/** Fresh codes tried when the server says a room is taken (4-symbol rooms collide once in ~800k). */
const ROOM_TAKEN_RETRIES = 5;

/**
 * Controller sessions a device serves at once by default (`--max-controllers`):
 * a dashboard, a few scripts and a person or two, and still only a few tens
 * of MB of werift peers on a small board.
 */
export const DEFAULT_MAX_CONTROLLERS = 8;
/**
 * Sessions refused as `device-busy` that a room remembers, to refuse their
 * `c1` again (the first `fail` can reach a controller before it listens).
 * Each is forgotten at its `peer-left`, which the server sends once it drops
 * the unadmitted controller; the bound only holds off a server that never does.
 */
const MAX_BUSY_REMEMBERED = MAX_CONTROLLERS_LIMIT;

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
  'cluster-unavailable',
]);

/** Configuration of a device agent. */
export interface DeviceConfig {
  /** Signaling server URL, ws:// or wss://; or several of one deployment, comma-separated, tried in a random order. */
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
   * Controller sessions served at once, handshaking or secured, across the
   * home and the pairing room: an integer 1..MAX_CONTROLLERS_LIMIT (default
   * DEFAULT_MAX_CONTROLLERS). One more is refused with `device-busy`.
   */
  maxControllers?: number;
  /** Rights given to controllers that pair from now on (default FULL_RIGHTS); stored in the trust list. */
  pairRights?: Rights;
  /**
   * Safe state: levels to set on these output pins once no controller has been
   * connected for `afterMs` (also after start-up). Off by default.
   */
  safeState?: { pins: ReadonlyMap<number, Level>; afterMs: number };
  /** Receives every DeviceEvent, from the first `code` on. */
  onEvent?: (e: DeviceEvent) => void;
}

/**
 * What the agent reports as it runs (the CLI prints these). `controllers`:
 * secured sessions after the event (in `busy`: the sessions, handshaking
 * included, that fill the device). `name`: the controller's name in the
 * device's trust list.
 */
export type DeviceEvent =
  | { event: 'code'; code: string }
  | { event: 'controller'; session: string; name: string; fingerprint: string; paired: boolean; path: Path; controllers: number }
  /** A session ended (its controller left, it had no path left, or it was refused once secured). `name`: undefined if it never secured. */
  | { event: 'controller-left'; session: string; name?: string; controllers: number }
  | { event: 'refused'; session: string; code: string; message: string }
  /** A controller past the device's cap was refused with `device-busy`. */
  | { event: 'busy'; session: string; controllers: number }
  | { event: 'security'; session: string; code: string }
  | { event: 'path'; session: string; name: string; path: Path; previous: Path }
  | { event: 'disconnected'; retryMs: number }
  | { event: 'safe-state'; pins: Record<string, Level> }
  | { event: 'error'; code: string; message: string };

export interface DeviceAgentEvents {
  event: [e: DeviceEvent];
}

/** One controller session of a room. */
interface Current {
  id: string;
  session: PeerSession;
  handler: CommandHandler | undefined;
  /** The controller's name in the trust list, once secured. */
  name: string | undefined;
  /** Counted in the safe-state watchdog (secured, not yet ended). */
  counted: boolean;
}

/** What a room is for. */
type RoomKind = { kind: 'home' } | { kind: 'pairing'; secret: string; display: string; spent: boolean };

/** What a room needs from its agent: settings, the loaded state, and the parts the agent's rooms share. */
interface RoomDeps {
  /** The signaling servers, one per connection attempt. */
  servers: ServerList;
  identity: Identity;
  /** The DTLS certificate; undefined with the direct path off. */
  dtls: AgentState['dtls'];
  /** Try the direct path. */
  direct: boolean;
  iceServers: IceServer[] | undefined;
  /** The device's name, sent in the handshake. */
  name: string;
  /** Sessions the device serves at once, across its rooms (DeviceConfig.maxControllers). */
  maxControllers: number;
  /** Sessions, handshaking or secured, in all of the agent's rooms now. */
  sessions: () => number;
  /** Secured sessions in all of the agent's rooms now. */
  controllers: () => number;
  /** Rights of a controller that pairs now. */
  pairRights: Rights;
  /** The trust list as the state dir holds it now. */
  trusted: () => TrustedControllers;
  /** A command handler for a secured controller (its fingerprint and its name in the trust list), answering through `send`. */
  newHandler: (peer: string, name: string, send: (payload: unknown) => void) => CommandHandler;
  /** The safe-state watchdog, told when a controller comes and goes; undefined when not configured. */
  watchdog: Pick<SafeState, 'connected' | 'disconnected'> | undefined;
  /** Reports an event. */
  emit: (e: DeviceEvent) => void;
  /** The current pairing code was tried or given up: offer a fresh one. */
  codeSpent: () => void;
  /** This room stopped for good. */
  stopped: (r: Registration) => void;
}

/** A signaling socket as one session sees it: every relay it sends names that session. */
function taggedSocket(signal: SignalClient, session: string): RelaySocket {
  return { send: (m) => signal.send(m.type === 'relay' ? { ...m, session } : m) };
}

/**
 * One room on the server: a WebSocket registered under `room`, reconnecting
 * and retrying refused registrations with capped backoff, serving its
 * sessions (by the server's session id) at once.
 */
class Registration {
  private signal: SignalClient | undefined;
  private readonly sessions = new Map<string, Current>();
  /** Sessions refused as `device-busy`, oldest first: a `c1` from one is refused again. */
  private readonly busy = new Set<string>();
  private stunPort = 0;
  /** The server of the current socket (its host is also the STUN server's). */
  private url = '';
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff({ baseMs: RECONNECT_BASE_MS, maxMs: RECONNECT_MAX_MS, jitter: RECONNECT_JITTER });
  /** What the server says to this room, once registered. */
  private readonly routes: ServerRoutes = {
    relay: (m) => this.onRelay(m),
    peer: (session) => this.onPeer(session),
    peerLeft: (session) => {
      this.busy.delete(session);
      const cur = this.sessions.get(session);
      if (cur) void this.endSession(cur, true);
    },
    error: (code, message) => this.onError(code, message),
    // The server is draining: reconnect (to the next server of the list) as after any loss of the socket.
    goaway: () => {
      this.deps.servers.avoid(this.url);
      this.signal?.close();
    },
    // A frame the protocol does not allow (an injected plain `signal`, say) is an event, not noise.
    invalid: () => this.deps.emit({ event: 'security', session: '', code: 'server-invalid' }),
  };

  constructor(
    private readonly deps: RoomDeps,
    public room: string,
    readonly kind: RoomKind,
  ) {}

  /** Sessions of this room, handshaking or secured. */
  get size(): number {
    return this.sessions.size;
  }

  /** Secured sessions of this room. */
  get secured(): number {
    let n = 0;
    for (const c of this.sessions.values()) if (c.counted) n++;
    return n;
  }

  /** The paths of this room's secured sessions, oldest session first. */
  paths(): Path[] {
    return [...this.sessions.values()].filter((c) => c.counted).map((c) => c.session.path);
  }

  /** Most sessions this room takes (the agent's cap across rooms applies too). */
  private get cap(): number {
    return this.kind.kind === 'home' ? this.deps.maxControllers : PAIRING_ROOM_CONTROLLERS;
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

  /**
   * One attempt: a new socket, registered. Throws PinholeError. Sessions kept
   * from the last socket (those on a data channel, or still handshaking) are
   * given this one when the server announces them again (`peer{session}`,
   * right behind `registered`): one it does not announce has no controller in
   * the room any more.
   */
  private async connect(): Promise<void> {
    const url = this.deps.servers.next();
    const signal = await SignalClient.connect(url);
    this.url = url;
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
    for (const m of early) if (m.type !== 'error') routeServerMessage(m, this.routes);
  }

  /** Registers on `signal` (the home room with a proof of our key); a taken pairing room is retried with fresh codes. */
  private async register(signal: SignalClient): Promise<void> {
    for (let tries = 0; ; tries++) {
      const proof = this.kind.kind === 'home' ? makeRegisterProof(this.deps.identity, signal.nonce, this.room) : undefined;
      signal.send({ type: 'register', v: PROTOCOL_VERSION, room: this.room, maxControllers: this.cap, ...(proof ? { proof } : {}) });
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

  /** A relay goes to the session the server tagged it with; one of an ended session is dropped (it crossed the ending). */
  private onRelay(m: RelayMessage): void {
    if (m.session === undefined) {
      // The server tags every relay to a device: an untagged one is not from a conforming server.
      this.deps.emit({ event: 'security', session: '', code: 'server-invalid' });
      return;
    }
    const cur = this.sessions.get(m.session);
    if (cur) return cur.session.handleServerMessage(m);
    // A busy controller's `c1` may be the first thing it hears back on: refuse it again.
    if (this.busy.has(m.session)) this.refuseBusy(m.session);
  }

  /** `session` gets the socket; a secured one is admitted again (the server keeps an admission per session anyway). */
  private reattach(cur: Current, signal: SignalClient): void {
    cur.session.attachSignal(taggedSocket(signal, cur.id));
    if (cur.session.isSecured) signal.send({ type: 'admit', session: cur.id });
  }

  private onPeer(id: string): void {
    const cur = this.sessions.get(id);
    // A session we know again means we reconnected to the server: keep its Link (and any direct path).
    if (cur) {
      if (this.signal) this.reattach(cur, this.signal);
      return;
    }
    if (this.busy.has(id)) return this.refuseBusy(id);
    if (this.sessions.size >= this.cap || this.deps.sessions() >= this.deps.maxControllers) {
      this.busy.add(id);
      if (this.busy.size > MAX_BUSY_REMEMBERED) this.busy.delete(this.busy.values().next().value!);
      this.refuseBusy(id);
      this.deps.emit({ event: 'busy', session: id, controllers: this.deps.sessions() });
      return;
    }
    this.startSession(id);
  }

  /** Refuses a session past the cap, in plain text: it has no keys, and gets none. */
  private refuseBusy(session: string): void {
    this.signal?.send({ type: 'relay', session, data: encodeHandshake({ hs: 'fail', code: 'device-busy' }) });
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
    // (no-peer: a frame we sent crossed its controller's leaving; `peer-left` follows.)
  }

  /** Synchronous, so a frame that arrives right behind `peer` already finds its session. */
  private startSession(id: string): void {
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
      rtc: { ...iceConfigFor(this.url, this.stunPort, deps.iceServers), ...(deps.dtls ? { dtlsKeys: deps.dtls.keys } : {}) },
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
    const cur: Current = { id, session, handler: undefined, name: undefined, counted: false };
    const timer = setTimeout(() => {
      if (!session.isSecured) session.refuse('bad-handshake', `the controller did not finish the handshake within ${HANDSHAKE_TIMEOUT_MS} ms`);
    }, HANDSHAKE_TIMEOUT_MS);
    timer.unref();
    // A silent controller in the pairing room: give the code up (it may know it) and offer a fresh one.
    const startTimer =
      kind.kind === 'pairing'
        ? setTimeout(() => {
            if (started || session.isSecured || this.sessions.get(id) !== cur) return;
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
      const fingerprint = fingerprintOf(r.peer.publicKey);
      const handler = deps.newHandler(fingerprint, name, send);
      cur.handler = handler;
      cur.name = name;
      cur.counted = true;
      deps.watchdog?.connected();
      session.on('message', (m) => void handler.handle(m).then(send));
      // The handshake ran on the relay, and the session attaches it right after this event.
      const path: Path = this.signal ? 'relay' : session.path;
      deps.emit({ event: 'controller', session: id, name, fingerprint, paired: r.paired, path, controllers: deps.controllers() });
    });
    session.on('refused', (code, message) => {
      deps.emit({ event: 'refused', session: id, code, message });
      void this.endSession(cur, cur.counted);
    });
    session.on('security', (code) => deps.emit({ event: 'security', session: id, code }));
    session.on('path', (path, previous) => {
      deps.emit({ event: 'path', session: id, name: cur.name ?? '', path, previous });
      // Its relay went with the server socket and it has no data channel: nothing reaches its controller
      // (which, on its side, has lost the session too and opens a new one).
      if (path === 'none') void this.endSession(cur, true);
    });
    this.sessions.set(id, cur);
    if (this.signal) session.attachSignal(taggedSocket(this.signal, id));
  }

  /**
   * Ends one session (a no-op if it already ended). `left`: report
   * `controller-left` (not for a session refused before it was secured:
   * `refused` said it all).
   */
  private async endSession(cur: Current, left: boolean): Promise<void> {
    if (this.sessions.get(cur.id) !== cur) return;
    this.sessions.delete(cur.id);
    cur.handler?.dispose(); // before the safe state can run: a blink must not write after it
    if (cur.counted) this.deps.watchdog?.disconnected();
    if (left && !this.stopped)
      this.deps.emit({
        event: 'controller-left',
        session: cur.id,
        ...(cur.name !== undefined ? { name: cur.name } : {}),
        controllers: this.deps.controllers(),
      });
    await cur.session.close();
    // A spent pairing room has done its one job: leave it, so the old code is unknown to the server.
    // (Unless another session started meanwhile: it is refused as code-spent and ends this way too.)
    if (this.kind.kind === 'pairing' && this.kind.spent && this.sessions.size === 0) await this.stop();
  }

  /** How this room's socket is closed for good: a pairing room is given up at once, the home room keeps its grace. */
  private get closeCode(): number {
    return this.kind.kind === 'pairing' ? CLOSE_LEAVE : 1000;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.deps.stopped(this);
    await Promise.all([...this.sessions.values()].map((c) => this.endSession(c, false)));
    // A pairing room is given up for good (a code lives as long as this process, and once), so a
    // retried code fails at once; the home room keeps its grace for a restarting agent.
    this.signal?.close(this.closeCode);
  }

  private onSignalClosed(signal: SignalClient): void {
    if (signal !== this.signal) return;
    this.signal = undefined;
    this.busy.clear(); // the server forgot them with the socket
    // Those on the relay alone end here (their path is now none); the others wait for the next socket.
    for (const c of [...this.sessions.values()]) c.session.detachSignal();
    // A spent pairing room is not worth coming back to: its sessions (if any) run on direct or end.
    if (this.kind.kind === 'pairing' && this.kind.spent) {
      if (this.sessions.size === 0) void this.stop();
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

/** DeviceConfig.maxControllers, checked; throws `usage`. */
function maxControllersOf(cfg: DeviceConfig): number {
  const n = cfg.maxControllers ?? DEFAULT_MAX_CONTROLLERS;
  if (!Number.isInteger(n) || n < 1 || n > MAX_CONTROLLERS_LIMIT)
    throw new PinholeError('usage', `max controllers must be an integer 1..${MAX_CONTROLLERS_LIMIT}, got ${String(n)}`);
  return n;
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
    // The trust list, read at every handshake and every command: parsed again only when the file changed.
    const trustList = TrustedControllers.reader(stateDir);
    this.deps = {
      servers: new ServerList(cfg.server),
      identity: state.identity,
      dtls: state.dtls,
      direct: cfg.direct ?? true,
      iceServers: cfg.iceServers,
      name,
      maxControllers: maxControllersOf(cfg),
      sessions: () => [...this.rooms].reduce((n, r) => n + r.size, 0),
      controllers: () => this.controllers,
      pairRights: cfg.pairRights ?? FULL_RIGHTS,
      trusted: trustList,
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
            rights: () => trustList().findFingerprint(peer)?.rights ?? { access: 'read-only', pins: [] },
            controllers: () => this.controllers,
          },
          send,
        ),
      watchdog: this.safe,
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
    maxControllersOf(cfg); // a bad setting is refused before anything is created
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

  /** Controllers connected now: secured sessions in every room. */
  get controllers(): number {
    let n = 0;
    for (const r of this.rooms) n += r.secured;
    return n;
  }

  /** The path of each secured session, the home room's first (oldest first within a room). */
  paths(): Path[] {
    return [...this.rooms].flatMap((r) => r.paths());
  }

  /** The path of the first secured session ('none' with no controller). */
  get path(): Path {
    return this.paths()[0] ?? 'none';
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
