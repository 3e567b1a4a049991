/**
 * The signaling protocol: the single source of truth for what crosses the
 * WebSocket between a peer (device or controller) and the signaling server.
 *
 * The server deals only in rooms. A room is a public rendezvous name: the
 * first 4 symbols of a pairing code (the rest of the code is the PAKE secret
 * and never leaves the peers; see ./code.ts), or the persistent room a paired
 * device derives from its identity key (deviceRoom). A pairing room holds
 * one device and at most one controller; a device room one device and up to
 * its `maxControllers` (capped by the server) controllers, each its own session.
 *
 *   device                      server                       controller
 *     |<-- hello{v,nonce} --------|------- hello{v,nonce} ------->|   first frame on every socket
 *     |-- register{room, -------->|                               |   a device room (>= UNGUESSABLE_ROOM_LENGTH)
 *     |     proof{key,sig},       |                               |   needs the proof: deviceRoom(key) = room,
 *     |     maxControllers}       |                               |
 *     |<-- registered{room,ttl,  |                               |   sig over (domain, nonce, room)
 *     |        stunPort} ---------|                               |   (stunPort: the server's STUN port, 0 = none)
 *     |                           |<------------- join{room} -----|   (or error{unknown-room}, error{join-limited},
 *     |<-- peer{session} ---------|---- joined{session} --------->|    error{device-busy}); one peer per controller
 *     |                           |                               |
 *     |== relay{session,data} ===>|==== relay{data} =============>|   handshake, then sealed frames (WebRTC
 *     |<== relay{session,data} ===|<==============================|   set-up travels sealed here too); the
 *     |                           |                               |   device names the session, a controller
 *     |                           |                               |   has only one
 *     |-- admit{session} -------->|                               |   session secured: the controller may stay
 *     |                           |                               |   (else dropped after ADMIT_TIMEOUT_MS)
 *     |<=============== werift data channel (direct) ============>|   link frames move here
 *     |                           |                               |
 *     |<-- peer-left -------------|<-------------- (ws closes) ---|
 *     |                           |                               |
 *     |<-- goaway{reconnectMs} ---|--- goaway{reconnectMs} ------>|   the server is draining: reconnect (to
 *     |   (then closed 1012)      |   (then closed 1012)          |   another server of the list) now; a
 *     |-- register (elsewhere) -->|                               |   direct path carries on meanwhile
 *
 * Clustered servers (`pinhole signal --redis`): a room lives on the node its
 * device registered with (its home). A controller may land on any node: its
 * node looks the room up in the shared store and forwards its frames one hop
 * to the home node, which routes them as if the controller were local. Peers
 * see no difference, except `error{cluster-unavailable}` for a join of a room
 * on another node (or a register of a new room) while the store is down.
 *
 * The server never reads `relay` payloads; it checks their size and forwards
 * them: a controller's to the device (tagged with the controller's session),
 * a device's to the controller of the session it names. `relay` data is either a handshake
 * message (PAKE or identity proof, crypto/handshake.ts) or an end-to-end sealed
 * link frame (crypto/seal.ts) that the server cannot read or forge; inside the seal
 * are link frames (./frames.ts) carrying JSON-RPC 2.0 (./rpc.ts) and the
 * WebRTC set-up (SignalPayload, checked with parseSignalPayload).
 */

import { decodeBase64url, fromBase64url, toBase64url, utf8ByteLength, utf8Decode, utf8Encode } from './bytes.js';
import { isErrorCode } from './errors.js';

/**
 * Protocol version spoken by this build. A peer with another version is
 * refused with `version`. 2: the server greets with `hello`, a device room is
 * registered with a proof of its key, the device `admit`s a secured session,
 * and WebRTC set-up travels sealed inside `relay` (no `signal` message).
 * 3: a device room serves many controllers at once: `register` carries the
 * device's `maxControllers`, and a device's `relay` names its `session`.
 * 4: a draining server says `goaway` before it closes, and a clustered server
 * may refuse with `cluster-unavailable`.
 */
export const PROTOCOL_VERSION = 4;

/** WebSocket close code after `goaway`: service restart (RFC 6455), try again at once. */
export const CLOSE_GOING_AWAY = 1012;

/** Longest `goaway.reconnectMs` a server may ask for: the client's reconnect spread, bounded so a hostile server cannot park it. */
export const MAX_GOAWAY_MS = 60_000;

/**
 * Most controllers a device may ask to serve at once (`register.maxControllers`).
 * Each is a session with its own keys and, on direct, its own WebRTC peer (a few
 * MB each): 64 is far past a household and still bounded on a small board.
 */
