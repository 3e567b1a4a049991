/**
 * Clustering: several `pinhole signal` nodes sharing one Redis
 * (`--redis redis://HOST:PORT[/DB]`). The router stays pure; this file
 * carries out its cluster actions (claim, locate, release) and forwards the
 * frames of controllers whose room lives on another node.
 *
 * - Presence. `pinhole:room:ROOM` = "NODE:EPOCH", with a TTL (PRESENCE_TTL_MS)
 *   the holder refreshes every HEARTBEAT_MS, and `pinhole:node:NODE` with
 *   NODE_TTL_MS says the node lives. A claim (Lua, atomic) succeeds when the
 *   room is free, held by this node, or held by a node whose key has expired;
 *   each claim draws a new epoch (INCR), and a refresh only extends an entry
 *   of this node's epoch: a node that finds another epoch there (it was cut
 *   off long enough for its room to be taken) evicts its own copy. An entry
 *   gone during a Redis outage is put back by the next refresh.
 * - Forwarding, one hop. A controller on node B joining a room of node A is
 *   proxied: B greets it, checks its frames (parseClientMessage, as for any
 *   socket) and publishes them on A's channel (`pinhole:hop:A`); A feeds them
 *   to its router as a socket of its own (open{remote}), and publishes what
 *   its router sends that socket, already encoded, on B's channel, which B
 *   writes to the socket as is. Pub/sub because the link above it already
 *   numbers and acknowledges sealed frames, so at-most-once delivery is all it
 *   needs, and a channel costs nothing to set up or tear down (a stream would
 *   store every frame and need trimming). Hop frames are binary: a kind byte,
 *   the controller's node and socket id, then the relay data or the encoded
 *   message: no JSON is built or parsed per relay frame on the hop. The
 *   frames one turn of the event loop sends a node go in one PUBLISH, each
 *   after its length.
 * - Shared limits. The per-address join and registration buckets are one
 *   token bucket per address in Redis (Lua, Redis's clock). When Redis does
 *   not answer, each node's own buckets decide.
 * - Redis down. Rooms held here and their controllers on this node go on as
 *   before; a join of a room not held here, and a register of a room not held
 *   here, get `cluster-unavailable`; forwarded frames are lost (the link
 *   resends). ioredis reconnects by itself; the next heartbeat re-asserts
 *   this node's rooms, and everything works again with no restart.
 * - A node gone. Its node key expires within NODE_TTL_MS: its rooms can be
 *   claimed elsewhere at once (their devices re-register wherever they
 *   reconnect), and the nodes that proxied sockets to or from it drop those
 *   sockets (a controller reconnects and joins afresh).
 * - Drain. `drain()` gives up every room in Redis at once, so that devices
 *   told `goaway` can register at once on another node.
 */

import type { Redis } from 'ioredis';
import { nanoid } from 'nanoid';
import { type ClientMessage, type Parsed, PROTOCOL_VERSION, parseClientMessage, parseRoom, relayDataBytes } from '../protocol/index.js';
import type { ServerMetrics } from './metrics.js';
import { type Action, type Admission, addressKey, type ConnId, type RouterInput, type RouterLimits, UNGUESSABLE_ROOM_LENGTH } from './router.js';

/** Interval, in ms, of the node's heartbeat: its node key, its rooms' presence, and the liveness of the nodes it forwards to. */
export const HEARTBEAT_MS = 1_000;

/**
 * Lifetime, in ms, of a node key without a heartbeat: three heartbeats, so
 * one slow Redis round trip does not declare a node dead, while a killed
 * node's rooms can be taken over within a few seconds.
 */
export const NODE_TTL_MS = 3_000;

/**
 * Lifetime, in ms, of a room's presence entry without a refresh: long
 * enough that a busy node refreshing 10,000 rooms in chunks never lets one
 * lapse; a dead node's rooms are free earlier anyway (its node key expires).
 */
export const PRESENCE_TTL_MS = 15_000;

/** Interval, in ms, between presence refreshes: a third of PRESENCE_TTL_MS, so two refreshes can fail before an entry lapses. */
export const PRESENCE_REFRESH_MS = 5_000;

/** Time, in ms, a Redis command may take before it counts as failed: Redis answers in well under a millisecond on a LAN; this long means it is gone. */
export const REDIS_COMMAND_TIMEOUT_MS = 1_000;

