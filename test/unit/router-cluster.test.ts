// The Router as one node of a cluster (RouterOptions.cluster): its cluster inputs (claimed,
// located, evict, drain, open{remote}, a message's admission) and actions (claim, locate,
// release), with no sockets and no Redis.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deviceRoom } from '../../protocol/code.js';
import { PROTOCOL_VERSION } from '../../protocol/signaling.js';
import {
  type Action,
  CLOSE_TRY_AGAIN,
  CODE_UNUSED_TTL_MS,
  type ConnId,
  DEVICE_GRACE_MS,
  JOIN_BURST,
  REGISTER_BURST,
  type RouterLimits,
} from '../../signaling/router.js';
import { closes, errorCode, Harness, newKey, ROOM, sent, TYPED } from './router-harness.js';

type ClusterAction = Extract<Action, { kind: 'claim' | 'locate' | 'release' }>;

/** The cluster actions among `out`, in order. */
const clusterActs = (out: Action[]): ClusterAction[] =>
  out.filter((a): a is ClusterAction => a.kind === 'claim' || a.kind === 'locate' || a.kind === 'release');

/** Message types sent to `conn`. */
const types = (out: Action[], conn: ConnId): string[] => sent(out, conn).map((m) => m.type);

/** A router that is one node of a cluster. */
const node = (limits?: Partial<RouterLimits>): Harness => new Harness(limits, { cluster: true });

/** The cluster's answer to a claim. */
const claimed = (h: Harness, conn: ConnId, result: 'ok' | 'taken' | 'unavailable', room = ROOM): Action[] => h.run({ kind: 'claimed', conn, room, result });

/** The cluster's answer to a locate. */
const located = (h: Harness, conn: ConnId, result: 'none' | 'remote' | 'unavailable', room = ROOM): Action[] => h.run({ kind: 'located', conn, room, result });

/** A device on `conn` that registered ROOM here and won its claim. */
function registerHere(h: Harness, conn: ConnId, addr?: string): void {
  h.open(conn, addr);
  assert.deepEqual(clusterActs(h.register(conn)), [{ kind: 'claim', conn, room: ROOM }]);
  assert.deepEqual(types(claimed(h, conn, 'ok'), conn), ['registered']);
}

