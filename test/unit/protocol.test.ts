import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { splitCandidates } from '../../protocol/sdp.js';
import {
  type ClientMessage,
  encode,
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
  relayDataBytes,
  type ServerMessage,
  type SignalPayload,
} from '../../protocol/signaling.js';

const V = PROTOCOL_VERSION;
/** A well-formed (not necessarily valid) key and signature, base64url. */
const KEY = 'A'.repeat(42) + 'A';
const SIG = 'B'.repeat(85) + 'A';
const NONCE = 'C'.repeat(42) + 'A';

function ok<T>(r: { ok: true; value: T } | { ok: false; code: string }): T {
  assert.equal(r.ok, true, `expected ok, got ${JSON.stringify(r)}`);
  return (r as { ok: true; value: T }).value;
}
function code(r: { ok: boolean; code?: string }): string | undefined {
  assert.equal(r.ok, false, 'expected a rejection');
  return r.code;
}
const client = (x: unknown): ReturnType<typeof parseClientMessage> => parseClientMessage(typeof x === 'string' ? x : JSON.stringify(x));
const server = (x: unknown): ReturnType<typeof parseServerMessage> => parseServerMessage(typeof x === 'string' ? x : JSON.stringify(x));

describe('parseClientMessage: valid messages', () => {
  const valid: ClientMessage[] = [
    { type: 'register', v: V, room: 'K7QM' },
    { type: 'register', v: V, room: 'DABCDEFGHJKMNPQRSTVWXYZ234' },
    { type: 'join', v: V, room: 'k7qm' },
    { type: 'relay', data: '' },
    { type: 'relay', data: 'x'.repeat(MAX_LINK_FRAME_BYTES) },
    { type: 'register', v: V, room: 'DABCDEFGHJKMNPQRSTVWXYZ234', proof: { key: KEY, sig: SIG } },
    { type: 'admit', session: 's1' },
    { type: 'register', v: V, room: 'DABCDEFGHJKMNPQRSTVWXYZ234', proof: { key: KEY, sig: SIG }, maxControllers: 8 },
    { type: 'register', v: V, room: 'K7QM', maxControllers: 1 },
    { type: 'relay', data: 'x', session: 's1' },
  ];
  for (const m of valid) {
    const extra = ['proof', 'maxControllers', 'session'].filter((k) => k in m && m.type !== 'admit').join(', ');
    test(`${m.type}${extra ? ` with ${extra}` : ''} round-trips through encode`, () => {
      const text = encode(m);
      assert.deepEqual(ok(parseClientMessage(text)), m);
      assert.deepEqual(ok(parseClientMessage(Buffer.from(text))), m, 'binary frames parse the same');
    });
  }

  test('unknown extra fields are dropped, not forwarded', () => {
    const m = ok(client({ type: 'relay', data: 'a', evil: { x: 1 } }));
    assert.deepEqual(m, { type: 'relay', data: 'a' });
    const r = ok(client({ type: 'register', v: V, room: 'K7QM', proof: { key: KEY, sig: SIG, extra: 1 } }));
    assert.deepEqual(r, { type: 'register', v: V, room: 'K7QM', proof: { key: KEY, sig: SIG } });
  });
});

