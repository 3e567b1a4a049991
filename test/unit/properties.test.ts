// Property-based tests (fast-check) of every parser that reads untrusted input (issue 5):
// signaling messages, JSON-RPC commands, link and sealed relay frames, handshake messages,
// pairing codes, rooms and SDP fingerprints. Each parser (a) never throws, (b) accepts and
// round-trips every valid message, (c) rejects with its stable code where it has one.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeHandshake, type HandshakeErrorCode, type HandshakeMessage, MAX_HANDSHAKE_BYTES, parseHandshake } from '../../crypto/handshake.js';
import { deriveSealKeys, MAX_SEALED_PLAINTEXT_BYTES, Opener, Sealer } from '../../crypto/seal.js';
import {
  CODE_ALPHABET,
  formatPairingCode,
  MAX_ROOM_LENGTH,
  MIN_ROOM_LENGTH,
  PAIRING_CODE_LENGTH,
  parsePairingCode,
  parseRoom,
  ROOM_LENGTH,
} from '../../protocol/code.js';
import { encodeControl, encodeData, type LinkFrame, parseFrame } from '../../protocol/frames.js';
import {
  DEFAULT_BLINK_INTERVAL_MS,
  DEFAULT_BLINK_TIMES,
  MAX_BLINK_INTERVAL_MS,
  MAX_BLINK_TIMES,
  MAX_BY_CHARS,
  MAX_PIN,
  MIN_BLINK_INTERVAL_MS,
  parseIncoming,
  parseRequest,
  RPC_ERROR_NUMBERS,
  type RpcErrorCode,
  type RpcRequest,
} from '../../protocol/rpc.js';
import { parseSdpFingerprint } from '../../protocol/sdp.js';
import {
  type ClientMessage,
  encode,
  HELLO_NONCE_BYTES,
  MAX_CONTROLLERS_LIMIT,
  MAX_JSON_DEPTH,
  MAX_LINK_FRAME_BYTES,
  MAX_ROOM_CHARS,
  MAX_SIGNAL_BYTES,
  PROTOCOL_VERSION,
  parseClientMessage,
  parseJson,
  parseServerMessage,
  parseSignalPayload,
  type ServerMessage,
  type SignalErrorCode,
  type SignalPayload,
} from '../../protocol/signaling.js';

// ---------- settings ----------

/** Runs per property: enough to find shape bugs, few enough that the file runs in a few seconds. */
const RUNS = 200;
/** Runs for properties with expensive inputs (huge strings, crypto). */
const HEAVY_RUNS = 40;

function check<T>(arb: fc.Arbitrary<T>, pred: (v: T) => void, numRuns = RUNS): void {
  fc.assert(
    fc.property(arb, (v) => {
      pred(v);
    }),
    { numRuns },
  );
}

/** Keys an attacker puts in JSON to reach prototypes. */
const POLLUTION_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty'] as const;

function assertPrototypesClean(): void {
  const probe: Record<string, unknown> = {};
  for (const k of ['polluted', 'type', 'jsonrpc', 'hs', 't', 'method', 'id']) {
    assert.equal(probe[k], undefined, `Object.prototype gained ${k}`);
    assert.equal(Object.hasOwn(Object.prototype, k), false);
  }
}

// ---------- hostile inputs ----------

/** A JSON value that mixes prototype-pollution keys into objects. */
const pollutedValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ unit: 'binary', maxLength: 20 })),
    fc.array(tie('v'), { maxLength: 4 }),
    fc
      .array(
        fc.tuple(fc.oneof(fc.constantFrom(...POLLUTION_KEYS, 'type', 'jsonrpc', 'id', 'method', 'params', 'hs', 't'), fc.string({ maxLength: 8 })), tie('v')),
        { maxLength: 5 },
      )
      .map((kvs) => {
        // build as JSON text and parse, as a peer's frame would be, so `__proto__` becomes an own key
        const body = kvs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',');
        return JSON.parse(`{${body}}`) as unknown;
      }),
  ),
})).v;

/** Nesting far past any limit: arrays, objects and mixes, opened and maybe closed. */
const deepJson: fc.Arbitrary<string> = fc
  .record({ depth: fc.integer({ min: MAX_JSON_DEPTH - 2, max: 20_000 }), kind: fc.constantFrom('[', '{"a":', '[{"b":'), close: fc.boolean() })
  .map(({ depth, kind, close }) => {
    const open = kind.repeat(depth);
    if (!close) return open;
    const closer = kind === '[' ? ']' : kind === '{"a":' ? '}' : '}]';
    return `${open}1${closer.repeat(depth)}`;
  });

/** Strings up to several times the largest limit, so every byte limit is crossed. */
const hugeString: fc.Arbitrary<string> = fc
  .tuple(fc.integer({ min: 0, max: 4 * MAX_SIGNAL_BYTES }), fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }))
  .map(([n, s]) => s.repeat(Math.ceil(n / s.length)));

/** Any text a hostile peer could send. */
const hostileText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  fc.string({ unit: 'binary-ascii', maxLength: 300 }),
  fc.json({ maxDepth: 12 }),
  pollutedValue.map((v) => JSON.stringify(v) ?? 'null'),
  deepJson,
  { arbitrary: hugeString, weight: 1 },
);

/** Any frame a WebSocket could deliver: text or raw bytes. */
const hostileFrame: fc.Arbitrary<string | Buffer> = fc.oneof(
  hostileText,
  hostileText.map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 500 }).map((b) => Buffer.from(b)),
);

/** Any JS value at all, for parsers whose argument is `unknown` or that guard their type. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(fc.anything({ maxDepth: 4 }), pollutedValue, hostileText, fc.uint8Array({ maxLength: 50 }));

// ---------- (a) no parser throws ----------

test('issue 5: no parser throws on hostile input (strings, unicode, huge, binary, deep, polluted)', () => {
  const opener = new Opener(new Uint8Array(32).fill(1), 'c2d', 'sid');
  check(
    hostileFrame,
    (f) => {
      const c = parseClientMessage(f);
      if (!c.ok) assert.ok(['bad-message', 'too-large', 'version'].includes(c.code));
      const s = parseServerMessage(f);
      if (!s.ok) assert.ok(['bad-message', 'too-large', 'version'].includes(s.code));
      parseJson(f, MAX_SIGNAL_BYTES);
      parseFrame(f);
      const text = typeof f === 'string' ? f : f.toString('utf8');
      parseHandshake(text);
      const o = opener.open(text);
      assert.equal(o.ok, false);
      parsePairingCode(text);
      parseRoom(text);
      parseSdpFingerprint(text);
      const j = parseJson(f, MAX_LINK_FRAME_BYTES);
      if (j.ok) {
        parseRequest(j.value);
        parseIncoming(j.value);
      }
    },
    HEAVY_RUNS * 3,
  );
  assertPrototypesClean();
});

test('issue 5: parsers that take unknown values, or guard their argument type, never throw on any JS value', () => {
  const opener = new Opener(new Uint8Array(32).fill(1), 'c2d', 'sid');
  check(anyValue, (v) => {
    const r = parseRequest(v);
    if (!r.ok) {
      // the reply is always a well-formed JSON-RPC error with a stable code
      assert.equal(r.reply.jsonrpc, '2.0');
      assert.ok('error' in r.reply && Object.hasOwn(RPC_ERROR_NUMBERS, r.reply.error.data.code));
      assert.equal(r.reply.error.code, RPC_ERROR_NUMBERS[r.reply.error.data.code]);
      JSON.stringify(r.reply);
    }
    parseIncoming(v);
    parseHandshake(v as string);
    assert.equal(opener.open(v as string).ok, false);
    parsePairingCode(v as string);
    parseRoom(v as string);
    parseSdpFingerprint(v as string);
  });
  assertPrototypesClean();
});

// ---------- generators of valid messages ----------

/** fc.record with plain prototypes, so generated messages compare equal to parsed ones. */
const rec = ((model: Record<string, fc.Arbitrary<unknown>>, c?: object) => fc.record(model, { ...c, noNullPrototype: true })) as typeof fc.record;

