/**
 * One controller-device session: a Link fed by the server relay at once and
 * by a werift data channel once it opens. Device and controller both use it;
 * only the role differs (the controller offers).
 */
import { EventEmitter } from 'node:events';
import { Link, type Path, type Timers, type Transport } from './link.js';
import type { DirectPath, DataChannelTransport, RtcConfig } from './rtc.js';
import type { ServerMessage, SignalPayload } from './protocol.js';
import type { SignalClient } from './signal-client.js';

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

/** Options of a session. */
export interface SessionOptions {
  /** 'controller' offers the data channel; 'device' answers. */
  role: 'device' | 'controller';
  /** Try the direct path (default true). False keeps everything on the relay. */
  direct?: boolean;
  /** ICE configuration for the direct path. */
  rtc: RtcConfig;
  /** Timers for the link (default: real). */
  timers?: Timers;
}

/** Events of a session. */
export interface SessionEvents {
  /** A payload from the peer, in order, exactly once. */
  message: [payload: unknown];
  /** The link's sending path changed. */
  path: [path: Path, previous: Path];
  /** Diagnostic state of the direct attempt. */
  rtc: [state: string];
  /** A frame from the peer failed validation. */
  invalid: [reason: string];
}

/** A Link plus the machinery that gives it paths. */
export class PeerSession extends EventEmitter<SessionEvents> {
  readonly link: Link;
  private signal: SignalClient | undefined;
  private relay: Transport | undefined;
  private rtc: DirectPath | undefined;
  private readonly wantDirect: boolean;
  private closed = false;
  private signals: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SessionOptions) {
    super();
    this.wantDirect = opts.direct ?? true;
    this.link = new Link(opts.timers ? { timers: opts.timers } : {});
    this.link.on('message', (m) => this.emit('message', m));
    this.link.on('path', (p, prev) => this.emit('path', p, prev));
    this.link.on('invalid', (r) => this.emit('invalid', r));
  }

  /** The path in use now. */
  get path(): Path {
    return this.link.path;
  }

  /** Gives the session a signaling socket whose peer is present: the relay path is usable at once. */
  attachSignal(signal: SignalClient): void {
    if (this.closed) return;
    if (this.relay) this.link.detach(this.relay);
    this.signal = signal;
    const relay: Transport = { path: 'relay', send: (data) => signal.send({ type: 'relay', data }) };
    this.relay = relay;
    this.link.attach(relay);
  }

  /** The relay is gone (socket closed or peer left the room). */
  detachSignal(): void {
    if (this.relay) this.link.detach(this.relay);
    this.relay = undefined;
    this.signal = undefined;
  }

  /** Starts the direct attempt (controller). The device starts when the offer arrives. */
  startDirect(): void {
    if (!this.wantDirect || this.closed || this.opts.role !== 'controller') return;
    void this.newDirect('offerer').then((rtc) => rtc?.start());
  }

  /** Routes a server message that belongs to this session. Returns false if it was not for us. */
  handleServerMessage(m: ServerMessage): boolean {
    if (this.closed) return false;
    if (m.type === 'relay') {
      if (this.relay) this.link.receive(m.data, this.relay);
      return true;
    }
    if (m.type === 'signal') {
      this.onSignal(m.payload);
      return true;
    }
    return false;
  }

  /** Sends a payload over the link. Throws PinholeError like Link.send. */
  send(payload: unknown): void {
    this.link.send(payload);
  }

  /** Ends the session: closes the peer connection and the link. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.rtc) this.signal?.send({ type: 'signal', payload: { kind: 'bye' } });
    const rtc = this.rtc;
    this.rtc = undefined;
    this.link.close();
    await rtc?.close();
    this.removeAllListeners();
  }

  private onSignal(p: SignalPayload): void {
    if (!this.wantDirect) return;
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

  private async newDirect(role: 'offerer' | 'answerer'): Promise<DirectPath | undefined> {
    const { DirectPath } = await preloadDirect();
    if (this.closed) return undefined;
    const rtc = new DirectPath(
      role,
      this.opts.rtc,
      (payload) => this.signal?.send({ type: 'signal', payload }),
      (data, t) => this.link.receive(data, t),
    );
    rtc.on('up', (t: DataChannelTransport) => this.link.attach(t));
    rtc.on('down', (t: DataChannelTransport) => this.link.detach(t));
    rtc.on('state', (s) => this.emit('rtc', s));
    this.rtc = rtc;
    return rtc;
  }
}