/** Longest wait, in ms, between Redis reconnect attempts: a Redis that comes back is found within this. */
export const REDIS_RETRY_MAX_MS = 1_000;

/** Bytes of hop frames after which a node's batch is published before the tick ends: bounds one Redis message. */
const HOP_BATCH_BYTES = 64 * 1024;

/** Rooms refreshed per Lua call: bounds one script's run (Redis is single-threaded) and its argument list. */
const REFRESH_CHUNK = 500;

const KEY = {
  room: (r: string) => `pinhole:room:${r}`,
  node: (n: string) => `pinhole:node:${n}`,
  hop: (n: string) => `pinhole:hop:${n}`,
  epoch: 'pinhole:epoch',
  bucket: (kind: 'join' | 'register', addr: string) => `pinhole:bucket:${kind}:${addr}`,
};
const NODE_PREFIX = 'pinhole:node:';

/** KEYS[1] room, KEYS[2] epoch counter; ARGV node, ttl, node-key prefix. {1, epoch} or {0, holder}. */
const CLAIM_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder = string.match(cur, '^(.*):%d+$')
  if holder and holder ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. holder) == 1 then return {0, holder} end
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return {1, epoch}`;

/** KEYS room keys; ARGV node, ttl, then one epoch per key. The 1-based indexes of the keys another node holds now. */
const REFRESH_LUA = `
local lost = {}
for i, k in ipairs(KEYS) do
  local mine = ARGV[1] .. ':' .. ARGV[i + 2]
  local cur = redis.call('GET', k)
  if cur == mine then redis.call('PEXPIRE', k, ARGV[2])
  elseif not cur then redis.call('SET', k, mine, 'PX', ARGV[2])
  else table.insert(lost, i) end
end
return lost`;

/** KEYS[1] room; ARGV "NODE:EPOCH". Deletes the entry if it is still that one. */
const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** KEYS[1] room; ARGV node-key prefix. The holder, if its node lives, else '' (not nil: nil is what a failed call gives). */
const LOCATE_LUA = `
local cur = redis.call('GET', KEYS[1])
if not cur then return '' end
local holder = string.match(cur, '^(.*):%d+$')
if holder and redis.call('EXISTS', ARGV[1] .. holder) == 1 then return holder end
return ''`;

/**
 * KEYS the buckets to take from, in order; ARGV per key: per-minute rate,
 * burst, the code when empty. 'ok', or the code of the first empty bucket
 * (the buckets before it keep their token spent, as the router's do).
 */
const BUCKET_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, k in ipairs(KEYS) do
  local rate = tonumber(ARGV[i * 3 - 2])
  local burst = tonumber(ARGV[i * 3 - 1])
  local v = redis.call('HMGET', k, 't', 'ts')
  local tokens = tonumber(v[1]) or burst
  local ts = tonumber(v[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 60000)
  local ok = tokens >= 1
  if ok then tokens = tokens - 1 end
  redis.call('HSET', k, 't', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', k, math.ceil((burst - tokens) * 60000 / rate) + 1000)
  if not ok then return ARGV[i * 3] end
end
return 'ok'`;

/** Kinds of hop frames (the first byte). */
const HOP = {
  /** controller's node -> room's node: a proxied socket joins; payload JSON {addr, room}. */
  open: 0x4f,
  /** -> room's node: a relay frame; payload the data. */
  relay: 0x52,
  /** -> room's node: another checked message; payload its JSON. */
  message: 0x4d,
  /** -> room's node: an invalid frame; payload JSON {code, reason}. */
  invalid: 0x49,
  /** -> room's node: the socket closed. */
  close: 0x43,
  /** room's node -> controller's node: send this text to the socket. */
  send: 0x53,
  /** room's node -> controller's node: close the socket; payload JSON {code, reason}. */
  kick: 0x58,
} as const;

/** What the cluster needs from the server shell. */
export interface ClusterHost {
  /** A fresh socket id in the shell's id space (for sockets proxied here). */
  newConnId(): ConnId;
  /** Feeds one input to the router and carries out its actions. */
  handle(conn: ConnId, input: RouterInput): void;
  /** Writes an encoded server message to one of this node's sockets; false if it has none of that id. */
  sendText(conn: ConnId, text: Buffer): boolean;
  /** Closes one of this node's sockets. */
  closeSocket(conn: ConnId, code: number, reason: string): void;
  /** The source address of one of this node's sockets. */
  addrOf(conn: ConnId): string | undefined;
  log(event: string, fields?: Record<string, unknown>): void;
}

