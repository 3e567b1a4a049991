/**
 * One controller-device session: a handshake over the server relay, then a
 * Link fed by the sealed relay at once and by a data channel once one opens
 * (session/direct.ts). Device and controller both use it; only the role
 * differs (the controller speaks first and offers the data channel).
 *
 * Trust: the server is not trusted (docs/security.md). Before the handshake
 * completes nothing reaches the Link. Afterwards every link frame is sealed
 * end to end on both paths, each with keys of its own (crypto/seal.ts), and all
 * WebRTC signaling (SDP, candidates, pings, `go`) rides inside the sealed
 * relay as link messages, so the server sees no SDP and cannot start a data
 * channel. The handshake authenticated both ends, so sealed relay frames are
 * the peer's and are delivered at once, without waiting for any offer. An SDP
 * is still accepted only if its DTLS fingerprint is the one the peer signed:
 * one that is not refuses the session (`fingerprint-mismatch`).
 *
 * States: `phase` (SessionPhase) here, DirectPhase in DirectDriver; each has
 * one writer (setPhase, DirectDriver.set) and one `log` line per change.
 * docs/architecture.md#states has the diagrams.
 */

import type { Curve25519 } from '../crypto/index.js';
import {
  type Aead,
  ControllerHandshake,
  DeviceHandshake,
  deriveSealKeys,
  encodeHandshake,
  type HandshakeErrorCode,
  type HandshakeResult,
  isHandshakeText,
  type LocalInfo,
  type OpenErrorCode,
  Opener,
  type PeerInfo,
  parseHandshake,
  Sealer,
  type SealPath,
} from '../crypto/index.js';
import {
  type ClientMessage,
  isErrorCode,
  isPinholeError,
  PinholeError,
  parseSdpFingerprint,
  parseSignalPayload,
  type ServerMessage,
  type SignalPayload,
  toErrorCode,
} from '../protocol/index.js';
import { Emitter, Link, type Path, realTimers, type Timers, type Transport } from '../transport/index.js';
import { type Dialer, DirectDriver, type DirectFailedInfo, type DirectPhase, type PathSeal, type RtcConfig } from './direct.js';

/** Signals of the prepared offer held until the handshake ends: an offer, its candidates and end-of-candidates. */
export const MAX_HELD_SIGNALS = 256;

/** Why a session was refused: a handshake code (`fingerprint-mismatch` among them). */
export type RefusalCode = HandshakeErrorCode;

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

/** What a session needs of its signaling socket (platform/node's SignalClient; tests pass their own). */
export interface RelaySocket {
  send(m: ClientMessage): void;
}

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
  /** Timers for the link, attempt deadlines and redials (default: realTimers). */
  timers?: Timers;
  /**
   * Makes direct attempts (Node: platform/node's weriftDialer). Without one
   * the session has no direct path, exactly as with `direct: false`: the
   * handshake tells the peer so.
   */
  dialer?: Dialer;
  /** Debug log: one line per change of the session's phase or of its direct path's (default: none). */
  log?: (line: string) => void;
  /** ChaCha20-Poly1305 for the seals (default: the pure one; Node roles pass platform/node's nodeAead, which is faster). */
  aead?: Aead;
  /** X25519 and Ed25519 verification for the handshake (default: the pure one; Node roles pass platform/node's nodeCurve25519). */
  curve25519?: Curve25519;
}

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
  'direct-failed': [info: DirectFailedInfo];
  /** A frame from the peer failed validation. */
  invalid: [reason: string];
}

/**
 * Where the session is. Transitions: setPhase(), the only writer; `closed` is
 * final. The fields of a phase live only as long as it does.
 */
export type SessionPhase =
  /** No handshake yet: the controller waits for a relay to start on, the device for `c1`. `held`: signals of a direct attempt started early. */
  | { name: 'waiting'; held: SignalPayload[] }
  /** The handshake runs; the controller's prepared offer waits in `held`. */
  | { name: 'handshaking'; hs: ControllerHandshake | DeviceHandshake; held: SignalPayload[] }
  /**
   * Both ends authenticated; every link frame is sealed. `relay`: the sealed
   * relay transport while a signaling socket is attached. `peerSealed`: a
   * frame from the peer opened, so it has the keys (it accepted the handshake).
   * `held`: the controller's direct signals, still held for one macrotask so
   * that commands issued as the session opens leave ahead of the offer (the
   * device answers them before it builds its peer connection); then undefined.
   */
  | {
      name: 'secured';
      seals: Record<SealPath, PathSeal>;
      peer: PeerInfo;
      relay: Transport | undefined;
      peerSealed: boolean;
      held: SignalPayload[] | undefined;
    }
  /** Ended (refused, or closed by its owner). `peer`: who it was secured with, if it was. */
  | { name: 'closed'; peer: PeerInfo | undefined };