/** Strings of at most `max` UTF-16 units (what the parsers count), often exactly at the limit. */
const str = (max: number) =>
  fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: Math.min(max, 40) }).filter((s) => s.length <= max),
    fc.string({ unit: 'binary-ascii', minLength: Math.max(0, Math.min(max, 2048) - 2), maxLength: Math.min(max, 2048) }),
  );
const B64_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64 = (max: number) =>
  fc.oneof(
    fc.string({ unit: fc.constantFrom(...B64_CHARS), maxLength: Math.min(max, 40) }),
    fc.string({ unit: fc.constantFrom(...B64_CHARS), minLength: Math.max(0, max - 2), maxLength: max }),
  );

const signalPayload: fc.Arbitrary<SignalPayload> = fc.oneof(
  rec({ kind: fc.constantFrom('offer' as const, 'answer' as const), sdp: fc.oneof(str(2000), fc.string({ unit: 'binary-ascii', maxLength: 3000 })) }),
  rec({
    kind: fc.constant('candidate' as const),
    candidate: str(1024),
    sdpMid: fc.option(str(64), { nil: null }),
    sdpMLineIndex: fc.option(fc.integer({ min: 0, max: 63 }), { nil: null }),
  }),
  rec({ kind: fc.constantFrom('ping' as const, 'pong' as const), n: fc.maxSafeNat() }),
  rec({ kind: fc.constantFrom('end-of-candidates' as const, 'go' as const, 'bye' as const) }),
);

const room = str(MAX_ROOM_CHARS).filter((s) => s.length > 0);
const relayData = fc.oneof(
  str(MAX_LINK_FRAME_BYTES),
  fc.integer({ min: 0, max: MAX_LINK_FRAME_BYTES }).map((n) => 'A'.repeat(n)),
);

/** `n` random bytes as canonical base64url. */
const bytes64url = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b).toString('base64url'));

const clientMessage: fc.Arbitrary<ClientMessage> = fc.oneof(
  rec({ type: fc.constantFrom('register' as const, 'join' as const), v: fc.constant(PROTOCOL_VERSION), room }),
  rec({ type: fc.constant('register' as const), v: fc.constant(PROTOCOL_VERSION), room, proof: rec({ key: bytes64url(32), sig: bytes64url(64) }) }),
  rec({
    type: fc.constant('register' as const),
    v: fc.constant(PROTOCOL_VERSION),
    room,
    proof: rec({ key: bytes64url(32), sig: bytes64url(64) }),
    maxControllers: fc.integer({ min: 1, max: MAX_CONTROLLERS_LIMIT }),
  }),
  rec({ type: fc.constant('relay' as const), data: relayData }),
  rec({ type: fc.constant('relay' as const), data: relayData, session: str(64).filter((x) => x.length > 0) }),
  rec({ type: fc.constant('admit' as const), session: str(64).filter((x) => x.length > 0) }),
);

const SIGNAL_ERROR_CODES: SignalErrorCode[] = [
  'bad-message',
  'too-large',
  'version',
  'bad-room',
  'room-taken',
  'unknown-room',
  'join-limited',
  'room-full',
  'device-busy',
  'no-peer',
  'not-joined',
  'already-joined',
  'expired',
  'rate-limited',
  'bad-proof',
  'register-limited',
  'too-many-rooms',
  'not-admitted',
];
const port = fc.integer({ min: 0, max: 65535 });
const session = str(64);

const serverMessage: fc.Arbitrary<ServerMessage> = fc.oneof(
  rec({ type: fc.constant('registered' as const), room: str(MAX_ROOM_CHARS), ttlMs: fc.maxSafeNat(), stunPort: port }),
  rec({ type: fc.constant('joined' as const), session, waiting: fc.boolean(), stunPort: port }),
  rec({ type: fc.constantFrom('peer' as const, 'peer-left' as const), session }),
  rec({ type: fc.constant('relay' as const), data: relayData }),
  rec({ type: fc.constant('relay' as const), data: relayData, session: str(64).filter((x) => x.length > 0) }),
  rec({ type: fc.constant('hello' as const), v: fc.integer({ min: 1, max: 1000 }), nonce: bytes64url(HELLO_NONCE_BYTES) }),
  rec({ type: fc.constant('error' as const), code: fc.constantFrom(...SIGNAL_ERROR_CODES), message: str(1024) }),
);

const pin = fc.integer({ min: 0, max: MAX_PIN });
const level = fc.constantFrom(0 as const, 1 as const);
const rpcId = fc.oneof(
  fc.maxSafeNat(),
  str(64),
  fc.tuple(b64(8), fc.nat()).map(([inst, n]) => `${inst}:${n}`),
);

const rpcRequest: fc.Arbitrary<RpcRequest> = fc.oneof(
  rec({ jsonrpc: fc.constant('2.0' as const), id: rpcId, method: fc.constant('gpio.write' as const), params: rec({ pin, value: level }) }),
  rec({
    jsonrpc: fc.constant('2.0' as const),
    id: rpcId,
    method: fc.constantFrom('gpio.read' as const, 'gpio.watch' as const, 'gpio.unwatch' as const),
    params: rec({ pin }),
  }),
  rec({
    jsonrpc: fc.constant('2.0' as const),
    id: rpcId,
    method: fc.constant('gpio.mode' as const),
    params: rec({ pin, mode: fc.constantFrom('in' as const, 'out' as const) }),
  }),
  rec({
    jsonrpc: fc.constant('2.0' as const),
    id: rpcId,
    method: fc.constant('gpio.blink' as const),
    params: rec({
      pin,
      times: fc.integer({ min: 1, max: MAX_BLINK_TIMES }),
      intervalMs: fc.integer({ min: MIN_BLINK_INTERVAL_MS, max: MAX_BLINK_INTERVAL_MS }),
    }),
  }),
  rec({ jsonrpc: fc.constant('2.0' as const), id: rpcId, method: fc.constant('device.info' as const), params: fc.constant({} as Record<string, never>) }),
);

