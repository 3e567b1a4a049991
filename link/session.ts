/**
 * One controller-device session: a handshake over the server relay, then a
 * Link fed by the sealed relay at once and by a werift data channel once it
 * opens. Device and controller both use it; only the role differs (the
 * controller speaks first and offers the data channel).
 *
 * Trust: the server is not trusted (docs/security.md). Before the handshake
 * completes nothing reaches the Link. Afterwards every relay frame is sealed
 * end to end (link/seal.ts), and an SDP is accepted only if its DTLS
 * fingerprint is the one the peer signed in the handshake.
 */
import { EventEmitter } from 'node:events';
import { Link, realTimers, type Path, type Timers, type Transport } from './link.js';
import type { DirectPath, DataChannelTransport, RtcConfig } from './rtc.js';
import type { ServerMessage, SignalPayload } from './protocol.js';
import type { SignalClient } from './signal-client.js';
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
} from './handshake.js';
import { Opener, Sealer, deriveSealKeys } from './seal.js';
import { parseSdpFingerprint } from './trust.js';

let rtcModule: Promise<typeof import('./rtc.js')> | undefined;

/**
 * Starts loading werift (about 300 ms of CPU) without waiting for it. Only
 * runs that try a direct path pay for it; callers start it early, in parallel
 * with connecting to the server.
 */
export function preloadDirect(): Promise<typeof import('./rtc.js')> {
  rtcModule ??= import('./rtc.js');
  return rtcModule;
}

/**
 * Longest time, in ms, a device holds a new session's commands waiting for
 * the controller's offer, so that a rewritten SDP refuses the session before
 * anything runs. Covers werift's gathering (STUN_GATHER_TIMEOUT_S = 2 s) with
 * room to spare; a controller that offers nothing only pays it once.
 */
export const OFFER_GATE_MS = 5_000;
/** Signals held while the handshake runs: an honest peer sends none before it ends. */
export const MAX_HELD_SIGNALS = 256;
/** Messages held behind the offer gate; past it the session is refused as `overflow`. */
export const MAX_GATED_MESSAGES = 4096;

/** First wait before a new direct attempt after the direct path died, in ms: long enough for a flapping link to settle. */
export const REDIAL_BASE_MS = 1_000;
/** Longest wait between direct attempts, in ms: a path that comes back is used again within this. */
export const REDIAL_MAX_MS = 30_000;
/**
 * Time a redialed peer connection gets to come up, in ms, before it is closed
 * and tried again: ICE, DTLS and the probe take about 2 s at 80 ms RTT. Needed
 * because werift's ICE never reports `failed` here (it stays `checking`), so an
 * attempt made during an outage would otherwise wait forever.
 */
export const REDIAL_ATTEMPT_MS = 10_000;

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
}

/** Events of a session. */
export interface SessionEvents {
  /** The handshake succeeded: the peer is authenticated and the relay is sealed. */
  secured: [result: HandshakeResult];
  /** The session was refused (by us or by the peer) and is closed. `remote` = the peer said so. */
  refused: [code: RefusalCode, message: string, remote: boolean];
  /** A relay frame was dropped as an attack or junk: `relay-replay`, `relay-bad-mac`, `relay-malformed`, `relay-wrong-direction`, `relay-unsealed`. */
  security: [code: string];
  /** A payload from the peer, in order, exactly once. */
  message: [payload: unknown];
  /** The link's sending path changed. */
  path: [path: Path, previous: Path];
  /** Diagnostic state of the direct attempt. */
  rtc: [state: string];
  /** A frame from the peer failed validation. */
  invalid: [reason: string];
}

const isAbort = (m: unknown): m is { abort: string } =>
  typeof m === 'object' && m !== null && !Array.isArray(m) && typeof (m as { abort?: unknown }).abort === 'string' && !('jsonrpc' in m);

/** A Link plus the machinery that gives it paths. */
export class PeerSession extends EventEmitter<SessionEvents> {
  readonly link: Link;
  private signal: SignalClient | undefined;
  private relay: Transport | undefined;
  private rtc: DirectPath | undefined;
  private readonly wantDirect: boolean;
  private closed = false;
  private signals: Promise<void> = Promise.resolve();
  private hs: ControllerHandshake | DeviceHandshake | undefined;
  private started = false;
  private sealer: Sealer | undefined;
  private opener: Opener | undefined;
  private peerInfo: PeerInfo | undefined;
  /** A sealed frame from the peer opened: it has the keys, so it accepted the handshake. */
  private peerSealed = false;
  private readonly heldSignals: SignalPayload[] = [];
  /** Controller: signals of the prepared offer, waiting for `secured`. */
  private readonly outSignals: SignalPayload[] = [];
  /** Device: messages wait here until the offer is checked (or OFFER_GATE_MS). */
  private gate: unknown[] | undefined = [];
  private gateTimer: unknown;
  private readonly timers: Timers;
  private redialTimer: unknown;
  private attemptTimer: unknown;
  private redials = 0;

