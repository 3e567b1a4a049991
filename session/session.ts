/**
 * One controller-device session: a handshake over the server relay, then a
 * Link fed by the sealed relay at once and by a werift data channel once it
 * opens. Device and controller both use it; only the role differs (the
 * controller speaks first and offers the data channel).
 *
 * Trust: the server is not trusted (docs/security.md). Before the handshake
 * completes nothing reaches the Link. Afterwards every link frame is sealed
 * end to end on both paths, each with keys of its own (crypto/seal.ts), and all
 * WebRTC signaling (SDP, candidates, pings, `go`) rides inside the sealed
 * relay as link messages, so the server sees no SDP and cannot start a data
 * channel. An SDP is still accepted only if its DTLS fingerprint is the one
 * the peer signed in the handshake: a second line of defence.
 */
import { EventEmitter } from 'node:events';
import { Link, realTimers, type Path, type Timers, type Transport } from '../transport/index.js';
import type { DirectPathEvents, RtcConfig } from '../platform/node/index.js';
import { parseSignalPayload, type ServerMessage, type SignalPayload } from '../protocol/index.js';
import type { SignalClient } from '../platform/node/index.js';
import {
  ControllerHandshake,
  DeviceHandshake,
  HandshakeError,
  encodeHandshake,
  isHandshakeText,
  parseHandshake,
  type HandshakeErrorCode,
  type HandshakeResult,
  type LocalInfo,
  type PeerInfo,
} from '../crypto/index.js';
import { Opener, Sealer, deriveSealKeys, type OpenErrorCode, type SealPath } from '../crypto/index.js';
import { parseSdpFingerprint } from '../platform/node/index.js';

let rtcModule: Promise<typeof import('../platform/node/rtc.js')> | undefined;

/**
 * Starts loading werift (about 300 ms of CPU) without waiting for it. Only
 * runs that try a direct path pay for it; callers start it early, in parallel
 * with connecting to the server.
 */
export function preloadDirect(): Promise<typeof import('../platform/node/rtc.js')> {
  rtcModule ??= import('../platform/node/rtc.js');
  return rtcModule;
}

/** What a session needs of one peer-connection attempt (platform/node/rtc.ts DirectPath; tests inject their own). */
export interface DirectAttempt {
  start(): Promise<void>;
  handleSignal(p: SignalPayload): Promise<void>;
  close(): Promise<void>;
  on<K extends keyof DirectPathEvents>(event: K, fn: (...args: DirectPathEvents[K]) => void): unknown;
}

/** Makes one attempt: `onFrame` gets every message of its data channel. */
export type Dialer = (
  role: 'offerer' | 'answerer',
  config: RtcConfig,
  sendSignal: (p: SignalPayload) => void,
  onFrame: (data: string | Buffer) => void,
) => Promise<DirectAttempt>;

/** werift, loaded on first use. */
const defaultDialer: Dialer = async (role, config, sendSignal, onFrame) => {
  const { DirectPath } = await preloadDirect();
  return new DirectPath(role, config, sendSignal, (data) => onFrame(data));
};

/**
 * Longest time, in ms, a device holds a new session's commands waiting for
 * the controller's offer, so that a rewritten SDP refuses the session before
 * anything runs. Covers werift's gathering (STUN_GATHER_TIMEOUT_S = 2 s) with
 * room to spare; a controller that offers nothing only pays it once.
 */
export const OFFER_GATE_MS = 5_000;
/** Signals of the prepared offer held until the handshake ends: an offer, its candidates and end-of-candidates. */
export const MAX_HELD_SIGNALS = 256;
/** Messages held behind the offer gate; past it the session is refused as `overflow`. */
export const MAX_GATED_MESSAGES = 4096;

/** First wait before a new direct attempt after one failed or died, in ms: long enough for a flapping link to settle. */
export const REDIAL_BASE_MS = 1_000;
/** Longest wait between direct attempts, in ms: a path that comes back is used again within this. */
export const REDIAL_MAX_MS = 30_000;
/**
 * Time the first direct attempt gets to open its channel, in ms, before it is
 * closed and tried again; later attempts get twice the one before, up to
 * ATTEMPT_MAX_MS. Covers STUN gathering (2 s at most), the ping round trips
 * before `go`, ICE checks and a DTLS flight resent once. Needed because
 * werift's ICE never reports `failed` (it stays `checking`).
 */