describe('parseSignalPayload (WebRTC set-up, carried sealed inside relay)', () => {
  const valid: SignalPayload[] = [
    { kind: 'offer', sdp: 'v=0\r\n' },
    { kind: 'answer', sdp: 'v=0\r\n' },
    { kind: 'candidate', candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 },
    { kind: 'end-of-candidates' },
    { kind: 'ping', n: 3 },
    { kind: 'pong', n: 0 },
    { kind: 'go' },
    { kind: 'bye' },
  ];
  for (const p of valid) test(`${p.kind} is accepted unchanged`, () => assert.deepEqual(parseSignalPayload(JSON.parse(JSON.stringify(p))), p));

  test('candidate without sdpMid/sdpMLineIndex normalises them to null; extra fields are dropped', () => {
    assert.deepEqual(parseSignalPayload({ kind: 'candidate', candidate: 'c' }), { kind: 'candidate', candidate: 'c', sdpMid: null, sdpMLineIndex: null });
    assert.deepEqual(parseSignalPayload({ kind: 'bye', extra: 'zzz' }), { kind: 'bye' });
  });

  test('wrong payloads get a reason, never a throw', () => {
    const bad: unknown[] = [
      undefined,
      null,
      'offer',
      1,
      [],
      [{ kind: 'bye' }],
      {},
      { kind: 'nope' },
      { kind: 1 },
      { kind: null },
      { kind: 'offer' },
      { kind: 'offer', sdp: 1 },
      { kind: 'answer', sdp: null },
      { kind: 'answer', sdp: ['v=0'] },
      { kind: 'offer', sdp: 'x'.repeat(MAX_SIGNAL_BYTES + 1) },
      { kind: 'candidate' },
      { kind: 'candidate', candidate: 1 },
      { kind: 'candidate', candidate: 'x'.repeat(1025) },
      { kind: 'candidate', candidate: 'c', sdpMid: 1 },
      { kind: 'candidate', candidate: 'c', sdpMid: 'x'.repeat(65) },
      { kind: 'candidate', candidate: 'c', sdpMLineIndex: -1 },
      { kind: 'candidate', candidate: 'c', sdpMLineIndex: 1.5 },
      { kind: 'candidate', candidate: 'c', sdpMLineIndex: '0' },
      { kind: 'candidate', candidate: 'c', sdpMLineIndex: 64 },
      { kind: 'ping' },
      { kind: 'pong', n: -1 },
      { kind: 'ping', n: 1.5 },
    ];
    for (const p of bad) assert.equal(typeof parseSignalPayload(p), 'string', JSON.stringify(p)?.slice(0, 60));
  });
});

