/**
 * The signaling router: a pure function from inputs to actions.
 *
 * It owns the rooms and the per-connection bookkeeping, and touches no
 * socket, timer or clock: the shell (./server.ts) feeds it `RouterInput`s
 * with the current time and carries out the `Action`s it returns, in order.
 *
 * The server deals only in rooms: public rendezvous names. A room is the
 * first 4 symbols of a pairing code (the rest is the PAKE secret, which never
 * reaches the server) or a paired device's persistent room (link/code.ts,
 * deviceRoom). Rooms are keyed by parseRoom (upper case, dashes and spaces
 * dropped, 4..32 of [A-Z0-9]) and hold at most one device and one
 * controller. Semantics (docs/protocol.md repeats them for peers):
 *
 * - `register{room}` (device): the room is normalised with parseRoom
 *   (malformed -> `bad-room`). A room whose device is connected -> `room-taken`.
 *   A room whose device is absent (disconnected, within DEVICE_GRACE_MS) takes
 *   this socket as its device again. Otherwise a new room is made (over
 *   maxRooms -> `rate-limited`). Reply `registered{room, ttlMs, stunPort}`.
 *   If a controller waits in the room, both get `peer{session}` (the session
 *   the controller got in `joined`).
 * - `join{room}` (controller): malformed -> `bad-room`. Then a join token is
 *   taken, for rooms shorter than UNGUESSABLE_ROOM_LENGTH, from the bucket of the socket's source address (shared by all its
 *   sockets: JOIN_RATE_PER_MIN, JOIN_BURST); without one -> `join-limited`,
 *   and the room is not looked up, so a guesser learns nothing. No room ->
 *   `unknown-room`; a controller already there -> `room-full`. Else a new
 *   session id is minted, the reply is `joined{session, waiting, stunPort}`
 *   (`waiting` = the device is absent), and a present device gets
 *   `peer{session}`. A session names one controller's stay in a room: if the
 *   device drops and comes back, both sides get `peer` again with the same id.
 * - `relay{data}` / `signal{payload}`: not in a room -> `not-joined`; the
 *   other member absent -> `no-peer`; else the message is forwarded
 *   unchanged to the other member. Payloads are never read (relay data is a
 *   handshake message or an end-to-end sealed frame the server cannot read).
 * - A second register/join while in a room -> `already-joined` (costs no
 *   join token). A socket whose room was deleted (expired) is in no room and
 *   may register or join again.
 * - Device socket closes: the room stays, device absent, for DEVICE_GRACE_MS,
 *   so a restarting device keeps its room and a controller arriving meanwhile
 *   waits; the controller (if any) gets `peer-left{session}`. Controller
 *   socket closes: the device gets `peer-left{session}`; the room stays and
 *   its unused-room clock restarts.
 * - Expiry, checked on every `tick` and lazily whenever a room is looked up:
 *   a room whose device has been absent for longer than DEVICE_GRACE_MS is
 *   deleted, and a waiting controller gets `error{expired}` (not
 *   `unknown-room`: the room was real, the device just did not come back;
 *   the controller stays connected and may join again). A room whose device
 *   is connected but which has had no controller for longer than
 *   CODE_UNUSED_TTL_MS (since registration or since the last controller
 *   left) is deleted and the device gets `error{expired}`; it registers again.
 * - `invalid` frames get `error{code, message}` and the socket stays open;
 *   more than MAX_INVALID_PER_CONN of them on one socket close it (1008).
 * - Rate: each socket has a token bucket (RATE_MSGS_PER_SEC, RATE_BURST);
 *   a frame (valid or not) without a token is dropped with
 *   `error{rate-limited}`; more than RATE_ABUSE_MAX_DROPS drops within
 *   RATE_ABUSE_WINDOW_MS close the socket (1008). A `join` needs a token from
 *   this bucket and then one from its address's join bucket.
 * - Join buckets are per address, not per socket, so opening more sockets
 *   buys no more guesses. A bucket starts full; a full bucket is the same as
 *   none, so each `tick` forgets every bucket that has refilled: memory holds
 *   only addresses that joined within the last JOIN_BURST / JOIN_RATE_PER_MIN
 *   minutes (30 s by default), whether or not they still have sockets open.
 * - `open` beyond MAX_CONNS_PER_ADDR sockets from one address, or beyond
 *   MAX_CONNS in all, is closed at once (1013, try again later).
 *
 * A socket the router has closed (or refused) is forgotten at once: later
 * inputs for it are ignored, and its eventual `close` input is a no-op.
 *
 * Logs name rooms by a serial number, never by name; no message body, relay
 * data, session id or address is ever put in an action's log fields.
 */
