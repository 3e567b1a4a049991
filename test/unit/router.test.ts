import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deviceRoom } from '../../protocol/code.js';
import { DEFAULT_ROOM_CONTROLLERS, HELLO_NONCE_BYTES, PROTOCOL_VERSION, type RegisterProof, type ServerMessage } from '../../protocol/signaling.js';
import {
  type Action,
  ADMIT_TIMEOUT_MS,
  addressKey,
  CLOSE_POLICY,
  CLOSE_TRY_AGAIN,
  CODE_UNUSED_TTL_MS,
  type ConnId,
  DEFAULT_ROUTER_LIMITS,
  DEVICE_GRACE_MS,
  JOIN_BURST,
  JOIN_RATE_PER_MIN,
  MAX_CONTROLLERS_PER_ROOM,
  MAX_INVALID_PER_CONN,
  MAX_ROOMS,
  MAX_ROOMS_PER_ADDR,
  REGISTER_BURST,
  REGISTER_RATE_PER_MIN,
  Router,
  type RouterLimits,
  UNGUESSABLE_ROOM_LENGTH,
} from '../../signaling/router.js';
import { closes, errorCode, Harness, logs, newKey, ROOM, STUN, sent, TYPED } from './router-harness.js';

describe('router: register and join', () => {
  test('register replies registered with the normalised room, TTL and STUN port', () => {
    const h = new Harness();
    h.open(1);
    const out = h.register(1);
    assert.deepEqual(sent(out, 1), [{ type: 'registered', room: ROOM, ttlMs: CODE_UNUSED_TTL_MS, stunPort: STUN }]);
    assert.deepEqual(
      logs(out).map((l) => l.event),
      ['register'],
    );
  });

  test('a malformed room is bad-room, for register and for join', () => {
    const h = new Harness();
    h.open(1);
    for (const c of ['abc', 'ABC_DEF', 'A'.repeat(40), 'K7QM!']) {
      assert.equal(errorCode(h.register(1, c), 1), 'bad-room');
      assert.equal(errorCode(h.join(1, c), 1), 'bad-room');
    }
    // the socket is still free to register properly
    assert.equal(sent(h.register(1), 1)[0]?.type, 'registered');
  });

  test('issue 2: a wrong room gets unknown-room at once', () => {
    const h = new Harness();
    h.open(1);
    h.open(2);
    h.register(1);
    const out = h.join(2, 'ZZZZ');
    assert.equal(errorCode(out, 2), 'unknown-room');
    assert.deepEqual(sent(out, 1), [], 'the device hears nothing');
  });

  test('join pairs: controller gets joined{waiting:false}, device gets peer with the same session', () => {
    const h = new Harness();
    h.open(1);
    h.open(2);
    h.register(1);
    const out = h.join(2, ROOM); // normalised form works too
    assert.deepEqual(sent(out, 2), [{ type: 'joined', session: 's1', waiting: false, stunPort: STUN }]);
    assert.deepEqual(sent(out, 1), [{ type: 'peer', session: 's1' }]);
  });

  test('stunPort 0 (no STUN) is passed through', () => {
    const r = new Router({ stunPort: 0, newSession: () => 'x', newNonce: () => new Uint8Array(HELLO_NONCE_BYTES) });
    r.handle({ kind: 'open', conn: 1, addr: 'a' }, 0);
    r.handle({ kind: 'open', conn: 2, addr: 'a' }, 0);
    const reg = r.handle({ kind: 'message', conn: 1, msg: { type: 'register', v: PROTOCOL_VERSION, room: ROOM } }, 0);
    const join = r.handle({ kind: 'message', conn: 2, msg: { type: 'join', v: PROTOCOL_VERSION, room: ROOM } }, 0);
    assert.deepEqual(sent(reg, 1), [{ type: 'registered', room: ROOM, ttlMs: CODE_UNUSED_TTL_MS, stunPort: 0 }]);
    assert.deepEqual(sent(join, 2), [{ type: 'joined', session: 'x', waiting: false, stunPort: 0 }]);
  });

  test('issue 2: a room holds one controller: a second one gets room-full', () => {
    const h = new Harness();
    h.pair();
    h.open(3);
    const out = h.join(3);
    assert.equal(errorCode(out, 3), 'room-full');
    assert.deepEqual(sent(out, 1), []);
    assert.deepEqual(sent(out, 2), []);
  });

  test('issue 2: a room holds one device: a second register of the room gets room-taken', () => {
    const h = new Harness();
    h.open(1);
    h.open(3);
    h.register(1, 'K7 QM');
    const out = h.register(3, 'k7qm');
    assert.equal(errorCode(out, 3), 'room-taken');
    assert.deepEqual(sent(out, 1), []);
  });

  test('a second register/join on one socket is already-joined', () => {
    const h = new Harness();
    h.pair();
    assert.equal(errorCode(h.register(1), 1), 'already-joined');
    assert.equal(errorCode(h.register(1, 'OTHERCODE1'), 1), 'already-joined');
    assert.equal(errorCode(h.join(1), 1), 'already-joined');
    assert.equal(errorCode(h.join(2), 2), 'already-joined');
    assert.equal(errorCode(h.register(2, 'OTHERCODE2'), 2), 'already-joined');
  });
});

describe('router: relay', () => {
  test('issue 2: relay is forwarded both ways, data unchanged (to the device tagged with the session)', () => {
    const h = new Harness();
    h.pair();
    const data = '{"jsonrpc":"2.0","id":1,"method":"gpio.write","params":{"pin":20,"value":1}}';
    let out = h.msg(2, { type: 'relay', data });
    assert.deepEqual(sent(out, 1), [{ type: 'relay', session: 's1', data }]);
    assert.deepEqual(sent(out, 2), []);
    out = h.msg(1, { type: 'relay', session: 's1', data: 'back' });
    assert.deepEqual(sent(out, 2), [{ type: 'relay', data: 'back' }]);
    assert.deepEqual(logs(out), [], 'relay traffic is not logged');
  });

  test('relay/admit before register/join is not-joined', () => {
    const h = new Harness();
    h.open(1);
    assert.equal(errorCode(h.msg(1, { type: 'relay', data: 'x' }), 1), 'not-joined');
    assert.equal(errorCode(h.admit(1, 's1'), 1), 'not-joined');
  });

  test('relay alone in the room is no-peer', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    assert.equal(errorCode(h.msg(1, { type: 'relay', session: 's1', data: 'x' }), 1), 'no-peer');
    // a controller waiting for an absent device
    h.close(1);
    h.open(2);
    assert.equal((sent(h.join(2), 2)[0] as { waiting?: boolean }).waiting, true);
    assert.equal(errorCode(h.msg(2, { type: 'relay', data: 'x' }), 2), 'no-peer');
  });
});