const RPC_CODES = Object.keys(RPC_ERROR_NUMBERS) as RpcErrorCode[];
const smallJson = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown); // normalises -0

const rpcIncoming = fc.oneof(
  rec({ jsonrpc: fc.constant('2.0'), id: rpcId, result: smallJson }),
  fc.constantFrom(...RPC_CODES).chain((code) =>
    rec({
      jsonrpc: fc.constant('2.0'),
      id: rpcId,
      error: rec({ code: fc.constant(RPC_ERROR_NUMBERS[code]), message: str(500), data: fc.constant({ code }) }),
    }),
  ),
  rec({
    jsonrpc: fc.constant('2.0'),
    method: fc.constant('gpio.change'),
    params: rec({
      pin,
      value: level,
      edge: fc.constantFrom('rising', 'falling'),
      ts: fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)),
      by: fc.string({ minLength: 1, maxLength: MAX_BY_CHARS }),
    }),
  }),
);

const HS_CODES: HandshakeErrorCode[] = ['wrong-code', 'code-spent', 'not-paired', 'device-changed', 'bad-handshake', 'fingerprint-mismatch'];
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const dropUndefined = <T extends object>(o: T): T => JSON.parse(JSON.stringify(o)) as T;

const handshakeMessage: fc.Arbitrary<HandshakeMessage> = fc
  .oneof(
    rec({ hs: fc.constant('c1' as const), v: fc.integer(), e: b64(64), pake: opt(b64(2048)) }),
    rec({ hs: fc.constant('d1' as const), e: b64(64), pake: opt(b64(2048)), conf: opt(b64(128)), box: b64(2048) }),
    rec({ hs: fc.constant('c2' as const), conf: opt(b64(128)), box: b64(2048) }),
    rec({ hs: fc.constant('fail' as const), code: fc.constantFrom(...HS_CODES) }),
  )
  .map(dropUndefined);

const seq = fc.maxSafeNat();
const linkFrame: fc.Arbitrary<LinkFrame> = fc.oneof(
  rec({
    t: fc.constant('d' as const),
    q: seq.filter((q) => q > 0),
    a: seq,
    m: fc.jsonValue({ maxDepth: MAX_JSON_DEPTH - 1 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown),
  }),
  rec({ t: fc.constant('a' as const), a: seq }),
  rec({ t: fc.constantFrom('p' as const, 'P' as const), n: seq }),
);

// ---------- (b) valid messages are accepted and round-trip ----------

test('issue 5: every valid client message parses back to itself, as text and as bytes', () => {
  check(clientMessage, (m) => {
    const text = encode(m);
    assert.deepEqual(parseClientMessage(text), { ok: true, value: m });
    assert.deepEqual(parseClientMessage(Buffer.from(text)), { ok: true, value: m });
  });
});

test('issue 5: every valid server message parses back to itself, as text and as bytes', () => {
  check(serverMessage, (m) => {
    const text = encode(m);
    assert.deepEqual(parseServerMessage(text), { ok: true, value: m });
    assert.deepEqual(parseServerMessage(Buffer.from(text)), { ok: true, value: m });
  });
});

test('issue 5: every valid WebRTC set-up payload survives JSON and parseSignalPayload unchanged', () => {
  check(signalPayload, (p) => {
    const norm = p.kind === 'candidate' ? { ...p, sdpMid: p.sdpMid ?? null, sdpMLineIndex: p.sdpMLineIndex ?? null } : p;
    assert.deepEqual(parseSignalPayload(JSON.parse(JSON.stringify(p))), norm);
  });
});

test('issue 5: every valid JSON-RPC request survives JSON and parseRequest unchanged', () => {
  check(rpcRequest, (req) => {
    const j = parseJson(JSON.stringify(req), MAX_LINK_FRAME_BYTES);
    assert.ok(j.ok);
    assert.deepEqual(parseRequest(j.value), { ok: true, req });
  });
});

test('issue 5: every valid response and change notification survives JSON and parseIncoming', () => {
  check(rpcIncoming, (m) => {
    const j = parseJson(JSON.stringify(m), MAX_LINK_FRAME_BYTES);
    fc.pre(j.ok); // a deep `result` may exceed MAX_JSON_DEPTH: that is parseJson's business, tested below
    const got = parseIncoming(j.value);
    if ('method' in m) assert.deepEqual(got, { kind: 'change', change: m.params });
    else if ('error' in m) assert.deepEqual(got, { kind: 'response', id: m.id, error: m.error });
    else assert.deepEqual(got, { kind: 'response', id: m.id, result: m.result });
  });
});

test('issue 5: every valid link frame round-trips through encodeData / encodeControl and parseFrame', () => {
  check(linkFrame, (f) => {
    const text = f.t === 'd' ? encodeData(f.q, f.a, JSON.stringify(f.m)) : encodeControl(f);
    fc.pre(Buffer.byteLength(text) <= MAX_LINK_FRAME_BYTES);
    assert.deepEqual(parseFrame(text), f);
    assert.deepEqual(parseFrame(Buffer.from(text)), f);
  });
});

test('issue 5: every valid handshake message round-trips through encodeHandshake and parseHandshake', () => {
  check(handshakeMessage, (m) => {
    const text = encodeHandshake(m);
    fc.pre(text.length <= MAX_HANDSHAKE_BYTES);
    assert.deepEqual(parseHandshake(text), m);
  });
});

test('issue 5: Sealer.seal -> Opener.open gives back every plaintext, counters in order', () => {
  const plaintexts = fc.array(
    fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.integer({ min: MAX_SEALED_PLAINTEXT_BYTES - 2, max: MAX_SEALED_PLAINTEXT_BYTES }).map((n) => new Uint8Array(n).fill(0xa5)),
    ),
    { minLength: 1, maxLength: 6 },
  );
  check(
    fc.tuple(
      fc.uint8Array({ minLength: 32, maxLength: 64 }),
      b64(40).filter((s) => s.length > 0),
      plaintexts,
    ),
    ([secret, sid, pts]) => {
      const keys = deriveSealKeys(secret, sid);
      const sealer = new Sealer(keys.d2c, 'd2c', sid);
      const opener = new Opener(keys.d2c, 'd2c', sid);
      pts.forEach((pt, i) => {
        const r = opener.open(sealer.seal(pt));
        assert.ok(r.ok);
        assert.equal(r.counter, BigInt(i));
        assert.deepEqual(Buffer.from(r.plaintext), Buffer.from(typeof pt === 'string' ? Buffer.from(pt, 'utf8') : pt));
      });
    },
    HEAVY_RUNS,
  );
});