export const ATTEMPT_BASE_MS = 6_000;
/** Longest time one direct attempt gets, in ms: a very lossy path still gets a long try now and then. */
export const ATTEMPT_MAX_MS = 30_000;

/** Why a session was refused: a handshake code, or `overflow`. */
export type RefusalCode = HandshakeErrorCode | 'overflow';

/** Who we are and whom we accept, for the handshake. */
export type SessionSecurity = LocalInfo &
  (
    | {
        role: 'controller';
        /** First pairing: the code's secret part. */
        pairingSecret?: string;
        /** Later sessions: the device key saved at pairing. */
        expectDevice?: Uint8Array;
      }
    | {
        role: 'device';
        /**
         * This room's pairing secret, read when a PAKE attempt arrives; undefined
         * once spent. Absent (the function itself) for the persistent room.
         */
        pairingSecret?: () => string | undefined;
        /** Called once when a controller tries the code: the agent burns it. */
        onPairingAttempt?: () => void;
        /** True if the key belongs to a trusted controller. */
        isTrusted(publicKey: Uint8Array): boolean;
      }
  );

/** Options of a session. */
export interface SessionOptions {
  /** 'controller' speaks first and offers the data channel; 'device' answers. */
  role: 'device' | 'controller';
  /** Session id from the server (`joined` / `peer`); bound into the handshake and the seal keys. */
  sid: string;
  /** Identity and trust for the handshake; its role must equal `role`. */
  security: SessionSecurity;
  /** Try the direct path (default true). False keeps everything on the relay. */
  direct?: boolean;
  /** ICE configuration for the direct path (with `dtlsKeys`: the certificate whose fingerprint we sign). */
  rtc: RtcConfig;
  /** Timers for the link, the offer gate and redials (default: realTimers). */
  timers?: Timers;
  /** Makes direct attempts (default: werift's DirectPath, loaded on first use). */
  dialer?: Dialer;
}

/** Why a direct attempt ended without a channel: werift's verdict, our own deadline, or a frame that did not open. */
export type DirectFailure = 'ice' | 'dtls' | 'timeout' | 'peer' | `direct-${OpenErrorCode}`;

/** Events of a session. */
export interface SessionEvents {
  /** The handshake succeeded: the peer is authenticated and the relay is sealed. */
  secured: [result: HandshakeResult];
  /** The session was refused (by us or by the peer) and is closed. `remote` = the peer said so. */
  refused: [code: RefusalCode, message: string, remote: boolean];
  /**
   * A frame was dropped as an attack or junk: `relay-replay`, `relay-bad-mac`, `relay-malformed`,
   * `relay-wrong-direction`, `relay-unsealed`; on the data channel `direct-*` with the same
   * suffixes (the channel is then torn down); `peer-direct-*` when the peer reports that.
   */
  security: [code: string];
  /** A payload from the peer, in order, exactly once. */
  message: [payload: unknown];
  /** The link's sending path changed. */
  path: [path: Path, previous: Path];
  /** Diagnostic state of the direct attempt. */
  rtc: [state: string];
  /** A direct attempt ended without a channel (once per attempt); the relay carries on. `retryMs` is undefined when no new attempt follows. */
  'direct-failed': [info: { attempt: number; cause: DirectFailure; retryMs: number | undefined }];
  /** A frame from the peer failed validation. */
  invalid: [reason: string];
}

/**
 * What the direct path is doing. The controller dials and redials; the
 * device answers whatever offer arrives. Transitions: setDirect().
 */
type DirectPhase =
  | { phase: 'idle' } // nothing tried yet (or, on the device, nothing offered now)
  | { phase: 'loading'; attempt: number } // controller: werift is loading
  | { phase: 'connecting'; rtc: DirectAttempt; attempt: number; deadline: unknown } // deadline: controller only
  | { phase: 'up'; rtc: DirectAttempt; transport: Transport }
  | { phase: 'backoff'; attempt: number; timer: unknown } // controller: waiting before the next attempt
  | { phase: 'off' }; // no direct path in this session (not wanted, not possible, or closed)