describe('router: leaving and coming back', () => {
  test('controller leaves: device gets peer-left; a new controller gets a new session', () => {
    const h = new Harness();
    h.pair();
    let out = h.close(2);
    assert.deepEqual(sent(out, 1), [{ type: 'peer-left', session: 's1' }]);
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.role]),
      [['leave', 'controller']],
    );
    h.open(3);
    out = h.join(3);
    assert.deepEqual(sent(out, 3), [{ type: 'joined', session: 's2', waiting: false, stunPort: STUN }]);
    assert.deepEqual(sent(out, 1), [{ type: 'peer', session: 's2' }]);
    assert.equal(errorCode(h.msg(1, { type: 'relay', session: 's1', data: 'x' }), 1), 'no-peer', 'the old session is gone');
    assert.deepEqual(sent(h.msg(1, { type: 'relay', session: 's2', data: 'x' }), 3), [{ type: 'relay', data: 'x' }]);
  });

  test('device leaves: controller gets peer-left; the device reconnects within grace and both get peer again', () => {
    const h = new Harness();
    h.pair();
    let out = h.close(1);
    assert.deepEqual(sent(out, 2), [{ type: 'peer-left', session: 's1' }]);
    assert.equal(errorCode(h.msg(2, { type: 'relay', data: 'x' }), 2), 'no-peer');
    h.now += DEVICE_GRACE_MS - 1;
    h.tick();
    h.open(5);
    out = h.register(5);
    assert.deepEqual(sent(out, 5), [
      { type: 'registered', room: ROOM, ttlMs: CODE_UNUSED_TTL_MS, stunPort: STUN },
      { type: 'peer', session: 's1' },
    ]);
    assert.deepEqual(sent(out, 2), [{ type: 'peer', session: 's1' }]);
    assert.equal(logs(out)[0]?.fields?.reason, 'rejoin');
    assert.deepEqual(sent(h.msg(2, { type: 'relay', data: 'hi' }), 5), [{ type: 'relay', session: 's1', data: 'hi' }]);
  });

  test('a restarting device keeps its room: no controller, reconnect within grace, same room', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.close(1);
    h.now += DEVICE_GRACE_MS;
    h.tick();
    assert.equal(h.router.stats.rooms, 1);
    h.open(2);
    assert.equal(sent(h.register(2), 2)[0]?.type, 'registered');
    assert.equal(h.router.stats.rooms, 1);
  });

  test('issue 2: a controller arriving while the device is away waits; when the device registers both get peer', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.close(1);
    h.open(2);
    let out = h.join(2);
    assert.deepEqual(sent(out, 2), [{ type: 'joined', session: 's1', waiting: true, stunPort: STUN }]);
    h.now += 1000;
    h.open(3);
    out = h.register(3);
    assert.deepEqual(sent(out, 3), [
      { type: 'registered', room: ROOM, ttlMs: CODE_UNUSED_TTL_MS, stunPort: STUN },
      { type: 'peer', session: 's1' },
    ]);
    assert.deepEqual(sent(out, 2), [{ type: 'peer', session: 's1' }]);
  });

  test('closing an unknown or already-closed socket is a no-op; its later messages are ignored', () => {
    const h = new Harness();
    assert.deepEqual(h.close(42), []);
    h.pair();
    h.close(2);
    assert.deepEqual(h.close(2), []);
    assert.deepEqual(h.msg(2, { type: 'relay', data: 'x' }), []);
    assert.deepEqual(h.msg(99, { type: 'relay', data: 'x' }), []);
  });
});

describe('router: expiry', () => {
  test('issue 2: an unused room expires after CODE_UNUSED_TTL_MS; the device may register again', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.now += CODE_UNUSED_TTL_MS;
    assert.deepEqual(h.tick(), [], 'not yet: expiry is strictly after the TTL');
    h.now += 1;
    const out = h.tick();
    assert.equal(errorCode(out, 1), 'expired');
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.reason]),
      [['expire', 'unused']],
    );
    assert.equal(h.router.stats.rooms, 0);
    h.open(2);
    assert.equal(errorCode(h.join(2), 2), 'unknown-room');
    // the expired device re-registers on the same socket: not already-joined
    assert.equal(sent(h.register(1), 1)[0]?.type, 'registered');
  });

  test('a room in use does not expire; the unused clock restarts when the controller leaves', () => {
    const h = new Harness();
    h.pair();
    h.admit(1, 's1'); // the device's handshake secured the session
    h.now += CODE_UNUSED_TTL_MS * 3;
    assert.deepEqual(h.tick(), []);
    h.close(2);
    h.now += CODE_UNUSED_TTL_MS;
    assert.deepEqual(h.tick(), []);
    h.now += 1;
    assert.equal(errorCode(h.tick(), 1), 'expired');
  });

  test('re-registering restarts the unused clock', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.now += CODE_UNUSED_TTL_MS - 10;
    h.close(1);
    h.open(2);
    h.register(2);
    h.now += CODE_UNUSED_TTL_MS - 10;
    assert.deepEqual(h.tick(), []);
  });

  test('a device gone longer than DEVICE_GRACE_MS: room deleted, waiting controller gets expired', () => {
    const h = new Harness();
    h.pair();
    h.close(1);
    h.now += DEVICE_GRACE_MS;
    assert.deepEqual(h.tick(), []);
    h.now += 1;
    const out = h.tick();
    assert.equal(errorCode(out, 2), 'expired');
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.reason]),
      [['expire', 'device-gone']],
    );
    assert.equal(h.router.stats.rooms, 0);
    // the controller is out of the room and may try again
    assert.equal(errorCode(h.join(2), 2), 'unknown-room');
    assert.equal(errorCode(h.msg(2, { type: 'relay', data: 'x' }), 2), 'not-joined');
  });

  test('expiry is also applied lazily on lookup, without a tick', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.close(1);
    h.now += DEVICE_GRACE_MS + 1;
    h.open(2);
    assert.equal(errorCode(h.join(2), 2), 'unknown-room');
    h.open(3);
    const out = h.register(3);
    assert.equal(sent(out, 3)[0]?.type, 'registered');
    assert.equal(logs(out).find((l) => l.event === 'register')?.fields?.reason, 'new');
  });
});

