/**
 * The controller's Device, the same in Node and in a browser: one session to
 * a device at a time, commands that survive path changes and reconnects, and
 * connectDevice(), which pairs by code or finds a paired device by name. The
 * platform brings the signaling socket, the direct path, the crypto and the
 * state (ControllerPlatform, PlatformConnectOptions): controller/client.ts for
 * Node, platform/browser/controller.ts for a page.
 */
import { type Aead, type Curve25519, fingerprintOf, type Identity, type KnownDeviceStore, type PeerInfo } from '../crypto/index.js';
import {
  type ChangeNotification,
  DEFAULT_BLINK_INTERVAL_MS,
  DEFAULT_BLINK_TIMES,
  deviceRoom,
  equalBytes,
  isErrorCode,
  type Level,
  type Method,
  type Methods,
  type PairingCode,
  PinholeError,
  type PinMode,
  PROTOCOL_VERSION,
  parseIncoming,
  parsePairingCode,
  type SignalErrorCode,
  toBase64url,
} from '../protocol/index.js';
import {
  Backoff,
  type Dialer,
  type DtlsKeyPair,
  type IceServer,
  iceConfigFor,
  PeerSession,
  routeSignal,
  ServerList,
  type SessionEvents,
  type SignalChannel,
} from '../session/index.js';
import { Emitter, type Path } from '../transport/index.js';

/** Default time for connecting and for each command, in ms: long enough for a slow relay, short enough for a person. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** What a platform gives the controller: its signaling socket, its direct path and, where it has faster ones, its crypto. */
export interface ControllerPlatform {
  /** Opens a signaling socket to `url` and waits for the server's hello (rejects with `server-unreachable` or `version`). */
  openSignal(url: string, timeoutMs: number): Promise<SignalChannel>;
  /** Makes direct attempts; none: relay only. */
  dialer?: Dialer;
  aead?: Aead;
  curve25519?: Curve25519;
}

/** The DTLS certificate a controller's handshake signs: its fingerprint, and the keys for a dialer that takes them from RtcConfig (Node). */
export interface DtlsCert {
  fingerprint: string;
  keys?: DtlsKeyPair;
}

/** Options of connectDevice(): connect()'s (controller/client.ts), with the state given as functions rather than a directory. */
export interface PlatformConnectOptions {
  /** Name the device shows for this controller. */
  name: string;
  /**
   * Signaling server URL, or several of one deployment, comma-separated (tried in a random
   * order, one per attempt). Required with `code`; with `device` it defaults to the one saved at pairing.
   */
  server?: string;
  /**
   * First pairing: the code the device printed, as typed (case and dashes do
   * not matter), or already parsed (parsePairingCode). Spent by this attempt.
   */
  code?: string | PairingCode;
  /** A device paired before, by the name it was saved under. */
  device?: string;
  /**
   * Pairing only: save the device under this name instead of the one it
   * gives itself (1-64 printable characters). Ignored with `device`.
   */
  as?: string;
  /**
   * Pairing only: if another device (another key) is saved under that name
   * (compared case-insensitively), replace it. Without it such a pairing
   * fails with `name-taken` and nothing is saved. The same device pairing
   * again under its name always replaces its entry. Ignored with `device`.
   */
  replace?: boolean;
  /** Timeout for connecting and for each command, in ms (default DEFAULT_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Try the direct path (default true). */
  direct?: boolean;
  /** Extra ICE servers after the server's own STUN. */
  iceServers?: IceServer[];
  /**
   * Reconnect by itself when the session is lost (default true): pending
   * calls are resent on the new session (the device runs each id at most
   * once) and watches renewed; see the Device's `disconnected`, `reconnected`
   * and `resync` events. False: a lost session closes the Device.
   */
  reconnect?: boolean;
  /** Receives one line per change of the Device's phase (see DevicePhase); default: none. */
  log?: (line: string) => void;
  /** The paired devices, read fresh (called again before a pairing is saved: another one may have saved meanwhile). */
  devices(): KnownDeviceStore;
  /** This controller's identity; called once, after the socket has started to open. */
  identity(): Identity;
  /** The DTLS certificate; called only when the direct path is wanted. */
  cert?(): Promise<DtlsCert>;
  /** Told when the connection moves on: the socket opened and the handshake starts. */
  onStage?(stage: 'connecting' | 'securing'): void;
}

