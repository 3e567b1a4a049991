/**
 * The direct path of one session: the attempts at a data channel beside the
 * sealed relay, and their phase. The controller dials and redials; the device
 * answers whatever offer arrives. The peer connection itself comes from an
 * injected Dialer (werift's lives in platform/node/), so this file, like the
 * rest of the core, runs anywhere.
 *
 * Nothing on the relay waits for this: the session is usable the moment the
 * handshake ends, and the link moves to the data channel once one answers.
 */
import type { OpenErrorCode, Opener, Sealer } from '../crypto/index.js';
import type { SignalPayload } from '../protocol/index.js';
import type { Link, Timers, Transport } from '../transport/index.js';

/** An ICE server handed to the peer connection (werift uses only the first STUN and the first TURN server). */
export interface IceServer {
  urls: string;
  username?: string;
  credential?: string;
}

/** A DTLS certificate and its private key: exactly werift's DtlsKeys shape (ECDSA P-256, SHA-256). */
export interface DtlsKeyPair {
  certPem: string;
  keyPem: string;
  /** TLS HashAlgorithm and SignatureAlgorithm numbers (RFC 5246 7.4.1.4.1), e.g. { hash: 4 (sha256), signature: 3 (ecdsa) }. */
  signatureHash: { hash: number; signature: number };
}

/** Configuration of the direct path. */
export interface RtcConfig {
  /** ICE servers; pass the signaling server's own STUN first. Never empty-by-omission: werift would use a public host. */
  iceServers: IceServer[];
  /**
   * Restricts ICE to these local addresses (host candidates and pairs). Used
   * when every peer is on one host (server on loopback), so checks stay on
   * loopback. Default: all interfaces.
   */
  hostAddresses?: string[];
  /**
   * The DTLS certificate and key to present (the Node platform stores one per
   * installation; its fingerprint is signed in the handshake). Default: a
   * fresh one per connection, which nobody can pin.
   */
  dtlsKeys?: DtlsKeyPair;
}

/** Events of one attempt. */
export interface DirectAttemptEvents {
  /** The data channel opened; its transport carries link frames (sealed by the session). */
  up: [t: Transport];
  /** The data channel or the connection died. */
  down: [t: Transport];
  /** The attempt ended before the channel opened (`ice`: no candidate pair worked; `dtls`: ICE worked, DTLS or SCTP did not). Once. */
  failed: [cause: 'ice' | 'dtls'];
  /** ICE/connection state, for diagnostics. */
  state: [state: string];
}

/** What a session needs of one peer-connection attempt (werift's DirectPath in platform/node/rtc.ts; tests inject their own). */
export interface DirectAttempt {
  /** Offerer: creates the channel and sends the offer. */
  start(): Promise<void>;
  /** A signal from the peer (its description already checked by the session). */
  handleSignal(p: SignalPayload): Promise<void>;
  close(): Promise<void>;
  on<K extends keyof DirectAttemptEvents>(event: K, fn: (...args: DirectAttemptEvents[K]) => void): unknown;
}

/** Makes one attempt: `sendSignal` carries its signals to the peer, `onFrame` gets every message of its data channel. */
export type Dialer = (
  role: 'offerer' | 'answerer',
  config: RtcConfig,
  sendSignal: (p: SignalPayload) => void,
  onFrame: (data: string | Uint8Array) => void,
) => Promise<DirectAttempt>;

/** First wait before a new direct attempt after one failed or died, in ms: long enough for a flapping link to settle. */
export const REDIAL_BASE_MS = 1_000;
/** Longest wait between direct attempts, in ms: a path that comes back is used again within this. */
export const REDIAL_MAX_MS = 30_000;
/**
 * Time the first direct attempt gets to open its channel, in ms, before it is
 * closed and tried again; later attempts get twice the one before, up to
 * ATTEMPT_MAX_MS. Covers STUN gathering, the ping round trips before `go`,
 * ICE checks and a DTLS flight resent once. Needed because werift's ICE
 * never reports `failed` (it stays `checking`).
 */
export const ATTEMPT_BASE_MS = 6_000;
/** Longest time one direct attempt gets, in ms: a very lossy path still gets a long try now and then. */
export const ATTEMPT_MAX_MS = 30_000;

/** Why a direct attempt ended without a channel: the dialer's verdict, our own deadline, the peer's bye, or a frame that did not open. */
export type DirectFailure = 'ice' | 'dtls' | 'timeout' | 'peer' | `direct-${OpenErrorCode}`;

/** What `direct-failed` reports: which attempt, why, and when the next one starts (undefined: none follows). */
export interface DirectFailedInfo {
  attempt: number;
  cause: DirectFailure;
  retryMs: number | undefined;
}

/**
 * What the direct path is doing. Transitions: DirectDriver.set(), the only
 * writer. `off` is final.
 */