describe('router: hostile input', () => {
  test('issue 2: an invalid frame gets an error reply with its code and the socket stays open', () => {
    const h = new Harness();
    h.open(1);
    for (const code of ['bad-message', 'too-large', 'version'] as const) {
      const out = h.run({ kind: 'invalid', conn: 1, code, reason: 'r' });
      assert.equal(errorCode(out, 1), code);
      assert.deepEqual(closes(out), []);
    }
    assert.equal(sent(h.register(1), 1)[0]?.type, 'registered');
  });

  test(`more than MAX_INVALID_PER_CONN (${MAX_INVALID_PER_CONN}) invalid frames close the socket with 1008`, () => {
    const h = new Harness();
    h.pair();
    for (let i = 0; i < MAX_INVALID_PER_CONN; i++) assert.deepEqual(closes(h.run({ kind: 'invalid', conn: 2, code: 'bad-message', reason: 'x' })), []);
    const out = h.run({ kind: 'invalid', conn: 2, code: 'bad-message', reason: 'x' });
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[2, CLOSE_POLICY]],
    );
    assert.deepEqual(sent(out, 1), [{ type: 'peer-left', session: 's1' }], 'the device learns the controller is gone');
    assert.deepEqual(h.msg(2, { type: 'relay', data: 'x' }), [], 'a kicked socket is forgotten');
    assert.deepEqual(h.close(2), []);
  });

  test('error messages are capped so that they always pass parseServerMessage', () => {
    const h = new Harness();
    h.open(1);
    const out = h.run({ kind: 'invalid', conn: 1, code: 'version', reason: 'v'.repeat(50_000) });
    const m = sent(out, 1)[0];
    assert.ok(m && m.type === 'error' && m.message.length <= 1024);
  });

  test('rate limit: over the bucket gets rate-limited, tokens come back with time, sustained abuse closes', () => {
    const h = new Harness({ rateBurst: 5, rateMsgsPerSec: 10, rateAbuseMaxDrops: 3, rateAbuseWindowMs: 10_000 });
    h.pair(); // 1 message each so far
    for (let i = 0; i < 4; i++) assert.deepEqual(sent(h.msg(2, { type: 'relay', data: 'x' }), 1).length, 1);
    let out = h.msg(2, { type: 'relay', data: 'x' });
    assert.equal(errorCode(out, 2), 'rate-limited');
    assert.deepEqual(sent(out, 1), [], 'the dropped message is not forwarded');
    h.now += 100; // one token
    assert.equal(sent(h.msg(2, { type: 'relay', data: 'y' }), 1).length, 1);
    // invalid frames cost tokens too
    assert.equal(errorCode(h.run({ kind: 'invalid', conn: 2, code: 'bad-message', reason: 'x' }), 2), 'rate-limited');
    out = h.msg(2, { type: 'relay', data: 'x' }); // third drop in the window: still only an error
    assert.equal(errorCode(out, 2), 'rate-limited');
    assert.deepEqual(closes(out), []);
    out = h.msg(2, { type: 'relay', data: 'x' }); // fourth > rateAbuseMaxDrops: closed
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[2, CLOSE_POLICY]],
    );
    assert.equal(logs(out).find((l) => l.event === 'refuse')?.fields?.reason, 'rate-limited');
    // the other socket was not affected
    assert.equal(errorCode(h.msg(1, { type: 'relay', session: 's1', data: 'x' }), 1), 'no-peer');
  });

  test('drops outside the abuse window do not add up', () => {
    const h = new Harness({ rateBurst: 1, rateMsgsPerSec: 0.001, rateAbuseMaxDrops: 2, rateAbuseWindowMs: 1000 });
    h.open(1);
    h.msg(1, { type: 'relay', data: 'x' });
    for (let round = 0; round < 5; round++) {
      h.now += 1001;
      for (let i = 0; i < 2; i++) assert.deepEqual(closes(h.msg(1, { type: 'relay', data: 'x' })), []);
    }
  });

  test('per-address connection cap closes with 1013; other addresses are unaffected; closing frees a slot', () => {
    const h = new Harness({ maxConnsPerAddr: 2 });
    assert.deepEqual(closes(h.open(1, '203.0.113.1')), []);
    assert.deepEqual(closes(h.open(2, '203.0.113.1')), []);
    const out = h.open(3, '203.0.113.1');
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[3, CLOSE_TRY_AGAIN]],
    );
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.reason]),
      [['refuse', 'addr-cap']],
    );
    assert.deepEqual(sent(out, 3), [], 'a refused socket gets no hello');
    assert.deepEqual(h.register(3), [], 'a refused socket is ignored');
    assert.deepEqual(h.close(3), []);
    assert.deepEqual(closes(h.open(4, '203.0.113.2')), []);
    h.close(1);
    assert.deepEqual(closes(h.open(5, '203.0.113.1')), []);
    assert.equal(h.router.stats.conns, 3);
  });

  test('total connection cap and room cap', () => {
    const h = new Harness({ maxConns: 2, maxRooms: 1 });
    h.open(1, 'a');
    h.open(2, 'b');
    assert.deepEqual(
      closes(h.open(3, 'c')).map((c) => c.code),
      [CLOSE_TRY_AGAIN],
    );
    h.register(1, 'ROOMONE1');
    const out = h.register(2, 'ROOMTWO2');
    assert.equal(errorCode(out, 2), 'rate-limited');
    assert.equal(h.router.stats.rooms, 1);
  });

  test('issue 2: logs never contain the room, typed or normalised, nor session ids, addresses or payloads', () => {
    const h = new Harness({ maxConnsPerAddr: 3 });
    const secret = 'RELAYPAYLOAD-should-not-leak';
    h.pair();
    h.msg(2, { type: 'relay', data: secret });
    h.admit(1, 's1');
    h.open(3);
    h.join(3);
    h.register(3);
    h.open(4);
    h.close(2);
    h.close(1);
    h.open(5, '198.51.100.7');
    for (let i = 0; i < JOIN_BURST + 2; i++) h.join(5, 'wrong-room-1'); // ends in join-limited
    h.now += DEVICE_GRACE_MS + 1;
    h.tick();
    h.open(6);
    h.register(6);
    h.now += CODE_UNUSED_TTL_MS + 1;
    h.tick();
    const all = logs(h.all);
    assert.ok(all.length >= 8, `expected many log actions, got ${all.length}`);
    const events = new Set(all.map((l) => l.event));
    for (const e of ['register', 'join', 'leave', 'expire', 'refuse']) assert.ok(events.has(e as never), `no ${e} log`);
    assert.ok(
      all.some((l) => l.fields?.reason === 'join-limited'),
      'join-limited is logged',
    );
    const text = JSON.stringify(all);
    for (const needle of [ROOM, TYPED, 'WRONGROOM1', 'wrong-room-1', secret, 's1', 's2', '198.51.100.7']) {
      assert.ok(!text.toUpperCase().includes(needle.toUpperCase()), `log contains ${needle}`);
    }
    for (const l of all) {
      for (const k of Object.keys(l.fields ?? {})) assert.ok(['role', 'room', 'reason'].includes(k), `unexpected log field ${k}`);
    }
  });

  test('stats count rooms, members and events', () => {
    const h = new Harness();
    h.pair();
    h.msg(1, { type: 'relay', session: 's1', data: 'x' });
    h.msg(2, { type: 'relay', data: 'y' });
    h.run({ kind: 'invalid', conn: 1, code: 'bad-message', reason: 'x' });
    const s = h.router.stats;
    assert.deepEqual(
      [s.conns, s.rooms, s.devices, s.controllers, s.registered, s.joined, s.relayed, s.invalid, s.joinLimited, s.joinBuckets, s.registerBuckets],
      [2, 1, 1, 1, 1, 1, 2, 1, 0, 1, 1],
    );
  });
});

