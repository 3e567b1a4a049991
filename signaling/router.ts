/**
 * The signaling router: a pure function from inputs to actions.
 *
 * It owns the rooms and the per-connection bookkeeping, and touches no
 * socket, timer or clock: the shell (./server.ts) feeds it `RouterInput`s
 * with the current time and carries out the `Action`s it returns, in order.
 *
 * The server deals only in rooms: public rendezvous names. A room is the
 * first 4 symbols of a pairing code (the rest is the PAKE secret, which never
 * reaches the server) or a paired device's persistent room (protocol/code.ts,
 * deviceRoom). Rooms are keyed by parseRoom (upper case, dashes and spaces
 * dropped, 4..32 of [A-Z0-9]) and hold at most one device and up to the
 * room's cap of controllers, each named by its session. Semantics
 * (docs/protocol.md repeats them for peers):
 *
 * - `open`: the socket is greeted with `hello{v, nonce}`, a fresh nonce that
 *   a registration proof on this socket must sign.
 * - `register{room, proof?, maxControllers?}` (device): the room is
 *   normalised with parseRoom (malformed -> `bad-room`). Every register then
 *   costs a token from its address's registration bucket
 *   (REGISTER_RATE_PER_MIN, REGISTER_BURST; none -> `register-limited`), and
 *   a short (guessable) room also one from the address's join bucket, the one
 *   guessing by `join` spends (none -> `join-limited`), both before the room
 *   is looked up, so probing by register costs what probing by join costs and
 *   a refused one learns nothing. A room of UNGUESSABLE_ROOM_LENGTH or more
 *   needs a proof: the key the room is named after (deviceRoom(key) = room)
 *   and its signature over this socket's nonce and the room
 *   (registerProofMessage); else `bad-proof`. A room whose device is
 *   connected -> `room-taken`. A room whose device is absent (disconnected,
 *   within DEVICE_GRACE_MS) takes this socket as its device again. Otherwise
 *   a new room is made. A room counts against its device's address (absent
 *   devices included) up to MAX_ROOMS_PER_ADDR (over -> `too-many-rooms`),
 *   and all rooms against maxRooms (over -> `rate-limited`). Reply
 *   `registered{room, ttlMs, stunPort}`. Every register sets the room's cap:
 *   PAIRING_ROOM_CONTROLLERS (1) for a room shorter than
 *   UNGUESSABLE_ROOM_LENGTH, else min(maxControllers ?? DEFAULT_ROOM_CONTROLLERS,
 *   maxControllersPerRoom); controllers already in the room stay, even past
 *   a lower cap. Each controller waiting in the room gets `peer{its session}`
 *   and the device one `peer{session}` per controller.
 * - `join{room}` (controller): malformed -> `bad-room`. Then a join token is
 *   taken, for rooms shorter than UNGUESSABLE_ROOM_LENGTH, from the bucket of
 *   the socket's source address (shared by all its sockets:
 *   JOIN_RATE_PER_MIN, JOIN_BURST); without one -> `join-limited`, and the
 *   room is not looked up, so a guesser learns nothing. No room ->
 *   `unknown-room`; the room already holds its cap of controllers ->
 *   `room-full` for a pairing room, `device-busy` for a device room (the cap
 *   of the last register holds while the device is away). Else a new session
 *   id is minted, the reply is `joined{session, waiting, stunPort}`
 *   (`waiting` = the device is absent), and a present device gets
 *   `peer{session}`. A session names one controller's stay in a room: if the
 *   device drops and comes back, both sides get `peer` again with the same id.
 * - `relay{data}` from a controller: not in a room -> `not-joined`; the
 *   device absent -> `no-peer`; else forwarded to the device as
 *   `relay{session, data}` with this controller's session (a `session` the
 *   controller sent is ignored). `relay{session, data}` from a device: not in
 *   a room -> `not-joined`; no session -> `bad-message` (counted as an
 *   invalid frame); no controller of that session in the room (it left
 *   meanwhile) -> `no-peer`; else forwarded to that controller as
 *   `relay{data}`. Payloads are never read (relay data is a handshake
 *   message or an end-to-end sealed frame the server cannot read).
 * - Admission, per session: once the device and a controller are both
 *   present, the device has ADMIT_TIMEOUT_MS to send `admit{session}` for it
 *   (it does once the handshake has secured the session). A controller not
 *   admitted by then gets `error{not-admitted}` and is closed (1008); the
 *   device gets `peer-left{session}`; the other controllers are untouched.
 *   So a controller that never completes a handshake cannot hold a place in
 *   a room. Admission belongs to the session: it survives the device
 *   re-registering. `admit` from a socket that is not a device in a room ->
 *   `not-joined`; an admit for a session not in the room (it crossed its
 *   controller's leaving) is ignored.
 * - A second register/join while in a room -> `already-joined` (costs no
 *   join token). A socket whose room was deleted (expired) is in no room and
 *   may register or join again.
 * - Device socket closes: the room stays, device absent, for DEVICE_GRACE_MS,
 *   so a restarting device keeps its room and a controller arriving meanwhile
 *   waits; every controller in the room gets `peer-left{its session}`.
 *   Controller socket closes: the device gets `peer-left{session}`; the room
 *   stays, and its unused-room clock restarts when the last controller has
 *   left.
 * - Expiry, checked on every `tick` and lazily whenever a room is looked up:
 *   a room whose device has been absent for longer than DEVICE_GRACE_MS is
 *   deleted, and every waiting controller gets `error{expired}` (not
 *   `unknown-room`: the room was real, the device just did not come back;
 *   the controllers stay connected and may join again). A room whose device
 *   is connected but which has had no controller at all for longer than
 *   CODE_UNUSED_TTL_MS (since registration or since the last controller
 *   left) is deleted and the device gets `error{expired}`; it registers again.
 * - One controller joining, leaving or being closed (rate, invalid frames,
 *   admission) touches no other controller's session.
 * - `invalid` frames get `error{code, message}` and the socket stays open;
 *   more than MAX_INVALID_PER_CONN of them on one socket close it (1008).
 * - Rate: each socket has a token bucket (RATE_MSGS_PER_SEC, RATE_BURST);
 *   a frame (valid or not) without a token is dropped with
 *   `error{rate-limited}`; more than RATE_ABUSE_MAX_DROPS drops within
 *   RATE_ABUSE_WINDOW_MS close the socket (1008). A `join` needs a token from
 *   this bucket and then one from its address's join bucket.
 * - Join and registration buckets are per address, not per socket, so
 *   opening more sockets buys no more guesses. A bucket starts full; a full
 *   bucket is the same as none, so each `tick` forgets every bucket that has
 *   refilled: memory holds only addresses that joined or registered recently,
 *   whether or not they still have sockets open.
 * - "Address" is addressKey(addr) everywhere: IPv4 as is, IPv4-mapped IPv6
 *   as IPv4, IPv6 as its /64 (one subscriber's whole allocation).
 * - `open` beyond MAX_CONNS_PER_ADDR sockets from one address, or beyond
 *   MAX_CONNS in all, is closed at once (1013, try again later).
 *
 * Clustered (RouterOptions.cluster): the shell (./cluster.ts) holds a shared
 * store of where each room lives, and the router asks it through actions,
 * staying pure:
 * - a `register` of a room this router does not hold, once every check above
 *   has passed, emits `claim{room}`; the socket waits (another register or
 *   join -> `already-joined`) until `claimed{result}`: `ok` makes the room as
 *   above; `taken` (another node holds it) -> `room-taken`; `unavailable`
 *   (the store is down) -> `cluster-unavailable`;
 * - a `join` of a room this router does not hold emits `locate{room}` and
 *   waits for `located{result}`: `none` -> `unknown-room`, `unavailable` ->
 *   `cluster-unavailable`, `remote` -> the socket is proxied to the room's
 *   node from now on (the shell forwards its frames; the router only counts it);
 * - the join and registration buckets may be decided cluster-wide: a message
 *   input's `admission` then replaces this router's own buckets;
 * - a room deleted here emits `release{room}`; `evict{room}` (the store says
 *   another node holds it now) deletes it without one, the device getting
 *   `room-taken` and its socket closed (1013), its controllers `expired`;
 * - `open{remote}` is a socket of another node whose controller joined a room
 *   here: it gets no `hello` (its own node greeted it).
 * `drain{reconnectMs}` (clustered or not) sends `goaway{reconnectMs}` to every
 * socket of this node (not to those proxied here), and to each socket opened
 * afterwards right behind its `hello`.
 *
 * A socket the router has closed (or refused) is forgotten at once: later
 * inputs for it are ignored, and its eventual `close` input is a no-op.
 *
 * Logs name rooms by a serial number, never by name; no message body, relay
 * data, session id or address is ever put in an action's log fields.
 */

