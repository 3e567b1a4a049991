/**
 * One Link for both paths. A Link is a reliable, ordered message pipe between
 * a controller and a device; underneath it sits the server relay, the direct
 * data channel, or both. Callers send and receive messages and may ask which
 * path is in use; they never pick one.
 *
 * Path changes:
 *   - a transport is attached (relay at once, direct when its channel opens);
 *   - a direct transport is used for sending once something valid arrives on it
 *     (the answer to our probe, or the peer's own probe or data);
 *   - when the transport in use is detached, sending moves to what is left and
 *     every unacknowledged frame is sent again there. Seq numbers make the
 *     receiver drop doubles and reorder early arrivals, so nothing is lost or
 *     doubled across the move.
 */
import { MAX_SEALED_PLAINTEXT_BYTES } from '../crypto/index.js';
import { encodeControl, encodeData, MAX_LINK_FRAME_BYTES, PinholeError, parseFrame } from '../protocol/index.js';
import { Emitter } from './emitter.js';

/**
 * Which path carries a link's frames: the server's WebSocket relay, a direct
 * data channel, a data channel through a TURN server, or none while nothing is usable.
 */
export type Path = 'relay' | 'direct' | 'turn' | 'none';

/** A way to carry frames: the relay through the server, or a data channel. */
export interface Transport {
  /** The path this transport provides. */
  readonly path: Exclude<Path, 'none'>;
  /** Sends one frame. Must not throw; a transport that cannot send drops it (the link resends after a path change). */
  send(frame: string): void;
}

/** Timer functions, injectable for tests. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}
/** The platform's timers, unref'd where that exists (Node) so a pending timer never keeps a process alive. The default wherever Timers are injected. */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t: unknown = setTimeout(fn, ms);
    (t as { unref?: () => void }).unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Bytes of `s` in UTF-8 (a lone surrogate counts 3, as its replacement character). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Keeps a leading BOM, as Node's Buffer decoding did: such a frame stays invalid JSON. */
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** Delay before a bare ack is sent when no data frame could carry it, in ms: short, so the peer's resend buffer stays small. */
export const ACK_DELAY_MS = 20;
/** Received data frames after which an ack goes out at once. */
export const ACK_EVERY_FRAMES = 32;
/** Gap between probes on a new direct path, in ms: a few RTTs on a LAN, so the move is quick. */
export const PROBE_INTERVAL_MS = 100;
/** Probes sent before a direct path is given up as silent (10 s at PROBE_INTERVAL_MS). */
export const PROBE_ATTEMPTS = 100;
/**
 * Time after which unacknowledged frames are sent again on the same path, in
 * ms. Both paths are reliable, so this only fires when something in between
 * dropped a frame (a rate-limited relay, a server restart): well above any
 * real RTT so it never doubles traffic on a healthy link.
 */
export const RETRANSMIT_MS = 1_000;
/**
 * Gap between keepalive probes on a direct path in use, in ms. Keeps NAT
 * mappings fresh (UDP mappings commonly expire after 30 s or more) and makes a
 * silent path show up quickly.
 */
export const KEEPALIVE_MS = 2_000;
/**
 * Keepalive intervals with nothing heard on the direct path after which it is
 * declared dead and the link falls back to the relay: 3 x 2 s = 6 s, several
 * RTTs even on a bad path, and well under a person's patience.
 */
export const KEEPALIVE_MISSES = 3;
/** Most frames sent but not acknowledged; past it the peer is not keeping up and send() throws `overflow`. */
export const MAX_UNACKED = 4096;
/** Most early frames held while a gap fills. */
export const MAX_REORDER = 4096;

/** Events a Link emits. */
export interface LinkEvents {
  /** A payload arrived, in order, exactly once. */
  message: [payload: unknown];
  /** The sending path changed. */
  path: [path: Path, previous: Path];
  /** A frame failed validation and was dropped. */
  invalid: [reason: string];
  /** A direct transport went silent for KEEPALIVE_MISSES keepalives and was detached. */
  dead: [t: Transport];
  /** The link was closed. */
  close: [];
}

/** Options for a Link. */
export interface LinkOptions {
  /** Timer functions (default: the real ones, unref'd). */
  timers?: Timers;
}

interface Pending {
  q: number;
  json: string;
}