describe('router: join limit per source address', () => {
  const A = '203.0.113.5';
  const B = '203.0.113.6';
  /** Time for one join token to come back, in ms (3 s with the defaults). */
  const TOKEN_MS = 60_000 / JOIN_RATE_PER_MIN;
  /** Joins a room nobody holds from `conn` and returns the error code (the socket stays out of any room). */
  const probe = (h: Harness, conn: ConnId, room = 'ZZZZ'): string | undefined => errorCode(h.join(conn, room), conn);

  test('issue 4: the defaults are 20 joins a minute, burst 10, in DEFAULT_ROUTER_LIMITS', () => {
    assert.equal(JOIN_RATE_PER_MIN, 20);
    assert.equal(JOIN_BURST, 10);
    assert.equal(DEFAULT_ROUTER_LIMITS.joinRatePerMin, JOIN_RATE_PER_MIN);
    assert.equal(DEFAULT_ROUTER_LIMITS.joinBurst, JOIN_BURST);
    assert.equal(TOKEN_MS, 3000);
  });

  test('issue 4: a burst of JOIN_BURST joins passes, the next gets join-limited', () => {
    const h = new Harness();
    h.open(1, A);
    for (let i = 0; i < JOIN_BURST; i++) assert.equal(probe(h, 1), 'unknown-room', `join ${i + 1}`);
    const out = h.join(1, 'ZZZZ');
    assert.equal(errorCode(out, 1), 'join-limited');
    assert.deepEqual(closes(out), [], 'the socket stays open');
    assert.equal(h.router.stats.joinLimited, 1);
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.reason]),
      [['refuse', 'join-limited']],
    );
    // a run of refusals is logged once, counted every time
    assert.deepEqual(logs(h.join(1, 'ZZZZ')), []);
    assert.equal(h.router.stats.joinLimited, 2);
  });

  test('issue 4: a limited join does not look up the room: a guesser learns nothing', () => {
    const h = new Harness();
    h.open(1, B);
    h.register(1); // a real device in room K7QM
    h.open(2, A);
    for (let i = 0; i < JOIN_BURST; i++) probe(h, 2);
    const out = h.join(2); // the right room, but no token
    assert.equal(errorCode(out, 2), 'join-limited');
    assert.deepEqual(sent(out, 1), [], 'the device hears nothing');
    assert.equal(h.router.stats.controllers, 0);
    // the same answer as for a room that does not exist
    assert.deepEqual(sent(h.join(2, 'ZZZZ'), 2), sent(out, 2));
  });

  test('issue 4: a limited join does not even run the lazy expiry of the room it names', () => {
    const h = new Harness();
    h.open(1, B);
    h.register(1);
    h.close(1);
    h.now += DEVICE_GRACE_MS + 1; // the room is due, but nothing has looked at it yet
    h.open(2, A);
    for (let i = 0; i < JOIN_BURST; i++) probe(h, 2);
    const late = h.join(2);
    assert.equal(errorCode(late, 2), 'join-limited');
    assert.deepEqual(
      logs(late).filter((l) => l.event === 'expire'),
      [],
    );
    assert.equal(h.router.stats.rooms, 1, 'not looked up, so not expired');
    h.now += TOKEN_MS;
    const looked = h.join(2); // with a token the lookup runs and expires it
    assert.equal(errorCode(looked, 2), 'unknown-room');
    assert.deepEqual(
      logs(looked)
        .filter((l) => l.event === 'expire')
        .map((l) => l.fields?.reason),
      ['device-gone'],
    );
    assert.equal(h.router.stats.rooms, 0);
  });

  test('issue 4: refill: one token per 3 s of input time, up to the burst', () => {
    const h = new Harness();
    h.open(1, A);
    for (let i = 0; i < JOIN_BURST; i++) probe(h, 1);
    assert.equal(probe(h, 1), 'join-limited');
    h.now += TOKEN_MS - 1;
    assert.equal(probe(h, 1), 'join-limited', 'not quite a token yet');
    h.now += 1;
    assert.equal(probe(h, 1), 'unknown-room', 'one token after 3 s');
    assert.equal(probe(h, 1), 'join-limited', 'and only one');
    h.now += TOKEN_MS * 100; // a long wait refills only to the burst
    for (let i = 0; i < JOIN_BURST; i++) assert.equal(probe(h, 1), 'unknown-room');
    assert.equal(probe(h, 1), 'join-limited');
  });

  test('issue 4: the limit is per address across sockets; another address is unaffected', () => {
    const h = new Harness();
    for (let i = 0; i < JOIN_BURST; i++) {
      h.open(100 + i, A);
      assert.equal(probe(h, 100 + i), 'unknown-room');
    }
    h.open(200, A);
    assert.equal(probe(h, 200), 'join-limited', 'a fresh socket from the same address gets no fresh burst');
    assert.equal(probe(h, 100), 'join-limited');
    h.open(300, B);
    for (let i = 0; i < JOIN_BURST; i++) assert.equal(probe(h, 300), 'unknown-room', 'address B has its own bucket');
    assert.equal(h.router.stats.joinBuckets, 2);
  });

  test('issue 4: closing every socket and reconnecting does not reset the bucket', () => {
    const h = new Harness();
    h.open(1, A);
    for (let i = 0; i < JOIN_BURST; i++) probe(h, 1);
    h.close(1);
    h.tick();
    h.open(2, A);
    assert.equal(probe(h, 2), 'join-limited');
  });

  test('issue 4: buckets are forgotten on tick once full again (bounded memory), with or without sockets', () => {
    const h = new Harness();
    h.open(1, A);
    h.open(2, B);
    probe(h, 1); // A: one token spent
    for (let i = 0; i < JOIN_BURST; i++) probe(h, 2); // B: all spent
    h.close(2);
    assert.equal(h.router.stats.joinBuckets, 2);
    h.tick();
    assert.equal(h.router.stats.joinBuckets, 2, 'neither is full yet');
    h.now += TOKEN_MS;
    h.tick();
    assert.equal(h.router.stats.joinBuckets, 1, 'A refilled and is forgotten, its socket still open');
    h.now += TOKEN_MS * (JOIN_BURST - 1) - 1;
    h.tick();
    assert.equal(h.router.stats.joinBuckets, 1, 'B is one millisecond short of full');
    h.now += 1;
    h.tick();
    assert.equal(h.router.stats.joinBuckets, 0, 'B refilled and is forgotten, though it has no socket');
    // forgetting a full bucket loses nothing: A still gets exactly a full burst
    for (let i = 0; i < JOIN_BURST; i++) assert.equal(probe(h, 1), 'unknown-room');
    assert.equal(probe(h, 1), 'join-limited');
  });

  test('issue 4: only joins that reach the lookup cost a token; registering a device room is not join-limited', () => {
    const h = new Harness({ joinBurst: 2 });
    h.open(1, A);
    for (let i = 0; i < 20; i++) assert.equal(errorCode(h.join(1, 'a!'), 1), 'bad-room');
    h.open(2, A);
    h.registerHome(2, newKey());
    for (let i = 0; i < 20; i++) assert.equal(errorCode(h.join(2), 2), 'already-joined');
    assert.equal(h.router.stats.joinBuckets, 0, 'nothing spent yet');
    for (let i = 0; i < 15; i++) {
      h.open(10 + i, A);
      assert.equal(sent(h.registerHome(10 + i, newKey()), 10 + i)[0]?.type, 'registered');
    }
    assert.equal(h.router.stats.joinBuckets, 0, 'device rooms cost no guess');
    assert.equal(probe(h, 1), 'unknown-room');
    assert.equal(probe(h, 1), 'unknown-room');
    assert.equal(probe(h, 1), 'join-limited');
  });

  test('issue 4: a successful join costs a token too, and limits can be overridden', () => {
    const h = new Harness({ joinBurst: 1, joinRatePerMin: 60 });
    h.open(1, B);
    h.register(1);
    h.open(2, A);
    assert.equal(sent(h.join(2), 2)[0]?.type, 'joined');
    h.close(2);
    h.open(3, A);
    assert.equal(errorCode(h.join(3), 3), 'join-limited');
    h.now += 1000;
    assert.equal(sent(h.join(3), 3)[0]?.type, 'joined');
  });
});

describe('router: rooms that cannot be guessed, and leaving for good', () => {
  const KEY = newKey();
  const HOME = deviceRoom(KEY.publicKey); // 26 symbols

  test('issue 4: joins of a long (device) room cost no join token', () => {
    const h = new Harness({ joinBurst: 1, joinRatePerMin: 1 });
    h.open(1);
    assert.equal(sent(h.registerHome(1, KEY), 1)[0]?.type, 'registered');
    for (let i = 0; i < 5; i++) {
      const c = 10 + i;
      h.open(c);
      assert.equal(sent(h.join(c, HOME), c)[0]?.type, 'joined', `join ${i + 1}`);
      h.close(c);
    }
    // ...while short rooms are still limited for the same address.
    h.open(20);
    assert.equal(errorCode(h.join(20, 'ZZZZ'), 20), 'unknown-room');
    h.open(21);
    assert.equal(errorCode(h.join(21, 'YYYY'), 21), 'join-limited');
  });

  test('issue 4: a device closing with leave deletes its room at once; a plain close keeps the grace', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.run({ kind: 'close', conn: 1, leave: true });
    h.open(2);
    assert.equal(errorCode(h.join(2), 2), 'unknown-room', 'no grace after leave');

    const g = new Harness();
    g.open(1);
    g.register(1);
    g.close(1);
    g.open(2);
    const joined = sent(g.join(2), 2)[0];
    assert.equal(joined?.type, 'joined');
    assert.equal((joined as { waiting: boolean }).waiting, true, 'the room waits for its device');
  });

  test('issue 4: leave with a controller present tells it peer-left and frees the room', () => {
    const h = new Harness();
    h.pair();
    const out = h.run({ kind: 'close', conn: 1, leave: true });
    assert.equal(sent(out, 2)[0]?.type, 'peer-left');
    h.open(3);
    assert.equal(sent(h.register(3), 3)[0]?.type, 'registered', 'the room name is free again');
  });
});

