/**
 * The controller API, in the manner of Johnny-Five:
 *
 *   const dev = await connect({ server, code: 'K7QM-X3P-D9H', stateDir }); // first time: pairs
 *   const dev = await connect({ device: 'kitchen', stateDir });            // afterwards: by name
 *   await dev.write(20, 1);
 *   dev.on('change', (c) => ...);
 *   await dev.close();
 *
 * Every session starts with an authenticated handshake over the server
 * (link/handshake.ts); commands then go over the sealed relay at once and move
 * to the direct path when it opens; `dev.path` tells which is in use.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import {
  DEFAULT_BLINK_INTERVAL_MS,
  DEFAULT_BLINK_TIMES,
  PROTOCOL_VERSION,
  PeerSession,
  preloadDirect,
  PinholeError,
  SignalClient,
  deviceRoom,
  fingerprintOf,
  iceConfigFor,
  loadOrCreateDtlsCert,
  loadOrCreateIdentity,
  parseIncoming,
  parsePairingCode,
  KnownDevices,
  type ChangeNotification,
  type ErrorCode,
  type IceServer,
  type Level,
  type Methods,
  type Method,
  type Path,
  type PeerInfo,
  type PinMode,
  type ServerMessage,
} from '../link/index.js';

/** Default time for connecting and for each command, in ms: long enough for a slow relay, short enough for a person. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Options of connect(). Give `code` (first pairing) or `device` (a device paired before). */
export interface ConnectOptions {
  /** Signaling server URL, ws:// or wss://. Required with `code`; with `device` it defaults to the one saved at pairing. */
  server?: string;
  /** First pairing: the code the device printed, as typed (case and dashes do not matter). Spent by this attempt. */
  code?: string;
  /** A device paired before, by the name it was saved under. */
  device?: string;
  /** Directory with this controller's identity and paired devices (created 0700). */
  stateDir: string;
  /** Name the device shows for this controller (default: this host's name). */
  name?: string;
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
  /** A relay frame was dropped as forged, replayed or malformed (see docs/security.md). */
  security: [code: string];
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
  /** Set by connect() when this session paired by code: the name the device was saved under, and the entry it replaced. */
  pairedAs: { name: string; replaced: boolean } | undefined;

  /** @internal use connect() */
  constructor(
    private readonly signal: SignalClient,
    private readonly session: PeerSession,
    private readonly timeoutMs: number,
  ) {
    super();
    session.on('message', (m) => this.onPayload(m));
    session.on('security', (c) => this.emit('security', c));
    session.on('refused', (code, message) => this.shutdown(new PinholeError(code as ErrorCode, message)));
    session.on('path', (p, prev) => this.emit('path', p, prev));
    session.on('rtc', (s) => this.emit('rtc', s));
    signal.on('message', (m) => this.onServer(m));
    signal.on('close', () => {
      session.detachSignal();
      if (session.path === 'none') this.shutdown(new PinholeError('server-unreachable', 'lost the signaling server and no direct path'));
    });
  }

  /** The device as its handshake proved it: name, identity key, certificate fingerprint. */
  get peer(): PeerInfo | undefined {
    return this.session.peer;
  }

  /** The device's identity fingerprint, for people to compare (XXXX-XXXX-XXXX-XXXX). */
  get fingerprint(): string | undefined {
    const p = this.session.peer;
    return p ? fingerprintOf(p.publicKey) : undefined;
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
    const no = (code: string, message: string): void => done(new PinholeError(code as ErrorCode, message));
    session.on('secured', ok);
    session.on('refused', no);
  });
}

/**
 * Connects to a device: pairs with `code` the first time (and saves the
 * device under its name in `stateDir`), or finds a paired `device` by name.
 * Rejects with PinholeError: `usage`, `unknown-device`, `bad-room`/`unknown-room`
 * (no such code), `wrong-code`, `code-spent`, `not-paired`, `device-changed`,
 * `fingerprint-mismatch`, `device-offline`, `room-full`, `server-unreachable`,
 * `timeout`, or an `identity-*` code for unusable state files.
 */