/** Reliable, ordered message pipe over whichever path works. */
export class Link extends Emitter<LinkEvents> {
  private readonly timers: Timers;
  private relay: Transport | undefined;
  private direct: Transport | undefined;
  private directVerified = false;
  private current: Transport | undefined;
  private nextSeq = 1;
  private readonly unacked: Pending[] = [];
  private recvNext = 1; // next seq to deliver
  private readonly early = new Map<number, unknown>();
  private sinceAck = 0;
  private ackTimer: unknown;
  private probeTimer: unknown;
  private probeN = 0;
  private keepaliveTimer: unknown;
  /** Something arrived on the direct transport since the last keepalive tick. */
  private directHeard = false;
  private retransmitTimer: unknown;
  /** Highest seq sent when the retransmit timer was armed. */
  private armedAt = 0;
  private closed = false;

  constructor(opts: LinkOptions = {}) {
    super();
    this.timers = opts.timers ?? realTimers;
  }

  /** The path frames are sent on now. */
  get path(): Path {
    return this.current?.path ?? 'none';
  }

  /** True once close() ran. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Frames sent and not yet acknowledged by the peer. */
  get inFlight(): number {
    return this.unacked.length;
  }

  /**
   * Adds a transport. A relay is used at once if nothing better is in use; a
   * direct transport is probed first and used once it answers.
   */
  attach(t: Transport): void {
    if (this.closed) return;
    if (t.path === 'relay') {
      this.relay = t;
      if (!this.current) this.use(t);
    } else {
      // A data channel, direct or through TURN: used once it answers a probe.
      this.direct = t;
      this.directVerified = false;
      this.startProbing(t);
    }
  }

  /** Removes a transport that died. Sending moves to what is left; unacknowledged frames are resent there. */
  detach(t: Transport): void {
    if (t === this.direct) {
      this.direct = undefined;
      this.directVerified = false;
      this.stopProbing();
      this.stopKeepalive();
    }
    if (t === this.relay) this.relay = undefined;
    if (this.current === t) {
      const next = this.direct && this.directVerified ? this.direct : this.relay;
      this.use(next);
    }
  }

  /** Sends one payload (any JSON value). Throws PinholeError `link-closed`, `overflow` or `usage`. */
  send(payload: unknown): void {
    if (this.closed) throw new PinholeError('link-closed', 'link is closed');
    if (this.unacked.length >= MAX_UNACKED) throw new PinholeError('overflow', `more than ${MAX_UNACKED} frames unacknowledged`);
    const json = JSON.stringify(payload);
    // Frames must fit one sealed relay frame, whichever path they take now: they may be resent on the relay.
    if (json === undefined || (json.length * 3 + 64 > MAX_SEALED_PLAINTEXT_BYTES && utf8Length(json) + 64 > MAX_SEALED_PLAINTEXT_BYTES))
      throw new PinholeError('usage', 'payload too large for one link frame');
    const p = { q: this.nextSeq++, json };
    this.unacked.push(p);
    this.current?.send(this.dataFrame(p));
    this.armRetransmit();
  }

  /** Feeds one frame (text, or its UTF-8 bytes) received on `via`. Invalid frames are dropped and reported as `invalid`. */
  receive(data: string | Uint8Array, via: Transport): void {
    if (this.closed) return;
    if (via === this.direct) this.directHeard = true;
    // Bytes over the limit are refused before decoding, as parseFrame refuses text over it.
    const f = typeof data === 'string' ? parseFrame(data) : data.length > MAX_LINK_FRAME_BYTES ? undefined : parseFrame(utf8.decode(data));
    if (!f) {
      this.emit('invalid', 'malformed link frame');
      return;
    }
    // Any valid frame on the direct transport shows it works both ways (an open data channel is
    // one reliable association), just as a probe reply does: use it now, not after our own probe
    // gets through, so a lost probe does not keep our answers on the relay.
    if (via === this.direct && !this.directVerified) this.verifyDirect(via);
    switch (f.t) {
      case 'p':
        via.send(encodeControl({ t: 'P', n: f.n }));
        return;
      case 'P':
        return;
      case 'a':
        this.onAck(f.a);
        return;
      case 'd':
        this.onAck(f.a);
        this.onData(f.q, f.m);
        return;
    }
  }