describe('parseClientMessage: invalid messages', () => {
  test('malformed JSON is bad-message', () => {
    for (const t of ['', '{', '{"type":', 'nul', '{type:"relay"}', "{'type':'relay'}", '{"type":"relay","data":"a",}', '\u0000', '[1,2', '"unterminated']) {
      assert.equal(code(parseClientMessage(t)), 'bad-message', JSON.stringify(t));
    }
  });

  test('non-object JSON is bad-message', () => {
    for (const t of ['null', '1', '"relay"', 'true', '[]', '[{"type":"relay","data":"a"}]']) {
      assert.equal(code(parseClientMessage(t)), 'bad-message', t);
    }
  });

  test('a frame just over MAX_SIGNAL_BYTES is too-large, at the limit is not', () => {
    const pad = (n: number): string => {
      const base = JSON.stringify({ type: 'relay', data: '' });
      return JSON.stringify({ type: 'relay', data: '', pad: 'x'.repeat(n - base.length - ',"pad":""'.length) });
    };
    const atLimit = pad(MAX_SIGNAL_BYTES);
    assert.equal(Buffer.byteLength(atLimit), MAX_SIGNAL_BYTES);
    assert.equal(parseClientMessage(atLimit).ok, true);
    const over = pad(MAX_SIGNAL_BYTES + 1);
    assert.equal(code(parseClientMessage(over)), 'too-large');
    assert.equal(code(parseClientMessage(Buffer.from(over))), 'too-large');
  });

  test('size is counted in UTF-8 bytes, not characters', () => {
    const chars = Math.ceil(MAX_SIGNAL_BYTES / 3) + 10; // each '€' is 3 bytes
    const t = JSON.stringify({ type: 'relay', data: '€'.repeat(chars) });
    assert.ok(t.length < MAX_SIGNAL_BYTES);
    assert.equal(code(parseClientMessage(t)), 'too-large');
  });

  test('deep nesting is rejected quickly and without stack overflow', () => {
    for (const t of ['['.repeat(10_000), '{"a":'.repeat(10_000), '['.repeat(10_000) + ']'.repeat(10_000), '['.repeat(60_000)]) {
      const t0 = performance.now();
      assert.equal(code(parseClientMessage(t)), 'bad-message');
      assert.ok(performance.now() - t0 < 200, 'rejected in well under 200 ms');
    }
    const deep = JSON.stringify({ type: 'relay', data: 'x', x: nest(MAX_JSON_DEPTH) });
    assert.equal(code(parseClientMessage(deep)), 'bad-message');
  });

  test('brackets inside strings do not count as nesting', () => {
    const m = ok(client({ type: 'relay', data: '[[[[[[[[[[[[{{{{{{{{{{{{"\\' }));
    assert.equal((m as { data: string }).data, '[[[[[[[[[[[[{{{{{{{{{{{{"\\');
  });

  test('issue 9: a `signal` frame is no longer part of the protocol: bad-message, unknown message type', () => {
    const r = client({ type: 'signal', payload: { kind: 'offer', sdp: 'v=0\r\n' } });
    assert.deepEqual(r, { ok: false, code: 'bad-message', reason: 'unknown message type' });
    assert.deepEqual(server({ type: 'signal', payload: { kind: 'bye' } }), { ok: false, code: 'bad-message', reason: 'unknown message type' });
  });

  test('issue 9: register: a malformed proof is bad-message; admit needs a session', () => {
    for (const proof of [
      null,
      1,
      'x',
      [],
      {},
      { key: KEY },
      { sig: SIG },
      { key: KEY.slice(1), sig: SIG },
      { key: KEY, sig: SIG.slice(1) },
      { key: KEY + '=', sig: SIG },
      { key: KEY.slice(0, -1) + 'B', sig: SIG },
      { key: KEY, sig: SIG.slice(0, -1) + '+' },
      { key: 1, sig: SIG },
    ]) {
      assert.equal(code(client({ type: 'register', v: V, room: 'K7QM', proof })), 'bad-message', JSON.stringify(proof));
    }
    for (const session of [undefined, null, 1, '', 'x'.repeat(65)]) assert.equal(code(client({ type: 'admit', session })), 'bad-message', String(session));
  });

  test('issue 12: register.maxControllers is an integer 1..MAX_CONTROLLERS_LIMIT; relay.session a non-empty string of at most 64 chars', () => {
    assert.equal(MAX_CONTROLLERS_LIMIT, 64);
    for (const maxControllers of [1, MAX_CONTROLLERS_LIMIT])
      assert.equal(ok(client({ type: 'register', v: V, room: 'K7QM', maxControllers })).type, 'register', String(maxControllers));
    for (const maxControllers of [0, -1, 1.5, MAX_CONTROLLERS_LIMIT + 1, '8', null])
      assert.equal(code(client({ type: 'register', v: V, room: 'K7QM', maxControllers })), 'bad-message', String(maxControllers));
    assert.deepEqual(ok(client({ type: 'join', v: V, room: 'K7QM', maxControllers: 8 })), { type: 'join', v: V, room: 'K7QM' }, 'join carries no cap');
    assert.deepEqual(ok(client({ type: 'relay', data: 'a', session: 'x'.repeat(64) })), { type: 'relay', data: 'a', session: 'x'.repeat(64) });
    for (const session of [null, 1, '', 'x'.repeat(65)]) {
      assert.equal(code(client({ type: 'relay', data: 'a', session })), 'bad-message', `client ${String(session)}`);
      assert.equal(code(server({ type: 'relay', data: 'a', session })), 'bad-message', `server ${String(session)}`);
    }
  });

  test('unknown or missing type is bad-message', () => {
    for (const m of [
      {},
      { type: 'hello' },
      { type: 'REGISTER', v: V, room: 'ABCDEF' },
      { type: 1 },
      { type: null },
      { type: ['relay'], data: 'a' },
      { type: 'registered', room: 'ABCDEF', ttlMs: 1, stunPort: 1 },
    ]) {
      assert.equal(code(client(m)), 'bad-message', JSON.stringify(m));
    }
  });

  test('version mismatch on register/join is version', () => {
    for (const type of ['register', 'join']) {
      for (const v of [0, V + 1, -1, '1', null, undefined, 1.5, [1], { v: 1 }]) {
        const m: Record<string, unknown> = { type, room: 'ABCDEFGH' };
        if (v !== undefined) m.v = v;
        assert.equal(code(client(m)), 'version', `${type} v=${JSON.stringify(v)}`);
      }
    }
  });

  test('register/join: wrong types for room', () => {
    for (const type of ['register', 'join']) {
      for (const c of [undefined, null, 1, true, ['ABCDEF'], { c: 'ABCDEF' }, '', 'A'.repeat(MAX_ROOM_CHARS + 1)]) {
        const m: Record<string, unknown> = { type, v: V };
        if (c !== undefined) m.room = c;
        assert.equal(code(client(m)), 'bad-message', `${type} room=${JSON.stringify(c)}`);
      }
    }
    assert.equal(client({ type: 'join', v: V, room: 'A'.repeat(MAX_ROOM_CHARS) }).ok, true, 'MAX_ROOM_CHARS itself passes the wire check');
  });

  test('issue 4: the old `code` field is not accepted in place of `room`', () => {
    for (const type of ['register', 'join']) assert.equal(code(client({ type, v: V, code: 'K7QM' })), 'bad-message', type);
  });

  test('relay: wrong types for data, and data over MAX_LINK_FRAME_BYTES', () => {
    for (const d of [undefined, null, 1, true, ['a'], { a: 1 }, 'x'.repeat(MAX_LINK_FRAME_BYTES + 1)]) {
      const m: Record<string, unknown> = { type: 'relay' };
      if (d !== undefined) m.data = d;
      assert.equal(code(client(m)), 'bad-message', `data=${JSON.stringify(d)?.slice(0, 20)}`);
    }
  });

  test('binary garbage and invalid UTF-8 are bad-message, never a throw', () => {
    const bufs: Buffer[] = [
      Buffer.from([0xff, 0xfe, 0xfd]),
      Buffer.from([0xc3, 0x28]),
      Buffer.alloc(100, 0),
      Buffer.from('{"type":"relay","data":"\xff"}', 'latin1'),
    ];
    for (let i = 0; i < 200; i++) bufs.push(randomBytes(1 + ((i * 37) % 500), i));
    for (const b of bufs) {
      const r = parseClientMessage(b);
      if (r.ok) continue; // a random buffer could in theory be valid JSON of the right shape; it is then a real message
      assert.ok(['bad-message', 'too-large'].includes(r.code), r.code);
    }
  });

  test('prototype keys do not confuse validation', () => {
    assert.equal(code(client('{"__proto__":{"type":"relay","data":"a"}}')), 'bad-message');
    const m = ok(client('{"type":"relay","data":"a","__proto__":{"polluted":1}}'));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(m, { type: 'relay', data: 'a' });
  });
});