import type { ClientMessage, Role, ServerMessage, SignalErrorCode } from '../link/protocol.js';
import { parseRoom } from '../link/code.js';

/** Identifies one WebSocket connection; assigned by the shell. */
export type ConnId = number;

/** Something that happened, as the shell reports it. */
export type RouterInput =
  | { kind: 'open'; conn: ConnId; addr: string }
  | { kind: 'message'; conn: ConnId; msg: ClientMessage }
  | { kind: 'invalid'; conn: ConnId; code: 'bad-message' | 'too-large' | 'version'; reason: string }
  | { kind: 'close'; conn: ConnId; reason?: string; /** The device closed with CLOSE_LEAVE: delete its room now, no grace. */ leave?: boolean }
  | { kind: 'tick' };

/** Fields of a log action: no room names, addresses, bodies or session ids, ever. */
export type LogFields = Record<string, string | number | boolean>;

/** What the shell must do, in order. */
export type Action =
  | { kind: 'send'; conn: ConnId; msg: ServerMessage }
  | { kind: 'close'; conn: ConnId; code: number; reason: string }
  | { kind: 'log'; event: RouterLogEvent; fields?: LogFields };

/** Events the router logs. */
export type RouterLogEvent = 'register' | 'join' | 'leave' | 'expire' | 'refuse';

/**
 * Time, in ms, a registered room (a pairing code's, or a device room) may go
 * without a controller before it expires: long enough to read a code off a
 * board and type it on a laptop, short enough that a code seen over a
 * shoulder soon stops working. This is the server's half of a pairing code's
 * lifetime; the device also retires a pairing code after one PAKE attempt.
 */
export const CODE_UNUSED_TTL_MS = 10 * 60_000;

/**
 * Time, in ms, a room outlives its disconnected device: covers an agent
 * restart or a network blip plus reconnect backoff, so the device keeps its
 * room and a controller arriving meanwhile waits instead of failing.
 */
export const DEVICE_GRACE_MS = 30_000;

/** Invalid frames tolerated per socket before it is closed: a correct client sends none, a buggy one gets a few error replies to debug with. */
export const MAX_INVALID_PER_CONN = 20;

/** Sustained message rate per socket, in messages per second: far above GPIO traffic on the relay path, far below a flood. */
export const RATE_MSGS_PER_SEC = 1000;

/** Token-bucket depth, in messages: absorbs bursts (ICE candidates, a queued batch of commands). */
export const RATE_BURST = 2000;

/** Window, in ms, over which rate-limited drops are counted toward closing the socket. */
export const RATE_ABUSE_WINDOW_MS = 10_000;

/** Rate-limited drops within RATE_ABUSE_WINDOW_MS after which the socket is closed: a client that ignores `rate-limited` this long is abusive. */
export const RATE_ABUSE_MAX_DROPS = 200;

/** Open sockets allowed from one address: plenty for a NAT'd office, too few to exhaust the server. */
export const MAX_CONNS_PER_ADDR = 64;

/** Open sockets allowed in all. */
export const MAX_CONNS = 20_000;

/** Rooms allowed at once. */
export const MAX_ROOMS = 10_000;