  /** Closes the link; no more events after `close`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopProbing();
    this.stopKeepalive();
    if (this.ackTimer !== undefined) this.timers.clearTimeout(this.ackTimer);
    if (this.retransmitTimer !== undefined) this.timers.clearTimeout(this.retransmitTimer);
    this.ackTimer = this.retransmitTimer = undefined;
    this.current = this.relay = this.direct = undefined;
    this.emit('close');
    this.removeAllListeners();
  }

  private verifyDirect(t: Transport): void {
    this.directVerified = true;
    this.stopProbing();
    this.use(t);
    this.startKeepalive(t);
  }

  private use(t: Transport | undefined): void {
    const prev = this.path;
    this.current = t;
    // Resend everything unacknowledged: the old path may have lost it.
    if (t) for (const p of this.unacked) t.send(this.dataFrame(p));
    if (this.path !== prev) this.emit('path', this.path, prev);
  }

  private dataFrame(p: Pending): string {
    this.sinceAck = 0;
    if (this.ackTimer !== undefined) {
      this.timers.clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
    return encodeData(p.q, this.recvNext - 1, p.json);
  }

  private onAck(a: number): void {
    let n = 0;
    while (n < this.unacked.length && this.unacked[n]!.q <= a) n++;
    if (n) this.unacked.splice(0, n);
  }

  /**
   * Arms one timer for the frames in flight. When it fires, frames that were
   * already sent when it was armed and are still unacknowledged are resent.
   */
  private armRetransmit(): void {
    if (this.retransmitTimer !== undefined || this.closed) return;
    this.armedAt = this.nextSeq - 1;
    this.retransmitTimer = this.timers.setTimeout(() => {
      this.retransmitTimer = undefined;
      if (this.closed || this.unacked.length === 0) return;
      if (this.unacked[0]!.q <= this.armedAt && this.current) {
        for (const p of this.unacked) this.current.send(this.dataFrame(p));
      }
      this.armRetransmit();
    }, RETRANSMIT_MS);
  }

  private onData(q: number, m: unknown): void {
    if (q < this.recvNext || this.early.has(q)) {
      this.scheduleAck(); // a resend: our ack may have been lost
      return;
    }
    if (q > this.recvNext) {
      if (this.early.size >= MAX_REORDER) {
        this.emit('invalid', 'reorder buffer full');
        return;
      }
      this.early.set(q, m);
      return;
    }
    this.deliver(m);
    while (this.early.has(this.recvNext)) {
      const next = this.early.get(this.recvNext);
      this.early.delete(this.recvNext);
      this.deliver(next);
    }
    this.scheduleAck();
  }

  private deliver(m: unknown): void {
    this.recvNext++;
    this.sinceAck++;
    this.emit('message', m);
  }

  private scheduleAck(): void {
    if (this.closed) return;
    if (this.sinceAck >= ACK_EVERY_FRAMES) return this.sendAck();
    if (this.ackTimer === undefined) this.ackTimer = this.timers.setTimeout(() => this.sendAck(), ACK_DELAY_MS);
  }

  private sendAck(): void {
    if (this.ackTimer !== undefined) this.timers.clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.sinceAck = 0;
    this.current?.send(encodeControl({ t: 'a', a: this.recvNext - 1 }));
  }

  private startProbing(t: Transport): void {
    this.stopProbing();
    let left = PROBE_ATTEMPTS;
    const tick = (): void => {
      if (this.closed || t !== this.direct || this.directVerified) return;
      if (left-- <= 0) return;
      t.send(encodeControl({ t: 'p', n: ++this.probeN }));
      this.probeTimer = this.timers.setTimeout(tick, PROBE_INTERVAL_MS);
    };
    tick();
  }

  /** Probes the direct path while it is in use; detaches it after KEEPALIVE_MISSES silent intervals. */
  private startKeepalive(t: Transport): void {
    this.stopKeepalive();
    let missed = 0;
    this.directHeard = false;
    const tick = (): void => {
      this.keepaliveTimer = undefined;
      if (this.closed || t !== this.direct) return;
      missed = this.directHeard ? 0 : missed + 1;
      this.directHeard = false;
      if (missed >= KEEPALIVE_MISSES) {
        this.detach(t);
        this.emit('dead', t);
        return;
      }
      t.send(encodeControl({ t: 'p', n: ++this.probeN }));
      this.keepaliveTimer = this.timers.setTimeout(tick, KEEPALIVE_MS);
    };
    this.keepaliveTimer = this.timers.setTimeout(tick, KEEPALIVE_MS);
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer !== undefined) this.timers.clearTimeout(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  private stopProbing(): void {
    if (this.probeTimer !== undefined) this.timers.clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }
}