  constructor(private readonly opts: SessionOptions) {
    super();
    if (opts.security.role !== opts.role) throw new TypeError('security.role must equal role');
    this.wantDirect = opts.direct ?? true;
    this.timers = opts.timers ?? realTimers;
    this.link = new Link({ timers: this.timers });
    this.link.on('message', (m) => this.onLinkMessage(m));
    this.link.on('path', (p, prev) => {
      if (p === 'direct' || p === 'turn') this.redials = 0;
      this.emit('path', p, prev);
    });
    this.link.on('dead', () => {
      this.emit('rtc', 'direct-dead');
      this.redial();
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
    return this.sealer !== undefined;
  }

  /** Gives the session a signaling socket whose peer is present. The controller starts the handshake on the first one. */
  attachSignal(signal: SignalClient): void {
    if (this.closed) return;
    if (this.relay) this.link.detach(this.relay);
    this.relay = undefined;
    this.signal = signal;
    if (this.sealer) this.attachRelay(signal);
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
    if (!this.wantDirect || this.closed || this.opts.role !== 'controller' || this.rtc || this.redialTimer !== undefined) return;
    if (this.opts.security.certFp === null || (this.sealer && !this.peerInfo?.certFp)) return;
    void this.newDirect('offerer').then((rtc) => rtc?.start());
  }

  /** Routes a server message that belongs to this session. */
  handleServerMessage(m: ServerMessage): void {
    if (this.closed) return;
    if (m.type === 'relay') this.onRelay(m.data);
    else if (m.type === 'signal') this.onSignal(m.payload);
  }

  /** Sends a payload over the link (queued until the handshake ends). Throws PinholeError like Link.send. */
  send(payload: unknown): void {
    this.link.send(payload);
  }

  /** Refuses the session: tells the peer (sealed if we can) and closes. */
  refuse(code: RefusalCode, message: string): void {
    if (this.closed) return;
    if (this.sealer) {
      try {
        this.link.send({ abort: code });
      } catch {
        /* closing anyway */
      }
    } else if (code !== 'overflow') this.signal?.send({ type: 'relay', data: encodeHandshake({ hs: 'fail', code }) });
    this.emit('refused', code, message, false);
    void this.close();
  }

  /** Ends the session: closes the peer connection and the link. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of [this.gateTimer, this.redialTimer, this.attemptTimer]) if (t !== undefined) this.timers.clearTimeout(t);
    if (this.rtc) this.signal?.send({ type: 'signal', payload: { kind: 'bye' } });
    const rtc = this.rtc;
    this.rtc = undefined;
    this.link.close();
    await rtc?.close();
    this.removeAllListeners();
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

  /** Our signals: held until the session is secured (the device ignores them before), then sent in order. */
  private sendSignal(payload: SignalPayload): void {
    if (this.sealer) {
      this.signal?.send({ type: 'signal', payload });
      return;
    }
    if (this.outSignals.length < MAX_HELD_SIGNALS) this.outSignals.push(payload);
  }

  private onRelay(data: string): void {
    if (isHandshakeText(data)) return this.onHandshakeText(data);
    if (!this.opener || !this.relay) {
      this.emit('security', 'relay-unsealed');
      return;
    }
    const r = this.opener.open(data);
    if (!r.ok) {
      this.emit('security', `relay-${r.code}`);
      return;
    }
    this.peerSealed = true;
    this.link.receive(Buffer.from(r.plaintext.buffer, r.plaintext.byteOffset, r.plaintext.length).toString('utf8'), this.relay);
  }

  private onHandshakeText(data: string): void {
    const m = parseHandshake(data);
    if (this.sealer && !(m?.hs === 'fail' && !this.peerSealed)) {
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
    const keys = deriveSealKeys(result.secret, this.opts.sid);
    result.secret.fill(0);
    const [out, inn] = this.opts.role === 'controller' ? (['c2d', 'd2c'] as const) : (['d2c', 'c2d'] as const);
    this.sealer = new Sealer(keys[out], out, this.opts.sid);
    this.opener = new Opener(keys[inn], inn, this.opts.sid);
    this.peerInfo = result.peer;
    this.emit('secured', result);
    if (this.closed) return;
    if (this.signal) this.attachRelay(this.signal);
    if (this.opts.role === 'device') {
      const expectOffer = this.wantDirect && result.peer.direct && this.opts.security.certFp !== null;
      if (!expectOffer) this.openGate();
      else this.gateTimer = this.timers.setTimeout(() => this.openGate(), OFFER_GATE_MS);
    } else this.openGate();
    for (const p of this.heldSignals.splice(0)) this.onSignal(p);
    if (this.opts.role === 'controller') {
      if (result.peer.certFp) for (const p of this.outSignals.splice(0)) this.signal?.send({ type: 'signal', payload: p });
      else {
        // The device takes no direct path: drop the prepared offer.
        this.outSignals.length = 0;
        const rtc = this.rtc;
        this.rtc = undefined;
        void rtc?.close();
      }
    }
  }

  private attachRelay(signal: SignalClient): void {
    const sealer = this.sealer!;
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
    if (isAbort(m)) {
      this.emit('refused', m.abort as RefusalCode, `the ${this.opts.role === 'controller' ? 'device' : 'controller'} refused the session: ${m.abort}`, true);
      void this.close();
      return;
    }
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

  private onSignal(p: SignalPayload): void {
    if (!this.wantDirect) return;
    if (!this.sealer) {
      // An honest peer signals only after the handshake; hold a few, drop a flood.
      if (this.heldSignals.length < MAX_HELD_SIGNALS) this.heldSignals.push(p);
      return;
    }
    const isPeerDescription = (p.kind === 'offer' && this.opts.role === 'device') || (p.kind === 'answer' && this.opts.role === 'controller');
    if (isPeerDescription && !this.checkFingerprint(p.sdp)) {
      this.refuse('fingerprint-mismatch', `the ${p.kind}'s DTLS fingerprint is not the one the ${this.opts.role === 'controller' ? 'device' : 'controller'} signed: the signaling server rewrote the SDP`);
      return;
    }
    if (p.kind === 'offer' && this.opts.role === 'device') this.openGate();
    // Signals are applied in arrival order, even while werift is still loading.
    this.signals = this.signals.then(async () => {
      if (p.kind === 'offer' && this.opts.role === 'device') {
        // A new offer replaces any earlier attempt.
        void this.rtc?.close();
        await this.newDirect('answerer');
      }
      await this.rtc?.handleSignal(p);
    }).catch((e: Error) => {
      this.emit('rtc', `signal-failed: ${e.message}`);
    });
  }

  /**
   * The direct path died: the link is back on the relay. The controller tries
   * a new peer connection (not an ICE restart, which left werift's channel
   * silent for seconds) after a capped, growing delay.
   */
  private redial(): void {
    if (this.opts.role !== 'controller' || this.closed || !this.wantDirect || this.redialTimer !== undefined) return;
    const old = this.rtc;
    this.rtc = undefined;
    void old?.close();
    const delay = Math.min(REDIAL_MAX_MS, REDIAL_BASE_MS * 2 ** this.redials++);
    this.emit('rtc', `redial in ${delay} ms`);
    this.redialTimer = this.timers.setTimeout(() => {
      this.redialTimer = undefined;
      if (this.closed || this.rtc) return;
      void this.newDirect('offerer').then((rtc) => {
        if (!rtc) return;
        void rtc.start();
        if (this.attemptTimer !== undefined) this.timers.clearTimeout(this.attemptTimer);
        this.attemptTimer = this.timers.setTimeout(() => {
          this.attemptTimer = undefined;
          const p = this.link.path;
          if (rtc === this.rtc && p !== 'direct' && p !== 'turn') this.redial();
        }, REDIAL_ATTEMPT_MS);
      });
    }, delay);
  }

  private async newDirect(role: 'offerer' | 'answerer'): Promise<DirectPath | undefined> {
    const { DirectPath } = await preloadDirect();
    if (this.closed) return undefined;
    const rtc = new DirectPath(
      role,
      this.opts.rtc,
      (payload) => this.sendSignal(payload),
      (data, t) => this.link.receive(data, t),
    );
    rtc.on('up', (t: DataChannelTransport) => this.link.attach(t));
    rtc.on('down', (t: DataChannelTransport) => {
      this.link.detach(t);
      if (rtc === this.rtc) this.redial();
    });
    rtc.on('state', (s) => this.emit('rtc', s));
    this.rtc = rtc;
    return rtc;
  }
}