/** Sustained `join`s per minute from one address: a person retyping a code needs a few; at this rate one address needs four weeks to sweep the 810 000 four-symbol rooms. */
export const JOIN_RATE_PER_MIN = 20;

/** Rooms at least this long (a device's identity room is 26) are not join-limited: nobody guesses them. */
export const UNGUESSABLE_ROOM_LENGTH = 20;

/** Join-bucket depth per address: a few controllers behind one NAT starting together, or a handful of typos, pass at once. */
export const JOIN_BURST = 10;

/** WebSocket close code: policy violation (abuse). */
export const CLOSE_POLICY = 1008;

/** WebSocket close code: try again later (capacity). */
export const CLOSE_TRY_AGAIN = 1013;

/** Tunable limits; every field defaults to the constant of the same name. */
export interface RouterLimits {
  /** CODE_UNUSED_TTL_MS, in ms. */
  codeUnusedTtlMs: number;
  /** DEVICE_GRACE_MS, in ms. */
  deviceGraceMs: number;
  maxInvalidPerConn: number;
  /** Messages per second. */
  rateMsgsPerSec: number;
  rateBurst: number;
  /** In ms. */
  rateAbuseWindowMs: number;
  rateAbuseMaxDrops: number;
  maxConnsPerAddr: number;
  maxConns: number;
  maxRooms: number;
  /** JOIN_RATE_PER_MIN: joins per minute per address. */
  joinRatePerMin: number;
  /** JOIN_BURST: join-bucket depth per address. */
  joinBurst: number;
}

/** The defaults, from the named constants above. */
export const DEFAULT_ROUTER_LIMITS: Readonly<RouterLimits> = Object.freeze({
  codeUnusedTtlMs: CODE_UNUSED_TTL_MS,
  deviceGraceMs: DEVICE_GRACE_MS,
  maxInvalidPerConn: MAX_INVALID_PER_CONN,
  rateMsgsPerSec: RATE_MSGS_PER_SEC,
  rateBurst: RATE_BURST,
  rateAbuseWindowMs: RATE_ABUSE_WINDOW_MS,
  rateAbuseMaxDrops: RATE_ABUSE_MAX_DROPS,
  maxConnsPerAddr: MAX_CONNS_PER_ADDR,
  maxConns: MAX_CONNS,
  maxRooms: MAX_ROOMS,
  joinRatePerMin: JOIN_RATE_PER_MIN,
  joinBurst: JOIN_BURST,
});

export interface RouterOptions {
  /** STUN port announced in `registered`/`joined`; 0 = the server runs no STUN. */
  stunPort: number;
  /** Source of session ids (injected so tests are deterministic). */
  newSession(): string;
  /** Overrides of DEFAULT_ROUTER_LIMITS. */
  limits?: Partial<RouterLimits>;
}

/** Counters and gauges, for /healthz and tests. Holds no room names. */
export interface RouterStats {
  conns: number;
  rooms: number;
  devices: number;
  controllers: number;
  /** Join buckets held (addresses that joined recently and have not refilled). */
  joinBuckets: number;
  registered: number;
  joined: number;
  relayed: number;
  signals: number;
  invalid: number;
  rateLimited: number;
  /** Joins refused with `join-limited`. */
  joinLimited: number;
  expired: number;
  refused: number;
}

interface Room {
  /** Normalised room name (the map key). */
  name: string;
  serial: number;
  device: ConnId | null;
  controller: ConnId | null;
  /** Session of the current controller; null when there is none. */
  session: string | null;
  /** When the device left; null while it is connected. */
  deviceLeftAt: number | null;
  /** Start of the unused-room clock: registration or the last controller's leaving. */
  idleSince: number;
}

interface Conn {
  id: ConnId;
  addr: string;
  room: Room | null;
  role: Role | null;
  tokens: number;
  refillAt: number;
  invalid: number;
  dropWindowStart: number;
  drops: number;
}