/**
 * A pin change pushed by the device. `ts` is the device's clock, in ms; `by`
 * who caused it: the name (in the device's trust list) of the controller whose
 * write it was, this one or another, or BY_INPUT (`'input'`) for an external edge.
 */
export type Change = ChangeNotification['params'];

/**
 * Result of device.info: name, backend, board, allowed pins, protocol and
 * version, `controllers` (connected now, this one included) and `rights`
 * (this controller's own: `pinhole device --allow`, `--read-only`).
 */
export type DeviceInfo = Methods['device.info']['result'];

/**
 * What a controller is told past the device's cap, whether the server said it
 * or the device did: one line of ours, not the peer's words.
 */
const DEVICE_BUSY_TEXT = 'device-busy: the device already serves as many controllers as it takes; try again later';

export interface DeviceEvents {
  change: [c: Change];
  /** A relay frame was dropped as forged, replayed or malformed (see docs/security.md). */
  security: [code: string];
  path: [path: Path, previous: Path];
  /** The session was lost; reconnecting (with `reconnect`, the default). Pending calls wait, within their timeouts. */
  disconnected: [reason: PinholeError];
  /** A new session is up; pending calls were resent (the device runs each id at most once) and watches renewed. */
  reconnected: [];
  /**
   * A watched pin after a reconnect: its level now. Edges between the loss and
   * now were not seen (`previous` is the last level we knew).
   */
  resync: [r: { pin: number; value: Level; previous: Level }];
  /** The Device is closed for good: close() was called, or a refusal or a fatal error ended it. */
  close: [reason: PinholeError | undefined];
  /** Diagnostic state of the direct attempt. */
  rtc: [state: string];
  /** A direct attempt ended without a channel; commands stay on the relay. `retryMs`: when the next attempt starts. */
  'direct-failed': [info: DirectFailed];
}

/** Why and when a direct attempt failed (see docs/nat.md). */
export type DirectFailed = SessionEvents['direct-failed'][0];

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: PinholeError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** The request, kept to resend it on a new session. */
  request: { jsonrpc: '2.0'; id: string; method: Method; params: unknown };
}

/** First reconnect delay after a session is lost, in ms. */
export const RECONNECT_BASE_MS = 250;
/** Longest reconnect delay, in ms: a device that comes back is found within this. */
export const RECONNECT_MAX_MS = 5_000;
/** Part of each reconnect delay drawn at random, so controllers that lost one server do not return in step. */
const RECONNECT_JITTER = 0.5;

/** A secured session, its socket, and the temporary router to remove when a Device binds it. @internal */
export interface Opened {
  signal: SignalChannel;
  session: PeerSession;
  unroute?: () => void;
}

/** Opens a new session to the same device (join its room, handshake). @internal */
export type Reopen = () => Promise<Opened>;

/** Errors after which reconnecting cannot help. */
const FATAL: ReadonlySet<string> = new Set([
  'wrong-code',
  'code-spent',
  'not-paired',
  'device-changed',
  'bad-handshake',
  'fingerprint-mismatch',
  'version',
  'usage',
]);

/**
 * The error for a refusal. The code may come from the peer: one this build
 * does not know as a handshake code (a newer or a hostile device) becomes
 * `bad-handshake`, a refusal we cannot read. @internal
 */
export function refusalError(code: string, message: string): PinholeError {
  if (code === 'device-busy') return new PinholeError(code, DEVICE_BUSY_TEXT);
  if (isErrorCode(code, 'handshake')) return new PinholeError(code, message);
  return new PinholeError('bad-handshake', `the device refused the session with a code this build does not know: ${JSON.stringify(String(code).slice(0, 64))}`);
}

/**
 * Where a Device is (docs/architecture.md, "Controller Device"). connect()
 * opens the first session before the Device exists, so a Device starts `open`.
 */