describe('parseServerMessage', () => {
  const valid: ServerMessage[] = [
    { type: 'hello', v: V, nonce: NONCE },
    { type: 'hello', v: V + 1, nonce: NONCE },
    { type: 'registered', room: 'K7QM', ttlMs: 600_000, stunPort: 3478 },
    { type: 'registered', room: 'DABCDEFGHJKMNPQRSTVWXYZ234', ttlMs: 1, stunPort: 0 },
    { type: 'joined', session: 's1', waiting: true, stunPort: 3478 },
    { type: 'joined', session: 's1', waiting: false, stunPort: 0 },
    { type: 'peer', session: 's1' },
    { type: 'peer-left', session: 's1' },
    { type: 'relay', data: 'abc' },
    { type: 'relay', data: 'abc', session: 's1' },
    { type: 'error', code: 'unknown-room', message: 'no device' },
    { type: 'error', code: 'join-limited', message: 'too many join attempts' },
    { type: 'error', code: 'rate-limited', message: '' },
  ];
  for (const m of valid) {
    test(`${m.type} round-trips`, () => assert.deepEqual(ok(parseServerMessage(encode(m))), m));
  }

  test('every SignalErrorCode is accepted', () => {
    for (const c of [
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
    ]) {
      assert.equal(server({ type: 'error', code: c, message: 'm' }).ok, true, c);
    }
  });

  test('issue 4: the renamed error codes are gone', () => {
    for (const c of ['bad-code', 'code-taken', 'unknown-code']) assert.equal(code(server({ type: 'error', code: c, message: 'm' })), 'bad-message', c);
  });

  test('wrong types for every field are bad-message', () => {
    const bad: unknown[] = [
      { type: 'registered', room: 1, ttlMs: 1, stunPort: 1 },
      { type: 'registered', room: 'A', ttlMs: '1', stunPort: 1 },
      { type: 'registered', room: 'A', ttlMs: 1, stunPort: -1 },
      { type: 'registered', room: 'A', ttlMs: 1, stunPort: 65536 },
      { type: 'registered', room: 'A', ttlMs: 1, stunPort: 1.5 },
      { type: 'registered', room: 'A', ttlMs: 1 },
      { type: 'registered', code: 'A', ttlMs: 1, stunPort: 1 },
      { type: 'registered', room: 'A'.repeat(MAX_ROOM_CHARS + 1), ttlMs: 1, stunPort: 1 },
      { type: 'joined', session: 1, waiting: true, stunPort: 1 },
      { type: 'joined', session: 's', waiting: 'yes', stunPort: 1 },
      { type: 'joined', session: 's', waiting: true, stunPort: '1' },
      { type: 'joined', session: 'x'.repeat(65), waiting: true, stunPort: 1 },
      { type: 'peer' },
      { type: 'peer', session: null },
      { type: 'peer-left', session: 3 },
      { type: 'relay' },
      { type: 'relay', data: 1 },
      { type: 'relay', data: 'x'.repeat(MAX_LINK_FRAME_BYTES + 1) },
      { type: 'signal', payload: { kind: 'bye' } },
      { type: 'signal' },
      { type: 'hello', v: V },
      { type: 'hello', v: '2', nonce: NONCE },
      { type: 'hello', v: 0, nonce: NONCE },
      { type: 'hello', v: V, nonce: NONCE.slice(1) },
      { type: 'hello', v: V, nonce: NONCE + 'AA' },
      { type: 'hello', v: V, nonce: 1 },
      { type: 'error', code: 'not-a-code', message: 'm' },
      { type: 'error', code: 'expired' },
      { type: 'error', code: 'expired', message: 'x'.repeat(1025) },
      { type: 'error', code: 1, message: 'm' },
      { type: 'register', v: V, room: 'ABCDEF' },
      { type: 'nope' },
      [],
      null,
      5,
    ];
    for (const m of bad) assert.equal(code(server(m)), 'bad-message', JSON.stringify(m)?.slice(0, 60));
  });

  test('malformed, oversized and deeply nested input', () => {
    assert.equal(code(parseServerMessage('{')), 'bad-message');
    assert.equal(code(parseServerMessage('x'.repeat(MAX_SIGNAL_BYTES + 1))), 'too-large');
    assert.equal(code(parseServerMessage('['.repeat(10_000))), 'bad-message');
    assert.equal(code(parseServerMessage(Buffer.from([0xff, 0x00, 0x7b]))), 'bad-message');
  });
});