/** Settings of a node. */
export interface ClusterOptions {
  /** redis://HOST:PORT[/DB]. */
  redis: string;
  /** This node's id (default: random). Letters, digits, '-' and '_'. */
  nodeId?: string;
  limits: Pick<RouterLimits, 'joinRatePerMin' | 'joinBurst' | 'registerRatePerMin' | 'registerBurst'>;
  metrics: ServerMetrics;
}

/** Counters of a node's cluster side. */
export interface ClusterStats {
  node: string;
  redisUp: boolean;
  /** Rooms this node holds in Redis. */
  claimed: number;
  /** Sockets of this node proxied to other nodes. */
  proxiedOut: number;
  /** Sockets of other nodes proxied here. */
  proxiedIn: number;
  hopFramesOut: number;
  hopFramesIn: number;
}

/** A socket of this node proxied to the node of its room. */
interface Proxied {
  node: string;
}

/** The node's side of the cluster, bound to its server shell. */
export class ClusterNode {
  readonly node: string;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private host!: ClusterHost;
  /** Rooms this node holds: room -> epoch. */
  private readonly held = new Map<string, number>();
  /** This node's sockets proxied to another node (controller's side). */
  private readonly out = new Map<ConnId, Proxied>();
  /** Sockets of other nodes proxied here (room's side): node -> its socket id -> local id, and back. */
  private readonly inByKey = new Map<string, Map<number, ConnId>>();
  private readonly inById = new Map<ConnId, { node: string; conn: number; header: Buffer }>();
  /** Per socket: inputs waiting behind a shared-bucket check, in order. */
  private readonly queues = new Map<ConnId, Array<() => Promise<RouterInput | null> | RouterInput | null>>();
  private heartbeat: NodeJS.Timeout | undefined;
  private lastRefresh = 0;
  private draining = false;
  private closed = false;
  private up = false;
  private framesOut = 0;
  private framesIn = 0;
  private lastNode = '';
  /** Hop frames of this turn of the event loop, by node (see `flush`). */
  private readonly batches = new Map<string, { frames: Buffer[]; bytes: number }>();