import { decodeKey32, verifyIdentitySignature } from '../crypto/index.js';
import {
  type ClientMessage,
  DEFAULT_ROOM_CONTROLLERS,
  decodeBase64url,
  deviceRoom,
  PAIRING_ROOM_CONTROLLERS,
  PROTOCOL_VERSION,
  parseRoom,
  type RegisterProof,
  type Role,
  registerProofMessage,
  type ServerMessage,
  type SignalErrorCode,
} from '../protocol/index.js';

/** Identifies one WebSocket connection; assigned by the shell. */
export type ConnId = number;

/** Something that happened, as the shell reports it. */
export type RouterInput =
  | { kind: 'open'; conn: ConnId; addr: string /** A socket of another node, proxied here: no hello. */; remote?: boolean }
  | {
      kind: 'message';
      conn: ConnId;
      msg: ClientMessage /** The cluster-wide buckets' verdict; absent: this router's own buckets decide. */;
      admission?: Admission;
    }
  | { kind: 'invalid'; conn: ConnId; code: 'bad-message' | 'too-large' | 'version'; reason: string }
  | { kind: 'close'; conn: ConnId; reason?: string /** The device closed with CLOSE_LEAVE: delete its room now, no grace. */; leave?: boolean }
  | { kind: 'tick' }
  | { kind: 'claimed'; conn: ConnId; room: string; result: 'ok' | 'taken' | 'unavailable' }
  | { kind: 'located'; conn: ConnId; room: string; result: 'none' | 'remote' | 'unavailable' }
  | { kind: 'evict'; room: string }
  | { kind: 'drain'; reconnectMs: number };

/** A cluster-wide token bucket's verdict on a join or register. */
export type Admission = 'ok' | 'join-limited' | 'register-limited';