describe('router: issue 15, registering on one node of a cluster', () => {
  test('issue 15: a register of a room not held here emits claim and answers only after claimed ok', () => {
    const h = node();
    h.open(1);
    const out = h.register(1);
    assert.deepEqual(clusterActs(out), [{ kind: 'claim', conn: 1, room: ROOM }]);
    assert.deepEqual(sent(out, 1), [], 'no answer before the claim result');
    assert.equal(h.router.stats.rooms, 0, 'no room before the claim result');
    const won = claimed(h, 1, 'ok');
    assert.deepEqual(types(won, 1), ['registered']);
    assert.deepEqual(clusterActs(won), []);
    assert.equal(h.router.stats.rooms, 1);
    // The room is held here now: a controller joins it with no locate.
    h.open(2);
    const join = h.join(2);
    assert.deepEqual(clusterActs(join), []);
    assert.deepEqual(types(join, 2), ['joined']);
  });

  test('issue 15: while its claim is out, another register or join on the socket is already-joined and emits nothing for the cluster', () => {
    const h = node();
    h.open(1);
    h.register(1);
    for (const out of [h.register(1), h.register(1, 'ABCD'), h.join(1, 'ABCD')]) {
      assert.equal(errorCode(out, 1), 'already-joined');
      assert.deepEqual(clusterActs(out), []);
    }
    assert.deepEqual(types(claimed(h, 1, 'ok'), 1), ['registered']);
  });

  test('issue 15: a lost claim refuses with room-taken, a store that is down with cluster-unavailable; no room, no release; the socket may register again', () => {
    for (const [result, code] of [
      ['taken', 'room-taken'],
      ['unavailable', 'cluster-unavailable'],
    ] as const) {
      const h = node();
      h.open(1);
      h.register(1);
      const out = claimed(h, 1, result);
      assert.equal(errorCode(out, 1), code, result);
      assert.ok(!types(out, 1).includes('registered'));
      assert.deepEqual(clusterActs(out), [], `${result}: nothing to release`);
      assert.equal(h.router.stats.rooms, 0);
      assert.deepEqual(clusterActs(h.register(1)), [{ kind: 'claim', conn: 1, room: ROOM }], `${result}: claims again`);
    }
  });

  test('issue 15: capacity comes before the claim: over maxRooms or maxRoomsPerAddr the register is refused with no claim', () => {
    const h = node({ maxRooms: 1 });
    registerHere(h, 1);
    h.open(2, '203.0.113.9');
    const full = h.register(2, 'ABCD');
    assert.equal(errorCode(full, 2), 'rate-limited');
    assert.deepEqual(clusterActs(full), []);

    const p = node({ maxRoomsPerAddr: 1 });
    registerHere(p, 1);
    p.open(2);
    const perAddr = p.register(2, 'ABCD');
    assert.equal(errorCode(perAddr, 2), 'too-many-rooms');
    assert.deepEqual(clusterActs(perAddr), []);
  });

  test('issue 15: a claim won for a socket that has gone is released; a claim lost for one is ignored', () => {
    const h = node();
    h.open(1);
    h.register(1);
    h.close(1);
    assert.deepEqual(claimed(h, 1, 'ok'), [{ kind: 'release', room: ROOM }]);
    assert.equal(h.router.stats.rooms, 0);
    h.open(2);
    h.register(2);
    h.close(2);
    assert.deepEqual(claimed(h, 2, 'taken'), []);
    assert.deepEqual(claimed(h, 2, 'unavailable'), []);
  });

  test('issue 15: a claim won for a room that no longer fits here is refused and released', () => {
    // Two claims out at once, room for one: the second to come back cannot be held.
    const h = node({ maxRooms: 1 });
    h.open(1);
    h.open(2, '203.0.113.9');
    assert.deepEqual(clusterActs(h.register(1)), [{ kind: 'claim', conn: 1, room: ROOM }]);
    assert.deepEqual(clusterActs(h.register(2, 'ABCD')), [{ kind: 'claim', conn: 2, room: 'ABCD' }]);
    assert.deepEqual(types(claimed(h, 1, 'ok'), 1), ['registered']);
    const late = claimed(h, 2, 'ok', 'ABCD');
    assert.equal(errorCode(late, 2), 'rate-limited');
    assert.deepEqual(clusterActs(late), [{ kind: 'release', room: 'ABCD' }]);
    assert.equal(h.router.stats.rooms, 1);
  });

  test('issue 15: a claimed answer for another room than the socket asked for is ignored', () => {
    const h = node();
    h.open(1);
    h.register(1);
    assert.deepEqual(claimed(h, 1, 'taken', 'ABCD'), []);
    assert.deepEqual(types(claimed(h, 1, 'ok'), 1), ['registered']);
  });

  test('issue 15: a room held here is retaken with no claim while its device is away; with its device present it is room-taken, with no claim', () => {
    const h = node();
    registerHere(h, 1);
    h.open(3);
    const taken = h.register(3);
    assert.equal(errorCode(taken, 3), 'room-taken');
    assert.deepEqual(clusterActs(taken), []);
    h.close(1);
    h.now += DEVICE_GRACE_MS - 1;
    const back = h.register(3);
    assert.deepEqual(clusterActs(back), []);
    assert.deepEqual(types(back, 3), ['registered']);
  });

  test('issue 15: a room held here that has expired (not yet swept by a tick) is released and claimed again, not made anew unclaimed', () => {
    // Device gone past its grace: the lazy expiry releases the room, so a register must claim it afresh.
    const h = node();
    registerHere(h, 1);
    h.close(1);
    h.now += DEVICE_GRACE_MS + 1;
    h.open(2);
    const out = h.register(2);
    assert.deepEqual(clusterActs(out), [
      { kind: 'release', room: ROOM },
      { kind: 'claim', conn: 2, room: ROOM },
    ]);
    assert.deepEqual(sent(out, 2), []);
    assert.deepEqual(types(claimed(h, 2, 'ok'), 2), ['registered']);

    // Unused past its TTL: the same, and the old device hears expired.
    const u = node();
    registerHere(u, 1);
    u.now += CODE_UNUSED_TTL_MS + 1;
    u.open(2, '203.0.113.9');
    const again = u.register(2);
    assert.equal(errorCode(again, 1), 'expired');
    assert.deepEqual(clusterActs(again), [
      { kind: 'release', room: ROOM },
      { kind: 'claim', conn: 2, room: ROOM },
    ]);
  });
});

