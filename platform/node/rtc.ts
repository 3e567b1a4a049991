/**
 * The direct path: a werift peer connection with one ordered data channel.
 * The only file that imports werift. The controller offers, the device answers;
 * SDP, candidates, pings and `go` are handed to the session (`sendSignal`),
 * which carries them sealed over the relay: the server never sees them. Their
 * order and the coordinated start are session/coordinated-start.ts's.
 */
import { EventEmitter } from 'node:events';
import { CipherContext, type RTCDataChannel, RTCPeerConnection } from 'werift';
import { type SignalPayload, splitCandidates } from '../../protocol/index.js';
import { CoordinatedStart, type DirectAttemptEvents, type DtlsKeyPair, type RtcConfig } from '../../session/index.js';
import type { Transport } from '../../transport/index.js';

export type { DtlsKeyPair, IceServer, RtcConfig } from '../../session/index.js';

/** Bytes queued in the data channel above which we hold frames back: werift's throughput collapses past about 2 KB queued. */
export const DC_HIGH_WATER_BYTES = 2048;
/** Queued bytes at which werift tells us to send more. */
export const DC_LOW_WATER_BYTES = 512;
/** Most bytes held back locally; beyond it frames are dropped and the link resends them on the next path change. */
export const DC_MAX_LOCAL_QUEUE_BYTES = 1 << 20;
/** Seconds werift waits for STUN answers while gathering: setLocalDescription blocks on it, so keep it short. */
export const STUN_GATHER_TIMEOUT_S = 2;
/** Label of our one data channel. */
export const DC_LABEL = 'pinhole';

/** werift's codes for SHA-256, ECDSA and P-256 (the curve browsers use for DTLS). */
const HASH_SHA256 = 4;
const SIG_ECDSA = 3;
const CURVE_P256 = 23;

/** Makes a new self-signed DTLS certificate (`npm run bench` times it). Stored once per installation by platform/node/dtls-cert.ts. */
export async function generateDtlsKeys(): Promise<DtlsKeyPair> {
  const k = await CipherContext.createSelfSignedCertificateWithKey({ hash: HASH_SHA256, signature: SIG_ECDSA }, CURVE_P256);
  return { certPem: k.certPem, keyPem: k.keyPem, signatureHash: { hash: k.signatureHash.hash, signature: k.signatureHash.signature } };
}

/** Events of a DirectPath: what the session expects of an attempt. */
export type DirectPathEvents = DirectAttemptEvents;

/** A Transport over one werift data channel, with bounded bytes in flight. */
export class DataChannelTransport implements Transport {
  private readonly queue: string[] = [];
  private queuedBytes = 0;

  /** @param path 'turn' when the selected candidate pair goes through a TURN server. */
  constructor(
    private readonly dc: RTCDataChannel,
    readonly path: 'direct' | 'turn' = 'direct',
  ) {
    dc.bufferedAmountLowThreshold = DC_LOW_WATER_BYTES;
    dc.bufferedAmountLow.subscribe(() => this.flush());
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

/** One peer connection attempt. */
export class DirectPath extends EventEmitter<DirectPathEvents> {
  private readonly pc: RTCPeerConnection;
  private transport: DataChannelTransport | undefined;
  private readonly signals: CoordinatedStart;
  private closed = false;
  private iceConnected = false;
  private ended = false;

  /**
   * @param role 'offerer' (controller) creates the channel and the offer; 'answerer' (device) answers.
   * @param onFrame called with every message received on the channel.
   */
  constructor(
    readonly role: 'offerer' | 'answerer',
    config: RtcConfig,
    private readonly sendSignal: (p: SignalPayload) => void,
    private readonly onFrame: (data: string | Buffer, t: DataChannelTransport) => void,
  ) {
    super();
    const allowed = config.hostAddresses;
    this.pc = new RTCPeerConnection({
      iceServers: config.iceServers.map((s) => ({ ...s })),
      iceUseIpv6: false,
      iceStunGatherTimeout: STUN_GATHER_TIMEOUT_S,
      ...(config.dtlsKeys ? { dtls: { keys: config.dtlsKeys as never } } : {}),
      ...(allowed
        ? {
            iceAdditionalHostAddresses: allowed,
            iceInterfaceAddresses: { udp4: allowed[0] },
            iceFilterCandidatePair: (pair) => allowed.includes(pair.remoteCandidate.host) && allowed.includes(pair.protocol.localCandidate?.host ?? ''),
          }
        : {}),
    });
    this.pc.connectionStateChange.subscribe((s) => {
      this.emit('state', s);
      if (s === 'failed' || s === 'closed' || s === 'disconnected') this.end();
    });
    this.pc.iceConnectionStateChange.subscribe((s) => {
      if (s === 'connected' || s === 'completed') this.iceConnected = true;
      this.emit('state', `ice-${s}`);
    });
    this.pc.onDataChannel.subscribe((dc) => this.wire(dc));
    this.signals = new CoordinatedStart(role, sendSignal, {
      setRemoteDescription: (type, sdp) => this.pc.setRemoteDescription({ type, sdp }),
      answer: async () => {
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.sendDescription('answer');
      },
      addCandidate: (c) => this.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? undefined }),
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

  /** Feeds a signal from the peer. Malformed SDP is reported as a state and ignored. */
  handleSignal(p: SignalPayload): Promise<void> {
    return this.signals.handleSignal(p);
  }

  /** Sends our description without candidates, then the candidates, then end-of-candidates. */
  private sendDescription(type: 'offer' | 'answer'): void {
    if (this.closed) return;
    const { sdp, candidates, mid } = splitCandidates(this.pc.localDescription!.sdp);
    this.sendSignal({ kind: type, sdp });
    for (const c of candidates) this.sendSignal({ kind: 'candidate', candidate: c, sdpMid: mid, sdpMLineIndex: 0 });
    this.sendSignal({ kind: 'end-of-candidates' });
    this.signals.ourCandidatesSent();
  }

  /** Closes the peer connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.down();
    await this.signals.close();
    await this.pc.close().catch(() => undefined);
    this.removeAllListeners();
  }

  private wire(dc: RTCDataChannel): void {
    if (dc.label !== DC_LABEL) return;
    dc.stateChanged.subscribe((s) => {
      if (s === 'open' && !this.transport && !this.closed) {
        this.ended = true; // it opened: what follows is `down`, never `failed`
        this.transport = new DataChannelTransport(dc, this.selectedPath());
        this.emit('up', this.transport);
      } else if (s === 'closed') this.end();
    });
    dc.onMessage.subscribe((data) => {
      if (this.transport) this.onFrame(data, this.transport);
    });
  }

  /** 'turn' if the nominated pair has a relayed candidate on either end. */
  private selectedPath(): 'direct' | 'turn' {
    const pair = this.pc.iceTransports[0]?.connection.nominated;
    const types = [pair?.protocol.localCandidate?.type, pair?.remoteCandidate.type];
    return types.includes('relay') ? 'turn' : 'direct';
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