export type DevicePhase =
  /** A secured session: commands go out on it. `unroute` removes this Device's routes from `signal`. */
  | { phase: 'open'; session: PeerSession; signal: SignalChannel; unroute: () => void }
  /** The session was lost; the next attempt starts when `timer` fires. Calls wait. */
  | { phase: 'reconnecting'; attempt: number; timer: ReturnType<typeof setTimeout>; reason: PinholeError }
  /** Attempt `attempt` is opening a new session (join, handshake). Calls wait. */
  | { phase: 'connecting'; attempt: number }
  /** For good: close() (reason undefined), a refusal, a fatal error, or a loss with reconnect off. */
  | { phase: 'closed'; reason: PinholeError | undefined };

/** A connected device. Reconnects by itself when its session is lost (see ConnectOptions.reconnect). */
export class Device extends Emitter<DeviceEvents> {
  private nextId = 1;
  /** Request ids are unique per Device instance, so the device's at-most-once memory never confuses two processes. */
  private readonly idPrefix = toBase64url(crypto.getRandomValues(new Uint8Array(6)));
  private readonly pending = new Map<string, Pending>();
  /** Watched pins and the last level we know. */
  private readonly watched = new Map<number, Level>();
  private readonly backoff = new Backoff({ baseMs: RECONNECT_BASE_MS, maxMs: RECONNECT_MAX_MS, jitter: RECONNECT_JITTER });
  private phase: DevicePhase;
  /** The device as the last secured session proved it. */
  private lastPeer: PeerInfo | undefined;
  /** Settles once the last session and its socket are closed. */
  private ended: Promise<void> = Promise.resolve();
  /** Set by connect() when this session paired by code: the name the device was saved under, and the entry it replaced. */
  pairedAs: { name: string; replaced: boolean } | undefined;

  /** @internal use connect() */
  constructor(
    signal: SignalChannel,
    session: PeerSession,
    private readonly timeoutMs: number,
    private readonly reopen?: Reopen,
    unroute?: () => void,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    super();
    this.phase = this.bind({ signal, session, ...(unroute ? { unroute } : {}) });
    this.lastPeer = session.peer;
  }

  /** The one place the phase changes: leaves the old phase, enters the new one, logs one line. */
  private to(next: DevicePhase, why: string): void {
    const prev = this.phase;
    if (prev.phase === 'closed') return;
    this.phase = next;
    this.log(`Device phase ${prev.phase} -> ${describe(next)} (${why})`);
    if (prev.phase === 'open') {
      prev.unroute();
      const closing = prev.session.close();
      // close() lets the session say goodbye before the socket goes; a lost session's socket goes at once.
      if (next.phase === 'closed' && next.reason === undefined) this.ended = closing.then(() => prev.signal.close());
      else prev.signal.close();
    } else if (prev.phase === 'reconnecting') clearTimeout(prev.timer);
    if (next.phase === 'open') this.lastPeer = next.session.peer;
    else if (next.phase === 'closed') {
      const err = next.reason ?? new PinholeError('link-closed', 'device connection closed');
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
      this.emit('close', next.reason);
    }
  }

  /** Hooks a secured session and its socket up to this Device; returns the `open` phase. */
  private bind(o: Opened): Extract<DevicePhase, { phase: 'open' }> {
    const { signal, session } = o;
    o.unroute?.();
    session.on('message', (m) => this.onPayload(m));
    session.on('security', (c) => this.emit('security', c));
    session.on('refused', (code, message) => this.lost(refusalError(code, message), session));
    session.on('path', (p, prev) => {
      this.emit('path', p, prev);
      // Deferred: when the relay went because the device left or the server died, that reason is reported first.
      if (p === 'none') queueMicrotask(() => this.lost(new PinholeError('link-closed', 'every path to the device is gone'), session));
    });
    session.on('rtc', (s) => this.emit('rtc', s));
    session.on('direct-failed', (i) => this.emit('direct-failed', i));
    const unroute = routeSignal(signal, {
      relay: (m) => session.handleServerMessage(m),
      // The device is back on the server (same session): the relay works again.
      peer: () => session.attachSignal(signal),
      peerLeft: () => {
        // The device left the server; a live direct path may still carry us.
        session.detachSignal();
        if (session.path === 'none') this.lost(new PinholeError('peer-left', 'the device disconnected'), session);
      },
      invalid: () => this.emit('security', 'server-invalid'),
      // The server is draining: its socket goes, which (below) moves a relayed session to another server.
      goaway: () => signal.close(),
      closed: () => {
        session.detachSignal();
        // A live direct path carries on without the server; only a dead end means a new session.
        if (session.path === 'none') this.lost(new PinholeError('server-unreachable', 'lost the signaling server and no direct path'), session);
      },
    });
    return { phase: 'open', session, signal, unroute };
  }