export const MAX_CONTROLLERS_LIMIT = 64;

/** A device's `maxControllers` when its `register` names none: the one-controller rooms of protocol 2. */
export const DEFAULT_ROOM_CONTROLLERS = 1;

/** Controllers a pairing room holds, whatever its register asks for: a code is good for one PAKE attempt, so a second controller there is never an honest one. */
export const PAIRING_ROOM_CONTROLLERS = 1;

/** Largest signaling frame, in bytes (UTF-8). SDP with many candidates stays well under it. */
export const MAX_SIGNAL_BYTES = 64 * 1024;

/** Largest link frame (relay `data` or one data-channel message), in bytes. */
export const MAX_LINK_FRAME_BYTES = 16 * 1024;

/**
 * WebSocket close code a device uses to give up its room for good (a spent
 * pairing code): the server deletes the room at once instead of holding it
 * for the device's return, so a retried code fails at once.
 */
export const CLOSE_LEAVE = 4000;

/** Deepest JSON nesting accepted anywhere; real messages are at most 4 deep. */
export const MAX_JSON_DEPTH = 8;

/** Bytes of the nonce in `hello`: fresh per connection, so a registration proof is good on one socket only. */
export const HELLO_NONCE_BYTES = 32;

/** Domain separator of the registration proof's signed message, so the signature cannot stand for any other statement. */
export const REGISTER_PROOF_DOMAIN = 'pinhole/2 register';

/** Role of a WebSocket peer. */
export type Role = 'device' | 'controller';

/** Stable error codes the server sends in `error` messages. Listed in docs/protocol.md. */
export type SignalErrorCode =
  | 'bad-message' // not JSON, wrong shape or wrong type
  | 'too-large' // over MAX_SIGNAL_BYTES
  | 'version' // protocol version mismatch
  | 'bad-room' // room name malformed
  | 'room-taken' // a device already holds this room
  | 'unknown-room' // no device registered this room
  | 'join-limited' // too many join attempts from this address
  | 'room-full' // a controller is already in this pairing room
  | 'device-busy' // the device already serves as many controllers as it takes
  | 'no-peer' // relay sent while alone in the room
  | 'not-joined' // relay/admit before register/join
  | 'already-joined' // a second register/join on one socket
  | 'expired' // the room was unused for too long, or its device did not come back
  | 'rate-limited' // too many messages, or the server holds MAX_ROOMS rooms
  | 'bad-proof' // register of a device room without a valid proof of its key
  | 'register-limited' // too many registrations from this address
  | 'too-many-rooms' // this address's devices already hold MAX_ROOMS_PER_ADDR rooms
  | 'not-admitted' // the device did not admit this controller within ADMIT_TIMEOUT_MS
  | 'cluster-unavailable'; // a clustered server cannot reach its shared store: cross-node joins and new rooms wait for it

/** A candidate or description exchanged for WebRTC, carried sealed inside `relay` (the server never sees it). */
export type SignalPayload =
  | { kind: 'offer' | 'answer'; sdp: string }
  | { kind: 'candidate'; candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null }
  | { kind: 'end-of-candidates' }
  | { kind: 'ping' | 'pong'; n: number } // RTT over the relay, to time `go`
  | { kind: 'go' } // "start connectivity checks now" (see platform/node/rtc.ts)
  | { kind: 'bye' };

/**
 * Proof that a device holds the key its room is named after: `key` is the
 * Ed25519 public key (32 bytes, base64url), `sig` its signature (64 bytes,
 * base64url) over registerProofMessage(nonce of this socket's hello, room).
 */
export interface RegisterProof {
  key: string;
  sig: string;
}

/** Messages a peer sends to the server. */
export type ClientMessage =
  | { type: 'register'; v: number; room: string; proof?: RegisterProof; maxControllers?: number }
  | { type: 'join'; v: number; room: string }
  | { type: 'relay'; data: string; session?: string } // a device names the session; a controller sends none
  | { type: 'admit'; session: string };

/** Messages the server sends to a peer. */
export type ServerMessage =
  | { type: 'hello'; v: number; nonce: string }
  | { type: 'registered'; room: string; ttlMs: number; stunPort: number }
  | { type: 'joined'; session: string; waiting: boolean; stunPort: number }
  | { type: 'peer'; session: string }
  | { type: 'peer-left'; session: string }
  | { type: 'relay'; data: string; session?: string } // to a device: the session it came from
  | { type: 'error'; code: SignalErrorCode; message: string }
  /** The server is draining: reconnect within `reconnectMs` (spread at random), to another server if there is one. */
  | { type: 'goaway'; reconnectMs: number };