/** Join tokens of one source address. */
interface JoinBucket {
  tokens: number;
  refillAt: number;
  /** The last join from this address was refused: the next refusal is not logged again. */
  limited: boolean;
}

type Out = Action[];

/** Longest `message` in an error reply, in chars (parseServerMessage accepts 1024). */
const MAX_ERROR_TEXT = 200;

const ERROR_TEXT: Readonly<Record<SignalErrorCode, string>> = {
  'bad-message': 'malformed message',
  'too-large': 'message too large',
  version: 'protocol version not supported',
  'bad-room': 'malformed room',
  'room-taken': 'a device already holds this room',
  'unknown-room': 'no device registered this room',
  'join-limited': 'too many join attempts from this address; wait a few seconds',
  'room-full': 'a controller is already connected to this device',
  'no-peer': 'the other side is not connected',
  'not-joined': 'register or join first',
  'already-joined': 'this connection already registered or joined',
  expired: 'the room expired',
  'rate-limited': 'too many messages',
};

/** The pure signaling router. See the file comment for its semantics. */
export class Router {
  private readonly limits: RouterLimits;
  private readonly stunPort: number;
  private readonly newSession: () => string;
  private readonly conns = new Map<ConnId, Conn>();
  private readonly rooms = new Map<string, Room>();
  private readonly perAddr = new Map<string, number>();
  private readonly joinBuckets = new Map<string, JoinBucket>();
  private serial = 0;
  private readonly counters = { registered: 0, joined: 0, relayed: 0, signals: 0, invalid: 0, rateLimited: 0, joinLimited: 0, expired: 0, refused: 0 };

  constructor(opts: RouterOptions) {
    this.limits = { ...DEFAULT_ROUTER_LIMITS, ...opts.limits };
    this.stunPort = opts.stunPort;
    this.newSession = opts.newSession;
  }

  /** Handles one input at time `now` (ms, any monotonic-enough epoch) and returns the actions to carry out, in order. */
  handle(input: RouterInput, now: number): Action[] {
    const out: Out = [];
    switch (input.kind) {
      case 'open':
        this.open(input.conn, input.addr, now, out);
        break;
      case 'close':
        this.drop(input.conn, input.reason ?? 'closed', now, out, input.leave === true);
        break;
      case 'tick':
        this.expireAll(now, out);
        this.forgetFullJoinBuckets(now);
        break;
      case 'message':
      case 'invalid': {
        const c = this.conns.get(input.conn);
        if (!c) break; // refused or already closed by us
        if (!this.takeToken(c, now, out)) break;
        if (input.kind === 'invalid') this.invalid(c, input.code, input.reason, now, out);
        else this.message(c, input.msg, now, out);
        break;
      }
    }
    return out;
  }

  /** Current counters and gauges. */
  get stats(): RouterStats {
    let devices = 0;
    let controllers = 0;
    for (const r of this.rooms.values()) {
      if (r.device !== null) devices++;
      if (r.controller !== null) controllers++;
    }
    return { conns: this.conns.size, rooms: this.rooms.size, devices, controllers, joinBuckets: this.joinBuckets.size, ...this.counters };
  }

  // --- connections ---------------------------------------------------------

  private open(id: ConnId, addr: string, now: number, out: Out): void {
    if (this.conns.has(id)) return; // the shell never reuses ids; ignore a duplicate
    const n = this.perAddr.get(addr) ?? 0;
    let refuse: string | null = null;
    if (this.conns.size >= this.limits.maxConns) refuse = 'server-full';
    else if (n >= this.limits.maxConnsPerAddr) refuse = 'addr-cap';
    if (refuse) {
      this.counters.refused++;
      out.push({ kind: 'close', conn: id, code: CLOSE_TRY_AGAIN, reason: refuse === 'addr-cap' ? 'too many connections from this address' : 'server full' });
      out.push({ kind: 'log', event: 'refuse', fields: { reason: refuse } });
      return;
    }
    this.perAddr.set(addr, n + 1);
    this.conns.set(id, {
      id, addr, room: null, role: null,
      tokens: this.limits.rateBurst, refillAt: now,
      invalid: 0, dropWindowStart: now, drops: 0,
    });
  }