  private constructor(
    private readonly opts: ClusterOptions,
    RedisClient: typeof Redis,
  ) {
    this.node = opts.nodeId ?? nanoid(10).replace(/[^A-Za-z0-9_-]/g, '_');
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(this.node)) throw new RangeError('node id: 1-64 of A-Z a-z 0-9 - _');
    const common = {
      commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: (n: number) => Math.min(100 * n, REDIS_RETRY_MAX_MS),
      lazyConnect: true,
    };
    this.cmd = new RedisClient(opts.redis, { ...common, enableAutoPipelining: true });
    // The subscriber queues its (re-)subscription while offline.
    this.sub = new RedisClient(opts.redis, { ...common, enableOfflineQueue: true, commandTimeout: undefined });
    this.cmd.on('error', () => undefined); // reported through the commands that fail
    this.sub.on('error', () => undefined);
    this.cmd.on('ready', () => this.setUp(true));
    this.cmd.on('close', () => this.setUp(false));
    this.sub.on('messageBuffer', (_ch: Buffer, msg: Buffer) => this.onHops(msg));
  }

  /** Connects to Redis (waits for it once; a node whose Redis is down at start keeps retrying in the background). */
  static async start(opts: ClusterOptions, host: ClusterHost): Promise<ClusterNode> {
    // Loaded here, not at the top: a node without --redis, and every other command, never pays for ioredis.
    const { Redis: RedisClient } = await import('ioredis');
    const c = new ClusterNode(opts, RedisClient);
    c.host = host;
    await Promise.all([c.cmd.connect().catch(() => undefined), c.sub.connect().catch(() => undefined)]);
    await c.sub.subscribe(KEY.hop(c.node)).catch(() => undefined);
    await c.beat();
    c.heartbeat = setInterval(() => void c.beat(), HEARTBEAT_MS);
    c.heartbeat.unref();
    return c;
  }

  get stats(): ClusterStats {
    return {
      node: this.node,
      redisUp: this.up,
      claimed: this.held.size,
      proxiedOut: this.out.size,
      proxiedIn: this.inById.size,
      hopFramesOut: this.framesOut,
      hopFramesIn: this.framesIn,
    };
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.host.log(up ? 'redis-up' : 'redis-down', { node: this.node });
  }

  /** Runs one Redis call, timing it; null when Redis did not answer. */
  private async redis<T>(f: () => Promise<T>): Promise<T | null> {
    const t0 = performance.now();
    try {
      const v = await f();
      this.opts.metrics.redis((performance.now() - t0) / 1000);
      return v;
    } catch {
      this.opts.metrics.redis(null);
      return null;
    }
  }

  // --- the router's actions ------------------------------------------------

  /** Carries out a cluster action of the router. */
  act(a: Extract<Action, { kind: 'claim' | 'locate' | 'release' }>): void {
    if (a.kind === 'claim') void this.claim(a.conn, a.room);
    else if (a.kind === 'locate') void this.locate(a.conn, a.room);
    else void this.release(a.room);
  }

  private async claim(conn: ConnId, room: string): Promise<void> {
    let result: 'ok' | 'taken' | 'unavailable';
    if (this.draining) result = 'unavailable';
    else {
      const r = await this.redis(
        () => this.cmd.eval(CLAIM_LUA, 2, KEY.room(room), KEY.epoch, this.node, PRESENCE_TTL_MS, NODE_PREFIX) as Promise<[number, unknown]>,
      );
      if (r === null) result = 'unavailable';
      else if (r[0] === 1) {
        this.held.set(room, Number(r[1]));
        result = 'ok';
      } else result = 'taken';
    }
    this.host.handle(conn, { kind: 'claimed', conn, room, result });
  }

  private async locate(conn: ConnId, room: string): Promise<void> {
    // One hop only: a socket proxied here is not sent on again.
    if (this.inById.has(conn)) return this.host.handle(conn, { kind: 'located', conn, room, result: 'none' });
    const holder = await this.redis(() => this.cmd.eval(LOCATE_LUA, 1, KEY.room(room), NODE_PREFIX) as Promise<string>);
    // null: Redis did not answer (down, or a command timed out), so nobody can say the room is unknown.
    if (holder === null) return this.host.handle(conn, { kind: 'located', conn, room, result: 'unavailable' });
    if (holder === '' || holder === this.node) return this.host.handle(conn, { kind: 'located', conn, room, result: 'none' });
    const addr = this.host.addrOf(conn);
    if (addr === undefined) return; // the socket went meanwhile
    this.out.set(conn, { node: holder });
    this.publish(holder, HOP.open, this.node, conn, Buffer.from(JSON.stringify({ addr, room })));
    this.host.handle(conn, { kind: 'located', conn, room, result: 'remote' });
  }

  private async release(room: string): Promise<void> {
    const epoch = this.held.get(room);
    if (epoch === undefined) return;
    this.held.delete(room);
    await this.redis(() => this.cmd.eval(RELEASE_LUA, 1, KEY.room(room), `${this.node}:${epoch}`));
  }

  // --- frames from this node's sockets -------------------------------------

  /**
   * A checked frame from one of this node's sockets. Proxied sockets' frames
   * go to their room's node; a join or register that costs a shared token
   * waits for Redis's verdict, and the socket's later frames wait behind it.
   */
  frame(conn: ConnId, parsed: Parsed<ClientMessage>): void {
    const p = this.out.get(conn);
    if (p) return this.forward(conn, p, parsed);
    const q = this.queues.get(conn);
    const needs = parsed.ok ? this.sharedBuckets(parsed.value) : null;
    if (!q && !needs) return this.host.handle(conn, toInput(conn, parsed, undefined));
    const step = needs
      ? async (): Promise<RouterInput | null> => toInput(conn, parsed, await this.admit(conn, needs))
      : (): RouterInput | null => (this.out.has(conn) ? (this.frame(conn, parsed), null) : toInput(conn, parsed, undefined));
    if (q) q.push(step);
    else {
      this.queues.set(conn, [step]);
      void this.drainQueue(conn);
    }
  }

  private async drainQueue(conn: ConnId): Promise<void> {
    const q = this.queues.get(conn)!;
    while (q.length > 0) {
      const input = await q[0]!();
      if (input) this.host.handle(conn, input);
      q.shift();
    }
    this.queues.delete(conn);
  }

  /** The shared buckets a message takes from, in order; null if none. */
  private sharedBuckets(m: ClientMessage): Array<'join' | 'register'> | null {
    if (m.type !== 'join' && m.type !== 'register') return null;
    const p = parseRoom(m.room);
    if (!p.ok) return null; // the router refuses it with bad-room, before any bucket
    const short = p.room.length < UNGUESSABLE_ROOM_LENGTH;
    if (m.type === 'join') return short ? ['join'] : null;
    return short ? ['register', 'join'] : ['register'];
  }

  /** Redis's verdict on the buckets; undefined (the router's own buckets decide) when Redis does not answer. */
  private async admit(conn: ConnId, buckets: Array<'join' | 'register'>): Promise<Admission | undefined> {
    const addr = this.host.addrOf(conn);
    if (addr === undefined || !this.up) return undefined;
    const key = addressKey(addr);
    const l = this.opts.limits;
    const args: Array<string | number> = [];
    for (const b of buckets) {
      if (b === 'join') args.push(l.joinRatePerMin, l.joinBurst, 'join-limited');
      else args.push(l.registerRatePerMin, l.registerBurst, 'register-limited');
    }
    const r = await this.redis(() => this.cmd.eval(BUCKET_LUA, buckets.length, ...buckets.map((b) => KEY.bucket(b, key)), ...args) as Promise<string>);
    return r === 'ok' || r === 'join-limited' || r === 'register-limited' ? r : undefined;
  }

  /**
   * A relay frame of a socket proxied elsewhere, forwarded as bytes, unparsed
   * (the hot path of the controller's node); false when it is not one (then
   * `frame` takes it, parsed).
   */
  forwardRelay(conn: ConnId, raw: Uint8Array): boolean {
    const p = this.out.get(conn);
    if (!p) return false;
    const data = relayDataBytes(raw);
    if (!data) return false;
    this.opts.metrics.hot.frames.forwarded++;
    this.opts.metrics.hot.bytes.forwarded += data.length;
    this.publish(p.node, HOP.relay, this.node, conn, data);
    return true;
  }

  private forward(conn: ConnId, p: Proxied, parsed: Parsed<ClientMessage>): void {
    if (!parsed.ok) return this.publish(p.node, HOP.invalid, this.node, conn, Buffer.from(JSON.stringify({ code: parsed.code, reason: parsed.reason })));
    const m = parsed.value;
    if (m.type === 'relay' && m.session === undefined) {
      this.opts.metrics.hot.frames.forwarded++;
      this.opts.metrics.hot.bytes.forwarded += m.data.length;
      return this.publish(p.node, HOP.relay, this.node, conn, m.data);
    }
    this.publish(p.node, HOP.message, this.node, conn, Buffer.from(JSON.stringify(m)));
  }

  /** One of this node's sockets closed. */
  socketClosed(conn: ConnId): void {
    this.queues.delete(conn);
    const p = this.out.get(conn);
    if (!p) return;
    this.out.delete(conn);
    this.publish(p.node, HOP.close, this.node, conn, Buffer.alloc(0));
  }

  // --- the router's sends to sockets proxied here --------------------------

  /** True if `conn` is a socket of another node, proxied here. */
  isRemote(conn: ConnId): boolean {
    return this.inById.has(conn);
  }

  /** Sends an encoded message to a socket proxied here. */
  sendRemote(conn: ConnId, text: string, relay: boolean): void {
    const r = this.inById.get(conn);
    if (!r) return;
    if (relay) {
      this.opts.metrics.hot.frames.forwarded++;
      this.opts.metrics.hot.bytes.forwarded += text.length;
    }
    this.publishRaw(r.node, r.header, text);
  }

  /** The router closed a socket proxied here. */
  closeRemote(conn: ConnId, code: number, reason: string): void {
    const r = this.inById.get(conn);
    if (!r) return;
    this.forgetRemote(conn);
    this.publish(r.node, HOP.kick, r.node, r.conn, Buffer.from(JSON.stringify({ code, reason })));
  }

  private forgetRemote(conn: ConnId): void {
    const r = this.inById.get(conn);
    if (!r) return;
    this.inById.delete(conn);
    const m = this.inByKey.get(r.node);
    m?.delete(r.conn);
    if (m?.size === 0) this.inByKey.delete(r.node);
  }

  // --- the bus ---------------------------------------------------------------

  /** Publishes one hop frame on `to`'s channel: kind, the controller's node and socket, payload. */
  private publish(to: string, kind: number, node: string, conn: number, payload: Uint8Array | string): void {
    this.publishRaw(to, header(kind, node, conn), payload);
  }

  private publishRaw(to: string, head: Buffer, payload: Uint8Array | string): void {
    if (!this.up) return; // at most once: lost while Redis is away
    const n = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    const buf = Buffer.allocUnsafe(4 + head.length + n);
    buf.writeUInt32BE(head.length + n, 0);
    head.copy(buf, 4);
    if (typeof payload === 'string') buf.write(payload, 4 + head.length);
    else buf.set(payload, 4 + head.length);
    this.framesOut++;
    let b = this.batches.get(to);
    if (!b) {
      b = { frames: [], bytes: 0 };
      this.batches.set(to, b);
      if (this.batches.size === 1) setImmediate(this.flush);
    }
    b.frames.push(buf);
    b.bytes += buf.length;
    if (b.bytes >= HOP_BATCH_BYTES) this.publishBatch(to, b);
  }

  /**
   * The frames one turn of the event loop sends a node (from all the
   * sockets it read) go in one PUBLISH, in order: a Redis command costs both
   * ends far more than the copy.
   */
  private readonly flush = (): void => {
    for (const [to, b] of this.batches) this.publishBatch(to, b);
  };

  private publishBatch(to: string, b: { frames: Buffer[]; bytes: number }): void {
    this.batches.delete(to);
    if (b.frames.length === 0) return;
    const msg = b.frames.length === 1 ? b.frames[0]! : Buffer.concat(b.frames, b.bytes);
    this.cmd.publish(KEY.hop(to), msg).catch(() => this.opts.metrics.redis(null));
  }

  /** A message on this node's channel: hop frames, each after its u32 length. */
  private onHops(msg: Buffer): void {
    let off = 0;
    while (off + 4 <= msg.length) {
      const n = msg.readUInt32BE(off);
      if (off + 4 + n > msg.length) return;
      this.onHop(msg.subarray(off + 4, off + 4 + n));
      off += 4 + n;
    }
  }

  /** The sending node's id in a hop frame; the last one is kept, as a batch comes from one node. */
  private nodeName(msg: Buffer, nl: number): string {
    const last = this.lastNode;
    if (last.length === nl) {
      let i = 0;
      while (i < nl && last.charCodeAt(i) === msg[2 + i]) i++;
      if (i === nl) return last;
    }
    this.lastNode = msg.toString('latin1', 2, 2 + nl);
    return this.lastNode;
  }

  private onHop(msg: Buffer): void {
    if (msg.length < 6) return;
    const kind = msg[0]!;
    const nl = msg[1]!;
    if (msg.length < 6 + nl) return;
    const node = this.nodeName(msg, nl);
    const conn = msg.readUInt32BE(2 + nl);
    const payload = msg.subarray(6 + nl);
    this.framesIn++;
    try {
      this.hop(kind, node, conn, payload, msg.subarray(0, 6 + nl));
    } catch (e) {
      // Our own nodes send these, but a bug must cost one frame, not the node.
      this.host.log('hop-error', { reason: (e as Error).name });
    }
  }

  private hop(kind: number, node: string, conn: number, payload: Buffer, head: Buffer): void {
    if (kind === HOP.send) {
      if (!this.out.has(conn)) return;
      this.host.sendText(conn, payload);
      return;
    }
    if (kind === HOP.kick) {
      if (!this.out.delete(conn)) return;
      const { code, reason } = JSON.parse(payload.toString()) as { code: number; reason: string };
      this.host.closeSocket(conn, code, reason);
      return;
    }
    if (kind === HOP.open) {
      if (this.inByKey.get(node)?.has(conn)) return;
      const { addr, room } = JSON.parse(payload.toString()) as { addr: string; room: string };
      const id = this.host.newConnId();
      // Answers go back under the controller's node and socket, as a send.
      const back = Buffer.from(head);
      back[0] = HOP.send;
      let m = this.inByKey.get(node);
      if (!m) this.inByKey.set(node, (m = new Map()));
      m.set(conn, id);
      this.inById.set(id, { node, conn, header: back });
      this.host.handle(id, { kind: 'open', conn: id, addr, remote: true });
      // Its node took the shared join token already.
      this.host.handle(id, { kind: 'message', conn: id, msg: { type: 'join', v: PROTOCOL_VERSION, room }, admission: 'ok' });
      return;
    }
    const id = this.inByKey.get(node)?.get(conn);
    if (id === undefined) return;
    switch (kind) {
      case HOP.relay:
        return this.host.handle(id, { kind: 'message', conn: id, msg: { type: 'relay', data: payload.toString() } });
      case HOP.message: {
        const parsed = parseClientMessage(payload);
        return this.host.handle(id, toInput(id, parsed, 'ok'));
      }
      case HOP.invalid: {
        const { code, reason } = JSON.parse(payload.toString()) as { code: 'bad-message'; reason: string };
        return this.host.handle(id, { kind: 'invalid', conn: id, code, reason });
      }
      case HOP.close:
        this.forgetRemote(id);
        return this.host.handle(id, { kind: 'close', conn: id, reason: 'remote-closed' });
    }
  }

  // --- heartbeat -------------------------------------------------------------

  private async beat(): Promise<void> {
    if (this.closed) return;
    const ok = await this.redis(() => this.cmd.set(KEY.node(this.node), '1', 'PX', NODE_TTL_MS));
    if (ok === null) return;
    const now = Date.now();
    if (!this.draining && now - this.lastRefresh >= PRESENCE_REFRESH_MS - HEARTBEAT_MS / 2) {
      this.lastRefresh = now;
      await this.refresh();
    }
    await this.checkPeers();
  }

  /** Extends this node's presence entries; puts back lapsed ones; evicts rooms another node holds now. */
  private async refresh(): Promise<void> {
    const rooms = [...this.held];
    for (let i = 0; i < rooms.length; i += REFRESH_CHUNK) {
      const chunk = rooms.slice(i, i + REFRESH_CHUNK);
      const lost = await this.redis(
        () =>
          this.cmd.eval(REFRESH_LUA, chunk.length, ...chunk.map(([r]) => KEY.room(r)), this.node, PRESENCE_TTL_MS, ...chunk.map(([, e]) => e)) as Promise<
            number[]
          >,
      );
      if (lost === null) return;
      for (const idx of lost) {
        const [room, epoch] = chunk[idx - 1]!;
        if (this.held.get(room) !== epoch) continue;
        this.held.delete(room);
        this.host.log('evicted', { reason: 'fenced' });
        this.host.handle(0, { kind: 'evict', room });
      }
    }
  }

  /** Drops the proxied sockets of nodes whose key has expired. */
  private async checkPeers(): Promise<void> {
    const nodes = new Set<string>();
    for (const p of this.out.values()) nodes.add(p.node);
    for (const r of this.inById.values()) nodes.add(r.node);
    if (nodes.size === 0) return;
    const list = [...nodes];
    const alive = await this.redis(() => this.cmd.mget(...list.map(KEY.node)));
    if (alive === null) return;
    const dead = new Set(list.filter((_, i) => alive[i] === null));
    if (dead.size === 0) return;
    this.host.log('node-gone', { nodes: dead.size });
    for (const [conn, p] of [...this.out]) {
      if (!dead.has(p.node)) continue;
      this.out.delete(conn);
      // The controller reconnects and joins afresh, finding the room wherever its device went.
      this.host.closeSocket(conn, 1012, 'the server of this room is gone');
    }
    for (const [id, r] of [...this.inById]) {
      if (!dead.has(r.node)) continue;
      this.forgetRemote(id);
      this.host.handle(id, { kind: 'close', conn: id, reason: 'node-gone' });
    }
  }

  // --- lifecycle -------------------------------------------------------------

  /** Stops claiming and gives up every room in Redis, so their devices can register elsewhere at once. */
  async drain(): Promise<void> {
    this.draining = true;
    await Promise.all([...this.held.keys()].map((r) => this.release(r)));
  }

  /** Leaves the cluster: rooms and node key given up, Redis connections closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    clearInterval(this.heartbeat);
    await this.redis(() => this.cmd.del(KEY.node(this.node)));
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}

/** A hop frame's header: kind, node id (length-prefixed, ASCII), socket id. */
function header(kind: number, node: string, conn: number): Buffer {
  const h = Buffer.allocUnsafe(6 + node.length);
  h[0] = kind;
  h[1] = node.length;
  h.write(node, 2, 'latin1');
  h.writeUInt32BE(conn >>> 0, 2 + node.length);
  return h;
}

function toInput(conn: ConnId, parsed: Parsed<ClientMessage>, admission: Admission | undefined): RouterInput {
  if (!parsed.ok) return { kind: 'invalid', conn, code: parsed.code, reason: parsed.reason };
  return admission === undefined ? { kind: 'message', conn, msg: parsed.value } : { kind: 'message', conn, msg: parsed.value, admission };
}