/**
 * The message a registration proof signs: utf8(REGISTER_PROOF_DOMAIN) || 0x00
 * || nonce (the HELLO_NONCE_BYTES of the socket's hello) || utf8(room), room
 * normalised (parseRoom). The nonce ties a proof to one connection, so a
 * proof seen on the wire cannot be replayed on another.
 */
export function registerProofMessage(nonce: string, room: string): Uint8Array {
  const n = fromBase64url(nonce);
  if (n === undefined) throw new TypeError('the hello nonce must be canonical base64url');
  const domain = utf8Encode(REGISTER_PROOF_DOMAIN);
  const r = utf8Encode(room);
  const out = new Uint8Array(domain.length + 1 + n.length + r.length);
  out.set(domain, 0);
  out.set(n, domain.length + 1);
  out.set(r, domain.length + 1 + n.length);
  return out;
}

/** A registration proof for `room` on the socket whose hello carried `nonce`, signed by `signer` (an Identity). */
export function makeRegisterProof(signer: { publicKey: Uint8Array; sign(msg: Uint8Array): Uint8Array }, nonce: string, room: string): RegisterProof {
  return { key: toBase64url(signer.publicKey), sig: toBase64url(signer.sign(registerProofMessage(nonce, room))) };
}

/** Outcome of validation: the message, or a stable code and a one-line reason. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; code: 'bad-message' | 'too-large' | 'version'; reason: string };

/**
 * Parses JSON text with a byte limit and a nesting limit, never throwing.
 * Depth is checked on the text before JSON.parse so a deeply nested frame
 * costs O(n) and no recursion. Bytes (a binary WebSocket frame; a Node
 * Buffer is one) are decoded as UTF-8.
 */
export function parseJson(text: string | Uint8Array, maxBytes: number): Parsed<unknown> {
  const bytes = typeof text === 'string' ? utf8ByteLength(text) : text.length;
  if (bytes > maxBytes) return { ok: false, code: 'too-large', reason: `frame of ${bytes} bytes exceeds ${maxBytes}` };
  const s = typeof text === 'string' ? text : utf8Decode(text);
  let depth = 0;
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inStr) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inStr = false;
    } else if (c === 34) inStr = true;
    else if (c === 123 || c === 91) {
      if (++depth > MAX_JSON_DEPTH) return { ok: false, code: 'bad-message', reason: `nesting deeper than ${MAX_JSON_DEPTH}` };
    } else if (c === 125 || c === 93) depth--;
  }
  try {
    return { ok: true, value: JSON.parse(s) };
  } catch {
    return { ok: false, code: 'bad-message', reason: 'not valid JSON' };
  }
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const isStr = (x: unknown, max: number): x is string => typeof x === 'string' && x.length <= max;
const isPort = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 65535;
const bad = (reason: string): Parsed<never> => ({ ok: false, code: 'bad-message', reason });
const isSession = (x: unknown): x is string => isStr(x, 64) && x.length > 0;

/** Longest room accepted on the wire (normalised or typed, dashes included); the router then allows 4..32 after normalising. */
export const MAX_ROOM_CHARS = 64;

/**
 * Validates a WebRTC set-up payload (peers carry it sealed inside `relay`):
 * the payload, or a one-line reason it is refused. Extra fields are dropped.
 */
export function parseSignalPayload(p: unknown): SignalPayload | string {
  if (!isObj(p)) return 'payload must be an object';
  switch (p.kind) {
    case 'offer':
    case 'answer':
      return isStr(p.sdp, MAX_SIGNAL_BYTES) ? { kind: p.kind, sdp: p.sdp } : 'sdp must be a string';
    case 'candidate': {
      if (!isStr(p.candidate, 1024)) return 'candidate must be a string';
      const mid = p.sdpMid;
      const idx = p.sdpMLineIndex;
      if (mid !== undefined && mid !== null && !isStr(mid, 64)) return 'sdpMid must be a string';
      if (idx !== undefined && idx !== null && !(Number.isInteger(idx) && (idx as number) >= 0 && (idx as number) < 64)) return 'bad sdpMLineIndex';
      return {
        kind: 'candidate',
        candidate: p.candidate,
        sdpMid: (mid as string | null | undefined) ?? null,
        sdpMLineIndex: (idx as number | null | undefined) ?? null,
      };
    }
    case 'ping':
    case 'pong':
      return Number.isSafeInteger(p.n) && (p.n as number) >= 0 ? { kind: p.kind, n: p.n as number } : 'n must be a non-negative integer';
    case 'end-of-candidates':
    case 'go':
    case 'bye':
      return { kind: p.kind };
    default:
      return 'unknown payload kind';
  }
}