/** Session-level messages inside the Link, beside the application's JSON-RPC. */
type Control =
  | { kind: 'abort'; code: string } // {"abort": code}: the peer refuses the session
  | { kind: 'signal'; payload: SignalPayload } // {"sig": payload}: WebRTC signaling, sealed
  | { kind: 'alarm'; code: string }; // {"alarm": code}: the peer tore down the direct path over a bad frame

/** The alarms a peer may raise: the direct-path drop codes (SessionEvents `security`). */
const ALARMS: ReadonlySet<string> = new Set((['malformed', 'wrong-direction', 'replay', 'bad-mac'] satisfies OpenErrorCode[]).map((c) => `direct-${c}`));

const isObject = (m: unknown): m is Record<string, unknown> => typeof m === 'object' && m !== null && !Array.isArray(m);

/** The session-level message in a link payload, or undefined if it is the application's. The one place they are checked. */
function parseControl(m: unknown): Control | 'invalid' | undefined {
  if (!isObject(m) || 'jsonrpc' in m) return undefined;
  if (typeof m.abort === 'string') return { kind: 'abort', code: m.abort };
  if ('sig' in m) {
    const p = parseSignalPayload(m.sig);
    return typeof p === 'string' ? 'invalid' : { kind: 'signal', payload: p };
  }
  if (typeof m.alarm === 'string') return ALARMS.has(m.alarm) ? { kind: 'alarm', code: m.alarm } : 'invalid';
  return undefined;
}

/** Seal state of one path, one direction each way. */
interface PathSeal {
  sealer: Sealer;
  opener: Opener;
}

/** A Link plus the machinery that gives it paths. */
export class PeerSession extends EventEmitter<SessionEvents> {
  readonly link: Link;
  private signal: SignalClient | undefined;
  private relay: Transport | undefined;
  private readonly wantDirect: boolean;
  private closed = false;
  private signals: Promise<void> = Promise.resolve();
  private hs: ControllerHandshake | DeviceHandshake | undefined;
  private started = false;
  private seals: Record<SealPath, PathSeal> | undefined;
  private peerInfo: PeerInfo | undefined;
  /** A sealed frame from the peer opened: it has the keys, so it accepted the handshake. */
  private peerSealed = false;
  /** Controller: signals of the prepared offer, waiting for `secured`. */
  private readonly outSignals: SignalPayload[] = [];
  /** Device: messages wait here until the offer is checked (or OFFER_GATE_MS). */
  private gate: unknown[] | undefined = [];
  private gateTimer: unknown;
  private readonly timers: Timers;
  private direct: DirectPhase = { phase: 'idle' };

  constructor(private readonly opts: SessionOptions) {
    super();
    if (opts.security.role !== opts.role) throw new TypeError('security.role must equal role');
    this.wantDirect = opts.direct ?? true;
    if (!this.wantDirect) this.direct = { phase: 'off' };
    this.timers = opts.timers ?? realTimers;
    this.link = new Link({ timers: this.timers });
    this.link.on('message', (m) => this.onLinkMessage(m));
    this.link.on('path', (p, prev) => this.emit('path', p, prev));
    this.link.on('dead', () => {
      this.emit('rtc', 'direct-dead');
      this.directDown();
    });
    this.link.on('invalid', (r) => this.emit('invalid', r));
  }

  /** The path in use now. */
  get path(): Path {
    return this.link.path;
  }

  /** The authenticated peer, once `secured`. */
  get peer(): PeerInfo | undefined {
    return this.peerInfo;
  }

  /** True once the handshake succeeded. */
  get isSecured(): boolean {
    return this.seals !== undefined;
  }

  /** Gives the session a signaling socket whose peer is present. The controller starts the handshake on the first one. */
  attachSignal(signal: SignalClient): void {
    if (this.closed) return;
    if (this.relay) this.link.detach(this.relay);
    this.relay = undefined;
    this.signal = signal;
    if (this.seals) this.attachRelay(signal);
    else if (this.opts.role === 'controller' && !this.started) this.startHandshake(signal);
  }

  /** The relay is gone (socket closed or peer left the room). */
  detachSignal(): void {
    if (this.relay) this.link.detach(this.relay);
    this.relay = undefined;
    this.signal = undefined;
  }