  /** The device as its handshake proved it: name, identity key, certificate fingerprint. */
  get peer(): PeerInfo | undefined {
    return this.lastPeer;
  }

  /** The device's identity fingerprint, for people to compare (XXXX-XXXX-XXXX-XXXX). */
  get fingerprint(): string | undefined {
    const p = this.lastPeer;
    return p ? fingerprintOf(p.publicKey) : undefined;
  }

  /** The path commands travel on: 'relay', 'direct', 'turn', or 'none' (also while reconnecting). */
  get path(): Path {
    return this.phase.phase === 'open' ? this.phase.session.path : 'none';
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

  /** Subscribes to a pin's edges (emitted as 'change'); resolves with its current value. Renewed after a reconnect. */
  async watch(pin: number): Promise<Level> {
    const value = (await this.call('gpio.watch', { pin })).value;
    this.watched.set(pin, value);
    return value;
  }

  /** Stops watching a pin. */
  async unwatch(pin: number): Promise<void> {
    this.watched.delete(pin);
    await this.call('gpio.unwatch', { pin });
  }

  /** Device name, backend, board, allowed pins, connected controllers and this controller's rights. */
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

  /**
   * Sends one request and waits for its result. Rejects with a PinholeError
   * whose code is the device's, 'timeout', or the reason the Device closed.
   * The request survives path changes and reconnects within `timeoutMs`; the
   * device runs its id at most once however often it is resent.
   */
  call<M extends Method>(method: M, params: Methods[M]['params'], timeoutMs = this.timeoutMs): Promise<Methods[M]['result']> {
    if (this.phase.phase === 'closed') return Promise.reject(new PinholeError('link-closed', 'device connection is closed'));
    const id = `${this.idPrefix}:${this.nextId++}`;
    const request = { jsonrpc: '2.0' as const, id, method, params };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        const waiting = this.phase.phase === 'reconnecting' || this.phase.phase === 'connecting';
        reject(new PinholeError('timeout', `${method} got no answer within ${timeoutMs} ms${waiting ? ' (reconnecting to the device)' : ''}`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, request });
      if (this.phase.phase !== 'open') return; // sent when the new session is up
      try {
        this.phase.session.send(request);
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e instanceof PinholeError ? e : new PinholeError('link-closed', (e as Error).message));
      }
    });
  }

  /** Ends the session and the server connection. */
  async close(): Promise<void> {
    this.to({ phase: 'closed', reason: undefined }, 'close()');
    await this.ended;
  }

  private onPayload(m: unknown): void {
    const msg = parseIncoming(m);
    if (!msg) return;
    if (msg.kind === 'change') {
      if (this.watched.has(msg.change.pin)) this.watched.set(msg.change.pin, msg.change.value);
      this.emit('change', msg.change);
      return;
    }
    if (typeof msg.id !== 'string') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error) p.reject(new PinholeError(msg.error.data.code, msg.error.message));
    else p.resolve(msg.result);
  }

  /** `session` is gone: reconnect if we can, else close for good. */
  private lost(reason: PinholeError, session: PeerSession): void {
    if (this.phase.phase !== 'open' || this.phase.session !== session) return;
    if (!this.reopen || FATAL.has(reason.code)) return this.to({ phase: 'closed', reason }, this.reopen ? 'fatal' : 'reconnect off');
    this.retryLater(reason);
    this.emit('disconnected', reason);
  }

  /** Waits the next backoff delay, then tries again. */
  private retryLater(reason: PinholeError): void {
    const delay = this.backoff.next();
    const timer = setTimeout(() => void this.tryReconnect(), delay);
    (timer as { unref?: () => void }).unref?.(); // Node: a pending retry does not keep the process alive
    this.to({ phase: 'reconnecting', attempt: this.backoff.attempts, timer, reason }, `${reason.code}; next attempt in ${delay} ms`);
  }

  private async tryReconnect(): Promise<void> {
    const p = this.phase;
    if (p.phase !== 'reconnecting') return;
    this.to({ phase: 'connecting', attempt: p.attempt }, 'retry timer');
    let next: Opened;
    try {
      next = await this.reopen!();
    } catch (e) {
      const err = e instanceof PinholeError ? e : new PinholeError('link-closed', (e as Error).message);
      if (this.phase.phase !== 'connecting') return; // closed meanwhile
      if (FATAL.has(err.code)) return this.to({ phase: 'closed', reason: err }, 'fatal');
      return this.retryLater(err);
    }
    if (this.phase.phase !== 'connecting') {
      next.unroute?.();
      void next.session.close();
      next.signal.close();
      return;
    }
    this.backoff.reset();
    const open = this.bind(next);
    this.to(open, 'new session secured');
    // Same ids again: the device answers a request it already ran from memory.
    for (const p of this.pending.values()) {
      try {
        open.session.send(p.request);
      } catch {
        /* the new session died at once: its loss triggers the next attempt */
      }
    }
    this.emit('reconnected');
    for (const [pin, previous] of [...this.watched]) {
      this.call('gpio.watch', { pin })
        .then((r) => {
          if (!this.watched.has(pin)) return;
          this.watched.set(pin, r.value);
          this.emit('resync', { pin, value: r.value, previous });
        })
        .catch(() => undefined); // a failure shows up as the next loss or timeout
    }
  }
}