export type DirectPhase =
  | { name: 'idle' } // nothing tried yet; on the device, nothing offered now
  | { name: 'loading'; attempt: number } // the dialer is making the attempt (werift loads on first use)
  | { name: 'connecting'; rtc: DirectAttempt; attempt: number; deadline: unknown } // deadline: controller only
  | { name: 'up'; rtc: DirectAttempt; transport: Transport } // the channel is open and attached to the link
  | { name: 'backoff'; attempt: number; timer: unknown } // controller: waiting before the next attempt
  | { name: 'off' }; // no direct path in this session: not wanted, not possible, or closed

/** Seal state of one path, one direction each way. */
export interface PathSeal {
  sealer: Sealer;
  opener: Opener;
}

/** What DirectDriver needs of its session. */
export interface DirectHost {
  /** 'controller' dials and redials; 'device' answers offers. */
  readonly role: 'controller' | 'device';
  readonly link: Link;
  readonly timers: Timers;
  readonly rtc: RtcConfig;
  /** Makes attempts; undefined: the session has no direct path. */
  readonly dialer: Dialer | undefined;
  /** The direct path's seals, once the session is secured; until then a channel is not used. */
  seal(): PathSeal | undefined;
  /** Our signals to the peer: sealed link messages once secured, held until then. */
  sendSignal(p: SignalPayload): void;
  /** A session message to the peer over the link (`bye`, `alarm`); never throws. */
  send(payload: unknown): void;
  /** Session events. */
  rtcState(state: string): void;
  failed(info: DirectFailedInfo): void;
  security(code: string): void;
  log(line: string): void;
}

/** The direct path of one session: attempts, their deadlines and redials, and the channel they open. */
export class DirectDriver {
  private current: DirectPhase;
  /** Signals from the peer are applied in arrival order, even while the dialer is still loading. */
  private signals: Promise<void> = Promise.resolve();

  constructor(private readonly host: DirectHost) {
    this.current = host.dialer ? { name: 'idle' } : { name: 'off' };
  }

  get phase(): DirectPhase {
    return this.current;
  }

  /** An attempt exists whose peer has (or may soon have) a half of it. */
  get live(): boolean {
    return this.current.name === 'connecting' || this.current.name === 'up';
  }

  /** Whether the controller may start its first attempt: only from `idle`, never again once tried or off. */
  private get mayDial(): boolean {
    return this.host.role === 'controller' && this.current.name === 'idle';
  }

  /** Controller: starts the first attempt (a no-op unless `idle`). Its signals wait for the session to be secured. */
  start(): void {
    if (this.mayDial) this.dial(0);
  }

  /** The handshake ended: `peerTakesDirect` is false when the peer signed no fingerprint (or, to a device, offers nothing). */
  secured(peerTakesDirect: boolean): void {
    if (!peerTakesDirect) void this.set({ name: 'off' })?.close();
  }

  /** A signal from the peer (descriptions already checked against the signed fingerprint). */
  signal(p: SignalPayload): void {
    if (this.current.name === 'off') return;
    if (p.kind === 'bye') return this.peerBye();
    this.signals = this.signals
      .then(async () => {
        if (p.kind === 'offer' && this.host.role === 'device') {
          // A new offer replaces any earlier attempt.
          const loading: DirectPhase = { name: 'loading', attempt: 0 };
          void this.set(loading)?.close();
          // Building a peer connection takes milliseconds of CPU (far more on a small board): the
          // commands that arrived with the offer are answered first, a macrotask earlier.
          await new Promise<void>((resolve) => this.host.timers.setTimeout(resolve, 0));
          if (this.current !== loading) return;
          const rtc = await this.attempt('answerer');
          if (!rtc) return;
          if (this.current !== loading) return void rtc.close();
          this.set({ name: 'connecting', rtc, attempt: 0, deadline: undefined });
        }
        const d = this.current;
        if (d.name === 'connecting' || d.name === 'up') await d.rtc.handleSignal(p);
      })
      .catch((e: Error) => {
        this.host.rtcState(`signal-failed: ${e.message}`);
      });
  }

  /** The link found the channel silent and detached it. */
  linkDead(): void {
    this.host.rtcState('direct-dead');
    this.down();
  }

  /** Ends the direct path for good. The caller closes the link first, so no path change follows. */
  async stop(): Promise<void> {
    await this.set({ name: 'off' })?.close();
  }

  /**
   * The one place the phase changes. Returns the attempt that the old phase
   * held and the new one does not, for the caller to close, and clears the old
   * phase's timer and link transport.
   */
  private set(next: DirectPhase): DirectAttempt | undefined {
    const prev = this.current;
    if (prev.name === 'off') return undefined; // off is final
    this.current = next;
    if (prev.name === 'connecting' && prev.deadline !== undefined) this.host.timers.clearTimeout(prev.deadline);
    if (prev.name === 'backoff') this.host.timers.clearTimeout(prev.timer);
    if (prev.name === 'up' && !(next.name === 'up' && next.transport === prev.transport)) this.host.link.detach(prev.transport);
    if (next.name !== prev.name) {
      this.host.log(`direct ${prev.name} -> ${next.name}`);
      this.host.rtcState(`direct ${next.name}`);
    }
    const old = prev.name === 'connecting' || prev.name === 'up' ? prev.rtc : undefined;
    const kept = next.name === 'connecting' || next.name === 'up' ? next.rtc : undefined;
    return old !== kept ? old : undefined;
  }