  /**
   * Starts the direct attempt (controller). The offer is prepared while the
   * handshake runs and leaves only once the session is secured, so the device
   * (which holds commands until it has checked the offer) waits as little as
   * possible. A no-op once started. The device starts when the offer arrives.
   */
  startDirect(): void {
    if (this.opts.role !== 'controller' || this.direct.phase !== 'idle') return;
    if (this.opts.security.certFp === null || (this.seals && !this.peerInfo?.certFp)) this.setDirect({ phase: 'off' });
    else this.dial(0);
  }

  /** Routes a server message that belongs to this session. */
  handleServerMessage(m: ServerMessage): void {
    if (this.closed) return;
    if (m.type === 'relay') this.onRelay(m.data);
  }

  /** Sends a payload over the link (queued until the handshake ends). Throws PinholeError like Link.send. */
  send(payload: unknown): void {
    this.link.send(payload);
  }

  /** Refuses the session: tells the peer (sealed if we can) and closes. */
  refuse(code: RefusalCode, message: string): void {
    if (this.closed) return;
    if (this.seals) this.trySend({ abort: code });
    else if (code !== 'overflow') this.signal?.send({ type: 'relay', data: encodeHandshake({ hs: 'fail', code }) });
    this.emit('refused', code, message, false);
    void this.close();
  }