/** Fields of a log action: no room names, addresses, bodies or session ids, ever. */
export type LogFields = Record<string, string | number | boolean>;

/** What the shell must do, in order. */
export type Action =
  | { kind: 'send'; conn: ConnId; msg: ServerMessage }
  | { kind: 'close'; conn: ConnId; code: number; reason: string }
  | { kind: 'log'; event: RouterLogEvent; fields?: LogFields }
  /** Clustered: claim `room` for this node in the shared store, then input `claimed`. */
  | { kind: 'claim'; conn: ConnId; room: string }
  /** Clustered: find the node of `room`, then input `located` (and, if remote, proxy `conn` there). */
  | { kind: 'locate'; conn: ConnId; room: string }
  /** Clustered: this node no longer holds `room`. */
  | { kind: 'release'; room: string };

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

/**
 * Rooms the devices of one address may hold, absent devices within their
 * grace included: a board holds two (its own room and its pairing room), so
 * 16 boards behind one NAT fit; one address cannot fill MAX_ROOMS by
 * registering and dropping sockets, each of which leaves its room held for
 * DEVICE_GRACE_MS.
 */
export const MAX_ROOMS_PER_ADDR = 32;

/**
 * Sustained `register`s per minute from one address. A board registers twice
 * at start (its own room and a pairing room), once per code it hands out and
 * twice per reconnect; one every 2 s lets a few boards behind one NAT rotate
 * codes as fast as people type them, while bounding the proof checks (an
 * Ed25519 verification each) and the room churn one address can cause.
 */
export const REGISTER_RATE_PER_MIN = 30;

/** Registration-bucket depth per address: ten boards behind one NAT restarting together (two registers each) pass at once. */
export const REGISTER_BURST = 20;

/**
 * Time, in ms, a controller may stay in a room with the device present
 * before the device admits it (`admit`, sent once the handshake secured the
 * session): a handshake takes well under a second and the device gives it
 * 10 s (HANDSHAKE_TIMEOUT_MS in device/agent.ts); a controller still not
 * admitted after this is holding a place in the room without a handshake
 * and is dropped, so it cannot keep others out with `room-full` or
 * `device-busy`.
 */
export const ADMIT_TIMEOUT_MS = 15_000;

/**
 * Most controllers one device room holds, whatever its device asks for
 * (`register.maxControllers`, up to MAX_CONTROLLERS_LIMIT): the server's own
 * bound, so one room cannot take a large share of MAX_CONNS. Twice a
 * device's default of 8.
 */
export const MAX_CONTROLLERS_PER_ROOM = 16;

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
  /** MAX_ROOMS_PER_ADDR. */
  maxRoomsPerAddr: number;
  /** REGISTER_RATE_PER_MIN: registers per minute per address. */
  registerRatePerMin: number;
  /** REGISTER_BURST: registration-bucket depth per address. */
  registerBurst: number;
  /** ADMIT_TIMEOUT_MS, in ms. */
  admitTimeoutMs: number;
  /** MAX_CONTROLLERS_PER_ROOM: the cap of a device room, whatever its register asks for. */
  maxControllersPerRoom: number;
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
  maxRoomsPerAddr: MAX_ROOMS_PER_ADDR,
  registerRatePerMin: REGISTER_RATE_PER_MIN,
  registerBurst: REGISTER_BURST,
  admitTimeoutMs: ADMIT_TIMEOUT_MS,
  maxControllersPerRoom: MAX_CONTROLLERS_PER_ROOM,
});

export interface RouterOptions {
  /** STUN port announced in `registered`/`joined`; 0 = the server runs no STUN. */
  stunPort: number;
  /** Source of session ids (injected so tests are deterministic). */
  newSession(): string;
  /** Source of `hello` nonces: HELLO_NONCE_BYTES fresh random bytes per call (injected like newSession). */
  newNonce(): Uint8Array;
  /** Overrides of DEFAULT_ROUTER_LIMITS. */
  limits?: Partial<RouterLimits>;
  /** One node of a cluster: rooms not held here are claimed and located through actions (see the file comment). */
  cluster?: boolean;
}

/** Counters and gauges, for /healthz and tests. Holds no room names. */
export interface RouterStats {
  conns: number;
  rooms: number;
  devices: number;
  controllers: number;
  /** Join buckets held (addresses that joined recently and have not refilled). */
  joinBuckets: number;
  /** Registration buckets held. */
  registerBuckets: number;
  registered: number;
  joined: number;
  relayed: number;
  invalid: number;
  rateLimited: number;
  /** Joins (and short-room registers) refused with `join-limited`. */
  joinLimited: number;
  /** Registers refused with `register-limited`. */
  registerLimited: number;
  /** Registers refused with `bad-proof`. */
  badProofs: number;
  /** Controllers dropped with `not-admitted`. */
  notAdmitted: number;
  /** Joins refused with `device-busy` (a device room at its cap). */
  deviceBusy: number;
  expired: number;
  refused: number;
}

/** One controller in a room; the room keys it by its session. */
interface Member {
  conn: ConnId;
  /** The device admitted this session. */
  admitted: boolean;
  /** When the device and this controller were last both present while it was not admitted; null otherwise. */
  admitSince: number | null;
}