describe('router: issue 9, hostile clients of the server', () => {
  const A = '203.0.113.5';
  const B = '203.0.113.6';

  test('issue 9: every socket is greeted with hello{v, nonce}, a fresh nonce each', () => {
    const h = new Harness();
    const first = sent(h.open(1), 1);
    const second = sent(h.open(2), 2);
    assert.equal(first.length, 1);
    assert.equal(second.length, 1);
    const [a, b] = [first[0]!, second[0]!];
    assert.ok(a.type === 'hello' && b.type === 'hello');
    assert.equal(a.v, PROTOCOL_VERSION);
    assert.equal(Buffer.from(a.nonce, 'base64url').length, HELLO_NONCE_BYTES);
    assert.notEqual(a.nonce, b.nonce);
  });

  test('issue 9: a device room registers only with a valid proof of its key on this connection', () => {
    const h = new Harness();
    const key = newKey();
    const other = newKey();
    const room = deviceRoom(key.publicKey);
    assert.ok(room.length >= UNGUESSABLE_ROOM_LENGTH);
    h.open(1);
    h.open(2);
    const reg = (proof?: RegisterProof) => errorCode(h.msg(1, { type: 'register', v: PROTOCOL_VERSION, room, ...(proof ? { proof } : {}) }), 1);
    assert.equal(reg(), 'bad-proof', 'no proof');
    assert.equal(reg(h.proof(1, other, room)), 'bad-proof', 'signed by another key: the room is not named after it');
    assert.equal(reg({ ...h.proof(1, other, room), key: h.proof(1, key).key }), 'bad-proof', 'the right key, a signature by another');
    assert.equal(reg(h.proof(1, key, deviceRoom(other.publicKey))), 'bad-proof', 'the right key, signed for another room');
    const good = h.proof(1, key);
    const sig = Buffer.from(good.sig, 'base64url');
    sig[10]! ^= 1;
    assert.equal(reg({ ...good, sig: sig.toString('base64url') }), 'bad-proof', 'a flipped bit in the signature');
    assert.equal(reg(h.proof(1, key, room, 2)), 'bad-proof', "replayed: signed over another connection's nonce");
    assert.equal(h.router.stats.rooms, 0, 'no refused proof made a room');
    assert.equal(h.router.stats.badProofs, 6);
    assert.equal(sent(h.msg(1, { type: 'register', v: PROTOCOL_VERSION, room, proof: good }), 1)[0]?.type, 'registered');
    // A short (pairing) room needs none.
    assert.equal(sent(h.register(2), 2)[0]?.type, 'registered');
  });

  test('issue 9: while a device is away nobody else can take its room; it comes back with its proof', () => {
    const h = new Harness();
    const key = newKey();
    const room = deviceRoom(key.publicKey);
    h.open(1, A);
    h.registerHome(1, key);
    h.close(1); // away, within its grace
    h.open(2, B); // a revoked controller: it knows the device's key, not its secret key
    assert.equal(errorCode(h.msg(2, { type: 'register', v: PROTOCOL_VERSION, room }), 2), 'bad-proof');
    assert.equal(errorCode(h.msg(2, { type: 'register', v: PROTOCOL_VERSION, room, proof: h.proof(2, newKey(), room) }), 2), 'bad-proof');
    h.open(3, A);
    const back = h.registerHome(3, key);
    assert.equal(sent(back, 3)[0]?.type, 'registered');
    assert.equal(logs(back).find((l) => l.event === 'register')?.fields?.reason, 'rejoin');
  });

  test('issue 9: a flood of registers from one address stops at its bucket and MAX_ROOMS_PER_ADDR, far below MAX_ROOMS; another address still registers', () => {
    const h = new Harness();
    assert.ok(MAX_ROOMS_PER_ADDR * 100 <= MAX_ROOMS);
    const FLOOD = 2000;
    // Spread over 28 s: within the grace, so every abruptly closed device's room is still held.
    const step = 28_000 / FLOOD;
    const codes = new Map<string, number>();
    for (let i = 0; i < FLOOD; i++) {
      const conn = 1000 + i;
      h.open(conn, A);
      const out = h.registerHome(conn, newKey());
      const code = errorCode(out, conn) ?? sent(out, conn)[0]!.type;
      codes.set(code, (codes.get(code) ?? 0) + 1);
      h.close(conn); // abrupt: the room stays for DEVICE_GRACE_MS
      h.now += step;
    }
    assert.equal(codes.get('registered'), MAX_ROOMS_PER_ADDR, JSON.stringify([...codes]));
    assert.equal(h.router.stats.rooms, MAX_ROOMS_PER_ADDR);
    assert.ok((codes.get('register-limited') ?? 0) > 0, 'the bucket refused some');
    assert.ok((codes.get('too-many-rooms') ?? 0) > 0, 'the room cap refused some');
    assert.equal(codes.get('rate-limited'), undefined, 'never the server-wide room cap');
    assert.equal(h.router.stats.registerLimited, codes.get('register-limited'));
    h.open(1, B);
    assert.equal(sent(h.registerHome(1, newKey()), 1)[0]?.type, 'registered', 'another address is unaffected');
    h.open(2, B);
    assert.equal(sent(h.register(2), 2)[0]?.type, 'registered');
    // Once the grace is over the rooms are gone and the address may register again.
    h.now += DEVICE_GRACE_MS;
    h.tick();
    assert.equal(h.router.stats.rooms, 2);
    h.open(3, A);
    assert.equal(sent(h.registerHome(3, newKey()), 3)[0]?.type, 'registered');
  });

  test('issue 9: the registration bucket: REGISTER_BURST at once, then REGISTER_RATE_PER_MIN; a refused register is not looked up', () => {
    const h = new Harness();
    const TOKEN_MS = 60_000 / REGISTER_RATE_PER_MIN;
    const key = newKey();
    h.open(1, B);
    h.registerHome(1, key); // B's device holds its room
    for (let i = 0; i < REGISTER_BURST; i++) {
      h.open(10 + i, A);
      assert.equal(sent(h.registerHome(10 + i, newKey()), 10 + i)[0]?.type, 'registered', `register ${i + 1}`);
    }
    h.open(2, A);
    const out = h.msg(2, { type: 'register', v: PROTOCOL_VERSION, room: deviceRoom(key.publicKey), proof: h.proof(2, key) });
    assert.equal(errorCode(out, 2), 'register-limited', 'not room-taken: the room was not looked up');
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.reason]),
      [['refuse', 'register-limited']],
    );
    h.now += TOKEN_MS;
    assert.equal(errorCode(h.msg(2, { type: 'register', v: PROTOCOL_VERSION, room: deviceRoom(key.publicKey), proof: h.proof(2, key) }), 2), 'room-taken');
    assert.equal(errorCode(h.registerHome(2, newKey()), 2), 'register-limited', 'one token per TOKEN_MS');
  });

  test('issue 9: registering a short (pairing) room costs a guess from the join bucket, taken before the lookup', () => {
    const h = new Harness();
    h.open(1, B);
    h.register(1); // a live pairing room, K7QM
    // A prober at address A: each register of a short room spends one of the JOIN_BURST guesses.
    for (let i = 0; i < JOIN_BURST; i++) {
      h.open(10 + i, A);
      const out = h.register(10 + i, `ZZ${CODE_PAIR[i]}`);
      assert.equal(sent(out, 10 + i)[0]?.type, 'registered', `probe ${i + 1}`);
    }
    h.open(2, A);
    const probe = h.register(2, ROOM);
    assert.equal(errorCode(probe, 2), 'join-limited', 'not room-taken: a refused register learns nothing');
    assert.deepEqual(sent(probe, 1), []);
    assert.deepEqual(sent(h.register(2, 'YYYY'), 2), sent(probe, 2), 'the same answer for a free room');
    assert.equal(errorCode(h.join(2, 'XXXX'), 2), 'join-limited', 'the same bucket as joins');
    // Device rooms cost no guess: a board behind the same address still comes up.
    assert.equal(sent(h.registerHome(2, newKey()), 2)[0]?.type, 'registered');
  });

  test('issue 9: addressKey: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 as its /64', () => {
    assert.equal(addressKey('203.0.113.5'), '203.0.113.5');
    assert.equal(addressKey('::ffff:203.0.113.5'), '203.0.113.5');
    assert.equal(addressKey('::FFFF:cb00:7105'), '203.0.113.5');
    assert.equal(addressKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:0DB8:0001:0002:ffff:1:2:3'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:2:aaaa:bbbb:1.2.3.4'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:3::1'), '2001:db8:1:3::/64');
    assert.equal(addressKey('2001:db8::'), '2001:db8:0:0::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    for (const odd of ['unknown', '1:2:3', '1::2::3', '2001:db8:1:2:3:4:5:6:7', 'g::1', '::ffff:1.2.3.256']) assert.equal(addressKey(odd), odd, odd);
  });

  test('issue 9: every per-address limit counts a whole IPv6 /64 as one address', () => {
    const P = '2001:db8:7:7';
    const inP = (i: number) => `${P}:${(i + 1).toString(16)}::${(i * 7 + 3).toString(16)}`;
    // Connections.
    const c = new Harness({ maxConnsPerAddr: 3 });
    for (let i = 0; i < 3; i++) assert.deepEqual(closes(c.open(i + 1, inP(i))), []);
    assert.deepEqual(
      closes(c.open(9, inP(9))).map((x) => x.code),
      [CLOSE_TRY_AGAIN],
      'a fourth address of the /64',
    );
    assert.deepEqual(closes(c.open(10, '2001:db8:7:8::1')), [], 'the next /64 is another address');
    // Joins (and short-room registers): one bucket for the /64.
    const j = new Harness();
    for (let i = 0; i < JOIN_BURST; i++) {
      j.open(i + 1, inP(i));
      assert.equal(errorCode(j.join(i + 1, 'ZZZZ'), i + 1), 'unknown-room');
    }
    j.open(50, inP(50));
    assert.equal(errorCode(j.join(50, 'ZZZZ'), 50), 'join-limited');
    assert.equal(errorCode(j.register(50, 'ZZZZ'), 50), 'join-limited');
    // Registers and rooms.
    const r = new Harness({ registerBurst: 1000, maxRoomsPerAddr: 3 });
    for (let i = 0; i < 3; i++) {
      r.open(i + 1, inP(i));
      assert.equal(sent(r.registerHome(i + 1, newKey()), i + 1)[0]?.type, 'registered');
    }
    r.open(60, inP(60));
    assert.equal(errorCode(r.registerHome(60, newKey()), 60), 'too-many-rooms');
    const g = new Harness();
    for (let i = 0; i < REGISTER_BURST; i++) {
      g.open(i + 1, inP(i));
      g.registerHome(i + 1, newKey());
    }
    g.open(70, inP(70));
    assert.equal(errorCode(g.registerHome(70, newKey()), 70), 'register-limited');
    g.open(71, '::ffff:198.51.100.1');
    g.open(72, '198.51.100.1');
    assert.equal(sent(g.registerHome(71, newKey()), 71)[0]?.type, 'registered');
    assert.equal(g.router.stats.registerBuckets, 2, 'IPv4-mapped and plain IPv4 share a bucket; the /64 has one');
  });

  test('issue 9: a controller the device does not admit within ADMIT_TIMEOUT_MS is dropped, and the room is free', () => {
    const h = new Harness();
    h.pair(); // controller 2 in device 1's room, silent
    h.now += ADMIT_TIMEOUT_MS;
    assert.deepEqual(h.tick(), [], 'not yet');
    h.now += 1;
    const out = h.tick();
    assert.equal(errorCode(out, 2), 'not-admitted');
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[2, CLOSE_POLICY]],
    );
    assert.deepEqual(sent(out, 1), [{ type: 'peer-left', session: 's1' }]);
    assert.equal(logs(out).find((l) => l.event === 'refuse')?.fields?.reason, 'not-admitted');
    assert.equal(h.router.stats.notAdmitted, 1);
    h.open(3);
    assert.equal(sent(h.join(3), 3)[0]?.type, 'joined', 'no room-full: the room is free again');
  });

  test('issue 9: an overdue controller is dropped on lookup too, so the next join does not get room-full', () => {
    const h = new Harness();
    h.pair();
    h.now += ADMIT_TIMEOUT_MS + 1; // no tick
    h.open(3);
    const out = h.join(3);
    assert.equal(errorCode(out, 2), 'not-admitted');
    assert.deepEqual(sent(out, 3), [{ type: 'joined', session: 's2', waiting: false, stunPort: STUN }]);
  });

  test('issue 9: an admitted controller stays, also across the device re-registering; an admit for another session does not count', () => {
    const h = new Harness();
    h.pair();
    assert.deepEqual(h.admit(1, 's1'), []);
    h.now += ADMIT_TIMEOUT_MS * 3;
    assert.deepEqual(h.tick(), []);
    // The device reconnects within its grace: the same session, still admitted.
    h.close(1);
    h.now += 1000;
    h.open(5);
    h.register(5);
    h.now += ADMIT_TIMEOUT_MS * 3;
    assert.deepEqual(closes(h.tick()), []);
    assert.equal(h.router.stats.controllers, 1);
    // A new controller must be admitted again; a stale admit or one from a controller does not do it.
    h.close(2);
    h.open(6);
    h.join(6);
    assert.deepEqual(h.admit(5, 's1'), [], 'an admit for the old session is ignored');
    assert.equal(errorCode(h.admit(6, 's3'), 6), 'not-joined', 'only the device admits');
    h.now += ADMIT_TIMEOUT_MS + 1;
    assert.equal(errorCode(h.tick(), 6), 'not-admitted');
  });

  test('issue 9: the admission clock runs only while both are present', () => {
    const h = new Harness();
    h.open(1);
    h.register(1);
    h.close(1); // the device is away
    h.open(2);
    h.join(2); // the controller waits
    h.now += DEVICE_GRACE_MS - 1000; // longer than ADMIT_TIMEOUT_MS, alone
    assert.deepEqual(closes(h.tick()), []);
    h.open(3);
    h.register(3); // the device is back: now the clock starts
    h.now += ADMIT_TIMEOUT_MS;
    assert.deepEqual(closes(h.tick()), []);
    h.now += 1;
    assert.equal(errorCode(h.tick(), 2), 'not-admitted');
  });
});