describe('router: issue 15, joining on one node of a cluster', () => {
  test('issue 15: a join of a room not held here emits locate and waits; another register or join meanwhile is already-joined', () => {
    const h = node();
    h.open(2);
    const out = h.join(2);
    assert.deepEqual(clusterActs(out), [{ kind: 'locate', conn: 2, room: ROOM }]);
    assert.deepEqual(sent(out, 2), []);
    for (const again of [h.join(2), h.register(2, 'ABCD')]) {
      assert.equal(errorCode(again, 2), 'already-joined');
      assert.deepEqual(clusterActs(again), []);
    }
  });

  test('issue 15: located none -> unknown-room; located unavailable (Redis down) -> cluster-unavailable; the socket may join again', () => {
    for (const [result, code] of [
      ['none', 'unknown-room'],
      ['unavailable', 'cluster-unavailable'],
    ] as const) {
      const h = node();
      h.open(2);
      h.join(2);
      const out = located(h, 2, result);
      assert.equal(errorCode(out, 2), code, result);
      assert.deepEqual(clusterActs(out), []);
      assert.deepEqual(clusterActs(h.join(2)), [{ kind: 'locate', conn: 2, room: ROOM }], `${result}: locates again`);
    }
  });

  test('issue 15: located remote: the router answers nothing and passes over the socket from then on (its node forwards its frames)', () => {
    const h = node();
    h.open(2);
    h.join(2);
    assert.deepEqual(located(h, 2, 'remote'), []);
    assert.deepEqual(h.join(2), [], 'not already-joined: the frame is not the router’s');
    assert.deepEqual(h.msg(2, { type: 'relay', data: 'x' }), [], 'not not-joined');
    assert.deepEqual(h.run({ kind: 'invalid', conn: 2, code: 'bad-message', reason: 'r' }), []);
    assert.equal(h.router.stats.conns, 1, 'still counted');
    assert.equal(h.router.stats.controllers, 0);
    assert.deepEqual(h.close(2), []);
    assert.equal(h.router.stats.conns, 0);
  });

  test('issue 15: a room registered here while the locate was out is joined here, whatever the answer', () => {
    for (const result of ['none', 'unavailable'] as const) {
      const h = node();
      h.open(2);
      h.join(2);
      registerHere(h, 1);
      const out = located(h, 2, result);
      assert.deepEqual(types(out, 2), ['joined'], result);
      assert.deepEqual(types(out, 1), ['peer'], result);
    }
  });

  test('issue 15: a located answer for a socket that has gone, or for another room, is ignored', () => {
    const h = node();
    h.open(2);
    h.join(2);
    assert.deepEqual(located(h, 2, 'none', 'ABCD'), []);
    assert.deepEqual(located(h, 2, 'remote', 'ABCD'), []);
    h.close(2);
    assert.deepEqual(located(h, 2, 'none'), []);
    assert.deepEqual(located(h, 2, 'unavailable'), []);
  });
});