/** A phase for the log: its name and what it carries. */
function describe(p: DevicePhase): string {
  switch (p.phase) {
    case 'open':
      return `open: path ${p.session.path}`;
    case 'reconnecting':
    case 'connecting':
      return `${p.phase}: attempt ${p.attempt}`;
    case 'closed':
      return p.reason ? `closed: ${p.reason.code}` : 'closed';
  }
}

/** A server's error as ours: its code, and its words except where we have our own. */
function serverError(code: SignalErrorCode, message: string): PinholeError {
  return new PinholeError(code, code === 'device-busy' ? DEVICE_BUSY_TEXT : message);
}

/** Resolves once the session is secured; rejects with the refusal, or `timeout`. */
function whenSecured(session: PeerSession, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => done(new PinholeError('timeout', `the device did not complete the handshake within ${ms} ms`)), ms);
    const done = (e?: PinholeError): void => {
      clearTimeout(t);
      session.off('secured', ok);
      session.off('refused', no);
      if (e) reject(e);
      else resolve();
    };
    const ok = (): void => done();
    const no = (code: string, message: string): void => done(refusalError(code, message));
    session.on('secured', ok);
    session.on('refused', no);
  });
}

/**
 * Connects to a device: pairs with `code` the first time (and saves the
 * device under its name in the store), or finds a paired `device` by name.
 * Rejects with PinholeError: `usage`, `unknown-device`, `bad-room`/`unknown-room`
 * (no such code), `wrong-code`, `code-spent`, `not-paired`, `device-changed`,
 * `fingerprint-mismatch`, `device-offline`, `room-full`, `device-busy` (the
 * device already serves as many controllers as it takes), `not-admitted` (the
 * server dropped us: the device did not complete the handshake in time),
 * `server-unreachable`, `timeout`, `name-taken`, or a `state-*` code for unusable state.
 */
