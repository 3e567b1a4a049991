/**
 * The signal sequence of one direct attempt, the same over werift
 * (platform/node/rtc.ts) and a browser's RTCPeerConnection
 * (platform/browser/rtc.ts): both shells hand it the peer's signals and the
 * few peer-connection calls it needs.
 *
 *   description (no candidates) → candidate… → end-of-candidates
 *   offerer, once the answer, the peer's end-of-candidates and our own are in:
 *   ping ×GO_PINGS → go → wait RTT/2 → add the peer's held candidates
 *   answerer, on go: add the peer's held candidates
 *
 * Why the start is coordinated. Behind two port-restricted NATs, whoever
 * sends first loses: its first check reaches the far router before that
 * router has a mapping, Linux conntrack records it, and the far side's own
 * packet then collides with that entry and is given another port, which the
 * first side's NAT drops. werift's answerer starts checking as soon as it
 * answers, before the offerer even has the answer. So candidates are withheld
 * from the SDP and held by the receiver; once both sides hold each other's,
 * the controller measures the relay RTT (ping/pong), sends `go`, waits RTT/2
 * and adds the device's candidates while the device, on `go`, adds the
 * controller's. Both first checks then leave within a few ms of each other
 * (libp2p DCUtR's idea). werift keeps polling for candidates while no
 * end-of-candidates was seen, so its ICE agent simply idles until then. The
 * offerer waits for its own end-of-candidates too: werift adds only the
 * candidates it holds at `go`.
 */
import type { SignalPayload } from '../protocol/index.js';
import { realTimers, type Timers } from '../transport/index.js';

/** Pings used to measure the relay RTT before `go`; the smallest is used. */
export const GO_PINGS = 3;
/** Time to wait for one pong, in ms: a relay slower than this is not worth timing. */
export const PING_TIMEOUT_MS = 2_000;

/** One of the peer's candidates, as it came. */
export type CandidateSignal = Extract<SignalPayload, { kind: 'candidate' }>;

/** What CoordinatedStart needs of the peer connection. */
export interface StartPeer {
  /** Applies the peer's description. */
  setRemoteDescription(type: 'offer' | 'answer', sdp: string): Promise<void>;
  /** Answerer: creates our answer, applies it and sends it (its candidates follow, then ourCandidatesDone()). */
  answer(): Promise<void>;
  /** Adds one of the peer's held candidates. */
  addCandidate(c: CandidateSignal): Promise<void>;
  /** The peer said `bye`. */
  bye(): void;
  /** A state line, for diagnostics. */
  state(s: string): void;
}

/** The clock of the RTT measurement and the RTT/2 wait. */
export interface StartClock {
  timers: Timers;
  /** Milliseconds, monotonic. */
  now(): number;
}

const realClock: StartClock = { timers: realTimers, now: () => performance.now() };

/** The signal queue and coordinated start of one direct attempt. */
export class CoordinatedStart {
  private op: Promise<void> = Promise.resolve();
  private closed = false;
  private remoteSet = false;
  /** The peer's candidates, held until `go`. */
  private readonly held: CandidateSignal[] = [];
  private peerCandidatesDone = false;
  private ourCandidatesDone = false;
  private went = false;
  private readonly pongs = new Map<number, () => void>();
  private pingN = 0;

  /** @param role 'offerer' (controller) times `go`; 'answerer' (device) waits for it. */
  constructor(
    readonly role: 'offerer' | 'answerer',
    private readonly sendSignal: (p: SignalPayload) => void,
    private readonly peer: StartPeer,
    private readonly clock: StartClock = realClock,
  ) {}

  /**
   * Runs `task` after every task and signal before it. Description changes
   * run one at a time, and close() waits for the one in flight: werift closed
   * mid-setLocalDescription starts its ICE loop anyway and keeps polling forever.
   */
  enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.op.then(task);
    this.op = run;
    return run;
  }

  /** Feeds a signal from the peer, in arrival order. A failure is reported as a state and ignored. */
  handleSignal(p: SignalPayload): Promise<void> {
    return this.enqueue(() => this.apply(p));
  }

  /** Our end-of-candidates went: every candidate we send is out. */
  ourCandidatesSent(): void {
    this.ourCandidatesDone = true;
    void this.maybeGo();
  }

  /** Stops for good (later signals do nothing); resolves once the task in flight has ended. */
  close(): Promise<void> {
    this.closed = true;
    return this.op.catch(() => undefined);
  }

  private async apply(p: SignalPayload): Promise<void> {
    if (this.closed) return;
    try {
      switch (p.kind) {
        case 'offer':
          if (this.role !== 'answerer') return;
          await this.peer.setRemoteDescription('offer', p.sdp);
          this.remoteSet = true;
          await this.peer.answer();
          return;
        case 'answer':
          if (this.role !== 'offerer') return;
          await this.peer.setRemoteDescription('answer', p.sdp);
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
          this.peer.bye();
          return;
      }
    } catch (e) {
      this.peer.state(`signal-failed: ${(e as Error).message}`);
    }
  }

  /** Offerer: once the answer, all the peer's candidates and all ours are out, time `go`. */
  private async maybeGo(): Promise<void> {
    if (this.role !== 'offerer' || this.went || !this.remoteSet || !this.peerCandidatesDone || !this.ourCandidatesDone) return;
    this.went = true;
    // Pings go out together: one round trip's wait, and the fastest reply is the best estimate.
    const rtt = Math.min(...(await Promise.all(Array.from({ length: GO_PINGS }, () => this.ping()))));
    if (this.closed) return;
    this.sendSignal({ kind: 'go' });
    const wait = Number.isFinite(rtt) ? rtt / 2 : 0;
    this.peer.state(`go rtt=${Number.isFinite(rtt) ? rtt.toFixed(1) : '?'}ms`);
    if (wait >= 1) await new Promise<void>((r) => this.clock.timers.setTimeout(r, wait));
    await this.addHeld();
  }

  /** One relay round trip in ms, or Infinity if the pong does not come. */
  private ping(): Promise<number> {
    const n = ++this.pingN;
    const t0 = this.clock.now();
    return new Promise((resolve) => {
      const timer = this.clock.timers.setTimeout(() => {
        this.pongs.delete(n);
        resolve(Number.POSITIVE_INFINITY);
      }, PING_TIMEOUT_MS);
      this.pongs.set(n, () => {
        this.clock.timers.clearTimeout(timer);
        this.pongs.delete(n);
        resolve(this.clock.now() - t0);
      });
      this.sendSignal({ kind: 'ping', n });
    });
  }

  /** Adds the peer's held candidates. No end-of-candidates: werift keeps listening for peer-reflexive ones. */
  private async addHeld(): Promise<void> {
    if (this.closed) return;
    for (const c of this.held.splice(0)) {
      await this.peer.addCandidate(c).catch((e: Error) => this.peer.state(`bad-candidate: ${e.message}`));
    }
  }
}