  /** Ends the session: closes the peer connection and the link. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.gateTimer !== undefined) this.timers.clearTimeout(this.gateTimer);
    const d = this.direct;
    if (d.phase === 'connecting' || d.phase === 'up') this.trySend({ sig: { kind: 'bye' } });
    this.link.close(); // first: what follows emits no path change
    const rtc = this.setDirect({ phase: 'off' });
    await rtc?.close();
    this.removeAllListeners();
  }

  private trySend(payload: unknown): void {
    try {
      this.link.send(payload);
    } catch {
      /* closing or overflowing anyway */
    }
  }

  private startHandshake(signal: SignalClient): void {
    const sec = this.opts.security;
    if (sec.role !== 'controller') return;
    this.started = true;
    try {
      const hs = new ControllerHandshake({
        sid: this.opts.sid,
        identity: sec.identity,
        name: sec.name,
        certFp: this.wantDirect ? sec.certFp : null,
        direct: this.wantDirect && sec.certFp !== null,
        ...(sec.pairingSecret !== undefined ? { pairingSecret: sec.pairingSecret } : {}),
        ...(sec.expectDevice !== undefined ? { expectDevice: sec.expectDevice } : {}),
      });
      this.hs = hs;
      signal.send({ type: 'relay', data: hs.start() });
      this.startDirect(); // gathering overlaps the handshake; signals wait for `secured`
    } catch (e) {
      this.fail(e);
    }
  }

  /** Our signals ride the sealed link; the controller's prepared offer waits for `secured`. */
  private sendSignal(payload: SignalPayload): void {
    if (this.seals) this.trySend({ sig: payload });
    else if (this.outSignals.length < MAX_HELD_SIGNALS) this.outSignals.push(payload);
  }

  private onRelay(data: string): void {
    if (isHandshakeText(data)) return this.onHandshakeText(data);
    if (!this.seals || !this.relay) {
      this.emit('security', 'relay-unsealed');
      return;
    }
    const r = this.seals.relay.opener.open(data);
    if (!r.ok) {
      this.emit('security', `relay-${r.code}`);
      return;
    }
    this.peerSealed = true;
    this.link.receive(Buffer.from(r.plaintext.buffer, r.plaintext.byteOffset, r.plaintext.length).toString('utf8'), this.relay);
  }

  private onHandshakeText(data: string): void {
    const m = parseHandshake(data);
    if (this.seals && !(m?.hs === 'fail' && !this.peerSealed)) {
      // Plain text after the handshake: injected or replayed by the server. The one exception is
      // a `fail` before the peer's first sealed frame: the device refuses c2 (not-paired, wrong
      // code) in plain text, as it has no keys for a controller it rejects.
      this.emit('security', 'relay-unsealed');
      return;
    }
    if (m?.hs === 'fail') {
      // Unauthenticated: the server could forge it, but before the handshake it can always drop everything anyway.
      this.emit('refused', m.code, `the ${this.opts.role === 'controller' ? 'device' : 'controller'} refused the session: ${m.code}`, true);
      void this.close();
      return;
    }
    if (!m) return this.fail(new HandshakeError('bad-handshake', 'malformed handshake message'));
    const sec = this.opts.security;
    try {
      if (sec.role === 'controller') {
        if (!(this.hs instanceof ControllerHandshake)) throw new HandshakeError('bad-handshake', `unexpected ${m.hs}`);
        const { reply, result } = this.hs.onD1(m);
        this.signal?.send({ type: 'relay', data: reply });
        this.secure(result);
        return;
      }
      if (m.hs === 'c1') {
        if (this.hs) throw new HandshakeError('bad-handshake', 'second c1');
        let secret: string | undefined;
        if (m.pake !== undefined) {
          if (!sec.pairingSecret) throw new HandshakeError('bad-handshake', 'pairing attempted in a room that does not take codes');
          secret = sec.pairingSecret();
          if (secret === undefined) throw new HandshakeError('code-spent', 'this pairing code was already tried; use the new code the device printed');
          sec.onPairingAttempt?.(); // one guess per code: spent before the answer leaves
        }
        const hs = new DeviceHandshake({
          sid: this.opts.sid,
          identity: sec.identity,
          name: sec.name,
          certFp: this.wantDirect ? sec.certFp : null,
          ...(secret !== undefined ? { pairingSecret: secret } : {}),
          isTrusted: (k) => sec.isTrusted(k),
        });
        this.hs = hs;
        this.signal?.send({ type: 'relay', data: hs.onC1(m) });
        return;
      }
      if (!(this.hs instanceof DeviceHandshake)) throw new HandshakeError('bad-handshake', `unexpected ${m.hs}`);
      this.secure(this.hs.onC2(m));
    } catch (e) {
      this.fail(e);
    }
  }

  private fail(e: unknown): void {
    if (e instanceof HandshakeError) this.refuse(e.code, e.message);
    else this.refuse('bad-handshake', `handshake failed: ${(e as Error).message}`);
  }

  private secure(result: HandshakeResult): void {
    const [out, inn] = this.opts.role === 'controller' ? (['c2d', 'd2c'] as const) : (['d2c', 'c2d'] as const);
    const seal = (path: SealPath): PathSeal => {
      const keys = deriveSealKeys(result.secret, this.opts.sid, path);
      return { sealer: new Sealer(keys[out], out, this.opts.sid), opener: new Opener(keys[inn], inn, this.opts.sid) };
    };
    this.seals = { relay: seal('relay'), direct: seal('direct') };
    result.secret.fill(0);
    this.peerInfo = result.peer;
    this.emit('secured', result);
    if (this.closed) return;
    if (this.signal) this.attachRelay(this.signal);
    if (this.opts.role === 'device') {
      const expectOffer = this.wantDirect && result.peer.direct && this.opts.security.certFp !== null;
      if (!expectOffer) {
        this.openGate();
        this.setDirect({ phase: 'off' });
      } else this.gateTimer = this.timers.setTimeout(() => this.openGate(), OFFER_GATE_MS);
      return;
    }
    this.openGate();
    if (result.peer.certFp) for (const p of this.outSignals.splice(0)) this.sendSignal(p);
    else {
      // The device takes no direct path: drop the prepared offer.
      this.outSignals.length = 0;
      void this.setDirect({ phase: 'off' })?.close();
    }
  }

  private attachRelay(signal: SignalClient): void {
    const sealer = this.seals!.relay.sealer;
    const relay: Transport = {
      path: 'relay',
      send: (frame) => {
        let data: string;
        try {
          data = sealer.seal(frame);
        } catch {
          return; // too large or exhausted: Link.send caps sizes, so only a 2^64-frame session gets here
        }
        signal.send({ type: 'relay', data });
      },
    };
    this.relay = relay;
    this.link.attach(relay);
  }

  private onLinkMessage(m: unknown): void {
    const c = parseControl(m);
    if (c === 'invalid') return void this.emit('invalid', 'malformed session message');
    if (c?.kind === 'abort') {
      this.emit('refused', c.code as RefusalCode, `the ${this.opts.role === 'controller' ? 'device' : 'controller'} refused the session: ${c.code}`, true);
      void this.close();
      return;
    }
    if (c?.kind === 'signal') return this.onSignal(c.payload);
    if (c?.kind === 'alarm') return void this.emit('security', `peer-${c.code}`);
    if (this.gate) {
      if (this.gate.length >= MAX_GATED_MESSAGES) return this.refuse('overflow', 'too many messages before the offer arrived');
      this.gate.push(m);
      return;
    }
    this.emit('message', m);
  }

  private openGate(): void {
    if (this.gateTimer !== undefined) this.timers.clearTimeout(this.gateTimer);
    this.gateTimer = undefined;
    const held = this.gate;
    this.gate = undefined;
    for (const m of held ?? []) {
      if (this.closed) return;
      this.emit('message', m);
    }
  }

  /** True if the SDP's DTLS fingerprint is the one the peer signed. */
  private checkFingerprint(sdp: string): boolean {
    const want = this.peerInfo?.certFp;
    return want !== null && want !== undefined && parseSdpFingerprint(sdp) === want;
  }

  /** A signal from the peer: it came sealed, so only the peer could have sent it. */
  private onSignal(p: SignalPayload): void {
    if (this.direct.phase === 'off') return;
    const isPeerDescription = (p.kind === 'offer' && this.opts.role === 'device') || (p.kind === 'answer' && this.opts.role === 'controller');
    if (isPeerDescription && !this.checkFingerprint(p.sdp)) {
      this.refuse('fingerprint-mismatch', `the ${p.kind}'s DTLS fingerprint is not the one the ${this.opts.role === 'controller' ? 'device' : 'controller'} signed`);
      return;
    }
    if (p.kind === 'offer' && this.opts.role === 'device') this.openGate();
    if (p.kind === 'bye') return this.peerBye();
    // Signals are applied in arrival order, even while werift is still loading.
    this.signals = this.signals
      .then(async () => {
        if (p.kind === 'offer' && this.opts.role === 'device') {
          // A new offer replaces any earlier attempt.
          void this.setDirect({ phase: 'idle' })?.close();
          const rtc = await this.newDirect('answerer');
          if (rtc) this.setDirect({ phase: 'connecting', rtc, attempt: 0, deadline: undefined });
        }
        const d = this.direct;
        if (d.phase === 'connecting' || d.phase === 'up') await d.rtc.handleSignal(p);
      })
      .catch((e: Error) => {
        this.emit('rtc', `signal-failed: ${e.message}`);
      });
  }

  /**
   * The one place the direct phase changes. Returns the peer connection that
   * the old phase held and the new one does not, for the caller to close, and
   * clears the old phase's timer and link transport.
   */
  private setDirect(next: DirectPhase): DirectAttempt | undefined {
    const prev = this.direct;
    if (prev.phase === 'off' && next.phase !== 'off') return undefined; // closed or not wanted: stays off
    this.direct = next;
    if (prev.phase === 'connecting' && prev.deadline !== undefined) this.timers.clearTimeout(prev.deadline);
    if (prev.phase === 'backoff') this.timers.clearTimeout(prev.timer);
    if (prev.phase === 'up' && !(next.phase === 'up' && next.transport === prev.transport)) this.link.detach(prev.transport);
    if (next.phase !== prev.phase) this.emit('rtc', `direct ${next.phase}`);
    const old = prev.phase === 'connecting' || prev.phase === 'up' ? prev.rtc : undefined;
    const kept = next.phase === 'connecting' || next.phase === 'up' ? next.rtc : undefined;
    return old !== kept ? old : undefined;
  }

  /** Controller: starts direct attempt number `attempt` (0 = the first). */
  private dial(attempt: number): void {
    const loading: DirectPhase = { phase: 'loading', attempt };
    this.setDirect(loading);
    void this.newDirect('offerer').then((rtc) => {
      if (!rtc) return;
      if (this.direct !== loading) return void rtc.close();
      const ms = Math.min(ATTEMPT_MAX_MS, ATTEMPT_BASE_MS * 2 ** attempt);
      const deadline = this.timers.setTimeout(() => this.attemptFailed(rtc, 'timeout'), ms);
      this.setDirect({ phase: 'connecting', rtc, attempt, deadline });
      void rtc.start();
    });
  }

  /** The peer ended its half of the direct path (`bye`): ours goes too, without a bye back. */
  private peerBye(): void {
    const d = this.direct;
    if (d.phase === 'up') this.directDown();
    else if (d.phase === 'connecting') this.attemptFailed(d.rtc, 'peer');
  }

  /** The attempt on `rtc` ended without a channel (or its channel carried a frame that did not open). */
  private attemptFailed(rtc: DirectAttempt, cause: DirectFailure): void {
    const d = this.direct;
    if ((d.phase !== 'connecting' && d.phase !== 'up') || d.rtc !== rtc) return;
    const attempt = d.phase === 'connecting' ? d.attempt : 0;
    let retryMs: number | undefined;
    if (this.opts.role === 'controller' && !this.closed) {
      retryMs = Math.min(REDIAL_MAX_MS, REDIAL_BASE_MS * 2 ** attempt);
      const timer = this.timers.setTimeout(() => this.dial(attempt + 1), retryMs);
      this.setDirect({ phase: 'backoff', attempt: attempt + 1, timer });
    } else this.setDirect({ phase: 'idle' });
    if (cause !== 'peer') this.trySend({ sig: { kind: 'bye' } }); // the peer drops its half of this attempt
    void rtc.close();
    this.emit('direct-failed', { attempt, cause, retryMs });
  }

  /**
   * The direct path died after it worked: the link is back on the relay. The
   * controller tries a new peer connection (not an ICE restart, which left
   * werift's channel silent for seconds) after REDIAL_BASE_MS.
   */
  private directDown(): void {
    const d = this.direct;
    if (d.phase !== 'up') return;
    if (this.opts.role === 'controller' && !this.closed) {
      const timer = this.timers.setTimeout(() => this.dial(1), REDIAL_BASE_MS);
      this.emit('rtc', `redial in ${REDIAL_BASE_MS} ms`);
      void this.setDirect({ phase: 'backoff', attempt: 1, timer })?.close();
    } else void this.setDirect({ phase: 'idle' })?.close();
  }

  /** A frame on the data channel: opened with the direct keys, or the channel is torn down. */
  private onDirectFrame(rtc: DirectAttempt, data: string | Buffer): void {
    const d = this.direct;
    if (d.phase !== 'up' || d.rtc !== rtc || !this.seals) return;
    const r = typeof data === 'string' ? this.seals.direct.opener.open(data) : ({ ok: false, code: 'malformed' } as const);
    if (!r.ok) {
      const code = `direct-${r.code}` as const;
      this.emit('security', code);
      this.trySend({ alarm: code }); // over the relay: the link has just left this channel
      this.attemptFailed(rtc, code);
      return;
    }
    this.link.receive(Buffer.from(r.plaintext.buffer, r.plaintext.byteOffset, r.plaintext.length).toString('utf8'), d.transport);
  }

  /** The sealed transport the link sees for a data channel. */
  private sealedChannel(t: Transport): Transport {
    const sealer = this.seals!.direct.sealer;
    return {
      path: t.path,
      send: (frame) => {
        let data: string;
        try {
          data = sealer.seal(frame);
        } catch {
          return; // as on the relay: only a 2^64-frame session gets here
        }
        t.send(data);
      },
    };
  }

  private async newDirect(role: 'offerer' | 'answerer'): Promise<DirectAttempt | undefined> {
    const rtc: DirectAttempt = await (this.opts.dialer ?? defaultDialer)(
      role,
      this.opts.rtc,
      (payload) => this.sendSignal(payload),
      (data) => this.onDirectFrame(rtc, data),
    );
    if (this.closed) {
      void rtc.close();
      return undefined;
    }
    rtc.on('up', (t) => {
      const d = this.direct;
      if (d.phase !== 'connecting' || d.rtc !== rtc || !this.seals) return;
      const transport = this.sealedChannel(t);
      this.setDirect({ phase: 'up', rtc, transport });
      this.link.attach(transport);
    });
    rtc.on('down', () => {
      const d = this.direct;
      if (d.phase === 'up' && d.rtc === rtc) this.directDown();
    });
    rtc.on('failed', (cause) => this.attemptFailed(rtc, cause));
    rtc.on('state', (s) => this.emit('rtc', s));
    return rtc;
  }
}