const codeSymbols = (min: number, max: number) => fc.array(fc.constantFrom(...CODE_ALPHABET), { minLength: min, maxLength: max });
const typedLike = (symbols: string[]) =>
  fc
    .tuple(
      fc.array(fc.boolean(), { minLength: symbols.length, maxLength: symbols.length }),
      fc.array(fc.constantFrom('', '', '', '-', ' ', '--', '\t'), { minLength: symbols.length + 1, maxLength: symbols.length + 1 }),
    )
    .map(([lower, seps]) => seps[0] + symbols.map((s, i) => (lower[i] ? s.toLowerCase() : s) + seps[i + 1]).join(''));

test('issue 5: every pairing code, typed in any case with any dashes or spaces, parses to its room and secret and re-formats stably', () => {
  check(
    codeSymbols(PAIRING_CODE_LENGTH, PAIRING_CODE_LENGTH).chain((syms) => typedLike(syms).map((typed) => ({ syms, typed }))),
    ({ syms, typed }) => {
      const code = syms.join('');
      const r = parsePairingCode(typed);
      assert.deepEqual(r, { ok: true, room: code.slice(0, ROOM_LENGTH), secret: code.slice(ROOM_LENGTH) });
      assert.ok(r.ok);
      assert.deepEqual(parsePairingCode(formatPairingCode(r)), r);
    },
  );
});

test('issue 5: every room of [A-Z0-9], typed in any case with dashes, parses to its upper-case form', () => {
  const sym = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'];
  check(
    fc
      .array(fc.constantFrom(...sym), { minLength: MIN_ROOM_LENGTH, maxLength: MAX_ROOM_LENGTH })
      .chain((syms) => typedLike(syms).map((typed) => ({ syms, typed }))),
    ({ syms, typed }) => {
      assert.deepEqual(parseRoom(typed), { ok: true, room: syms.join('') });
    },
  );
});

const hexPair = fc.integer({ min: 0, max: 255 }).map((b) => b.toString(16).padStart(2, '0'));
const fingerprint = fc.array(hexPair, { minLength: 32, maxLength: 32 }).map((p) => p.join(':'));
const sdpLine = fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).filter((l) => !/^a=fingerprint:/i.test(l));
const eol = fc.constantFrom('\r\n', '\n', '\r');

test('issue 5: an SDP announcing one SHA-256 fingerprint (any case, any line ends, repeated) yields it in upper case', () => {
  check(
    rec({
      fp: fingerprint,
      before: fc.array(sdpLine, { maxLength: 6 }),
      after: fc.array(sdpLine, { maxLength: 6 }),
      eol,
      repeat: fc.boolean(),
      upper: fc.boolean(),
      algo: fc.constantFrom('sha-256', 'SHA-256'),
    }),
    ({ fp, before, after, eol: nl, repeat, upper, algo }) => {
      const line = `a=fingerprint:${algo} ${upper ? fp.toUpperCase() : fp}`;
      const sdp = [...before, line, ...after, ...(repeat ? [line.toLowerCase()] : [])].join(nl);
      assert.equal(parseSdpFingerprint(sdp), fp.toUpperCase());
    },
  );
});

test('issue 5: an SDP with two different SHA-256 fingerprints, or any other hash, yields none', () => {
  check(
    rec({ a: fingerprint, b: fingerprint, other: fc.constantFrom('sha-512', 'sha-1', 'sha-384'), lines: fc.array(sdpLine, { maxLength: 4 }), eol }),
    ({ a, b, other, lines, eol: nl }) => {
      if (a !== b) assert.equal(parseSdpFingerprint([`a=fingerprint:sha-256 ${a}`, ...lines, `a=fingerprint:sha-256 ${b}`].join(nl)), undefined);
      assert.equal(parseSdpFingerprint([`a=fingerprint:sha-256 ${a}`, ...lines, `a=fingerprint:${other} ${b}`].join(nl)), undefined);
    },
  );
});

/** A valid message of any kind, as a plain JSON object. */
const anyValidMessage: fc.Arbitrary<Record<string, unknown>> = fc
  .oneof(clientMessage, serverMessage, rpcRequest, rpcIncoming, handshakeMessage, linkFrame)
  .map((m) => JSON.parse(JSON.stringify(m)) as Record<string, unknown>);

/** Replaces, deletes or adds one field, at the top or one level down, with any JSON value. */
const nearValid: fc.Arbitrary<string> = fc
  .record({
    m: anyValidMessage,
    pick: fc.nat(),
    deep: fc.boolean(),
    op: fc.constantFrom('replace', 'delete', 'add'),
    key: fc.oneof(fc.constantFrom(...POLLUTION_KEYS), fc.string({ maxLength: 6 })),
    value: fc.oneof(pollutedValue, fc.jsonValue({ maxDepth: 3 }), fc.constant({ toString: null })),
  })
  .map(({ m, pick, deep, op, key, value }) => {
    let target: Record<string, unknown> = m;
    const nested = Object.values(m).filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v));
    if (deep && nested.length > 0) target = nested[pick % nested.length]!;
    const keys = Object.keys(target);
    const k = op === 'add' || keys.length === 0 ? key : keys[pick % keys.length]!;
    if (op === 'delete') delete target[k];
    else if (k === '__proto__') Object.defineProperty(target, k, { value, enumerable: true, configurable: true, writable: true });
    else target[k] = value;
    return JSON.stringify(m);
  });

test('issue 5: no parser throws on near-valid messages (one field replaced, removed or added)', () => {
  const opener = new Opener(new Uint8Array(32).fill(1), 'c2d', 'sid');
  check(
    nearValid,
    (text) => {
      for (const r of [parseClientMessage(text), parseServerMessage(text)]) if (!r.ok) assert.ok(['bad-message', 'too-large', 'version'].includes(r.code));
      parseFrame(text);
      parseHandshake(text);
      assert.equal(opener.open(text).ok, false);
      const j = parseJson(text, MAX_LINK_FRAME_BYTES);
      if (j.ok) {
        const r = parseRequest(j.value);
        if (!r.ok) JSON.stringify(r.reply);
        parseIncoming(j.value);
      }
    },
    RUNS * 2,
  );
  assertPrototypesClean();
});

// ---------- (c) rejections carry the right stable code ----------

