/**
 * The direct path: a werift peer connection with one ordered data channel.
 * The only file that imports werift. The controller offers, the device answers;
 * SDP and candidates travel as `signal` messages through the server.
 */
import { EventEmitter } from 'node:events';
import { RTCPeerConnection, type RTCDataChannel } from 'werift';
import type { SignalPayload } from './protocol.js';
import type { Transport } from './link.js';

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

/** An ICE server handed to werift. werift uses only the first STUN and the first TURN server. */
export interface IceServer {
  urls: string;
  username?: string;
  credential?: string;
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
}

/** Events of a DirectPath. */
export interface DirectPathEvents {
  /** The data channel opened; attach this transport to the link. */
  up: [t: DataChannelTransport];
  /** The data channel or the connection died; detach it. */
  down: [t: DataChannelTransport];
  /** ICE/connection state, for diagnostics. */
  state: [state: string];
}

/** A Transport over one werift data channel, with bounded bytes in flight. */
export class DataChannelTransport implements Transport {
  readonly path = 'direct' as const;
  private readonly queue: string[] = [];
  private queuedBytes = 0;

  constructor(private readonly dc: RTCDataChannel) {
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
  private remoteSet = false;
  private readonly pendingCandidates: SignalPayload[] = [];
  private closed = false;

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
      ...(allowed
        ? {
            iceAdditionalHostAddresses: allowed,
            iceInterfaceAddresses: { udp4: allowed[0] },
            iceFilterCandidatePair: (pair) =>
              allowed.includes(pair.remoteCandidate.host) && allowed.includes(pair.protocol.localCandidate?.host ?? ''),
          }
        : {}),
    });
    this.pc.onIceCandidate.subscribe((c) => {
      if (this.closed) return;
      if (!c) return this.sendSignal({ kind: 'end-of-candidates' });
      this.sendSignal({ kind: 'candidate', candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null });
    });
    this.pc.connectionStateChange.subscribe((s) => {
      this.emit('state', s);
      if (s === 'failed' || s === 'closed' || s === 'disconnected') this.down();
    });
    this.pc.onDataChannel.subscribe((dc) => this.wire(dc));
  }

  /** Starts the offer (offerer only). Errors end the attempt quietly; the relay carries on. */
  async start(): Promise<void> {
    if (this.role !== 'offerer') return;
    this.wire(this.pc.createDataChannel(DC_LABEL, { ordered: true }));
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      if (!this.closed) this.sendSignal({ kind: 'offer', sdp: this.pc.localDescription!.sdp });
    } catch (e) {
      this.emit('state', `offer-failed: ${(e as Error).message}`);
    }
  }

  /** Feeds a signal from the peer. Malformed SDP is reported as a state and ignored. */
  async handleSignal(p: SignalPayload): Promise<void> {
    if (this.closed) return;
    try {
      if (p.kind === 'offer' && this.role === 'answerer') {
        await this.pc.setRemoteDescription({ type: 'offer', sdp: p.sdp });
        await this.addPending();
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        if (!this.closed) this.sendSignal({ kind: 'answer', sdp: this.pc.localDescription!.sdp });
      } else if (p.kind === 'answer' && this.role === 'offerer') {
        await this.pc.setRemoteDescription({ type: 'answer', sdp: p.sdp });
        await this.addPending();
      } else if (p.kind === 'candidate') {
        if (!this.remoteSet) this.pendingCandidates.push(p);
        else await this.addCandidate(p);
      } else if (p.kind === 'bye') {
        this.down();
      }
    } catch (e) {
      this.emit('state', `signal-failed: ${(e as Error).message}`);
    }
  }

  /** Closes the peer connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.down();
    await this.pc.close().catch(() => undefined);
    this.removeAllListeners();
  }

  private async addPending(): Promise<void> {
    this.remoteSet = true;
    for (const c of this.pendingCandidates.splice(0)) await this.addCandidate(c);
  }

  private async addCandidate(p: SignalPayload): Promise<void> {
    if (p.kind !== 'candidate') return;
    // The SDP already lists gathered candidates (werift gathers before answering); skip repeats.
    const sdp = this.pc.remoteDescription?.sdp ?? '';
    if (sdp.includes(p.candidate.replace(/^candidate:/, ''))) return;
    await this.pc.addIceCandidate({ candidate: p.candidate, sdpMid: p.sdpMid ?? undefined, sdpMLineIndex: p.sdpMLineIndex ?? undefined });
  }

  private wire(dc: RTCDataChannel): void {
    if (dc.label !== DC_LABEL) return;
    dc.stateChanged.subscribe((s) => {
      if (s === 'open' && !this.transport && !this.closed) {
        this.transport = new DataChannelTransport(dc);
        this.emit('up', this.transport);
      } else if (s === 'closed') this.down();
    });
    dc.onMessage.subscribe((data) => {
      if (this.transport) this.onFrame(data, this.transport);
    });
  }

  private down(): void {
    const t = this.transport;
    if (!t) return;
    this.transport = undefined;
    this.emit('down', t);
  }
}