describe('router: issue 15, cluster-wide admission', () => {
  test("issue 15: a join's admission replaces the router's own join bucket: ok passes past JOIN_BURST, join-limited refuses before the lookup", () => {
    const h = node();
    for (let i = 1; i <= JOIN_BURST + 5; i++) {
      h.open(i);
      const out = h.join(i, TYPED, 'ok');
      assert.deepEqual(clusterActs(out), [{ kind: 'locate', conn: i, room: ROOM }], `join ${i}`);
    }
    assert.equal(h.router.stats.joinBuckets, 0, 'no bucket of its own was touched');
    h.open(100, '203.0.113.9');
    const refused = h.join(100, TYPED, 'join-limited');
    assert.equal(errorCode(refused, 100), 'join-limited');
    assert.deepEqual(clusterActs(refused), [], 'no locate: a refused join learns nothing');
    assert.equal(h.router.stats.joinLimited, 1);
  });

  test('issue 15: a join of a device room is not join-limited, whatever the admission says', () => {
    const h = node();
    const room = deviceRoom(newKey().publicKey);
    h.open(2);
    assert.deepEqual(clusterActs(h.join(2, room, 'join-limited')), [{ kind: 'locate', conn: 2, room }]);
  });

  test("issue 15: a register's admission replaces the router's own buckets: ok passes past REGISTER_BURST; register-limited and (for a pairing room) join-limited refuse with no claim", () => {
    const h = node();
    for (let i = 1; i <= REGISTER_BURST + 5; i++) {
      h.open(i, '203.0.113.9');
      const room = `R${String(i).padStart(3, '0')}`;
      assert.deepEqual(clusterActs(h.register(i, room, 'ok')), [{ kind: 'claim', conn: i, room }], `register ${i}`);
    }
    assert.equal(h.router.stats.registerBuckets, 0);
    assert.equal(h.router.stats.joinBuckets, 0);
    h.open(100, '192.0.2.1');
    const reg = h.register(100, TYPED, 'register-limited');
    assert.equal(errorCode(reg, 100), 'register-limited');
    assert.deepEqual(clusterActs(reg), []);
    const guess = h.register(100, TYPED, 'join-limited');
    assert.equal(errorCode(guess, 100), 'join-limited');
    assert.deepEqual(clusterActs(guess), []);
    assert.equal(h.router.stats.registerLimited, 1);
    assert.equal(h.router.stats.joinLimited, 1);
  });

  test('issue 15: a device room register with a join-limited admission still goes on to its proof and its claim', () => {
    const h = node();
    const key = newKey();
    const room = deviceRoom(key.publicKey);
    h.open(1);
    const out = h.msg(1, { type: 'register', v: PROTOCOL_VERSION, room, proof: h.proof(1, key, room) }, 'join-limited');
    assert.deepEqual(clusterActs(out), [{ kind: 'claim', conn: 1, room }]);
    // A bad proof is still refused before any claim.
    h.open(2);
    const bad = h.msg(2, { type: 'register', v: PROTOCOL_VERSION, room, proof: h.proof(2, key, room, 1) }, 'ok');
    assert.equal(errorCode(bad, 2), 'bad-proof');
    assert.deepEqual(clusterActs(bad), []);
  });
});