  /** Forgets a connection, leaving its room. `reason` goes to the log. */
  private drop(id: ConnId, reason: string, now: number, out: Out, deliberate = false): void {
    const c = this.conns.get(id);
    if (!c) return;
    this.conns.delete(id);
    const n = (this.perAddr.get(c.addr) ?? 1) - 1;
    if (n <= 0) this.perAddr.delete(c.addr);
    else this.perAddr.set(c.addr, n);
    const room = c.room;
    const wasDevice = c.role === 'device';
    if (room) this.leave(c, reason, now, out);
    // A device that says it is done with a room (a spent pairing code) gets no grace: joins fail at once.
    if (room && deliberate && wasDevice && this.rooms.get(room.name) === room) this.expire(room, null, 'left', out);
  }

  /** Closes a connection on the router's initiative. */
  private kick(c: Conn, code: number, wsReason: string, logReason: string, now: number, out: Out): void {
    this.counters.refused++;
    out.push({ kind: 'close', conn: c.id, code, reason: wsReason });
    out.push({ kind: 'log', event: 'refuse', fields: this.fields(c.role, c.room, logReason) });
    this.drop(c.id, logReason, now, out);
  }

  private takeToken(c: Conn, now: number, out: Out): boolean {
    const { rateMsgsPerSec, rateBurst, rateAbuseWindowMs, rateAbuseMaxDrops } = this.limits;
    const elapsed = Math.max(0, now - c.refillAt);
    c.tokens = Math.min(rateBurst, c.tokens + (elapsed * rateMsgsPerSec) / 1000);
    c.refillAt = now;
    if (c.tokens >= 1) {
      c.tokens -= 1;
      return true;
    }
    this.counters.rateLimited++;
    if (now - c.dropWindowStart > rateAbuseWindowMs) {
      c.dropWindowStart = now;
      c.drops = 0;
    }
    if (++c.drops > rateAbuseMaxDrops) this.kick(c, CLOSE_POLICY, 'rate limit', 'rate-limited', now, out);
    else this.error(c.id, 'rate-limited', out);
    return false;
  }

  private invalid(c: Conn, code: 'bad-message' | 'too-large' | 'version', reason: string, now: number, out: Out): void {
    this.counters.invalid++;
    this.error(c.id, code, out, reason);
    if (++c.invalid > this.limits.maxInvalidPerConn) this.kick(c, CLOSE_POLICY, 'too many invalid frames', 'invalid', now, out);
  }

  // --- messages ------------------------------------------------------------

  private message(c: Conn, msg: ClientMessage, now: number, out: Out): void {
    switch (msg.type) {
      case 'register':
        return this.register(c, msg.room, now, out);
      case 'join':
        return this.join(c, msg.room, now, out);
      case 'relay':
      case 'signal': {
        const room = c.room;
        if (!room) return this.error(c.id, 'not-joined', out);
        const other = c.role === 'device' ? room.controller : room.device;
        if (other === null) return this.error(c.id, 'no-peer', out);
        if (msg.type === 'relay') {
          this.counters.relayed++;
          out.push({ kind: 'send', conn: other, msg: { type: 'relay', data: msg.data } });
        } else {
          this.counters.signals++;
          out.push({ kind: 'send', conn: other, msg: { type: 'signal', payload: msg.payload } });
        }
        return;
      }
    }
  }