test('issue 5: anything over the byte limit is too-large, whatever it holds', () => {
  check(
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }), fc.boolean()),
    ([times, unit, asBuffer]) => {
      const over = unit.repeat(Math.ceil((MAX_SIGNAL_BYTES * times + 1) / Buffer.byteLength(unit)));
      const f = asBuffer ? Buffer.from(over) : over;
      assert.ok(Buffer.byteLength(over) > MAX_SIGNAL_BYTES);
      for (const r of [parseClientMessage(f), parseServerMessage(f), parseJson(f, MAX_SIGNAL_BYTES)]) assert.equal(r.ok ? 'ok' : r.code, 'too-large');
      assert.equal(parseFrame(f), undefined);
    },
    HEAVY_RUNS,
  );
  // a valid relay message just over the limit by its bytes (multi-byte characters), not its length in chars
  const wide = encode({ type: 'relay', data: 'é'.repeat(MAX_LINK_FRAME_BYTES) });
  assert.equal(parseFrame(wide), undefined);
});

function depthOf(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  const kids = Array.isArray(v) ? v : Object.values(v);
  return 1 + kids.reduce<number>((m, k) => Math.max(m, depthOf(k)), 0);
}

/** A JSON value of exactly depth `d` (scalars 0, a container 1 + its deepest child), with scalar siblings. */
const primitive = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.string({ unit: 'binary', maxLength: 6 }));
function valueOfDepth(d: number): fc.Arbitrary<unknown> {
  if (d === 0) return primitive;
  return fc
    .tuple(
      valueOfDepth(d - 1),
      fc.array(primitive, { maxLength: 3 }),
      fc.nat(),
      fc.boolean(),
      fc.array(fc.string({ maxLength: 5 }), { minLength: 4, maxLength: 4 }),
    )
    .map(([child, sibs, at, asArray, keys]) => {
      const items: unknown[] = [...sibs];
      items.splice(at % (sibs.length + 1), 0, child);
      if (asArray) return items;
      const o: Record<string, unknown> = {};
      items.forEach((v, i) => (o[`${keys[i % 4]}${i}`] = v));
      return o;
    });
}

test('issue 5: parseJson accepts JSON exactly as deep as MAX_JSON_DEPTH and rejects deeper with bad-message', () => {
  check(
    fc.integer({ min: 0, max: MAX_JSON_DEPTH + 3 }).chain((d) => valueOfDepth(d).map((v) => ({ d, v }))),
    ({ d, v }) => {
      const text = JSON.stringify(v);
      const r = parseJson(text, MAX_SIGNAL_BYTES);
      if (d <= MAX_JSON_DEPTH) {
        assert.ok(r.ok, `depth ${d} refused`);
        assert.deepEqual(r.value, JSON.parse(text));
      } else {
        assert.equal(r.ok ? 'ok' : r.code, 'bad-message', `depth ${d} accepted`);
      }
    },
  );
  check(fc.jsonValue({ maxDepth: MAX_JSON_DEPTH + 4 }), (v) => {
    const r = parseJson(JSON.stringify(v), MAX_SIGNAL_BYTES * 16);
    assert.equal(r.ok, depthOf(v) <= MAX_JSON_DEPTH);
  });
});

test('issue 5: nesting past MAX_JSON_DEPTH is bad-message for every signaling parser, even inside valid JSON', () => {
  check(
    rec({
      depth: fc.oneof(fc.integer({ min: MAX_JSON_DEPTH - 1, max: MAX_JSON_DEPTH + 2 }), fc.integer({ min: MAX_JSON_DEPTH + 1, max: 20_000 })),
      kind: fc.constantFrom('[', '{"a":'),
      wrapped: fc.boolean(),
      closed: fc.boolean(),
    }),
    ({ depth, kind, wrapped, closed }) => {
      const inner = kind.repeat(depth) + (closed ? `1${(kind === '[' ? ']' : '}').repeat(depth)}` : '');
      // wrapped: hide the nesting inside an otherwise valid relay message (one level more)
      const text = wrapped ? `{"type":"relay","data":"x","extra":${inner}${closed ? '}' : ''}` : inner;
      fc.pre(Buffer.byteLength(text) <= MAX_SIGNAL_BYTES);
      const total = depth + (wrapped ? 1 : 0);
      const results = [parseClientMessage(text), parseServerMessage(text), parseJson(text, MAX_SIGNAL_BYTES)];
      if (total > MAX_JSON_DEPTH || !closed) {
        for (const r of results) assert.equal(r.ok ? 'ok' : r.code, 'bad-message');
        assert.equal(parseFrame(text), undefined);
      } else {
        assert.equal(results[2]!.ok, true, `depth ${total} refused`);
        if (wrapped) assert.deepEqual(results[0], { ok: true, value: { type: 'relay', data: 'x' } });
      }
    },
  );
});

test('issue 5: a register or join with any other protocol version is refused with version', () => {
  check(rec({ type: fc.constantFrom('register', 'join'), v: fc.jsonValue({ maxDepth: 2 }).filter((v) => v !== PROTOCOL_VERSION), room: str(20) }), (m) => {
    const r = parseClientMessage(JSON.stringify(m));
    assert.equal(r.ok ? 'ok' : r.code, 'version');
  });
});

test('issue 5: a register whose v has no usable toString is refused with version, not thrown', () => {
  for (const v of [{ toString: null }, { toString: 1, valueOf: 2 }, [{ toString: null }]]) {
    const text = JSON.stringify({ type: 'register', v, room: 'ABCD' });
    let r: ReturnType<typeof parseClientMessage> | undefined;
    assert.doesNotThrow(() => (r = parseClientMessage(text)));
    assert.equal(r && !r.ok ? r.code : 'ok', 'version');
  }
});

test('issue 5: prototype-pollution keys never change what a valid message means nor reach Object.prototype', () => {
  const extra = fc.array(fc.tuple(fc.constantFrom(...POLLUTION_KEYS), pollutedValue), { minLength: 1, maxLength: 3 });
  const withExtra = (base: object, kvs: [string, unknown][]) => {
    const inner = JSON.stringify(base).slice(1, -1);
    const more = kvs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',');
    return `{${more}${inner ? ',' : ''}${inner}}`;
  };
  check(fc.tuple(clientMessage, extra), ([m, kvs]) => {
    const text = withExtra(m, kvs);
    fc.pre(Buffer.byteLength(text) <= MAX_SIGNAL_BYTES);
    const r = parseClientMessage(text);
    if (r.ok) {
      assert.deepEqual(r.value, m);
      assert.equal(Object.getPrototypeOf(r.value), Object.prototype);
    } else assert.equal(r.code, 'bad-message'); // a polluted payload may push it over the depth limit
  });
  check(fc.tuple(rpcRequest, extra), ([req, kvs]) => {
    const j = parseJson(withExtra(req, kvs), MAX_LINK_FRAME_BYTES);
    fc.pre(j.ok);
    assert.deepEqual(parseRequest(j.value), { ok: true, req });
  });
  check(fc.tuple(handshakeMessage, extra), ([m, kvs]) => {
    const text = withExtra(m, kvs);
    fc.pre(text.length <= MAX_HANDSHAKE_BYTES);
    assert.deepEqual(parseHandshake(text), m);
  });
  // a message that exists only on a polluted prototype is not a message
  for (const body of [
    '{"type":"register","v":1,"room":"ABCD"}',
    '{"jsonrpc":"2.0","id":1,"method":"gpio.read","params":{"pin":1}}',
    '{"hs":"fail","code":"wrong-code"}',
    '{"t":"a","a":1}',
  ]) {
    const text = `{"__proto__":${body}}`;
    assert.equal(parseClientMessage(text).ok, false);
    assert.equal(parseServerMessage(text).ok, false);
    assert.equal(parseHandshake(text), undefined);
    assert.equal(parseFrame(text), undefined);
    assert.equal(parseRequest(JSON.parse(text)).ok, false);
  }
  assertPrototypesClean();
});

