/**
 * The direct path in a browser: RTCPeerConnection with one ordered data
 * channel, speaking exactly the SignalPayload sequence of werift's DirectPath
 * (platform/node/rtc.ts, whose header explains the coordinated start), since
 * the peer is that DirectPath on the device:
 *
 *   description (no candidates) → candidate… → end-of-candidates
 *   offerer, once the answer and the peer's end-of-candidates are in:
 *   ping ×GO_PINGS → go → wait RTT/2 → add the peer's held candidates
 *   answerer, on go: add the peer's held candidates
 *
 * The browser trickles its candidates, so the description leaves at once and
 * the candidates follow; the offerer sends `go` only after its own
 * end-of-candidates, because werift adds only the candidates it holds at `go`.
 * No Node built-in here: this runs in a page.
 */
import type { SignalPayload } from '../../protocol/index.js';
import type { Dialer, DirectAttempt, DirectAttemptEvents, RtcConfig } from '../../session/index.js';
import { Emitter, type Transport } from '../../transport/index.js';

/** Bytes queued in the data channel above which we hold frames back: the same bound as on Node, so a slow werift peer is not flooded. */
export const DC_HIGH_WATER_BYTES = 2048;
/** Queued bytes at which the browser tells us to send more. */
export const DC_LOW_WATER_BYTES = 512;
/** Most bytes held back locally; beyond it frames are dropped and the link resends them on the next path change. */
export const DC_MAX_LOCAL_QUEUE_BYTES = 1 << 20;
/** Label of our one data channel (the device's werift accepts only this one). */
export const DC_LABEL = 'pinhole';
/** Pings used to measure the relay RTT before `go`; the smallest is used. */
export const GO_PINGS = 3;
/** Time to wait for one pong, in ms: a relay slower than this is not worth timing. */
export const PING_TIMEOUT_MS = 2_000;
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
  private remoteSet = false;
  /** The peer's candidates, held until `go`. */
  private readonly held: Extract<SignalPayload, { kind: 'candidate' }>[] = [];
  private peerCandidatesDone = false;
  private went = false;
  private readonly pongs = new Map<number, () => void>();
  private pingN = 0;
  private op: Promise<void> = Promise.resolve();
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
  }

  /** Starts the offer (offerer only). Errors end the attempt quietly; the relay carries on. */
  start(): Promise<void> {
    const run = this.op.then(() => this.offer());
    this.op = run;
    return run;
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
    const run = this.op.then(() => this.applySignal(p));
    this.op = run;
    return run;
  }

  private async applySignal(p: SignalPayload): Promise<void> {
    if (this.closed) return;
    try {
      switch (p.kind) {
        case 'offer':
          if (this.role !== 'answerer') return;
          await this.pc.setRemoteDescription({ type: 'offer', sdp: p.sdp });
          this.remoteSet = true;
          await this.pc.setLocalDescription(await this.pc.createAnswer());
          this.sendDescription('answer');
          return;
        case 'answer':
          if (this.role !== 'offerer') return;
          await this.pc.setRemoteDescription({ type: 'answer', sdp: p.sdp });
          this.remoteSet = true;
          void this.maybeGo(); // not awaited: its pongs arrive through this same signal queue
          return;
        case 'candidate':
          this.held.push(p);
          return;
        case 'end-of-candidates':
          this.peerCandidatesDone = true;
          void this.maybeGo();
          return;
        case 'ping':
          return this.sendSignal({ kind: 'pong', n: p.n });
        case 'pong':
          this.pongs.get(p.n)?.();
          return;
        case 'go':
          if (this.role === 'answerer') await this.addHeld();
          return;
        case 'bye':
          this.end();
          return;
      }
    } catch (e) {
      this.emit('state', `signal-failed: ${(e as Error).message}`);
    }
  }

  /** Sends our description without candidates; the candidates gathered so far follow, the rest as they come. */
  private sendDescription(type: 'offer' | 'answer'): void {
    if (this.closed) return;
    const sdp = this.pc.localDescription!.sdp;
    const kept = sdp.split(/\r?\n/).filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates');
    this.sendSignal({ kind: type, sdp: kept.join('\r\n') });
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
    void this.maybeGo();
  }

  /** Controller: once the answer, all the device's candidates and all ours are out, time `go`. */
  private async maybeGo(): Promise<void> {
    if (this.role !== 'offerer' || this.went || !this.remoteSet || !this.peerCandidatesDone || !this.ourCandidatesDone) return;
    this.went = true;
    // Pings go out together: one round trip's wait, and the fastest reply is the best estimate.
    const rtt = Math.min(...(await Promise.all(Array.from({ length: GO_PINGS }, () => this.ping()))));
    if (this.closed) return;
    this.sendSignal({ kind: 'go' });
    const wait = Number.isFinite(rtt) ? rtt / 2 : 0;
    this.emit('state', `go rtt=${Number.isFinite(rtt) ? rtt.toFixed(1) : '?'}ms`);
    if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
    await this.addHeld();
  }

  /** One relay round trip in ms, or Infinity if the pong does not come. */
  private ping(): Promise<number> {
    const n = ++this.pingN;
    const t0 = performance.now();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pongs.delete(n);
        resolve(Number.POSITIVE_INFINITY);
      }, PING_TIMEOUT_MS);
      this.pongs.set(n, () => {
        clearTimeout(timer);
        this.pongs.delete(n);
        resolve(performance.now() - t0);
      });
      this.sendSignal({ kind: 'ping', n });
    });
  }

  /** Adds the peer's held candidates (no end-of-candidates, as on Node: peer-reflexive ones may still come). */
  private async addHeld(): Promise<void> {
    if (this.closed) return;
    for (const c of this.held.splice(0)) {
      await this.pc
        .addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? (c.sdpMid == null ? 0 : null) })
        .catch((e: Error) => this.emit('state', `bad-candidate: ${e.message}`));
    }
  }

  /** Closes the peer connection (the browser fires no state change for it, so `down` is ours). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.gatherTimer !== undefined) clearTimeout(this.gatherTimer);
    this.down();
    await this.op.catch(() => undefined);
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