interface Room {
  /** Normalised room name (the map key). */
  name: string;
  serial: number;
  device: ConnId | null;
  /** The controllers in the room, by session, in the order they joined. */
  controllers: Map<string, Member>;
  /** Controllers the room takes: set by every register (see capOf), kept while the device is away. */
  cap: number;
  /** When the device left; null while it is connected. */
  deviceLeftAt: number | null;
  /** Start of the unused-room clock: registration or the last controller's leaving. */
  idleSince: number;
  /** Address key the room counts against (its device's, absent or not). */
  addr: string;
}

interface Conn {
  id: ConnId;
  /** addressKey of the source address. */
  addr: string;
  /** The nonce of this socket's hello, base64url. */
  nonce: string;
  room: Room | null;
  role: Role | null;
  /** A controller's session in its room; null otherwise. */
  session: string | null;
  /** A socket of another node, proxied here (open{remote}). */
  remote: boolean;
  /** Clustered: waiting for `claimed` or `located`, or proxied to another node; null otherwise. */
  pending: { kind: 'claim'; room: string; maxControllers: number | undefined } | { kind: 'locate'; room: string } | { kind: 'remote' } | null;
  tokens: number;
  refillAt: number;
  invalid: number;
  dropWindowStart: number;
  drops: number;
}

/** Tokens of one address in one of the per-address buckets. */
interface Bucket {
  tokens: number;
  refillAt: number;
  /** The last take from this address was refused: the next refusal is not logged again. */
  limited: boolean;
}

/**
 * Token buckets keyed by address. A bucket starts full, and a full bucket is
 * the same as none, so `forgetFull` drops every bucket that has refilled:
 * memory holds only addresses that spent tokens recently.
 */
class AddressBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perMin: number,
    private readonly burst: number,
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  private refill(addr: string, now: number): Bucket | undefined {
    const b = this.buckets.get(addr);
    if (!b) return undefined;
    b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.refillAt) * this.perMin) / 60_000);
    b.refillAt = now;
    return b;
  }

  /** Takes one token; 'ok', or 'refused' ('refused-first' for the first refusal of a run, to log once). */
  take(addr: string, now: number): 'ok' | 'refused' | 'refused-first' {
    let b = this.refill(addr, now);
    if (!b) {
      b = { tokens: this.burst, refillAt: now, limited: false };
      this.buckets.set(addr, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      b.limited = false;
      return 'ok';
    }
    if (b.limited) return 'refused';
    b.limited = true;
    return 'refused-first';
  }

  forgetFull(now: number): void {
    for (const addr of [...this.buckets.keys()]) {
      if (this.refill(addr, now)!.tokens >= this.burst) this.buckets.delete(addr);
    }
  }
}

/**
 * The key every per-address limit counts under: an IPv4 address as is, an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) as its IPv4 address, any other
 * IPv6 address as its /64 ("2001:db8:1:2::/64"), since one subscriber is
 * given a whole /64 and can pick any address in it. A zone (%eth0) is
 * dropped. Anything else (not an IP address) is returned unchanged. Pure.
 */
