/**
 * The first-command floor: the least any client of pinhole's signaling server
 * can take from "connect" to the first command's answer, when the session is
 * mutually authenticated by a one-round-trip handshake (c1 → d1, then c2 with
 * the first command → its answer).
 *
 * A bare `ws` client and a bare `ws` "device" on the real server, speaking its
 * real messages: the device registers a room and answers over `relay`; the
 * client opens a WebSocket, waits for `hello`, joins, and makes the two relay
 * round trips, with no crypto, no JSON-RPC and no WebRTC. What pinhole adds
 * to its `connect → first ack` is everything above this.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../protocol/index.js';
import { type Summary, summarize, withTimeout } from './stats.js';

/** Longest wait for any one step (open, hello, registered, joined, an answer, the server seeing a close), in ms. */
const STEP_TIMEOUT_MS = 10_000;
/** The floor's own room: longer than a pairing room (no collision with the bench's devices), shorter than a device room (no proof needed). */
const FLOOR_ROOM_CHARS = 8;

// Relay payloads about as long as the real messages (the server forwards them unparsed).
const C1 = `c1:${'A'.repeat(130)}`;
const D1 = `d1:${'A'.repeat(400)}`;
const C2 = `c2:${'A'.repeat(300)}`;
const COMMAND = `cm:${'A'.repeat(180)}`;
const ANSWER = `an:${'A'.repeat(160)}`;

type Msg = { type: string; [k: string]: unknown };

/** A WebSocket whose JSON messages can be awaited one at a time. */
class Bare {
  private readonly queue: Msg[] = [];
  private waiter: ((m: Msg) => void) | undefined;
  /** Once set, every message goes here instead of to expect(). */
  listener: ((m: Msg) => void) | undefined;
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      const w = this.waiter;
      this.waiter = undefined;
      if (this.listener) this.listener(m);
      else if (w) w(m);
      else this.queue.push(m);
    });
  }

  static open(url: string): Promise<Bare> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const b = new Bare(ws);
    return withTimeout(
      new Promise<Bare>((resolve, reject) => {
        ws.once('open', () => resolve(b));
        ws.once('error', reject);
      }),
      STEP_TIMEOUT_MS,
      'floor: WebSocket open',
    );
  }

  send(m: Msg): void {
    this.ws.send(JSON.stringify(m));
  }

  /** The next message, which must be of type `type`. */
  async expect(type: string): Promise<Msg> {
    const next = this.queue.shift();
    const m =
      next ??
      (await withTimeout(
        new Promise<Msg>((resolve) => {
          this.waiter = resolve;
        }),
        STEP_TIMEOUT_MS,
        `floor: ${type}`,
      ));
    if (m.type !== type) throw new Error(`floor: wanted ${type}, got ${JSON.stringify(m).slice(0, 200)}`);
    return m;
  }

  close(): void {
    this.ws.terminate();
  }
}

/** The bare device: answers c1 with d1 and the command with its answer, admits on c2, and tells when its controller has left. */
class FloorDevice {
  private session = '';
  private onLeft: (() => void) | undefined;
  private constructor(
    private readonly ws: Bare,
    readonly room: string,
  ) {
    ws.listener = (m) => {
      if (m.type === 'peer') this.session = String(m.session);
      else if (m.type === 'peer-left') this.onLeft?.();
      else if (m.type === 'relay') {
        const tag = String(m.data).slice(0, 3);
        if (tag === 'c1:') ws.send({ type: 'relay', session: this.session, data: D1 });
        else if (tag === 'c2:') ws.send({ type: 'admit', session: this.session });
        else if (tag === 'cm:') ws.send({ type: 'relay', session: this.session, data: ANSWER });
      }
    };
  }

  static async start(url: string): Promise<FloorDevice> {
    const room = `F${randomBytes(8)
      .toString('hex')
      .toUpperCase()
      .slice(0, FLOOR_ROOM_CHARS - 1)}`;
    const ws = await Bare.open(url);
    try {
      await ws.expect('hello');
      ws.send({ type: 'register', v: PROTOCOL_VERSION, room });
      await ws.expect('registered');
    } catch (e) {
      ws.close();
      throw e;
    }
    return new FloorDevice(ws, room);
  }

  /** Resolves when the server has told this device its controller left. */
  left(): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve) => {
        this.onLeft = resolve;
      }),
      STEP_TIMEOUT_MS,
      'floor: peer-left',
    );
  }

  close(): void {
    this.ws.close();
  }
}

/** One floor connection: from opening the WebSocket to the command's answer, in ms. */
async function floorOnce(url: string, room: string): Promise<number> {
  const t0 = performance.now();
  const c = await Bare.open(url);
  try {
    await c.expect('hello');
    c.send({ type: 'join', v: PROTOCOL_VERSION, room });
    const joined = await c.expect('joined');
    if (joined.waiting) throw new Error('floor: the device is not in its room');
    c.send({ type: 'relay', data: C1 });
    await c.expect('relay');
    c.send({ type: 'relay', data: C2 });
    c.send({ type: 'relay', data: COMMAND });
    const answer = await c.expect('relay');
    if (answer.data !== ANSWER) throw new Error('floor: wrong answer');
    return performance.now() - t0;
  } finally {
    c.close();
  }
}

/**
 * Times `n` floor connections (after `warmup` untimed) to one bare device on
 * the server at `url`, each a fresh WebSocket; the next starts once the
 * server has told the device the last one left.
 */
export async function firstCommandFloorTimes(url: string, n: number, warmup: number): Promise<Summary> {
  const device = await FloorDevice.start(url);
  const samples: number[] = [];
  try {
    for (let i = 0; i < warmup + n; i++) {
      const left = device.left();
      const ms = await floorOnce(url, device.room).catch((e: unknown) => {
        left.catch(() => undefined);
        throw e;
      });
      await left;
      if (i >= warmup) samples.push(ms);
    }
  } finally {
    device.close();
  }
  return summarize(samples);
}