  /** Controller: starts attempt number `attempt` (0 = the first). */
  private dial(attempt: number): void {
    const loading: DirectPhase = { name: 'loading', attempt };
    this.set(loading);
    this.attempt('offerer').then(
      (rtc) => {
        if (!rtc) return;
        if (this.current !== loading) return void rtc.close();
        const ms = Math.min(ATTEMPT_MAX_MS, ATTEMPT_BASE_MS * 2 ** attempt);
        const deadline = this.host.timers.setTimeout(() => this.attemptFailed(rtc, 'timeout'), ms);
        this.set({ name: 'connecting', rtc, attempt, deadline });
        void rtc.start();
      },
      (e: Error) => {
        // The dialer itself failed (werift would not load): no direct path in this session; the relay carries on.
        this.host.rtcState(`dial-failed: ${e.message}`);
        if (this.current === loading) this.set({ name: 'off' });
      },
    );
  }

  /** The peer ended its half of the direct path (`bye`): ours goes too, without a bye back. */
  private peerBye(): void {
    const d = this.current;
    if (d.name === 'up') this.down();
    else if (d.name === 'connecting') this.attemptFailed(d.rtc, 'peer');
  }

  /** The attempt on `rtc` ended without a channel (or its channel carried a frame that did not open). */
  private attemptFailed(rtc: DirectAttempt, cause: DirectFailure): void {
    const d = this.current;
    if ((d.name !== 'connecting' && d.name !== 'up') || d.rtc !== rtc) return;
    const attempt = d.name === 'connecting' ? d.attempt : 0;
    let retryMs: number | undefined;
    if (this.host.role === 'controller') {
      retryMs = Math.min(REDIAL_MAX_MS, REDIAL_BASE_MS * 2 ** attempt);
      const timer = this.host.timers.setTimeout(() => this.dial(attempt + 1), retryMs);
      this.set({ name: 'backoff', attempt: attempt + 1, timer });
    } else this.set({ name: 'idle' });
    if (cause !== 'peer') this.host.send({ sig: { kind: 'bye' } }); // the peer drops its half of this attempt
    void rtc.close();
    this.host.failed({ attempt, cause, retryMs });
  }

  /**
   * The channel died after it worked: the link is back on the relay. The
   * controller tries a new peer connection (not an ICE restart, which left
   * werift's channel silent for seconds) after REDIAL_BASE_MS.
   */
  private down(): void {
    if (this.current.name !== 'up') return;
    if (this.host.role === 'controller') {
      const timer = this.host.timers.setTimeout(() => this.dial(1), REDIAL_BASE_MS);
      this.host.rtcState(`redial in ${REDIAL_BASE_MS} ms`);
      void this.set({ name: 'backoff', attempt: 1, timer })?.close();
    } else void this.set({ name: 'idle' })?.close();
  }

  /** A frame on the data channel: opened with the direct keys, or the channel is torn down. */
  private onFrame(rtc: DirectAttempt, data: string | Uint8Array): void {
    const d = this.current;
    const seal = this.host.seal();
    if (d.name !== 'up' || d.rtc !== rtc || !seal) return;
    const r = typeof data === 'string' ? seal.opener.open(data) : ({ ok: false, code: 'malformed' } as const);
    if (!r.ok) {
      const code = `direct-${r.code}` as const;
      this.host.security(code);
      this.host.send({ alarm: code }); // over the relay: the link has just left this channel
      this.attemptFailed(rtc, code);
      return;
    }
    this.host.link.receive(r.plaintext, d.transport);
  }

  /** The sealed transport the link sees for a data channel. */
  private sealedChannel(t: Transport, seal: PathSeal): Transport {
    return {
      path: t.path,
      send: (frame) => {
        let data: string;
        try {
          data = seal.sealer.seal(frame);
        } catch {
          return; // as on the relay: only a 2^64-frame session gets here
        }
        t.send(data);
      },
    };
  }

  /** Asks the dialer for an attempt and wires its events; undefined if the path went off meanwhile. */
  private async attempt(role: 'offerer' | 'answerer'): Promise<DirectAttempt | undefined> {
    const dialer = this.host.dialer;
    if (!dialer) return undefined;
    const rtc: DirectAttempt = await dialer(
      role,
      this.host.rtc,
      (payload) => this.host.sendSignal(payload),
      (data) => this.onFrame(rtc, data),
    );
    if (this.current.name === 'off') {
      void rtc.close();
      return undefined;
    }
    rtc.on('up', (t) => {
      const d = this.current;
      const seal = this.host.seal();
      if (d.name !== 'connecting' || d.rtc !== rtc || !seal) return;
      const transport = this.sealedChannel(t, seal);
      this.set({ name: 'up', rtc, transport });
      this.host.link.attach(transport);
    });
    rtc.on('down', () => {
      const d = this.current;
      if (d.name === 'up' && d.rtc === rtc) this.down();
    });
    rtc.on('failed', (cause) => this.attemptFailed(rtc, cause));
    rtc.on('state', (s) => this.host.rtcState(s));
    return rtc;
  }
}