// ---------- (c) one field just out of range: rejected, with the stable code where there is one ----------

/** One field of a valid message set just outside what the parser allows. */
interface Breakage {
  /** The valid message, as a plain object. */
  base: Record<string, unknown>;
  /** Path of the field to set (one or two keys). */
  path: string[];
  /** The out-of-range value (undefined: delete the field). */
  value: unknown;
}

/** Breaks `path` of messages from `base` with values from `value`. */
function brk(base: fc.Arbitrary<object>, path: string[], value: fc.Arbitrary<unknown>): fc.Arbitrary<Breakage> {
  return fc.tuple(base, value).map(([b, v]) => ({ base: b as Record<string, unknown>, path, value: v }));
}

function broken({ base, path, value }: Breakage): Record<string, unknown> {
  const m = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  let target = m;
  for (const k of path.slice(0, -1)) target = target[k] as Record<string, unknown>;
  const last = path[path.length - 1]!;
  if (value === undefined) delete target[last];
  else target[last] = value;
  return m;
}

const badSeq = fc.constantFrom(-1, 1.5, 2 ** 53, '1', null, true, [], {});
const badPin = fc.constantFrom(-1, MAX_PIN + 1, 1.5, '1', null, 2 ** 53, [1]);
const overLen = (max: number, chars = 'A') => fc.integer({ min: max + 1, max: max + 3 }).map((n) => chars.repeat(n));

test('issue 5: a link frame with one field out of range is refused', () => {
  const frameBreaks: fc.Arbitrary<Breakage> = fc.oneof(
    brk(
      linkFrame.filter((f) => f.t === 'd'),
      ['q'],
      fc.oneof(badSeq, fc.constant(0)),
    ),
    brk(
      linkFrame.filter((f) => f.t === 'd' || f.t === 'a'),
      ['a'],
      fc.oneof(badSeq, fc.constant(undefined)),
    ),
    brk(
      linkFrame.filter((f) => f.t === 'd'),
      ['m'],
      fc.constant(undefined),
    ),
    brk(
      linkFrame.filter((f) => f.t === 'p' || f.t === 'P'),
      ['n'],
      fc.oneof(badSeq, fc.constant(undefined)),
    ),
    brk(linkFrame, ['t'], fc.constantFrom('D', 'x', '', 1, null, undefined)),
  );
  check(frameBreaks, (b) => {
    assert.equal(parseFrame(JSON.stringify(broken(b))), undefined);
  });
});

test('issue 5: a handshake message with one field over its limit or off its alphabet is refused', () => {
  const hsBreaks: fc.Arbitrary<Breakage> = fc.oneof(
    brk(
      handshakeMessage.filter((m) => m.hs === 'c1' || m.hs === 'd1'),
      ['e'],
      fc.oneof(overLen(64), fc.constantFrom('a+b', 'a=', 'é', 1, null, undefined)),
    ),
    brk(
      handshakeMessage.filter((m) => m.hs === 'c1' || m.hs === 'd1'),
      ['pake'],
      fc.oneof(overLen(2048), fc.constantFrom('a/b', 1, null)),
    ),
    brk(
      handshakeMessage.filter((m) => m.hs === 'd1' || m.hs === 'c2'),
      ['conf'],
      fc.oneof(overLen(128), fc.constantFrom('a b', 1, null)),
    ),
    brk(
      handshakeMessage.filter((m) => m.hs === 'd1' || m.hs === 'c2'),
      ['box'],
      fc.oneof(overLen(2048), fc.constantFrom('a.b', 1, null, undefined)),
    ),
    brk(
      handshakeMessage.filter((m) => m.hs === 'c1'),
      ['v'],
      fc.constantFrom(1.5, '1', null, undefined),
    ),
    brk(
      handshakeMessage.filter((m) => m.hs === 'fail'),
      ['code'],
      fc.constantFrom('timeout', '', 1, null, undefined),
    ),
    brk(handshakeMessage, ['hs'], fc.constantFrom('c3', 'C1', '', 1, null, undefined)),
  );
  check(hsBreaks, (b) => {
    const text = JSON.stringify(broken(b));
    fc.pre(text.length <= MAX_HANDSHAKE_BYTES);
    assert.equal(parseHandshake(text), undefined);
  });
});