describe('router: issue 15, giving rooms up and losing them', () => {
  test('issue 15: a room deleted here emits release: unused past its TTL, device gone past its grace, device left for good', () => {
    const unused = node();
    registerHere(unused, 1);
    unused.now += CODE_UNUSED_TTL_MS + 1;
    const u = unused.tick();
    assert.equal(errorCode(u, 1), 'expired');
    assert.deepEqual(clusterActs(u), [{ kind: 'release', room: ROOM }]);

    const gone = node();
    registerHere(gone, 1);
    gone.close(1);
    gone.now += DEVICE_GRACE_MS + 1;
    assert.deepEqual(clusterActs(gone.tick()), [{ kind: 'release', room: ROOM }]);

    const left = node();
    registerHere(left, 1);
    assert.deepEqual(clusterActs(left.run({ kind: 'close', conn: 1, leave: true })), [{ kind: 'release', room: ROOM }]);
    assert.equal(left.router.stats.rooms, 0);
  });

  test('issue 15: a room still in use, or in its grace, is not released', () => {
    const h = node();
    registerHere(h, 1);
    h.open(2);
    h.join(2);
    h.now += CODE_UNUSED_TTL_MS + 1;
    assert.deepEqual(clusterActs(h.tick()), []);
    h.close(1);
    h.now += DEVICE_GRACE_MS;
    assert.deepEqual(clusterActs(h.tick()), []);
  });

  test('issue 15: evict (another node holds the room now, as when this node lost its epoch): device room-taken and closed 1013, controllers expired, no release', () => {
    const h = node();
    registerHere(h, 1);
    h.open(2);
    assert.deepEqual(types(h.join(2), 2), ['joined']);
    const out = h.run({ kind: 'evict', room: ROOM });
    assert.equal(errorCode(out, 1), 'room-taken');
    assert.deepEqual(
      closes(out).map((c) => [c.conn, c.code]),
      [[1, CLOSE_TRY_AGAIN]],
    );
    assert.equal(errorCode(out, 2), 'expired');
    assert.deepEqual(clusterActs(out), [], 'the claim is not ours to release');
    assert.equal(h.router.stats.rooms, 0);
    assert.equal(h.router.stats.conns, 1, 'the controller stays connected');
    assert.deepEqual(h.close(1), [], 'the closed device is forgotten');
    // The controller may join again: the room is elsewhere now.
    assert.deepEqual(clusterActs(h.join(2)), [{ kind: 'locate', conn: 2, room: ROOM }]);
  });

  test('issue 15: evict of a room with its device away closes nothing; of a room not held here it does nothing', () => {
    const h = node();
    registerHere(h, 1);
    h.open(2);
    h.join(2);
    h.close(1);
    const out = h.run({ kind: 'evict', room: ROOM });
    assert.deepEqual(closes(out), []);
    assert.equal(errorCode(out, 2), 'expired');
    assert.deepEqual(clusterActs(out), []);
    assert.deepEqual(h.run({ kind: 'evict', room: 'ABCD' }), []);
  });

  test('issue 15: a router not in a cluster emits no claim, locate or release', () => {
    const h = new Harness();
    h.open(1);
    h.open(2);
    assert.equal(errorCode(h.join(2, 'ABCD'), 2), 'unknown-room');
    const reg = h.register(1);
    assert.deepEqual(types(reg, 1), ['registered']);
    h.now += CODE_UNUSED_TTL_MS + 1;
    const all = [...reg, ...h.tick(), ...h.all];
    assert.deepEqual(clusterActs(all), []);
  });
});

describe('router: issue 15, sockets of other nodes and draining', () => {
  test('issue 15: open{remote} gets no hello; it joins a room here on its node’s admission and relays both ways', () => {
    const h = node();
    registerHere(h, 1);
    const open = h.open(5, '203.0.113.9', true);
    assert.deepEqual(open, [], 'its own node greeted it');
    const join = h.join(5, TYPED, 'ok');
    assert.deepEqual(clusterActs(join), []);
    const joined = sent(join, 5)[0];
    assert.ok(joined?.type === 'joined');
    assert.deepEqual(types(join, 1), ['peer']);
    assert.deepEqual(sent(h.msg(5, { type: 'relay', data: 'up' }), 1), [{ type: 'relay', session: joined.session, data: 'up' }]);
    assert.deepEqual(sent(h.msg(1, { type: 'relay', session: joined.session, data: 'down' }), 5), [{ type: 'relay', data: 'down' }]);
  });

  test('issue 15: drain sends goaway{reconnectMs} to every socket of this node, not to those proxied here; later sockets get hello then goaway', () => {
    const h = node();
    registerHere(h, 1);
    h.open(2);
    h.join(2);
    h.open(3);
    h.join(3, 'ABCD');
    located(h, 3, 'remote'); // proxied out from here: still this node's socket
    h.open(5, '203.0.113.9', true);
    h.join(5, TYPED, 'ok');
    const out = h.run({ kind: 'drain', reconnectMs: 1234 });
    for (const c of [1, 2, 3]) assert.deepEqual(sent(out, c), [{ type: 'goaway', reconnectMs: 1234 }], `socket ${c}`);
    assert.deepEqual(sent(out, 5), [], 'its own node tells it');
    assert.deepEqual(closes(out), [], 'drain closes nothing itself');
    assert.deepEqual(types(h.open(6), 6), ['hello', 'goaway']);
    assert.deepEqual(h.open(7, '203.0.113.9', true), []);
  });

  test('issue 15: drain works the same on a router not in a cluster', () => {
    const h = new Harness();
    h.pair();
    const out = h.run({ kind: 'drain', reconnectMs: 0 });
    assert.deepEqual(types(out, 1), ['goaway']);
    assert.deepEqual(types(out, 2), ['goaway']);
    assert.deepEqual(clusterActs(out), []);
  });
});