const RELAY_PREFIX = '{"type":"relay","data":"';
const SESSION_INFIX = '","session":"';

/**
 * End of a JSON string body starting at `from` that needs no unescaping (no
 * backslash, no control character), at most `max` chars: the index of its
 * closing quote, or -1.
 */
function plainStringEnd(s: string, from: number, max: number): number {
  const stop = Math.min(s.length, from + max + 1);
  for (let i = from; i < stop; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) return i;
    if (c < 32 || c === 92) return -1;
  }
  return -1;
}

/**
 * The relay frames peers send (`encode` of `relay{data}` or
 * `relay{data,session}`, data and session needing no escapes: base64url and
 * ids) read without JSON.parse: the relay is the hot path. Anything else is
 * undefined and goes the general way, so this accepts nothing it would refuse.
 */
function fastRelay(s: string): ClientMessage | undefined {
  if (!s.startsWith(RELAY_PREFIX)) return undefined;
  const start = RELAY_PREFIX.length;
  const end = plainStringEnd(s, start, MAX_LINK_FRAME_BYTES);
  if (end < 0) return undefined;
  const data = s.slice(start, end);
  if (end + 2 === s.length && s.charCodeAt(end + 1) === 125) return { type: 'relay', data };
  if (!s.startsWith(SESSION_INFIX, end)) return undefined;
  const sStart = end + SESSION_INFIX.length;
  const sEnd = plainStringEnd(s, sStart, 64);
  if (sEnd <= sStart || sEnd + 2 !== s.length || s.charCodeAt(sEnd + 1) !== 125) return undefined;
  return { type: 'relay', data, session: s.slice(sStart, sEnd) };
}

const RELAY_PREFIX_BYTES = new TextEncoder().encode(RELAY_PREFIX);

/**
 * The data of a frame that parseClientMessage reads as `relay{data}` by its
 * fast path, as bytes, with nothing decoded: for a server that only passes
 * the data on. Undefined for anything else (parse it then). UTF-8 continuation
 * bytes are never `"` or `\`, so a byte scan finds what the string scan does.
 */
export function relayDataBytes(b: Uint8Array): Uint8Array | undefined {
  const start = RELAY_PREFIX_BYTES.length;
  const end = b.length - 2;
  if (end < start || end - start > MAX_LINK_FRAME_BYTES || b[end] !== 34 || b[end + 1] !== 125) return undefined;
  for (let i = 0; i < start; i++) if (b[i] !== RELAY_PREFIX_BYTES[i]) return undefined;
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c === 34 || c === 92 || c < 32) return undefined;
  }
  return b.subarray(start, end);
}

/** Validates one frame a peer sent to the server. The only place client messages are checked. */
export function parseClientMessage(text: string | Uint8Array): Parsed<ClientMessage> {
  const bytes = typeof text === 'string' ? utf8ByteLength(text) : text.length;
  let decoded: string | Uint8Array = text;
  if (bytes <= MAX_SIGNAL_BYTES) {
    decoded = typeof text === 'string' ? text : utf8Decode(text);
    const fast = fastRelay(decoded);
    if (fast) return { ok: true, value: fast };
  }
  const j = parseJson(decoded, MAX_SIGNAL_BYTES);
  if (!j.ok) return j;
  const m = j.value;
  if (!isObj(m)) return bad('message must be an object');
  switch (m.type) {
    case 'register':
    case 'join': {
      if (m.v !== PROTOCOL_VERSION)
        return {
          ok: false,
          code: 'version',
          reason: `protocol version ${typeof m.v === 'number' ? m.v : typeof m.v} not supported (want ${PROTOCOL_VERSION})`,
        };
      if (!isStr(m.room, MAX_ROOM_CHARS) || m.room.length === 0) return bad('room must be a non-empty string');
      if (m.type === 'join') return { ok: true, value: { type: m.type, v: m.v, room: m.room } };
      const mc = m.maxControllers;
      if (mc !== undefined && !(Number.isInteger(mc) && (mc as number) >= 1 && (mc as number) <= MAX_CONTROLLERS_LIMIT))
        return bad(`maxControllers must be an integer 1..${MAX_CONTROLLERS_LIMIT}`);
      const cap = mc === undefined ? {} : { maxControllers: mc as number };
      if (m.proof === undefined) return { ok: true, value: { type: 'register', v: m.v, room: m.room, ...cap } };
      const pr = m.proof;
      if (!isObj(pr)) return bad('proof must be an object');
      if (decodeBase64url(pr.key, 32) === undefined) return bad('proof.key must be a 32-byte key, base64url');
      if (decodeBase64url(pr.sig, 64) === undefined) return bad('proof.sig must be a 64-byte signature, base64url');
      return { ok: true, value: { type: 'register', v: m.v, room: m.room, proof: { key: pr.key as string, sig: pr.sig as string }, ...cap } };
    }
    case 'relay':
      if (!isStr(m.data, MAX_LINK_FRAME_BYTES)) return bad(`data must be a string of at most ${MAX_LINK_FRAME_BYTES} chars`);
      if (m.session === undefined) return { ok: true, value: { type: 'relay', data: m.data } };
      if (!isSession(m.session)) return bad('session must be a non-empty string of at most 64 chars');
      return { ok: true, value: { type: 'relay', data: m.data, session: m.session } };
    case 'admit':
      if (!isSession(m.session)) return bad('session must be a non-empty string of at most 64 chars');
      return { ok: true, value: { type: 'admit', session: m.session } };
    default:
      return bad('unknown message type');
  }
}

