/**
 * The direct path in a browser: RTCPeerConnection with one ordered data
 * channel, speaking exactly the SignalPayload sequence of werift's DirectPath
 * (platform/node/rtc.ts), since the peer is that DirectPath on the device:
 * both run it through session/coordinated-start.ts, whose header explains it.
 *
 * The browser trickles its candidates, so the description leaves at once and
 * the candidates follow; the offerer sends `go` only after its own
 * end-of-candidates, because werift adds only the candidates it holds at `go`.
 * No Node built-in here: this runs in a page.
 */
import { type SignalPayload, splitCandidates } from '../../protocol/index.js';
import { CoordinatedStart, type Dialer, type DirectAttempt, type DirectAttemptEvents, type RtcConfig } from '../../session/index.js';
import { Emitter, type Transport } from '../../transport/index.js';

/** Bytes queued in the data channel above which we hold frames back: the same bound as on Node, so a slow werift peer is not flooded. */
export const DC_HIGH_WATER_BYTES = 2048;
/** Queued bytes at which the browser tells us to send more. */
export const DC_LOW_WATER_BYTES = 512;
/** Most bytes held back locally; beyond it frames are dropped and the link resends them on the next path change. */
export const DC_MAX_LOCAL_QUEUE_BYTES = 1 << 20;
/** Label of our one data channel (the device's werift accepts only this one). */
export const DC_LABEL = 'pinhole';
/**
 * Longest wait for the browser's own candidate gathering, in ms. Chromium
 * keeps gathering until an unreachable STUN server times out (about 10 s);
 * `go` waits for our end-of-candidates, so past this we end with the
 * candidates we have (host ones come within milliseconds), as werift does
 * with its 2 s STUN gather timeout.
 */
export const GATHER_TIMEOUT_MS = 3_000;

/** A certificate's SHA-256 fingerprint as protocol/sdp.ts's parseSdpFingerprint returns it: 32 upper-case hex pairs joined by ':'. */
export function certFingerprint(cert: RTCCertificate): string {
  const fp = cert.getFingerprints().find((f) => f.algorithm?.toLowerCase() === 'sha-256');
  const value = fp?.value?.toUpperCase();
  if (!value || !/^[0-9A-F]{2}(?::[0-9A-F]{2}){31}$/.test(value)) throw new TypeError('the certificate has no SHA-256 fingerprint');
  return value;
}

/** The address of an SDP candidate line (`candidate:f 1 udp prio ADDRESS port typ host …`). */
function candidateAddress(candidate: string): string {
  return candidate.split(' ')[4] ?? '';
}
const isMdns = (candidate: string): boolean => candidateAddress(candidate).toLowerCase().endsWith('.local');
const isHost = (candidate: string): boolean => / typ host( |$)/.test(candidate);

/** A Transport over one browser data channel, with bounded bytes in flight (like platform/node's DataChannelTransport). */
export class BrowserChannelTransport implements Transport {
  private readonly queue: string[] = [];
  private queuedBytes = 0;

  constructor(
    private readonly dc: RTCDataChannel,
    readonly path: 'direct' | 'turn' = 'direct',
  ) {
    dc.bufferedAmountLowThreshold = DC_LOW_WATER_BYTES;
    dc.addEventListener('bufferedamountlow', () => this.flush());
  }

  send(frame: string): void {
    if (this.dc.readyState !== 'open') return;
    if (this.queue.length === 0 && this.dc.bufferedAmount < DC_HIGH_WATER_BYTES) {
      this.write(frame);
      return;
    }
    if (this.queuedBytes + frame.length > DC_MAX_LOCAL_QUEUE_BYTES) return;
    this.queue.push(frame);
    this.queuedBytes += frame.length;
  }

  private flush(): void {
    while (this.queue.length && this.dc.bufferedAmount < DC_HIGH_WATER_BYTES && this.dc.readyState === 'open') {
      const f = this.queue.shift()!;
      this.queuedBytes -= f.length;
      this.write(f);
    }
  }

  private write(frame: string): void {
    try {
      this.dc.send(frame);
    } catch {
      /* channel closing: the link resends after the path change */
    }
  }
}