export async function connectDevice(platform: ControllerPlatform, opts: PlatformConnectOptions): Promise<Device> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const direct = (opts.direct ?? true) && platform.dialer !== undefined;
  if ((opts.code === undefined) === (opts.device === undefined))
    throw new PinholeError('usage', 'give a pairing code (first time) or the name of a paired device');
  // Read first even to pair: a store that cannot be used fails before the code is spent.
  const known = opts.devices();
  let target: Target;
  let server: string;
  if (opts.code !== undefined) {
    const code = typeof opts.code === 'string' ? parseCode(opts.code) : opts.code;
    if (!opts.server) throw new PinholeError('usage', 'pairing needs the server URL');
    target = { room: code.room, pairingSecret: code.secret, label: 'the device' };
    server = opts.server;
  } else {
    const entry = known.get(opts.device!);
    if (!entry) throw new PinholeError('unknown-device', `no paired device named "${opts.device}"; pair first with --code`);
    target = { room: deviceRoom(entry.publicKey), expectDevice: entry.publicKey, label: `device "${entry.name}"` };
    server = opts.server ?? entry.server;
  }
  opts.onStage?.('connecting');
  const servers = new ServerList(server);
  // The socket opens while the state is read (about a millisecond of CPU, as long as the TCP and HTTP round trips).
  const connecting = openAny(platform, servers, timeoutMs);
  let identity: Identity;
  let cert: Promise<DtlsCert> | undefined;
  try {
    identity = opts.identity();
    cert = direct ? opts.cert?.() : undefined;
    cert?.catch(() => undefined);
  } catch (e) {
    connecting.then((c) => c.signal.close()).catch(() => undefined);
    throw e;
  }
  const plan: SessionPlan = { servers, identity, name: opts.name, direct, iceServers: opts.iceServers, timeoutMs, platform, cert, onStage: opts.onStage };
  const { signal, session, unroute } = await openSession(plan, target, connecting);
  const peer = session.peer!;
  // Later sessions go to the device's own room and require the key it just proved.
  const again: Target = { room: deviceRoom(peer.publicKey), expectDevice: peer.publicKey, label: `device "${peer.name}"` };
  const reopen: Reopen | undefined = (opts.reconnect ?? true) ? () => openSession({ ...plan, onStage: undefined }, again) : undefined;
  const dev = new Device(signal, session, timeoutMs, reopen, unroute, opts.log);
  if (target.pairingSecret !== undefined) {
    // The device's name is known only now, after the handshake: the code is spent either way.
    // Read the store again: another pairing may have saved a device since we started.
    const name = opts.as ?? peer.name;
    let saved: ReturnType<KnownDeviceStore['save']>;
    try {
      saved = opts.devices().save(name, peer.publicKey, server, Date.now(), { replace: opts.replace === true });
    } catch (e) {
      await dev.close();
      if (!(e instanceof PinholeError && e.code === 'name-taken')) throw e;
      throw new PinholeError(
        'name-taken',
        `device "${name}" (${fingerprintOf(peer.publicKey)}) was not saved: ${e.message}. The code is spent; with the new code the device printed, pair again adding --as OTHER-NAME to keep both, or --replace to forget the old one`,
      );
    }
    // Replaced: another device's entry went. The same device again is a re-pair, not a replacement.
    dev.pairedAs = { name, replaced: saved.replaced.some((e) => !equalBytes(e.publicKey, peer.publicKey)) };
  }
  session.startDirect();
  return dev;
}

/** A socket to one of the servers, and which. */
interface Connected {
  signal: SignalChannel;
  url: string;
}

/** Opens a socket to the first server of the list that answers, trying each at most once. */
async function openAny(platform: ControllerPlatform, servers: ServerList, timeoutMs: number): Promise<Connected> {
  let last: unknown;
  for (let i = 0; i < servers.size; i++) {
    const url = servers.next();
    try {
      return { signal: await platform.openSignal(url, timeoutMs), url };
    } catch (e) {
      last = e;
      if (!(e instanceof PinholeError && e.code === 'server-unreachable')) throw e;
    }
  }
  throw last;
}

/** A code typed by a person, parsed; throws `usage` naming what is wrong. */
function parseCode(typed: string): PairingCode {
  const p = parsePairingCode(typed);
  if (!p.ok) throw new PinholeError('usage', `code: ${p.reason}`);
  return { room: p.room, secret: p.secret };
}

/** Where a session goes: a room, and how the device there is authenticated. */
interface Target {
  room: string;
  /** First pairing: the code's secret. */
  pairingSecret?: string;
  /** Later sessions: the device key saved at pairing. */
  expectDevice?: Uint8Array;
  /** For messages: "the device" or `device "NAME"`. */
  label: string;
}

/** What every session of one Device shares. */
interface SessionPlan {
  servers: ServerList;
  identity: Identity;
  name: string;
  direct: boolean;
  iceServers: IceServer[] | undefined;
  timeoutMs: number;
  platform: ControllerPlatform;
  /** The DTLS certificate whose fingerprint the handshake signs (with direct); `keys` for a dialer that takes them from the config. */
  cert: Promise<DtlsCert> | undefined;
  onStage: ((stage: 'connecting' | 'securing') => void) | undefined;
}