/** Validates one frame the server sent to a peer. The only place server messages are checked. */
export function parseServerMessage(text: string | Uint8Array): Parsed<ServerMessage> {
  const j = parseJson(text, MAX_SIGNAL_BYTES);
  if (!j.ok) return j;
  const m = j.value;
  if (!isObj(m)) return bad('message must be an object');
  switch (m.type) {
    case 'hello':
      if (!Number.isSafeInteger(m.v) || (m.v as number) < 1) return bad('bad hello version');
      if (decodeBase64url(m.nonce, HELLO_NONCE_BYTES) === undefined) return bad(`hello nonce must be ${HELLO_NONCE_BYTES} bytes, base64url`);
      return { ok: true, value: { type: 'hello', v: m.v as number, nonce: m.nonce as string } };
    case 'registered':
      if (!isStr(m.room, MAX_ROOM_CHARS) || typeof m.ttlMs !== 'number' || !isPort(m.stunPort)) return bad('bad registered');
      return { ok: true, value: { type: 'registered', room: m.room, ttlMs: m.ttlMs, stunPort: m.stunPort } };
    case 'joined':
      if (!isStr(m.session, 64) || typeof m.waiting !== 'boolean' || !isPort(m.stunPort)) return bad('bad joined');
      return { ok: true, value: { type: 'joined', session: m.session, waiting: m.waiting, stunPort: m.stunPort } };
    case 'peer':
    case 'peer-left':
      if (!isStr(m.session, 64)) return bad(`bad ${m.type}`);
      return { ok: true, value: { type: m.type, session: m.session } };
    case 'relay':
      if (!isStr(m.data, MAX_LINK_FRAME_BYTES)) return bad('bad relay');
      if (m.session === undefined) return { ok: true, value: { type: 'relay', data: m.data } };
      if (!isSession(m.session)) return bad('bad relay session');
      return { ok: true, value: { type: 'relay', data: m.data, session: m.session } };
    case 'error':
      if (!isErrorCode(m.code, 'signal') || !isStr(m.message, 1024)) return bad('bad error');
      return { ok: true, value: { type: 'error', code: m.code, message: m.message } };
    case 'goaway':
      if (!Number.isInteger(m.reconnectMs) || (m.reconnectMs as number) < 0 || (m.reconnectMs as number) > MAX_GOAWAY_MS) return bad('bad goaway');
      return { ok: true, value: { type: 'goaway', reconnectMs: m.reconnectMs as number } };
    default:
      return bad('unknown message type');
  }
}

/** Strings JSON carries as they are: relay data (base64url) and session ids always are. */
const PLAIN_JSON = /^[A-Za-z0-9_-]*$/;
const jsonString = (s: string): string => (PLAIN_JSON.test(s) ? `"${s}"` : JSON.stringify(s));

/**
 * Serialises a message; the single place frames are encoded. A relay, the hot
 * path, is spelled out (same JSON, no object walk, and base64url needs no escaping).
 */
export function encode(m: ClientMessage | ServerMessage): string {
  if (m.type === 'relay') {
    const data = jsonString(m.data);
    return m.session === undefined ? `{"type":"relay","data":${data}}` : `{"type":"relay","data":${data},"session":${jsonString(m.session)}}`;
  }
  return JSON.stringify(m);
}