test('issue 5: a signaling message with one field out of range is refused with bad-message', () => {
  const sig = (type: string) => (m: { type: string }) => m.type === type;
  const cand = (p: SignalPayload) => p.kind === 'candidate';
  const ping = (p: SignalPayload) => p.kind === 'ping' || p.kind === 'pong';
  const withProof = (m: ClientMessage) => m.type === 'register' && m.proof !== undefined;
  const clientBreaks: fc.Arbitrary<Breakage> = fc.oneof(
    brk(
      clientMessage.filter((m) => m.type === 'register' || m.type === 'join'),
      ['room'],
      fc.oneof(overLen(MAX_ROOM_CHARS), fc.constantFrom('', 1, null, undefined)),
    ),
    brk(clientMessage.filter(sig('relay')), ['data'], fc.oneof(overLen(MAX_LINK_FRAME_BYTES), fc.constantFrom(1, null, undefined))),
    brk(
      clientMessage.filter(withProof),
      ['proof', 'key'],
      fc.oneof(overLen(43), fc.constantFrom('', 'A'.repeat(42), 'A'.repeat(42) + 'B', 1, null, undefined)),
    ),
    brk(
      clientMessage.filter(withProof),
      ['proof', 'sig'],
      fc.oneof(overLen(86), fc.constantFrom('', 'A'.repeat(85), 'A'.repeat(85) + 'B', 1, null, undefined)),
    ),
    brk(clientMessage.filter(withProof), ['proof'], fc.constantFrom(1, 'x', null, [])),
    brk(clientMessage.filter(sig('admit')), ['session'], fc.oneof(overLen(64), fc.constantFrom('', 1, null, undefined))),
    brk(clientMessage.filter(sig('relay')), ['session'], fc.oneof(overLen(64), fc.constantFrom('', 1, null))),
    brk(
      clientMessage.filter((m) => m.type === 'register'),
      ['maxControllers'],
      fc.constantFrom(0, -1, 1.5, MAX_CONTROLLERS_LIMIT + 1, '8', null),
    ),
    brk(clientMessage, ['type'], fc.constantFrom('registered', 'Register', 'signal', '', 1, null, undefined)),
  );
  check(clientBreaks, (b) => {
    const text = JSON.stringify(broken(b));
    fc.pre(Buffer.byteLength(text) <= MAX_SIGNAL_BYTES);
    const r = parseClientMessage(text);
    assert.equal(r.ok ? 'ok' : r.code, 'bad-message');
  });
  const payloadBreaks: fc.Arbitrary<Breakage> = fc.oneof(
    brk(signalPayload.filter(cand), ['candidate'], fc.oneof(overLen(1024), fc.constantFrom(1, null, undefined))),
    brk(signalPayload.filter(cand), ['sdpMid'], fc.oneof(overLen(64), fc.constantFrom(1, false))),
    brk(signalPayload.filter(cand), ['sdpMLineIndex'], fc.constantFrom(-1, 64, 1.5, '1')),
    brk(signalPayload.filter(ping), ['n'], fc.oneof(badSeq, fc.constant(undefined))),
    brk(signalPayload, ['kind'], fc.constantFrom('OFFER', 'hello', '', 1, null, undefined)),
  );
  check(payloadBreaks, (b) => assert.equal(typeof parseSignalPayload(broken(b)), 'string'));
  const serverBreaks: fc.Arbitrary<Breakage> = fc.oneof(
    brk(
      serverMessage.filter((m) => m.type === 'registered' || m.type === 'joined'),
      ['stunPort'],
      fc.constantFrom(-1, 65536, 1.5, '80', null, undefined),
    ),
    brk(
      serverMessage.filter((m) => m.type === 'joined' || m.type === 'peer' || m.type === 'peer-left'),
      ['session'],
      fc.oneof(overLen(64), fc.constantFrom(1, null, undefined)),
    ),
    brk(serverMessage.filter(sig('registered')), ['ttlMs'], fc.constantFrom('1', null, undefined)),
    brk(serverMessage.filter(sig('joined')), ['waiting'], fc.constantFrom(0, 'true', null, undefined)),
    brk(serverMessage.filter(sig('error')), ['code'], fc.constantFrom('nope', 'BAD-MESSAGE', '', 1, null, undefined)),
    brk(serverMessage.filter(sig('error')), ['message'], fc.oneof(overLen(1024), fc.constantFrom(1, null, undefined))),
    brk(serverMessage.filter(sig('hello')), ['nonce'], fc.oneof(overLen(43), fc.constantFrom('', 'A'.repeat(42), 'A'.repeat(42) + 'B', 1, null, undefined))),
    brk(serverMessage.filter(sig('hello')), ['v'], fc.constantFrom(0, -1, 1.5, '2', null, undefined)),
    brk(serverMessage, ['type'], fc.constantFrom('register', 'Error', '', 1, null, undefined)),
  );
  check(serverBreaks, (b) => {
    const text = JSON.stringify(broken(b));
    fc.pre(Buffer.byteLength(text) <= MAX_SIGNAL_BYTES);
    const r = parseServerMessage(text);
    assert.equal(r.ok ? 'ok' : r.code, 'bad-message');
  });
});

test('issue 5: a JSON-RPC request with one field out of range gets the right stable error code, echoing a valid id', () => {
  const method =
    (...ms: string[]) =>
    (r: RpcRequest) =>
      ms.includes(r.method);
  const cases: fc.Arbitrary<{ b: Breakage; code: RpcErrorCode }> = fc.oneof(
    brk(rpcRequest, ['id'], fc.oneof(overLen(64), fc.constantFrom(-1, 1.5, 2 ** 53, null, true, [], {}, undefined))).map((b) => ({
      b,
      code: 'invalid-request' as const,
    })),
    brk(rpcRequest, ['jsonrpc'], fc.constantFrom('2', '1.0', 2, null, undefined)).map((b) => ({ b, code: 'invalid-request' as const })),
    brk(rpcRequest, ['method'], fc.constantFrom('gpio.explode', 'GPIO.WRITE', '', 'constructor', '__proto__', 1, null, undefined)).map((b) => ({
      b,
      code: 'method-not-found' as const,
    })),
    brk(
      rpcRequest.filter((r) => r.method !== 'device.info'),
      ['params'],
      fc.constantFrom(1, 'x', [], null),
    ).map((b) => ({ b, code: 'invalid-params' as const })),
    brk(
      rpcRequest.filter((r) => r.method !== 'device.info'),
      ['params', 'pin'],
      fc.oneof(badPin, fc.constant(undefined)),
    ).map((b) => ({ b, code: 'invalid-params' as const })),
    brk(rpcRequest.filter(method('gpio.write')), ['params', 'value'], fc.constantFrom(2, -1, '1', true, null, undefined)).map((b) => ({
      b,
      code: 'invalid-params' as const,
    })),
    brk(rpcRequest.filter(method('gpio.mode')), ['params', 'mode'], fc.constantFrom('IN', 'output', '', 1, null, undefined)).map((b) => ({
      b,
      code: 'invalid-params' as const,
    })),
    brk(rpcRequest.filter(method('gpio.blink')), ['params', 'times'], fc.constantFrom(0, -1, MAX_BLINK_TIMES + 1, 1.5, '3', false)).map((b) => ({
      b,
      code: 'invalid-params' as const,
    })),
    brk(
      rpcRequest.filter(method('gpio.blink')),
      ['params', 'intervalMs'],
      fc.constantFrom(MIN_BLINK_INTERVAL_MS - 1, MAX_BLINK_INTERVAL_MS + 1, 100.5, '100', false),
    ).map((b) => ({ b, code: 'invalid-params' as const })),
  );
  check(cases, ({ b, code }) => {
    const m = broken(b);
    const r = parseRequest(m);
    assert.equal(r.ok ? 'ok' : 'error' in r.reply ? r.reply.error.data.code : '?', code);
    assert.ok(!r.ok);
    // the reply names the request's id when that id is valid, else null
    assert.equal(r.reply.id, code === 'invalid-request' ? null : m.id);
  });
});

test('issue 5: blink without times or intervalMs gets the documented defaults', () => {
  check(
    rec({
      id: rpcId,
      pin,
      times: opt(fc.integer({ min: 1, max: MAX_BLINK_TIMES })),
      intervalMs: opt(fc.integer({ min: MIN_BLINK_INTERVAL_MS, max: MAX_BLINK_INTERVAL_MS })),
    }),
    ({ id, pin: p, times, intervalMs }) => {
      const r = parseRequest(JSON.parse(JSON.stringify({ jsonrpc: '2.0', id, method: 'gpio.blink', params: { pin: p, times, intervalMs } })));
      assert.deepEqual(r, {
        ok: true,
        req: {
          jsonrpc: '2.0',
          id,
          method: 'gpio.blink',
          params: { pin: p, times: times ?? DEFAULT_BLINK_TIMES, intervalMs: intervalMs ?? DEFAULT_BLINK_INTERVAL_MS },
        },
      });
    },
  );
});