  private register(c: Conn, typed: string, now: number, out: Out): void {
    if (c.room) return this.error(c.id, 'already-joined', out);
    const p = parseRoom(typed);
    if (!p.ok) return this.error(c.id, 'bad-room', out, p.reason);
    let room = this.lookup(p.room, now, out);
    if (room && room.device !== null) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: this.fields('device', room, 'room-taken') });
      return this.error(c.id, 'room-taken', out);
    }
    const rejoin = room !== undefined;
    if (!room) {
      if (this.rooms.size >= this.limits.maxRooms) {
        this.counters.refused++;
        out.push({ kind: 'log', event: 'refuse', fields: { role: 'device', reason: 'room-cap' } });
        return this.error(c.id, 'rate-limited', out, 'server at room capacity, try again later');
      }
      room = { name: p.room, serial: ++this.serial, device: null, controller: null, session: null, deviceLeftAt: null, idleSince: now };
      this.rooms.set(p.room, room);
    }
    room.device = c.id;
    room.deviceLeftAt = null;
    room.idleSince = now;
    c.room = room;
    c.role = 'device';
    this.counters.registered++;
    out.push({ kind: 'send', conn: c.id, msg: { type: 'registered', room: p.room, ttlMs: this.limits.codeUnusedTtlMs, stunPort: this.stunPort } });
    out.push({ kind: 'log', event: 'register', fields: this.fields('device', room, rejoin ? 'rejoin' : 'new') });
    if (room.controller !== null && room.session !== null) {
      out.push({ kind: 'send', conn: c.id, msg: { type: 'peer', session: room.session } });
      out.push({ kind: 'send', conn: room.controller, msg: { type: 'peer', session: room.session } });
    }
  }

  private join(c: Conn, typed: string, now: number, out: Out): void {
    if (c.room) return this.error(c.id, 'already-joined', out);
    const p = parseRoom(typed);
    if (!p.ok) return this.error(c.id, 'bad-room', out, p.reason);
    // The join limit comes before the lookup: a refused join learns nothing about the room.
    // Only short (guessable) rooms cost a token: a 26-symbol device room holds 125 bits, and who
    // may enter it is decided by the device's handshake, so a paired controller's joins are free.
    if (p.room.length < UNGUESSABLE_ROOM_LENGTH && !this.takeJoinToken(c.addr, now, out)) return this.error(c.id, 'join-limited', out);
    const room = this.lookup(p.room, now, out);
    if (!room) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: { role: 'controller', reason: 'unknown-room' } });
      return this.error(c.id, 'unknown-room', out);
    }
    if (room.controller !== null) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: this.fields('controller', room, 'room-full') });
      return this.error(c.id, 'room-full', out);
    }
    const session = this.newSession();
    room.controller = c.id;
    room.session = session;
    c.room = room;
    c.role = 'controller';
    this.counters.joined++;
    const waiting = room.device === null;
    out.push({ kind: 'send', conn: c.id, msg: { type: 'joined', session, waiting, stunPort: this.stunPort } });
    out.push({ kind: 'log', event: 'join', fields: this.fields('controller', room, waiting ? 'waiting' : 'paired') });
    if (room.device !== null) out.push({ kind: 'send', conn: room.device, msg: { type: 'peer', session } });
  }

  /** Takes a connection out of its room. */
  private leave(c: Conn, reason: string, now: number, out: Out): void {
    const room = c.room;
    if (!room) return;
    if (c.role === 'device' && room.device === c.id) {
      room.device = null;
      room.deviceLeftAt = now;
      if (room.controller !== null && room.session !== null) out.push({ kind: 'send', conn: room.controller, msg: { type: 'peer-left', session: room.session } });
    } else if (c.role === 'controller' && room.controller === c.id) {
      const session = room.session;
      room.controller = null;
      room.session = null;
      room.idleSince = now;
      if (room.device !== null && session !== null) out.push({ kind: 'send', conn: room.device, msg: { type: 'peer-left', session } });
    }
    out.push({ kind: 'log', event: 'leave', fields: this.fields(c.role, room, reason) });
    c.room = null;
    c.role = null;
  }

  // --- join limit ----------------------------------------------------------

  /** The address's join bucket refilled to `now`; undefined if it has none (= full). */
  private refillJoinBucket(addr: string, now: number): JoinBucket | undefined {
    const b = this.joinBuckets.get(addr);
    if (!b) return undefined;
    const elapsed = Math.max(0, now - b.refillAt);
    b.tokens = Math.min(this.limits.joinBurst, b.tokens + (elapsed * this.limits.joinRatePerMin) / 60_000);
    b.refillAt = now;
    return b;
  }

  /** Takes one join token from `addr`'s bucket; false (counted, logged once per run of refusals) if it is empty. */
  private takeJoinToken(addr: string, now: number, out: Out): boolean {
    let b = this.refillJoinBucket(addr, now);
    if (!b) {
      b = { tokens: this.limits.joinBurst, refillAt: now, limited: false };
      this.joinBuckets.set(addr, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      b.limited = false;
      return true;
    }
    this.counters.joinLimited++;
    if (!b.limited) {
      b.limited = true;
      out.push({ kind: 'log', event: 'refuse', fields: { role: 'controller', reason: 'join-limited' } });
    }
    return false;
  }

  /** Forgets every join bucket that has refilled: a full bucket is the same as none, so memory holds only recent joiners. */
  private forgetFullJoinBuckets(now: number): void {
    for (const addr of [...this.joinBuckets.keys()]) {
      const b = this.refillJoinBucket(addr, now)!;
      if (b.tokens >= this.limits.joinBurst) this.joinBuckets.delete(addr);
    }
  }

  // --- expiry --------------------------------------------------------------

  /** The live room of a normalised name, deleting it first if its time is up. */
  private lookup(name: string, now: number, out: Out): Room | undefined {
    const room = this.rooms.get(name);
    if (room && this.expireIfDue(room, now, out)) return undefined;
    return room;
  }

  private expireAll(now: number, out: Out): void {
    for (const room of [...this.rooms.values()]) this.expireIfDue(room, now, out);
  }

  /** Deletes the room if it is due; true if it was. */
  private expireIfDue(room: Room, now: number, out: Out): boolean {
    if (room.device === null) {
      if (room.deviceLeftAt === null || now - room.deviceLeftAt <= this.limits.deviceGraceMs) return false;
      this.expire(room, room.controller, 'device-gone', out);
      return true;
    }
    if (room.controller === null && now - room.idleSince > this.limits.codeUnusedTtlMs) {
      this.expire(room, room.device, 'unused', out);
      return true;
    }
    return false;
  }

  private expire(room: Room, notify: ConnId | null, reason: string, out: Out): void {
    this.rooms.delete(room.name);
    this.counters.expired++;
    for (const id of [room.device, room.controller]) {
      const c = id === null ? undefined : this.conns.get(id);
      if (c) {
        c.room = null;
        c.role = null;
      }
    }
    if (notify !== null) this.error(notify, 'expired', out, reason === 'unused' ? 'the room was unused for too long; register again' : 'the device did not come back');
    out.push({ kind: 'log', event: 'expire', fields: { room: room.serial, reason } });
  }

  // --- helpers -------------------------------------------------------------

  private error(conn: ConnId, code: SignalErrorCode, out: Out, message?: string): void {
    // Reasons may quote peer input (e.g. a bad version value): cap them so
    // the reply always passes parseServerMessage's 1024-char limit.
    const text = (message ?? ERROR_TEXT[code]).slice(0, MAX_ERROR_TEXT);
    out.push({ kind: 'send', conn, msg: { type: 'error', code, message: text } });
  }

  private fields(role: Role | null, room: Room | null, reason: string): LogFields {
    const f: LogFields = { reason };
    if (role) f.role = role;
    if (room) f.room = room.serial;
    return f;
  }
}