describe('splitCandidates', () => {
  test('takes the candidate and end-of-candidates lines out of an SDP, and returns the candidates and the mid', () => {
    const sdp = [
      'v=0',
      'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
      'a=mid:0',
      'a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host',
      'a=candidate:2 1 udp 1694498815 203.0.113.7 6000 typ srflx raddr 0.0.0.0 rport 0',
      'a=end-of-candidates',
      'a=sctp-port:5000',
      '',
    ].join('\n');
    assert.deepEqual(splitCandidates(sdp), {
      sdp: ['v=0', 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'a=mid:0', 'a=sctp-port:5000', ''].join('\r\n'),
      candidates: ['candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host', 'candidate:2 1 udp 1694498815 203.0.113.7 6000 typ srflx raddr 0.0.0.0 rport 0'],
      mid: '0',
    });
  });
  test('an SDP with no candidates and no mid keeps its lines (CRLF-joined) and has a null mid', () => {
    assert.deepEqual(splitCandidates('v=0\r\ns=-'), { sdp: 'v=0\r\ns=-', candidates: [], mid: null });
  });
});

describe('parseJson', () => {
  test('depth limit is exactly MAX_JSON_DEPTH', () => {
    assert.equal(parseJson(JSON.stringify(nest(MAX_JSON_DEPTH)), 1e6).ok, true);
    assert.equal(code(parseJson(JSON.stringify(nest(MAX_JSON_DEPTH + 1)), 1e6)), 'bad-message');
  });
  test('escaped quotes inside strings keep the string state right', () => {
    const v = ok(parseJson('{"a":"\\"[[[[[[[[[[[[[[[[[[[["}', 1e6));
    assert.deepEqual(v, { a: '"[[[[[[[[[[[[[[[[[[[[' });
  });
});