/** Distinct two-symbol suffixes for short test rooms. */
const CODE_PAIR = ['AB', 'AC', 'AD', 'AE', 'AF', 'AG', 'AH', 'AJ', 'AK', 'AM', 'AN', 'AP'];

describe('router: issue 12, many controllers in one device room', () => {
  const KEY = newKey();
  const HOME = deviceRoom(KEY.publicKey);
  const DEVICE = 1;
  /** Controllers on conns 11, 12, ...: their sessions are s1, s2, ... in join order. */
  const ctl = (i: number): ConnId => 10 + i;

  /** A device on conn 1 in its own room (cap `cap`) and `n` controllers joined, on conns 11..10+n with sessions s1..sn. */
  function room(n: number, cap = 8, limits?: Partial<RouterLimits>): Harness {
    const h = new Harness(limits);
    h.open(DEVICE);
    assert.equal(sent(h.registerHome(DEVICE, KEY, cap), DEVICE)[0]?.type, 'registered');
    for (let i = 1; i <= n; i++) {
      h.open(ctl(i));
      assert.equal(sent(h.join(ctl(i), HOME), ctl(i))[0]?.type, 'joined', `controller ${i}`);
    }
    return h;
  }
  /** What each of controllers 1..n was sent by `out`. */
  const perController = (out: Action[], n: number): ServerMessage[][] => Array.from({ length: n }, (_, i) => sent(out, ctl(i + 1)));
  const joinCode = (h: Harness, conn: ConnId, r = HOME): string | undefined => {
    h.open(conn);
    const out = h.join(conn, r);
    return errorCode(out, conn) ?? sent(out, conn)[0]?.type;
  };

  test('issue 12: each controller gets its own session and the device a peer for each; a join tells nobody else', () => {
    const h = new Harness();
    h.open(DEVICE);
    h.registerHome(DEVICE, KEY, 8);
    for (let i = 1; i <= 5; i++) {
      h.open(ctl(i));
      const out = h.join(ctl(i), HOME);
      assert.deepEqual(sent(out, ctl(i)), [{ type: 'joined', session: `s${i}`, waiting: false, stunPort: STUN }]);
      assert.deepEqual(sent(out, DEVICE), [{ type: 'peer', session: `s${i}` }]);
      assert.deepEqual(
        perController(out, i - 1),
        Array.from({ length: i - 1 }, () => []),
        'the others hear nothing',
      );
    }
    assert.equal(h.router.stats.controllers, 5);
    assert.equal(h.router.stats.rooms, 1);
  });

  test("issue 12: a controller's relay reaches the device tagged with its own session, whatever session it sent", () => {
    const h = room(5);
    for (let i = 1; i <= 5; i++) {
      const out = h.msg(ctl(i), { type: 'relay', data: `from-${i}` });
      assert.deepEqual(sent(out, DEVICE), [{ type: 'relay', session: `s${i}`, data: `from-${i}` }]);
      assert.deepEqual(perController(out, 5), [[], [], [], [], []]);
    }
    // A controller naming another's session speaks only for its own.
    const forged = h.msg(ctl(3), { type: 'relay', session: 's1', data: 'as-s1' });
    assert.deepEqual(sent(forged, DEVICE), [{ type: 'relay', session: 's3', data: 'as-s1' }]);
    assert.equal(h.router.stats.relayed, 6);
  });

  test("issue 12: the device's relay reaches only the controller of the session it names, without the tag", () => {
    const h = room(5);
    for (const i of [4, 1, 5, 2, 3]) {
      const out = h.msg(DEVICE, { type: 'relay', session: `s${i}`, data: `to-${i}` });
      assert.deepEqual(
        perController(out, 5),
        Array.from({ length: 5 }, (_, k) => (k + 1 === i ? [{ type: 'relay', data: `to-${i}` }] : [])),
        `relay to s${i}`,
      );
      assert.deepEqual(sent(out, DEVICE), []);
    }
  });

  test("issue 12: a device's relay without a session is bad-message (an invalid frame); one to a session not in the room is no-peer", () => {
    const h = room(2);
    let out = h.msg(DEVICE, { type: 'relay', data: 'to-whom' });
    assert.equal(errorCode(out, DEVICE), 'bad-message');
    assert.deepEqual(perController(out, 2), [[], []], 'forwarded to nobody');
    assert.equal(h.router.stats.invalid, 1);
    assert.equal(h.router.stats.relayed, 0);
    out = h.msg(DEVICE, { type: 'relay', session: 'nobody', data: 'x' });
    assert.equal(errorCode(out, DEVICE), 'no-peer');
    assert.deepEqual(perController(out, 2), [[], []]);
    // A controller that left meanwhile: its session is no-peer, the other's still works.
    h.close(ctl(1));
    out = h.msg(DEVICE, { type: 'relay', session: 's1', data: 'late' });
    assert.equal(errorCode(out, DEVICE), 'no-peer');
    assert.deepEqual(sent(out, ctl(1)), []);
    assert.deepEqual(sent(h.msg(DEVICE, { type: 'relay', session: 's2', data: 'y' }), ctl(2)), [{ type: 'relay', data: 'y' }]);
    // Too many relays without a session close the device like any invalid frames.
    for (let i = 1; i < MAX_INVALID_PER_CONN; i++) assert.deepEqual(closes(h.msg(DEVICE, { type: 'relay', data: 'x' })), []);
    assert.deepEqual(
      closes(h.msg(DEVICE, { type: 'relay', data: 'x' })).map((c) => [c.conn, c.code]),
      [[DEVICE, CLOSE_POLICY]],
    );
  });

  test('issue 12: the cap is register.maxControllers: one past it gets device-busy (logged, counted), others hear nothing; a leave frees a place', () => {
    const h = room(3, 3);
    h.open(20);
    const out = h.join(20, HOME);
    assert.equal(errorCode(out, 20), 'device-busy');
    assert.deepEqual(sent(out, DEVICE), []);
    assert.deepEqual(perController(out, 3), [[], [], []]);
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.role, l.fields?.reason]),
      [['refuse', 'controller', 'device-busy']],
    );
    assert.equal(h.router.stats.deviceBusy, 1);
    assert.equal(h.router.stats.controllers, 3);
    assert.equal(errorCode(h.join(20, HOME), 20), 'device-busy', 'the socket is in no room and may try again');
    assert.equal(h.router.stats.deviceBusy, 2);
    h.close(ctl(2));
    assert.deepEqual(sent(h.join(20, HOME), 20), [{ type: 'joined', session: 's4', waiting: false, stunPort: STUN }]);
    // Without maxControllers a device room takes DEFAULT_ROOM_CONTROLLERS.
    assert.equal(DEFAULT_ROOM_CONTROLLERS, 1);
    const d = new Harness();
    d.open(DEVICE);
    d.registerHome(DEVICE, KEY);
    assert.equal(joinCode(d, 11), 'joined');
    assert.equal(joinCode(d, 12), 'device-busy', 'a device room says device-busy, not room-full');
  });

  test('issue 12: the server caps a device room at maxControllersPerRoom, whatever the device asks for', () => {
    assert.equal(MAX_CONTROLLERS_PER_ROOM, 16);
    assert.equal(DEFAULT_ROUTER_LIMITS.maxControllersPerRoom, MAX_CONTROLLERS_PER_ROOM);
    const h = room(MAX_CONTROLLERS_PER_ROOM, 64);
    assert.equal(joinCode(h, 100), 'device-busy');
    assert.equal(h.router.stats.controllers, MAX_CONTROLLERS_PER_ROOM);
    const low = room(2, 8, { maxControllersPerRoom: 2 });
    assert.equal(joinCode(low, 100), 'device-busy');
    // The smaller of the two wins either way.
    const asked = room(3, 3, { maxControllersPerRoom: 5 });
    assert.equal(joinCode(asked, 100), 'device-busy');
  });

  test('issue 12: a pairing room holds one controller whatever its register asks for: the second gets room-full', () => {
    const h = new Harness();
    h.open(DEVICE);
    h.msg(DEVICE, { type: 'register', v: PROTOCOL_VERSION, room: TYPED, maxControllers: 8 });
    assert.equal(joinCode(h, 11, TYPED), 'joined');
    assert.equal(joinCode(h, 12, TYPED), 'room-full');
    assert.equal(h.router.stats.deviceBusy, 0);
    assert.equal(h.router.stats.controllers, 1);
  });

  test("issue 12: while the device is away joins count against its last register's cap; a re-register may change it and those in stay", () => {
    const h = room(2, 2);
    h.close(DEVICE);
    assert.equal(joinCode(h, 20), 'device-busy', 'the cap holds while the device is away');
    h.close(ctl(2));
    assert.equal((sent(h.join(20, HOME), 20)[0] as { waiting?: boolean }).waiting, true, 'a freed place is taken while waiting');
    // Back with a lower cap: both stay and get peer.
    h.open(2);
    const back = h.registerHome(2, KEY, 1);
    assert.deepEqual(sent(back, ctl(1)), [{ type: 'peer', session: 's1' }]);
    assert.deepEqual(sent(back, 20), [{ type: 'peer', session: 's3' }]);
    assert.equal(h.router.stats.controllers, 2);
    h.close(ctl(1));
    assert.equal(joinCode(h, 21), 'device-busy', 'one in, cap 1');
    // Back with a higher cap: room again.
    h.close(2);
    h.open(3);
    h.registerHome(3, KEY, 4);
    assert.equal(joinCode(h, 22), 'joined');
    assert.equal(joinCode(h, 23), 'joined');
    assert.equal(joinCode(h, 24), 'joined');
    assert.equal(joinCode(h, 25), 'device-busy');
  });

  test('issue 12: admission is per session: each clock starts when its controller and the device are both there; only the overdue one is dropped', () => {
    const h = room(2); // s1 and s2 join now
    h.now += 5000;
    h.open(ctl(3));
    h.join(ctl(3), HOME); // s3, 5 s later
    assert.deepEqual(h.admit(DEVICE, 's1'), []);
    h.now += ADMIT_TIMEOUT_MS - 5000 + 1; // s2 is overdue, s3 is not
    let out = h.tick();
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[ctl(2), CLOSE_POLICY]],
    );
    assert.equal(errorCode(out, ctl(2)), 'not-admitted');
    assert.deepEqual(sent(out, DEVICE), [{ type: 'peer-left', session: 's2' }]);
    assert.deepEqual([sent(out, ctl(1)), sent(out, ctl(3))], [[], []], 'the others are untouched');
    assert.equal(h.router.stats.notAdmitted, 1);
    // s3 is admitted in time and stays; the admitted s1 stays for good.
    h.admit(DEVICE, 's3');
    h.now += ADMIT_TIMEOUT_MS * 3;
    assert.deepEqual(h.tick(), []);
    assert.equal(h.router.stats.controllers, 2);
    assert.deepEqual(sent(h.msg(ctl(3), { type: 'relay', data: 'x' }), DEVICE), [{ type: 'relay', session: 's3', data: 'x' }]);
    // A newcomer's clock is its own; admitting another session does not admit it.
    h.open(ctl(4));
    h.join(ctl(4), HOME);
    h.admit(DEVICE, 's1');
    h.now += ADMIT_TIMEOUT_MS + 1;
    out = h.tick();
    assert.deepEqual(
      closes(out).map((c) => c.conn),
      [ctl(4)],
    );
  });

  test('issue 12: the admission clocks stop while the device is away and restart, each, when it is back', () => {
    const h = room(2);
    h.admit(DEVICE, 's2');
    h.now += ADMIT_TIMEOUT_MS - 1000;
    h.close(DEVICE);
    h.now += DEVICE_GRACE_MS - 1000; // longer than ADMIT_TIMEOUT_MS, alone
    assert.deepEqual(closes(h.tick()), []);
    h.open(2);
    h.registerHome(2, KEY, 8);
    h.now += ADMIT_TIMEOUT_MS;
    assert.deepEqual(closes(h.tick()), []);
    h.now += 1;
    const out = h.tick();
    assert.deepEqual(
      closes(out).map((c) => c.conn),
      [ctl(1)],
      'the unadmitted s1 only; s2 stays admitted across the re-register',
    );
  });

  test('issue 12: the device leaving tells every controller peer-left with its own session; back, each gets peer and the device one per controller', () => {
    const h = room(3);
    let out = h.close(DEVICE);
    assert.deepEqual(perController(out, 3), [
      [{ type: 'peer-left', session: 's1' }],
      [{ type: 'peer-left', session: 's2' }],
      [{ type: 'peer-left', session: 's3' }],
    ]);
    for (let i = 1; i <= 3; i++) assert.equal(errorCode(h.msg(ctl(i), { type: 'relay', data: 'x' }), ctl(i)), 'no-peer');
    h.now += 1000;
    h.open(5);
    out = h.registerHome(5, KEY, 8);
    assert.deepEqual(sent(out, 5), [
      { type: 'registered', room: HOME, ttlMs: CODE_UNUSED_TTL_MS, stunPort: STUN },
      { type: 'peer', session: 's1' },
      { type: 'peer', session: 's2' },
      { type: 'peer', session: 's3' },
    ]);
    assert.deepEqual(perController(out, 3), [[{ type: 'peer', session: 's1' }], [{ type: 'peer', session: 's2' }], [{ type: 'peer', session: 's3' }]]);
    assert.deepEqual(sent(h.msg(ctl(2), { type: 'relay', data: 'hi' }), 5), [{ type: 'relay', session: 's2', data: 'hi' }]);
    assert.deepEqual(sent(h.msg(5, { type: 'relay', session: 's3', data: 'yo' }), ctl(3)), [{ type: 'relay', data: 'yo' }]);
  });

  test('issue 12: a controller leaving tells the device peer-left for its session only', () => {
    const h = room(3);
    const out = h.close(ctl(2));
    assert.deepEqual(sent(out, DEVICE), [{ type: 'peer-left', session: 's2' }]);
    assert.deepEqual([sent(out, ctl(1)), sent(out, ctl(3))], [[], []]);
    assert.equal(h.router.stats.controllers, 2);
    assert.deepEqual(sent(h.msg(DEVICE, { type: 'relay', session: 's3', data: 'x' }), ctl(3)), [{ type: 'relay', data: 'x' }]);
  });

  test('issue 12: the unused-room clock restarts only when the last controller leaves; the room expires only with none', () => {
    const h = room(2);
    h.admit(DEVICE, 's1');
    h.admit(DEVICE, 's2');
    h.now += CODE_UNUSED_TTL_MS * 2;
    assert.deepEqual(h.tick(), []);
    h.close(ctl(1));
    h.now += CODE_UNUSED_TTL_MS + 1;
    assert.deepEqual(h.tick(), [], 'one controller is still in: no expiry');
    h.close(ctl(2)); // the last one: the clock starts now
    h.now += CODE_UNUSED_TTL_MS;
    assert.deepEqual(h.tick(), []);
    h.now += 1;
    const out = h.tick();
    assert.equal(errorCode(out, DEVICE), 'expired');
    assert.deepEqual(
      logs(out).map((l) => [l.event, l.fields?.reason]),
      [['expire', 'unused']],
    );
  });

  test('issue 12: a device room whose device stays away expires and every waiting controller gets expired', () => {
    const h = room(3);
    h.close(DEVICE);
    h.now += DEVICE_GRACE_MS + 1;
    const out = h.tick();
    for (let i = 1; i <= 3; i++) assert.equal(errorCode(out, ctl(i)), 'expired', `controller ${i}`);
    assert.equal(logs(out).filter((l) => l.event === 'expire').length, 1);
    assert.deepEqual([h.router.stats.rooms, h.router.stats.controllers], [0, 0]);
    for (let i = 1; i <= 3; i++) assert.equal(errorCode(h.msg(ctl(i), { type: 'relay', data: 'x' }), ctl(i)), 'not-joined', 'out of the room, still connected');
  });

  test('issue 12: a controller closed for its rate or its invalid frames leaves the other sessions alone', () => {
    const h = room(3, 8, { rateBurst: 5, rateMsgsPerSec: 0.001, rateAbuseMaxDrops: 2 });
    // Controller 1 floods: 4 tokens left after its join, then 3 drops close it.
    let out: Action[] = [];
    for (let i = 0; i < 7; i++) out = h.msg(ctl(1), { type: 'relay', data: 'x' });
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[ctl(1), CLOSE_POLICY]],
    );
    assert.deepEqual(sent(out, DEVICE), [{ type: 'peer-left', session: 's1' }]);
    assert.deepEqual([sent(out, ctl(2)), sent(out, ctl(3))], [[], []]);
    // Controller 2 sends invalid frames until it is closed (with a deeper bucket).
    const v = room(3);
    for (let i = 0; i <= MAX_INVALID_PER_CONN; i++) out = v.run({ kind: 'invalid', conn: ctl(2), code: 'bad-message', reason: 'x' });
    assert.deepEqual(
      closes(out).map((c) => c.conn),
      [ctl(2)],
    );
    assert.deepEqual(sent(out, DEVICE), [{ type: 'peer-left', session: 's2' }]);
    assert.deepEqual([sent(out, ctl(1)), sent(out, ctl(3))], [[], []]);
    for (const i of [1, 3]) {
      assert.deepEqual(sent(v.msg(ctl(i), { type: 'relay', data: `d${i}` }), DEVICE), [{ type: 'relay', session: `s${i}`, data: `d${i}` }]);
      assert.deepEqual(sent(v.msg(DEVICE, { type: 'relay', session: `s${i}`, data: `c${i}` }), ctl(i)), [{ type: 'relay', data: `c${i}` }]);
    }
  });

  test('issue 12: stats.controllers counts the controllers of every room', () => {
    const h = room(4);
    h.open(50);
    h.register(50); // a pairing room beside it
    h.open(51);
    h.join(51);
    assert.deepEqual([h.router.stats.rooms, h.router.stats.devices, h.router.stats.controllers], [2, 2, 5]);
    h.close(ctl(1));
    h.close(DEVICE);
    assert.deepEqual([h.router.stats.devices, h.router.stats.controllers], [1, 4]);
  });
});