test('issue 5: parseRoom and parsePairingCode agree with a plain model of their rules on any string', () => {
  const typedish = fc.oneof(
    fc.string({ unit: fc.constantFrom(...'23456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz01OILUoilu-  \t_.é'), maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
  );
  check(
    typedish,
    (t) => {
      const norm = t.toUpperCase().replace(/[\s-]+/g, '');
      const room = parseRoom(t);
      assert.equal(room.ok, /^[A-Z0-9]{4,32}$/.test(norm), `parseRoom(${JSON.stringify(t)})`);
      if (room.ok) assert.equal(room.room, norm);
      const chars = [...t.replace(/[\s-]+/g, '')];
      const symbols = chars.map((c) => c.toUpperCase());
      const valid = symbols.every((c) => c.length === 1 && CODE_ALPHABET.includes(c)) && symbols.length === PAIRING_CODE_LENGTH;
      const code = parsePairingCode(t);
      assert.equal(code.ok, valid, `parsePairingCode(${JSON.stringify(t)})`);
      if (code.ok) assert.equal(code.room + code.secret, symbols.join(''));
    },
    RUNS * 2,
  );
});

// ---------- (d) sealed frames: integrity and strictly increasing counters ----------

const SID = 'session-1';
const KEYS = deriveSealKeys(new Uint8Array(32).fill(9), SID);

test('issue 5: any single-byte change of a sealed frame is rejected and never opens to other plaintext', () => {
  check(
    rec({
      pt: fc.uint8Array({ maxLength: 200 }),
      skip: fc.integer({ min: 0, max: 3 }),
      at: fc.nat(),
      xor: fc.integer({ min: 1, max: 255 }),
    }),
    ({ pt, skip, at, xor }) => {
      const sealer = new Sealer(KEYS.c2d, 'c2d', SID);
      for (let i = 0; i < skip; i++) sealer.seal('skipped');
      const frame = sealer.seal(pt);
      const raw = Buffer.from(frame, 'base64url');
      const i = at % raw.length;
      raw[i]! ^= xor;
      const r = new Opener(KEYS.c2d, 'c2d', SID).open(raw.toString('base64url'));
      assert.equal(r.ok, false, `byte ${i} ^ ${xor} opened`);
      assert.ok(['malformed', 'wrong-direction', 'bad-mac', 'replay'].includes(r.code));
      // the untouched frame still opens (the failure left the opener's state alone)
      const opener = new Opener(KEYS.c2d, 'c2d', SID);
      assert.equal(opener.open(raw.toString('base64url')).ok, false);
      const good = opener.open(frame);
      assert.ok(good.ok && Buffer.from(good.plaintext).equals(Buffer.from(pt)));
    },
    HEAVY_RUNS * 2,
  );
});

test('issue 5: any single-character change of a sealed frame string is rejected', () => {
  const b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .';
  check(
    rec({ pt: fc.string({ maxLength: 100 }), at: fc.nat(), ch: fc.constantFrom(...b64chars) }),
    ({ pt, at, ch }) => {
      const frame = new Sealer(KEYS.c2d, 'c2d', SID).seal(pt);
      const i = at % frame.length;
      fc.pre(frame[i] !== ch);
      const bad = frame.slice(0, i) + ch + frame.slice(i + 1);
      assert.equal(new Opener(KEYS.c2d, 'c2d', SID).open(bad).ok, false);
    },
    HEAVY_RUNS * 2,
  );
});

test('issue 5: frames are accepted only with strictly increasing counters, in any delivery order', () => {
  check(rec({ n: fc.integer({ min: 1, max: 12 }), order: fc.array(fc.nat({ max: 11 }), { maxLength: 24 }) }), ({ n, order }) => {
    const sealer = new Sealer(KEYS.d2c, 'd2c', SID);
    const frames = Array.from({ length: n }, (_, i) => sealer.seal(`frame ${i}`));
    const opener = new Opener(KEYS.d2c, 'd2c', SID);
    let last = -1;
    for (const k of order.map((o) => o % n)) {
      const r = opener.open(frames[k]!);
      if (k > last) {
        assert.ok(r.ok, `counter ${k} after ${last} refused`);
        assert.equal(r.counter, BigInt(k));
        assert.equal(Buffer.from(r.plaintext).toString(), `frame ${k}`);
        last = k;
      } else {
        assert.deepEqual(r, { ok: false, code: 'replay' });
      }
      assert.equal(opener.lastCounter, BigInt(last));
    }
  });
});

test('issue 5: Opener refuses oversized, non-canonical and short frames as malformed, random ones never open', () => {
  const opener = new Opener(KEYS.c2d, 'c2d', SID);
  check(
    fc.integer({ min: MAX_LINK_FRAME_BYTES + 1, max: MAX_LINK_FRAME_BYTES + 8 }),
    (n) => {
      // a well-formed header in front, so only the length is wrong
      const frame = new Sealer(KEYS.c2d, 'c2d', SID).seal('x');
      assert.deepEqual(opener.open(frame + 'A'.repeat(n - frame.length)), { ok: false, code: 'malformed' });
    },
    HEAVY_RUNS,
  );
  check(
    fc.oneof(
      b64(64),
      fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString('base64url')),
      fc.string({ maxLength: 40 }),
    ),
    (t) => {
      const r = opener.open(t);
      assert.equal(r.ok, false);
      if (!/^[A-Za-z0-9_-]*$/.test(t) || t.length < 35) assert.equal(r.ok ? 'ok' : r.code, 'malformed'); // under 26 bytes: header + tag
    },
  );
  assert.equal(opener.lastCounter, -1n, 'no failed frame moved the counter');
});

test('issue 5: a frame sealed for the other direction, session or key never opens', () => {
  const other = deriveSealKeys(new Uint8Array(32).fill(10), SID);
  check(
    fc.uint8Array({ maxLength: 100 }),
    (pt) => {
      const c2d = new Sealer(KEYS.c2d, 'c2d', SID).seal(pt);
      assert.deepEqual(new Opener(KEYS.c2d, 'd2c', SID).open(c2d), { ok: false, code: 'wrong-direction' });
      assert.deepEqual(new Opener(KEYS.c2d, 'c2d', 'session-2').open(c2d), { ok: false, code: 'bad-mac' });
      assert.deepEqual(new Opener(other.c2d, 'c2d', SID).open(c2d), { ok: false, code: 'bad-mac' });
      assert.deepEqual(new Opener(KEYS.d2c, 'c2d', SID).open(c2d), { ok: false, code: 'bad-mac' });
    },
    HEAVY_RUNS,
  );
});