/** Joins the target's room, waits for the device, runs the handshake. Resolves with a secured session. */
async function openSession(plan: SessionPlan, target: Target, connecting?: Promise<Connected>): Promise<Opened> {
  const { timeoutMs } = plan;
  const deadline = Date.now() + timeoutMs;
  const { signal, url: server } = await (connecting ?? openAny(plan.platform, plan.servers, timeoutMs));
  // A draining server is passed over by the next attempts (its socket then closes: see the Device's routes).
  signal.on('message', (m) => void (m.type === 'goaway' && plan.servers.avoid(server)));
  try {
    signal.send({ type: 'join', v: PROTOCOL_VERSION, room: target.room });
    const r = await signal.next((m) => (m.type === 'joined' || m.type === 'error' ? m : undefined), timeoutMs, 'an answer to join');
    if (r.type === 'error') {
      if (r.code === 'unknown-room' && target.pairingSecret === undefined)
        throw new PinholeError('device-offline', `${target.label} is not connected to the server`);
      // Someone is in the pairing room: they hold this code's one attempt.
      if (r.code === 'room-full' && target.pairingSecret !== undefined)
        throw new PinholeError('code-spent', 'another controller is using this code (codes are single-use); use the new code the device printed');
      if (r.code === 'unknown-room')
        throw new PinholeError(r.code, 'unknown code: no device has it (codes are single-use; use the one the device printed last)');
      throw serverError(r.code, r.message);
    }
    if (r.waiting) {
      // The room is known but its device is not connected now: wait for it, up to the timeout.
      // The server gives up on an absent device after its grace period and says `expired`: still offline to us.
      const offline = (): PinholeError => new PinholeError('device-offline', `${target.label} is offline (waited ${timeoutMs} ms)`);
      const w = await signal
        .next((m) => (m.type === 'peer' || m.type === 'error' ? m : undefined), Math.max(1, deadline - Date.now()), 'the device')
        .catch((e: PinholeError) => {
          throw e.code === 'timeout' ? offline() : e;
        });
      if (w.type === 'error') throw w.code === 'expired' ? offline() : serverError(w.code, w.message);
    }
    plan.onStage?.('securing');
    const cert = await plan.cert;
    const session = new PeerSession({
      role: 'controller',
      sid: r.session,
      direct: plan.direct,
      ...(plan.platform.dialer ? { dialer: plan.platform.dialer } : {}),
      ...(plan.platform.aead ? { aead: plan.platform.aead } : {}),
      ...(plan.platform.curve25519 ? { curve25519: plan.platform.curve25519 } : {}),
      rtc: { ...iceConfigFor(server, r.stunPort, plan.iceServers), ...(cert?.keys ? { dtlsKeys: cert.keys } : {}) },
      security: {
        role: 'controller',
        identity: plan.identity,
        name: plan.name,
        certFp: cert?.fingerprint ?? null,
        ...(target.pairingSecret !== undefined ? { pairingSecret: target.pairingSecret } : { expectDevice: target.expectDevice! }),
      },
    });
    const secured = whenSecured(session, Math.max(1, deadline - Date.now()));
    // The server drops a controller its device has not admitted in time: say so rather than wait out the timeout.
    let dropped!: (e: PinholeError) => void;
    const notAdmitted = new Promise<never>((_, reject) => (dropped = reject));
    // Until a Device takes the session over, this routes the handshake to it.
    const unroute = routeSignal(signal, {
      relay: (m) => session.handleServerMessage(m),
      error: (code, message) => {
        if (code === 'not-admitted' || code === 'device-busy') dropped(serverError(code, message));
      },
    });
    session.attachSignal(signal);
    try {
      await Promise.race([secured, notAdmitted]);
    } catch (e) {
      unroute();
      await session.close();
      throw e;
    }
    // The Device that takes the session over removes this route as it binds (same tick), so no frame falls between.
    return { signal, session, unroute };
  } catch (e) {
    signal.close();
    throw e;
  }
}