/** Session-level messages inside the Link, beside the application's JSON-RPC. */
type Control =
  | { kind: 'abort'; code: RefusalCode } // {"abort": code}: the peer refuses the session; an unknown code reads as bad-handshake
  | { kind: 'signal'; payload: SignalPayload } // {"sig": payload}: WebRTC signaling, sealed
  | { kind: 'alarm'; code: string }; // {"alarm": code}: the peer tore down the direct path over a bad frame

/** The alarms a peer may raise: the direct-path drop codes (SessionEvents `security`). */
const ALARMS: ReadonlySet<string> = new Set((['malformed', 'wrong-direction', 'replay', 'bad-mac'] satisfies OpenErrorCode[]).map((c) => `direct-${c}`));

const isObject = (m: unknown): m is Record<string, unknown> => typeof m === 'object' && m !== null && !Array.isArray(m);

/** The session-level message in a link payload, or undefined if it is the application's. The one place they are checked. */
function parseControl(m: unknown): Control | 'invalid' | undefined {
  if (!isObject(m) || 'jsonrpc' in m) return undefined;
  if (typeof m.abort === 'string') return { kind: 'abort', code: toErrorCode(m.abort, 'bad-handshake', 'handshake') };
  if ('sig' in m) {
    const p = parseSignalPayload(m.sig);
    return typeof p === 'string' ? 'invalid' : { kind: 'signal', payload: p };
  }
  if (typeof m.alarm === 'string') return ALARMS.has(m.alarm) ? { kind: 'alarm', code: m.alarm } : 'invalid';
  return undefined;
}