export async function connect(opts: ConnectOptions): Promise<Device> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const direct = opts.direct ?? true;
  if ((opts.code === undefined) === (opts.device === undefined)) throw new PinholeError('usage', 'give a pairing code (first time) or the name of a paired device');
  const identity = loadOrCreateIdentity(opts.stateDir);
  const known = KnownDevices.load(opts.stateDir);
  let room: string;
  let server: string;
  let pairingSecret: string | undefined;
  let expectDevice: Uint8Array | undefined;
  if (opts.code !== undefined) {
    const parsed = parsePairingCode(opts.code);
    if (!parsed.ok) throw new PinholeError('usage', `code: ${parsed.reason}`);
    if (!opts.server) throw new PinholeError('usage', 'pairing needs the server URL');
    room = parsed.room;
    pairingSecret = parsed.secret;
    server = opts.server;
  } else {
    const entry = known.get(opts.device!);
    if (!entry) throw new PinholeError('unknown-device', `no paired device named "${opts.device}"; pair first with --code`);
    room = deviceRoom(entry.publicKey);
    expectDevice = entry.publicKey;
    server = opts.server ?? entry.server;
  }
  const deadline = Date.now() + timeoutMs;
  // werift (and the stored DTLS certificate) load while the WebSocket opens.
  const dtls = direct ? preloadDirect().then((rtc) => loadOrCreateDtlsCert(opts.stateDir, rtc.generateDtlsKeys)) : undefined;
  dtls?.catch(() => undefined);
  const signal = await SignalClient.connect(server, timeoutMs);
  try {
    signal.send({ type: 'join', v: PROTOCOL_VERSION, room });
    const r = await signal.next((m) => (m.type === 'joined' || m.type === 'error' ? m : undefined), timeoutMs, 'an answer to join');
    if (r.type === 'error') {
      if (r.code === 'unknown-room' && pairingSecret === undefined) throw new PinholeError('device-offline', `device "${opts.device}" is not connected to the server`);
      throw new PinholeError(r.code, r.code === 'unknown-room' ? 'unknown code: no device has it (codes are single-use; use the one the device printed last)' : r.message);
    }
    if (r.waiting) {
      // The room is known but its device is not connected now: wait for it, up to the timeout.
      // The server gives up on an absent device after its grace period and says `expired`: still offline to us.
      const offline = (): PinholeError => new PinholeError('device-offline', `device is offline (waited ${timeoutMs} ms)`);
      const w = await signal
        .next((m) => (m.type === 'peer' || m.type === 'error' ? m : undefined), Math.max(1, deadline - Date.now()), 'the device')
        .catch((e: PinholeError) => {
          throw e.code === 'timeout' ? offline() : e;
        });
      if (w.type === 'error') throw w.code === 'expired' ? offline() : new PinholeError(w.code, w.message);
    }
    const cert = await dtls;
    const session = new PeerSession({
      role: 'controller',
      sid: r.session,
      direct,
      rtc: { ...iceConfigFor(server, r.stunPort, opts.iceServers), ...(cert ? { dtlsKeys: cert.keys } : {}) },
      security: {
        role: 'controller',
        identity,
        name: opts.name ?? hostname(),
        certFp: cert?.fingerprint ?? null,
        ...(pairingSecret !== undefined ? { pairingSecret } : { expectDevice: expectDevice! }),
      },
    });
    const dev = new Device(signal, session, timeoutMs);
    const secured = whenSecured(session, Math.max(1, deadline - Date.now()));
    session.attachSignal(signal);
    try {
      await secured;
    } catch (e) {
      await session.close();
      throw e;
    }
    const peer = session.peer!;
    if (pairingSecret !== undefined) {
      const { replaced } = known.save(peer.name, peer.publicKey, server, Date.now());
      dev.pairedAs = { name: peer.name, replaced: replaced !== undefined };
    }
    session.startDirect();
    return dev;
  } catch (e) {
    signal.close();
    throw e;
  }
}