export function addressKey(addr: string): string {
  const a = addr.replace(/%.*$/, '');
  if (!a.includes(':')) return addr;
  const h = expandIPv6(a);
  if (!h) return addr;
  if (h.slice(0, 5).every((x) => x === 0) && h[5] === 0xffff) return `${h[6]! >> 8}.${h[6]! & 0xff}.${h[7]! >> 8}.${h[7]! & 0xff}`;
  return `${h
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (an embedded dotted IPv4 tail allowed); undefined if it is not one. */
function expandIPv6(a: string): number[] | undefined {
  let s = a.toLowerCase();
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const o = v4.slice(1).map(Number);
    if (o.some((x) => x > 255)) return undefined;
    s = s.slice(0, v4.index) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups = part.split(':');
    if (groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return undefined;
    return groups.map((g) => parseInt(g, 16));
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const fill = 8 - head.length - tail.length;
  return fill >= 1 ? [...head, ...new Array<number>(fill).fill(0), ...tail] : undefined;
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
  'room-full': 'a controller is already in this pairing room',
  'device-busy': 'the device already serves as many controllers as it takes',
  'no-peer': 'the other side is not connected',
  'not-joined': 'register or join first',
  'already-joined': 'this connection already registered or joined',
  expired: 'the room expired',
  'rate-limited': 'too many messages',
  'bad-proof': 'a device room needs a valid proof of its key',
  'register-limited': 'too many registrations from this address; wait a few seconds',
  'too-many-rooms': 'the devices of this address hold too many rooms',
  'not-admitted': 'the device did not admit this session in time',
  'cluster-unavailable': 'the cluster store is unreachable: rooms on other nodes cannot be reached; try again soon',
};

/** The pure signaling router. See the file comment for its semantics. */
export class Router {
  private readonly limits: RouterLimits;
  private readonly stunPort: number;
  private readonly newSession: () => string;
  private readonly newNonce: () => Uint8Array;
  private readonly conns = new Map<ConnId, Conn>();
  private readonly rooms = new Map<string, Room>();
  private readonly perAddr = new Map<string, number>();
  /** Rooms counted against each address (see Room.addr). */
  private readonly roomsPerAddr = new Map<string, number>();
  /** Guessing buckets: joins and registers of short rooms. */
  private readonly joinBuckets: AddressBuckets;
  private readonly registerBuckets: AddressBuckets;
  private serial = 0;
  private readonly cluster: boolean;
  /** drain: the goaway every socket gets; null while not draining. */
  private draining: number | null = null;
  private readonly counters = {
    registered: 0,
    joined: 0,
    relayed: 0,
    invalid: 0,
    rateLimited: 0,
    joinLimited: 0,
    registerLimited: 0,
    badProofs: 0,
    notAdmitted: 0,
    deviceBusy: 0,
    expired: 0,
    refused: 0,
  };

  constructor(opts: RouterOptions) {
    this.limits = { ...DEFAULT_ROUTER_LIMITS, ...opts.limits };
    this.stunPort = opts.stunPort;
    this.newSession = opts.newSession;
    this.newNonce = opts.newNonce;
    this.cluster = opts.cluster === true;
    this.joinBuckets = new AddressBuckets(this.limits.joinRatePerMin, this.limits.joinBurst);
    this.registerBuckets = new AddressBuckets(this.limits.registerRatePerMin, this.limits.registerBurst);
  }

  /** Handles one input at time `now` (ms, any monotonic-enough epoch) and returns the actions to carry out, in order. */
  handle(input: RouterInput, now: number): Action[] {
    const out: Out = [];
    switch (input.kind) {
      case 'open':
        this.open(input.conn, input.addr, now, out, input.remote === true);
        break;
      case 'claimed':
        this.claimed(input.conn, input.room, input.result, now, out);
        break;
      case 'located':
        this.located(input.conn, input.room, input.result, now, out);
        break;
      case 'evict':
        this.evict(input.room, now, out);
        break;
      case 'drain':
        this.draining = input.reconnectMs;
        // Not to sockets of other nodes: theirs are not going away (their room's device moves, and they follow it).
        for (const c of this.conns.values()) if (!c.remote) out.push({ kind: 'send', conn: c.id, msg: { type: 'goaway', reconnectMs: input.reconnectMs } });
        break;
      case 'close':
        this.drop(input.conn, input.reason ?? 'closed', now, out, input.leave === true);
        break;
      case 'tick':
        this.expireAll(now, out);
        this.joinBuckets.forgetFull(now);
        this.registerBuckets.forgetFull(now);
        break;
      case 'message':
      case 'invalid': {
        const c = this.conns.get(input.conn);
        if (!c) break; // refused or already closed by us
        if (c.pending?.kind === 'remote') break; // its node forwards its frames to the room's node
        if (!this.takeToken(c, now, out)) break;
        if (input.kind === 'invalid') this.invalid(c, input.code, input.reason, now, out);
        else this.message(c, input.msg, now, out, input.admission);
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
      controllers += r.controllers.size;
    }
    return {
      conns: this.conns.size,
      rooms: this.rooms.size,
      devices,
      controllers,
      joinBuckets: this.joinBuckets.size,
      registerBuckets: this.registerBuckets.size,
      ...this.counters,
    };
  }

  // --- connections ---------------------------------------------------------

  private open(id: ConnId, rawAddr: string, now: number, out: Out, remote = false): void {
    if (this.conns.has(id)) return; // the shell never reuses ids; ignore a duplicate
    const addr = addressKey(rawAddr);
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
    const nonce = Buffer.from(this.newNonce()).toString('base64url');
    this.conns.set(id, {
      id,
      addr,
      nonce,
      room: null,
      role: null,
      session: null,
      remote,
      pending: null,
      tokens: this.limits.rateBurst,
      refillAt: now,
      invalid: 0,
      dropWindowStart: now,
      drops: 0,
    });
    if (!remote) out.push({ kind: 'send', conn: id, msg: { type: 'hello', v: PROTOCOL_VERSION, nonce } });
    if (this.draining !== null && !remote) out.push({ kind: 'send', conn: id, msg: { type: 'goaway', reconnectMs: this.draining } });
  }

  /** Forgets a connection, leaving its room. `reason` goes to the log. */
  private drop(id: ConnId, reason: string, now: number, out: Out, deliberate = false): void {
    const c = this.conns.get(id);
    if (!c) return;
    this.conns.delete(id);
    this.count(this.perAddr, c.addr, -1);
    const room = c.room;
    const wasDevice = c.role === 'device';
    if (room) this.leave(c, reason, now, out);
    // A device that says it is done with a room (a spent pairing code) gets no grace: joins fail at once.
    if (room && deliberate && wasDevice && this.rooms.get(room.name) === room) this.expire(room, [], 'left', out);
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

  private message(c: Conn, msg: ClientMessage, now: number, out: Out, admission: Admission | undefined): void {
    switch (msg.type) {
      case 'register':
        return this.register(c, msg.room, msg.proof, msg.maxControllers, now, out, admission);
      case 'join':
        return this.join(c, msg.room, now, out, admission);
      case 'relay':
        return this.relay(c, msg.data, msg.session, now, out);
      case 'admit': {
        const room = c.room;
        if (!room || c.role !== 'device') return this.error(c.id, 'not-joined', out);
        // An admit for a session not in the room crossed its controller's leaving: nothing to do.
        const m = room.controllers.get(msg.session);
        if (m) {
          m.admitted = true;
          m.admitSince = null;
        }
        return;
      }
    }
  }

  /** A controller's relay goes to the device, tagged with its session; a device's to the controller of the session it names. */
  private relay(c: Conn, data: string, session: string | undefined, now: number, out: Out): void {
    const room = c.room;
    if (!room) return this.error(c.id, 'not-joined', out);
    if (c.role === 'controller') {
      // Whatever `session` the controller sent is ignored: it speaks only for its own.
      if (room.device === null || c.session === null) return this.error(c.id, 'no-peer', out);
      this.counters.relayed++;
      out.push({ kind: 'send', conn: room.device, msg: { type: 'relay', session: c.session, data } });
      return;
    }
    if (session === undefined) return this.invalid(c, 'bad-message', "a device's relay names its session", now, out);
    const m = room.controllers.get(session);
    if (!m) return this.error(c.id, 'no-peer', out, 'no controller of that session is in the room');
    this.counters.relayed++;
    out.push({ kind: 'send', conn: m.conn, msg: { type: 'relay', data } });
  }

  private register(
    c: Conn,
    typed: string,
    proof: RegisterProof | undefined,
    maxControllers: number | undefined,
    now: number,
    out: Out,
    admission?: Admission,
  ): void {
    if (c.room || c.pending) return this.error(c.id, 'already-joined', out);
    const p = parseRoom(typed);
    if (!p.ok) return this.error(c.id, 'bad-room', out, p.reason);
    // Both limits come before the lookup (and before the proof is checked, which costs a signature
    // verification): a refused register learns nothing about the room.
    if (
      admission === undefined
        ? !this.takeAddressToken(this.registerBuckets, c.addr, now, 'register-limited', out)
        : admission === 'register-limited' && this.refusedShared('register-limited', out)
    ) {
      this.counters.registerLimited++;
      return this.error(c.id, 'register-limited', out);
    }
    // A short room is guessable: registering it answers "taken or not", so it costs a guess like a join.
    if (p.room.length < UNGUESSABLE_ROOM_LENGTH) {
      if (
        admission === undefined
          ? !this.takeAddressToken(this.joinBuckets, c.addr, now, 'join-limited', out)
          : admission === 'join-limited' && this.refusedShared('join-limited', out)
      ) {
        this.counters.joinLimited++;
        return this.error(c.id, 'join-limited', out, 'too many attempts at pairing rooms from this address; wait a few seconds');
      }
    } else {
      const why = this.proofProblem(c, p.room, proof);
      if (why) {
        this.counters.badProofs++;
        this.counters.refused++;
        out.push({ kind: 'log', event: 'refuse', fields: { role: 'device', reason: 'bad-proof' } });
        return this.error(c.id, 'bad-proof', out, why);
      }
    }
    // lookup, not rooms.has: a room expired but not yet swept is released by it, so it must be claimed again.
    if (this.cluster && !this.lookup(p.room, now, out)) {
      // Capacity first (no claim for a room we could not hold), then the cluster decides.
      if (!this.roomFits(c, undefined, out)) return;
      c.pending = { kind: 'claim', room: p.room, maxControllers };
      out.push({ kind: 'claim', conn: c.id, room: p.room });
      return;
    }
    this.settle(c, p.room, maxControllers, now, out);
  }

  /** Logs a cluster-wide refusal; true (so it reads as a refused take). */
  private refusedShared(reason: string, out: Out): boolean {
    out.push({ kind: 'log', event: 'refuse', fields: { role: 'device', reason, shared: true } });
    return true;
  }

  /** False (after the error) if a room of `c` would be over the per-address or the server's room cap. */
  private roomFits(c: Conn, room: Room | undefined, out: Out): boolean {
    if ((!room || room.addr !== c.addr) && (this.roomsPerAddr.get(c.addr) ?? 0) >= this.limits.maxRoomsPerAddr) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: { role: 'device', reason: 'too-many-rooms' } });
      this.error(c.id, 'too-many-rooms', out, `the devices of this address already hold ${this.limits.maxRoomsPerAddr} rooms`);
      return false;
    }
    if (!room && this.rooms.size >= this.limits.maxRooms) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: { role: 'device', reason: 'room-cap' } });
      this.error(c.id, 'rate-limited', out, 'server at room capacity, try again later');
      return false;
    }
    return true;
  }

  /** The cluster's answer to a `claim`. */
  private claimed(id: ConnId, name: string, result: 'ok' | 'taken' | 'unavailable', now: number, out: Out): void {
    const c = this.conns.get(id);
    const p = c?.pending;
    if (!c || p?.kind !== 'claim' || p.room !== name) {
      // Its socket went meanwhile: a claim no room stands for is given back.
      if (result === 'ok' && !this.rooms.has(name)) out.push({ kind: 'release', room: name });
      return;
    }
    c.pending = null;
    if (result === 'ok') return this.settle(c, name, p.maxControllers, now, out);
    this.counters.refused++;
    const code = result === 'taken' ? 'room-taken' : 'cluster-unavailable';
    out.push({ kind: 'log', event: 'refuse', fields: { role: 'device', reason: code } });
    this.error(c.id, code, out, result === 'taken' ? 'a device on another server holds this room' : undefined);
  }

  /** The room is known (or claimed) to be this node's: take it or make it. */
  private settle(c: Conn, name: string, maxControllers: number | undefined, now: number, out: Out): void {
    const p = { room: name };
    let room = this.lookup(p.room, now, out);
    if (room && room.device !== null) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: this.fields('device', room, 'room-taken') });
      return this.error(c.id, 'room-taken', out);
    }
    // The room counts against this address from now on: a new room, or one taken over from another address.
    if (!this.roomFits(c, room, out)) {
      if (!room && this.cluster) out.push({ kind: 'release', room: name });
      return;
    }
    const rejoin = room !== undefined;
    if (!room) {
      room = {
        name: p.room,
        serial: ++this.serial,
        device: null,
        controllers: new Map(),
        cap: 0, // set below, as by every register
        deviceLeftAt: null,
        idleSince: now,
        addr: c.addr,
      };
      this.rooms.set(p.room, room);
      this.count(this.roomsPerAddr, c.addr, +1);
    } else if (room.addr !== c.addr) {
      this.count(this.roomsPerAddr, room.addr, -1);
      this.count(this.roomsPerAddr, c.addr, +1);
      room.addr = c.addr;
    }
    room.device = c.id;
    room.deviceLeftAt = null;
    room.idleSince = now;
    room.cap = this.capOf(p.room, maxControllers);
    c.room = room;
    c.role = 'device';
    this.counters.registered++;
    out.push({ kind: 'send', conn: c.id, msg: { type: 'registered', room: p.room, ttlMs: this.limits.codeUnusedTtlMs, stunPort: this.stunPort } });
    out.push({ kind: 'log', event: 'register', fields: this.fields('device', room, rejoin ? 'rejoin' : 'new') });
    for (const [session, m] of room.controllers) {
      if (!m.admitted) m.admitSince = now;
      out.push({ kind: 'send', conn: c.id, msg: { type: 'peer', session } });
      out.push({ kind: 'send', conn: m.conn, msg: { type: 'peer', session } });
    }
  }

  /** The cap a register sets: one controller in a pairing room; in a device room what the device asks for, within the server's bound. */
  private capOf(room: string, maxControllers: number | undefined): number {
    if (room.length < UNGUESSABLE_ROOM_LENGTH) return PAIRING_ROOM_CONTROLLERS;
    return Math.min(maxControllers ?? DEFAULT_ROOM_CONTROLLERS, this.limits.maxControllersPerRoom);
  }

  /** Why `proof` does not show that this socket's device holds the key `room` is named after; null if it does. */
  private proofProblem(c: Conn, room: string, proof: RegisterProof | undefined): string | null {
    if (!proof) return `a room of ${UNGUESSABLE_ROOM_LENGTH} or more symbols needs a proof of its key`;
    const key = decodeKey32(proof.key);
    const sig = decodeBase64url(proof.sig, 64);
    if (!key || !sig) return 'malformed proof';
    if (deviceRoom(key) !== room) return 'the room is not named after this key';
    if (!verifyIdentitySignature(key, registerProofMessage(c.nonce, room), sig)) return 'the signature does not verify for this connection';
    return null;
  }

  private join(c: Conn, typed: string, now: number, out: Out, admission?: Admission): void {
    if (c.room || c.pending) return this.error(c.id, 'already-joined', out);
    const p = parseRoom(typed);
    if (!p.ok) return this.error(c.id, 'bad-room', out, p.reason);
    // The join limit comes before the lookup: a refused join learns nothing about the room.
    // Only short (guessable) rooms cost a token: a 26-symbol device room holds 125 bits, and who
    // may enter it is decided by the device's handshake, so a paired controller's joins are free.
    const limited =
      p.room.length < UNGUESSABLE_ROOM_LENGTH &&
      (admission === undefined ? !this.takeAddressToken(this.joinBuckets, c.addr, now, 'join-limited', out, 'controller') : admission === 'join-limited');
    if (limited) {
      this.counters.joinLimited++;
      return this.error(c.id, 'join-limited', out);
    }
    const room = this.lookup(p.room, now, out);
    if (!room && this.cluster) {
      c.pending = { kind: 'locate', room: p.room };
      out.push({ kind: 'locate', conn: c.id, room: p.room });
      return;
    }
    this.enter(c, room, now, out);
  }

  /** The cluster's answer to a `locate`. */
  private located(id: ConnId, name: string, result: 'none' | 'remote' | 'unavailable', now: number, out: Out): void {
    const c = this.conns.get(id);
    const p = c?.pending;
    if (!c || p?.kind !== 'locate' || p.room !== name) return;
    if (result === 'remote') {
      c.pending = { kind: 'remote' };
      return;
    }
    c.pending = null;
    // Registered here meanwhile: join it here.
    const room = this.lookup(name, now, out);
    if (room || result === 'none') return this.enter(c, room, now, out);
    this.counters.refused++;
    out.push({ kind: 'log', event: 'refuse', fields: { role: 'controller', reason: 'cluster-unavailable' } });
    this.error(c.id, 'cluster-unavailable', out);
  }

  /** Another node holds `room` now: this node's copy goes, without a release (the claim is not ours). */
  private evict(name: string, now: number, out: Out): void {
    const room = this.rooms.get(name);
    if (!room) return;
    const device = room.device === null ? undefined : this.conns.get(room.device);
    this.expire(room, this.controllerConns(room), 'evicted', out, false);
    if (device) {
      this.error(device.id, 'room-taken', out, 'a device on another server holds this room now');
      this.kick(device, CLOSE_TRY_AGAIN, 'room held elsewhere', 'evicted', now, out);
    }
  }

  /** A controller enters `room` (undefined: there is none). */
  private enter(c: Conn, room: Room | undefined, now: number, out: Out): void {
    if (!room) {
      this.counters.refused++;
      out.push({ kind: 'log', event: 'refuse', fields: { role: 'controller', reason: 'unknown-room' } });
      return this.error(c.id, 'unknown-room', out);
    }
    if (room.controllers.size >= room.cap) {
      const code = room.name.length < UNGUESSABLE_ROOM_LENGTH ? 'room-full' : 'device-busy';
      this.counters.refused++;
      if (code === 'device-busy') this.counters.deviceBusy++;
      out.push({ kind: 'log', event: 'refuse', fields: this.fields('controller', room, code) });
      return this.error(c.id, code, out);
    }
    const session = this.newSession();
    room.controllers.set(session, { conn: c.id, admitted: false, admitSince: room.device !== null ? now : null });
    c.room = room;
    c.role = 'controller';
    c.session = session;
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
      for (const [session, m] of room.controllers) {
        m.admitSince = null; // an absent device cannot admit; the clock restarts when it is back
        out.push({ kind: 'send', conn: m.conn, msg: { type: 'peer-left', session } });
      }
    } else if (c.role === 'controller' && c.session !== null && room.controllers.get(c.session)?.conn === c.id) {
      room.controllers.delete(c.session);
      if (room.controllers.size === 0) room.idleSince = now;
      if (room.device !== null) out.push({ kind: 'send', conn: room.device, msg: { type: 'peer-left', session: c.session } });
    }
    out.push({ kind: 'log', event: 'leave', fields: this.fields(c.role, room, reason) });
    c.room = null;
    c.role = null;
    c.session = null;
  }

  // --- per-address limits --------------------------------------------------

  /** Takes one token from `addr`'s bucket; false (logged once per run of refusals) if it is empty. */
  private takeAddressToken(buckets: AddressBuckets, addr: string, now: number, reason: string, out: Out, role: Role = 'device'): boolean {
    const r = buckets.take(addr, now);
    if (r === 'refused-first') out.push({ kind: 'log', event: 'refuse', fields: { role, reason } });
    return r === 'ok';
  }

  private count(map: Map<string, number>, key: string, delta: number): void {
    const n = (map.get(key) ?? 0) + delta;
    if (n <= 0) map.delete(key);
    else map.set(key, n);
  }

  // --- expiry --------------------------------------------------------------

  /** The live room of a normalised name, deleting it first if its time is up (and dropping an unadmitted controller that is due). */
  private lookup(name: string, now: number, out: Out): Room | undefined {
    const room = this.rooms.get(name);
    if (room && this.expireIfDue(room, now, out)) return undefined;
    if (room) this.dropUnadmittedIfDue(room, now, out);
    return room;
  }

  private expireAll(now: number, out: Out): void {
    for (const room of [...this.rooms.values()]) {
      if (!this.expireIfDue(room, now, out)) this.dropUnadmittedIfDue(room, now, out);
    }
  }

  /** Drops each controller of the room that the device has had for longer than admitTimeoutMs without admitting it. */
  private dropUnadmittedIfDue(room: Room, now: number, out: Out): void {
    for (const m of [...room.controllers.values()]) {
      if (m.admitted || m.admitSince === null || now - m.admitSince <= this.limits.admitTimeoutMs) continue;
      const c = this.conns.get(m.conn);
      if (!c) continue;
      this.counters.notAdmitted++;
      this.error(c.id, 'not-admitted', out, `the device did not admit this session within ${this.limits.admitTimeoutMs} ms`);
      this.kick(c, CLOSE_POLICY, 'not admitted', 'not-admitted', now, out);
    }
  }

  /** Deletes the room if it is due; true if it was. */
  private expireIfDue(room: Room, now: number, out: Out): boolean {
    if (room.device === null) {
      if (room.deviceLeftAt === null || now - room.deviceLeftAt <= this.limits.deviceGraceMs) return false;
      this.expire(room, this.controllerConns(room), 'device-gone', out);
      return true;
    }
    if (room.controllers.size === 0 && now - room.idleSince > this.limits.codeUnusedTtlMs) {
      this.expire(room, [room.device], 'unused', out);
      return true;
    }
    return false;
  }

  /** Deletes the room; `notify` get `error{expired}`. `release`: tell the cluster (not for an eviction). */
  private expire(room: Room, notify: readonly ConnId[], reason: string, out: Out, release = true): void {
    this.rooms.delete(room.name);
    if (this.cluster && release) out.push({ kind: 'release', room: room.name });
    this.count(this.roomsPerAddr, room.addr, -1);
    this.counters.expired++;
    for (const id of [room.device, ...this.controllerConns(room)]) {
      const c = id === null ? undefined : this.conns.get(id);
      if (c) {
        c.room = null;
        c.role = null;
        c.session = null;
      }
    }
    const text = reason === 'unused' ? 'the room was unused for too long; register again' : 'the device did not come back';
    for (const id of notify) this.error(id, 'expired', out, text);
    out.push({ kind: 'log', event: 'expire', fields: { room: room.serial, reason } });
  }

  private controllerConns(room: Room): ConnId[] {
    return [...room.controllers.values()].map((m) => m.conn);
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