/** Arrays nested `n` deep: `[[[0]]]` for n = 3. */
function nest(n: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

/** Deterministic pseudo-random bytes (no Math.random, so failures reproduce). */
function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

describe('issue 15: the relay hot path', () => {
  const utf8 = (t: string) => new TextEncoder().encode(t);
  const frames = [
    '{"type":"relay","data":"abc"}',
    '{"type":"relay","data":""}',
    `{"type":"relay","data":"${'x'.repeat(MAX_LINK_FRAME_BYTES)}"}`,
    `{"type":"relay","data":"${'x'.repeat(MAX_LINK_FRAME_BYTES + 1)}"}`,
    '{"type":"relay","data":"a\\nb"}',
    '{"type":"relay","data":"a\u0001b"}',
    '{"type":"relay","data":"€uro"}',
    '{"type":"relay","data":"ab","session":"s1"}',
    '{"type":"relay","data":"ab" }',
    '{"type":"relay","data":"ab"}x',
    '{"type":"relay","data":"a"b"}',
    '{"type":"relay","data":abc"}',
    '{"type":"relax","data":"abc"}',
    '{"data":"abc","type":"relay"}',
    '{"type":"relay","data":"',
    '"}',
  ];

  test('relayDataBytes gives the data parseClientMessage reads from relay{data}, or nothing', () => {
    let taken = 0;
    for (const t of frames) {
      const got = relayDataBytes(utf8(t));
      const parsed = parseClientMessage(t);
      if (got === undefined) continue;
      taken++;
      assert.ok(parsed.ok && parsed.value.type === 'relay' && parsed.value.session === undefined, t);
      assert.equal(new TextDecoder().decode(got), parsed.value.data, t);
    }
    // the plain ones, the empty one, the longest one and the non-ASCII one
    assert.equal(taken, 4);
  });

  test('encode spells relay frames out exactly as JSON.stringify would', () => {
    for (const data of ['', 'abc-_09AZ', 'a"b', 'a\\b', 'line\nbreak', '€', '\u0000', '</script>']) {
      for (const session of [undefined, 's1', 'we"ird']) {
        const m = session === undefined ? { type: 'relay' as const, data } : { type: 'relay' as const, data, session };
        assert.deepEqual(JSON.parse(encode(m)), m);
        assert.equal(encode(m), JSON.stringify(m));
      }
    }
  });
});