/** A Link plus the machinery that gives it paths. */
export class PeerSession extends Emitter<SessionEvents> {
  readonly link: Link;
  private phase: SessionPhase = { name: 'waiting', held: [] };
  /** The signaling socket in use, whatever the phase: the handshake and the sealed relay both ride it. */
  private signal: RelaySocket | undefined;
  private readonly wantDirect: boolean;
  private readonly timers: Timers;
  private readonly direct: DirectDriver;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: SessionOptions) {
    super();
    if (opts.security.role !== opts.role) throw new TypeError('security.role must equal role');
    this.wantDirect = (opts.direct ?? true) && opts.dialer !== undefined && opts.security.certFp !== null;
    this.timers = opts.timers ?? realTimers;
    const log = opts.log;
    this.log = log ? (line) => log(`${opts.role} ${line}`) : () => undefined;
    this.link = new Link({ timers: this.timers });
    this.direct = new DirectDriver({
      role: opts.role,
      link: this.link,
      timers: this.timers,
      rtc: opts.rtc,
      dialer: this.wantDirect ? opts.dialer : undefined,
      seal: () => (this.phase.name === 'secured' ? this.phase.seals.direct : undefined),
      sendSignal: (p) => this.sendSignal(p),
      send: (p) => this.trySend(p),
      rtcState: (s) => this.emit('rtc', s),
      failed: (i) => this.emit('direct-failed', i),
      security: (c) => this.emit('security', c),
      log: this.log,
    });
    this.link.on('message', (m) => this.onLinkMessage(m));
    this.link.on('path', (p, prev) => this.emit('path', p, prev));
    this.link.on('dead', () => this.direct.linkDead());
    this.link.on('invalid', (r) => this.emit('invalid', r));
  }

  /** The path in use now. */
  get path(): Path {
    return this.link.path;
  }

  /** The session's phase, for diagnostics and tests. */
  get phaseName(): SessionPhase['name'] {
    return this.phase.name;
  }

  /** The direct path's phase, for diagnostics and tests. */
  get directPhase(): DirectPhase['name'] {
    return this.direct.phase.name;
  }

  /** The authenticated peer, once `secured` (still there after close). */
  get peer(): PeerInfo | undefined {
    const ph = this.phase;
    return ph.name === 'secured' || ph.name === 'closed' ? ph.peer : undefined;
  }

  /** True once the handshake succeeded (still true after close). */
  get isSecured(): boolean {
    return this.peer !== undefined;
  }

  /** Gives the session a signaling socket whose peer is present. The controller starts the handshake on the first one. */
  attachSignal(signal: RelaySocket): void {
    const ph = this.phase;
    if (ph.name === 'closed') return;
    this.signal = signal;
    if (ph.name === 'secured') this.attachRelay(ph, signal);
    else if (this.opts.role === 'controller' && ph.name === 'waiting') this.startHandshake(ph, signal);
  }

  /** The relay is gone (socket closed or peer left the room). */
  detachSignal(): void {
    const ph = this.phase;
    if (ph.name === 'secured' && ph.relay) {
      this.link.detach(ph.relay);
      ph.relay = undefined;
    }
    this.signal = undefined;
  }

  /**
   * Starts the direct attempt (controller): a no-op unless the direct path is
   * `idle`. The handshake starts it, so that the offer is prepared meanwhile
   * and leaves once the session is secured. The device starts when an offer
   * arrives.
   */
  startDirect(): void {
    this.direct.start();
  }

  /** Routes a server message that belongs to this session. */
  handleServerMessage(m: ServerMessage): void {
    if (this.phase.name === 'closed') return;
    if (m.type === 'relay') this.onRelay(m.data);
  }

  /** Sends a payload over the link (queued until the handshake ends, then sent in the same tick as the handshake's last message). Throws PinholeError like Link.send. */
  send(payload: unknown): void {
    this.link.send(payload);
  }

  /** Refuses the session: tells the peer (sealed if we can) and closes. */
  refuse(code: RefusalCode, message: string): void {
    const ph = this.phase;
    if (ph.name === 'closed') return;
    if (ph.name === 'secured') this.trySend({ abort: code });
    else this.signal?.send({ type: 'relay', data: encodeHandshake({ hs: 'fail', code }) });
    this.emit('refused', code, message, false);
    void this.close();
  }

  /** Ends the session: closes the peer connection and the link. */
  async close(): Promise<void> {
    const ph = this.phase;
    if (ph.name === 'closed') return;
    if (this.direct.live) this.trySend({ sig: { kind: 'bye' } });
    this.setPhase({ name: 'closed', peer: ph.name === 'secured' ? ph.peer : undefined });
    this.link.close(); // before the direct path goes: what follows emits no path change
    await this.direct.stop();
    this.removeAllListeners();
  }

  /** The one place the session's phase changes. */
  private setPhase(next: SessionPhase): void {
    const prev = this.phase;
    if (prev.name === 'closed') return;
    this.phase = next;
    this.log(`phase ${prev.name} -> ${next.name}`);
  }

  private trySend(payload: unknown): void {
    try {
      this.link.send(payload);
    } catch {
      /* closing or overflowing anyway */
    }
  }

  private startHandshake(ph: Extract<SessionPhase, { name: 'waiting' }>, signal: RelaySocket): void {
    const sec = this.opts.security;
    if (sec.role !== 'controller') return;
    try {
      const hs = new ControllerHandshake({
        sid: this.opts.sid,
        identity: sec.identity,
        name: sec.name,
        certFp: this.wantDirect ? sec.certFp : null,
        direct: this.wantDirect,
        curve25519: this.opts.curve25519,
        ...(sec.pairingSecret !== undefined ? { pairingSecret: sec.pairingSecret } : {}),
        ...(sec.expectDevice !== undefined ? { expectDevice: sec.expectDevice } : {}),
      });
      this.setPhase({ name: 'handshaking', hs, held: ph.held });
      signal.send({ type: 'relay', data: hs.start() });
      this.direct.start(); // gathering overlaps the handshake; its signals wait for `secured`
    } catch (e) {
      this.fail(e);
    }
  }

  /** Our signals ride the sealed link; until the session is secured they are held. */
  private sendSignal(payload: SignalPayload): void {
    const ph = this.phase;
    if (ph.name === 'secured' && !ph.held) this.trySend({ sig: payload });
    else if (ph.name !== 'closed' && ph.held && ph.held.length < MAX_HELD_SIGNALS) ph.held.push(payload);
  }

  private onRelay(data: string): void {
    if (isHandshakeText(data)) return this.onHandshakeText(data);
    const ph = this.phase;
    if (ph.name !== 'secured' || !ph.relay) {
      this.emit('security', 'relay-unsealed');
      return;
    }
    const r = ph.seals.relay.opener.open(data);
    if (!r.ok) {
      this.emit('security', `relay-${r.code}`);
      return;
    }
    ph.peerSealed = true;
    this.link.receive(r.plaintext, ph.relay);
  }

  private onHandshakeText(data: string): void {
    const ph = this.phase;
    const m = parseHandshake(data);
    if (ph.name === 'secured' && !(m?.hs === 'fail' && !ph.peerSealed)) {
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
    if (!m) return this.fail(new PinholeError('bad-handshake', 'malformed handshake message'));
    const sec = this.opts.security;
    try {
      if (sec.role === 'controller') {
        if (ph.name !== 'handshaking' || !(ph.hs instanceof ControllerHandshake)) throw new PinholeError('bad-handshake', `unexpected ${m.hs}`);
        const { reply, result } = ph.hs.onD1(m);
        // c2, then in the same tick the queued commands (secure() attaches the relay, which sends them).
        this.signal?.send({ type: 'relay', data: reply });
        this.secure(ph, result);
        return;
      }
      if (m.hs === 'c1') {
        if (ph.name !== 'waiting') throw new PinholeError('bad-handshake', 'second c1');
        let secret: string | undefined;
        if (m.pake !== undefined) {
          if (!sec.pairingSecret) throw new PinholeError('bad-handshake', 'pairing attempted in a room that does not take codes');
          secret = sec.pairingSecret();
          if (secret === undefined) throw new PinholeError('code-spent', 'this pairing code was already tried; use the new code the device printed');
          sec.onPairingAttempt?.(); // one guess per code: spent before the answer leaves
        }
        const hs = new DeviceHandshake({
          sid: this.opts.sid,
          identity: sec.identity,
          name: sec.name,
          certFp: this.wantDirect ? sec.certFp : null,
          ...(secret !== undefined ? { pairingSecret: secret } : {}),
          isTrusted: (k) => sec.isTrusted(k),
          curve25519: this.opts.curve25519,
        });
        this.setPhase({ name: 'handshaking', hs, held: ph.held });
        this.signal?.send({ type: 'relay', data: hs.onC1(m) });
        return;
      }
      if (ph.name !== 'handshaking' || !(ph.hs instanceof DeviceHandshake)) throw new PinholeError('bad-handshake', `unexpected ${m.hs}`);
      this.secure(ph, ph.hs.onC2(m));
    } catch (e) {
      this.fail(e);
    }
  }

  private fail(e: unknown): void {
    if (isPinholeError(e) && isErrorCode(e.code, 'handshake')) this.refuse(e.code, e.message);
    else this.refuse('bad-handshake', `handshake failed: ${(e as Error).message}`);
  }

  private secure(ph: Extract<SessionPhase, { name: 'handshaking' }>, result: HandshakeResult): void {
    const [out, inn] = this.opts.role === 'controller' ? (['c2d', 'd2c'] as const) : (['d2c', 'c2d'] as const);
    const seal = (path: SealPath): PathSeal => {
      const keys = deriveSealKeys(result.secret, this.opts.sid, path);
      const aead = this.opts.aead ? { aead: this.opts.aead } : {};
      return { sealer: new Sealer(keys[out], out, this.opts.sid, aead), opener: new Opener(keys[inn], inn, this.opts.sid, aead) };
    };
    const secured: Extract<SessionPhase, { name: 'secured' }> = {
      name: 'secured',
      seals: { relay: seal('relay'), direct: seal('direct') },
      peer: result.peer,
      relay: undefined,
      peerSealed: false,
      held: undefined,
    };
    result.secret.fill(0);
    this.setPhase(secured);
    this.emit('secured', result);
    if (this.phase !== secured) return; // a listener closed it
    // No await from here on: the relay takes queued commands at once.
    if (this.signal) this.attachRelay(secured, this.signal);
    if (this.opts.role === 'device') return this.direct.secured(result.peer.direct);
    const takesDirect = result.peer.certFp !== null;
    this.direct.secured(takesDirect);
    if (!takesDirect) return;
    secured.held = ph.held;
    this.timers.setTimeout(() => {
      const held = secured.held ?? [];
      secured.held = undefined;
      if (this.phase === secured) for (const p of held) this.sendSignal(p);
    }, 0);
  }

  /** Gives the link a sealed relay transport on `signal`, in place of the one before. */
  private attachRelay(ph: Extract<SessionPhase, { name: 'secured' }>, signal: RelaySocket): void {
    if (ph.relay) this.link.detach(ph.relay);
    const sealer = ph.seals.relay.sealer;
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
    ph.relay = relay;
    this.link.attach(relay);
  }

  private onLinkMessage(m: unknown): void {
    const c = parseControl(m);
    if (c === 'invalid') return void this.emit('invalid', 'malformed session message');
    if (c?.kind === 'abort') {
      this.emit('refused', c.code, `the ${this.opts.role === 'controller' ? 'device' : 'controller'} refused the session: ${c.code}`, true);
      void this.close();
      return;
    }
    if (c?.kind === 'signal') return this.onSignal(c.payload);
    if (c?.kind === 'alarm') return void this.emit('security', `peer-${c.code}`);
    this.emit('message', m);
  }

  /** True if the SDP's DTLS fingerprint is the one the peer signed. */
  private checkFingerprint(sdp: string): boolean {
    const want = this.peer?.certFp;
    return want !== null && want !== undefined && parseSdpFingerprint(sdp) === want;
  }

  /** A signal from the peer: it came sealed, so only the peer could have sent it. */
  private onSignal(p: SignalPayload): void {
    if (this.direct.phase.name === 'off') return;
    const isPeerDescription = (p.kind === 'offer' && this.opts.role === 'device') || (p.kind === 'answer' && this.opts.role === 'controller');
    if (isPeerDescription && !this.checkFingerprint(p.sdp)) {
      this.refuse(
        'fingerprint-mismatch',
        `the ${p.kind}'s DTLS fingerprint is not the one the ${this.opts.role === 'controller' ? 'device' : 'controller'} signed`,
      );
      return;
    }
    this.direct.signal(p);
  }
}