/** One browser peer connection attempt: a DirectAttempt. */
export class BrowserDirectPath extends Emitter<DirectAttemptEvents> implements DirectAttempt {
  private readonly pc: RTCPeerConnection;
  private transport: BrowserChannelTransport | undefined;
  private readonly signals: CoordinatedStart;
  private closed = false;
  private iceConnected = false;
  private ended = false;
  /** Our candidates wait until our description has gone, then leave as they come. */
  private descriptionSent = false;
  private readonly early: RTCIceCandidate[] = [];
  /** mDNS host candidates, sent only if gathering ends with no other host candidate. */
  private readonly mdns: RTCIceCandidate[] = [];
  private sentHost = false;
  private gathered = false;
  private ourCandidatesDone = false;
  private gatherTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param role 'offerer' (controller) creates the channel and the offer; 'answerer' (device) answers.
   * @param onFrame called with every message received on the channel.
   */
  constructor(
    readonly role: 'offerer' | 'answerer',
    config: RtcConfig,
    certificate: RTCCertificate,
    private readonly sendSignal: (p: SignalPayload) => void,
    private readonly onFrame: (data: string | Uint8Array) => void,
  ) {
    super();
    // config.hostAddresses and config.dtlsKeys are werift's: a page cannot pick interfaces, and its certificate is an RTCCertificate.
    this.pc = new RTCPeerConnection({
      iceServers: config.iceServers.map((s) => ({ ...s })),
      certificates: [certificate],
    });
    this.pc.addEventListener('connectionstatechange', () => {
      const s = this.pc.connectionState;
      this.emit('state', s);
      if (s === 'failed' || s === 'closed' || s === 'disconnected') this.end();
    });
    this.pc.addEventListener('iceconnectionstatechange', () => {
      const s = this.pc.iceConnectionState;
      if (s === 'connected' || s === 'completed') this.iceConnected = true;
      this.emit('state', `ice-${s}`);
    });
    this.pc.addEventListener('icecandidate', (e) => this.onLocalCandidate(e.candidate));
    this.pc.addEventListener('icegatheringstatechange', () => {
      if (this.pc.iceGatheringState === 'complete') this.gatherDone();
    });
    this.pc.addEventListener('datachannel', (e) => this.wire(e.channel));
    this.signals = new CoordinatedStart(role, sendSignal, {
      setRemoteDescription: (type, sdp) => this.pc.setRemoteDescription({ type, sdp }),
      answer: async () => {
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.sendDescription('answer');
      },
      // as on Node, no end-of-candidates after them: peer-reflexive ones may still come
      addCandidate: (c) =>
        this.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? (c.sdpMid == null ? 0 : null) }),
      bye: () => this.end(),
      state: (s) => this.emit('state', s),
    });
  }

  /** Starts the offer (offerer only). Errors end the attempt quietly; the relay carries on. */
  start(): Promise<void> {
    return this.signals.enqueue(() => this.offer());
  }

  private async offer(): Promise<void> {
    if (this.role !== 'offerer' || this.closed) return;
    this.wire(this.pc.createDataChannel(DC_LABEL, { ordered: true }));
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.sendDescription('offer');
    } catch (e) {
      this.emit('state', `offer-failed: ${(e as Error).message}`);
    }
  }

  /** Feeds a signal from the peer, one at a time in arrival order. */
  handleSignal(p: SignalPayload): Promise<void> {
    return this.signals.handleSignal(p);
  }

  /** Sends our description without candidates; the candidates gathered so far follow, the rest as they come. */
  private sendDescription(type: 'offer' | 'answer'): void {
    if (this.closed) return;
    this.sendSignal({ kind: type, sdp: splitCandidates(this.pc.localDescription!.sdp).sdp });
    this.descriptionSent = true;
    for (const c of this.early.splice(0)) this.sendCandidate(c);
    if (this.gathered) this.finishCandidates();
    else this.gatherTimer = setTimeout(() => this.gatherDone(), GATHER_TIMEOUT_MS);
  }

  private onLocalCandidate(c: RTCIceCandidate | null): void {
    // The browser's null (or empty) candidate marks the end of gathering: it is never handed to werift as a candidate.
    if (!c?.candidate) return this.gatherDone();
    if (this.ourCandidatesDone) return; // after our end-of-candidates werift would hold it forever
    if (!this.descriptionSent) this.early.push(c);
    else this.sendCandidate(c);
  }

  /**
   * mDNS `.local` host candidates (Chromium hides local addresses behind them
   * unless the page may capture media) are held back: werift resolves each
   * one with a multicast lookup that blocks its candidate queue for about
   * 10 s and rarely succeeds across networks. They are sent only when
   * gathering ended with no other host candidate, so a same-LAN peer still
   * has something to try, and then last, after every srflx and relay
   * candidate: werift adds held candidates one by one, so the useful ones are
   * in before it starts resolving. srflx candidates carry the real public
   * address either way.
   */
  private sendCandidate(c: RTCIceCandidate): void {
    if (isMdns(c.candidate)) {
      this.mdns.push(c);
      return;
    }
    if (isHost(c.candidate)) this.sentHost = true;
    this.sendSignal({ kind: 'candidate', candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
  }

  private gatherDone(): void {
    this.gathered = true;
    if (this.descriptionSent) this.finishCandidates();
  }

  /** Our end-of-candidates, once, after every candidate we send went. */
  private finishCandidates(): void {
    if (this.ourCandidatesDone || this.closed) return;
    if (this.gatherTimer !== undefined) clearTimeout(this.gatherTimer);
    this.gatherTimer = undefined;
    if (!this.sentHost)
      for (const c of this.mdns) this.sendSignal({ kind: 'candidate', candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
    this.mdns.length = 0;
    this.ourCandidatesDone = true;
    this.sendSignal({ kind: 'end-of-candidates' });
    this.signals.ourCandidatesSent();
  }

  /** Closes the peer connection (the browser fires no state change for it, so `down` is ours). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.gatherTimer !== undefined) clearTimeout(this.gatherTimer);
    this.down();
    await this.signals.close();
    this.pc.close();
    this.removeAllListeners();
  }

  private wire(dc: RTCDataChannel): void {
    if (dc.label !== DC_LABEL) return;
    dc.binaryType = 'arraybuffer';
    dc.addEventListener('open', () => {
      if (this.transport || this.closed) return;
      this.ended = true; // it opened: what follows is `down`, never `failed`
      void this.selectedPath().then((path) => {
        if (this.closed || dc.readyState !== 'open') return;
        this.transport = new BrowserChannelTransport(dc, path);
        this.emit('up', this.transport);
      });
    });
    dc.addEventListener('close', () => this.end());
    dc.addEventListener('message', (e: MessageEvent) => {
      if (!this.transport) return;
      const d: unknown = e.data;
      this.onFrame(typeof d === 'string' ? d : new Uint8Array(d as ArrayBuffer));
    });
  }

  /** 'turn' if the selected candidate pair has a relayed candidate on either end. */
  private async selectedPath(): Promise<'direct' | 'turn'> {
    try {
      const stats = await this.pc.getStats();
      let pairId: string | undefined;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      const pair = pairId ? stats.get(pairId) : undefined;
      if (!pair) return 'direct';
      const types = [stats.get(pair.localCandidateId)?.candidateType, stats.get(pair.remoteCandidateId)?.candidateType];
      return types.includes('relay') ? 'turn' : 'direct';
    } catch {
      return 'direct';
    }
  }

  /** The connection ended: `down` if the channel was up, else `failed` (once, and not after close()). */
  private end(): void {
    if (this.transport) return this.down();
    if (this.ended || this.closed) return;
    this.ended = true;
    this.emit('failed', this.iceConnected ? 'dtls' : 'ice');
  }

  private down(): void {
    const t = this.transport;
    if (!t) return;
    this.transport = undefined;
    this.emit('down', t);
  }
}

/** Makes browser attempts for SessionOptions.dialer; `certificate` is the one whose certFingerprint the handshake signs. */
export function browserDialer(certificate: RTCCertificate): Dialer {
  return async (role, config, sendSignal, onFrame) => new BrowserDirectPath(role, config, certificate, sendSignal, onFrame);
}
