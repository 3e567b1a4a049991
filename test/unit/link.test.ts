// The Link's path switching, with in-memory transports and manual timers: no sockets.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SEALED_PLAINTEXT_BYTES } from '../../crypto/seal.js';
import { isPinholeError } from '../../protocol/errors.js';
import { MAX_LINK_FRAME_BYTES } from '../../protocol/signaling.js';
import { KEEPALIVE_MISSES, Link, MAX_UNACKED, type Path, type Transport, utf8Length } from '../../transport/reliable.js';
import { ManualTimers } from './timers.js';

/** A one-way-per-direction in-memory path between two links; frames wait until flushed. */
function pipe(path: 'relay' | 'direct', a: Link, b: Link) {
  const toB: string[] = [];
  const toA: string[] = [];
  let alive = true;
  const aSide: Transport = { path, send: (f) => void (alive && toB.push(f)) };
  const bSide: Transport = { path, send: (f) => void (alive && toA.push(f)) };
  return {
    aSide,
    bSide,
    /** Delivers queued frames both ways until quiet. */
    flush() {
      while (alive && (toB.length || toA.length)) {
        for (const f of toB.splice(0)) b.receive(f, bSide);
        for (const f of toA.splice(0)) a.receive(f, aSide);
      }
    },
    /** Loses everything queued and everything sent later. */
    kill() {
      alive = false;
      toA.length = toB.length = 0;
    },
    queued: () => toA.length + toB.length,
  };
}

function pair() {
  const timers = new ManualTimers();
  const a = new Link({ timers });
  const b = new Link({ timers });
  const gotA: unknown[] = [];
  const gotB: unknown[] = [];
  a.on('message', (m) => gotA.push(m));
  b.on('message', (m) => gotB.push(m));
  return { a, b, gotA, gotB, timers };
}

/** A pair with a relay and a direct path, both attached, the direct one probed and in use. */
function onDirect() {
  const p = pair();
  const r = pipe('relay', p.a, p.b);
  const d = pipe('direct', p.a, p.b);
  p.a.attach(r.aSide);
  p.b.attach(r.bSide);
  p.a.attach(d.aSide);
  p.b.attach(d.bSide);
  d.flush();
  return { ...p, r, d };
}

test('relay path delivers in order, exactly once', () => {
  const { a, b, gotB } = pair();
  const r = pipe('relay', a, b);
  a.attach(r.aSide);
  b.attach(r.bSide);
  assert.equal(a.path, 'relay');
  for (let i = 0; i < 50; i++) a.send({ i });
  r.flush();
  assert.deepEqual(
    gotB,
    Array.from({ length: 50 }, (_, i) => ({ i })),
  );
});

test('a direct transport is used only after it answers a probe', () => {
  const { a, b } = pair();
  const r = pipe('relay', a, b);
  const d = pipe('direct', a, b);
  a.attach(r.aSide);
  b.attach(r.bSide);
  const paths: Path[] = [];
  a.on('path', (p) => paths.push(p));
  a.attach(d.aSide);
  b.attach(d.bSide);
  assert.equal(a.path, 'relay', 'not before the probe is answered');
  d.flush();
  assert.equal(a.path, 'direct');
  assert.equal(b.path, 'direct');
  assert.deepEqual(paths, ['direct']);
});

test('moving to direct while relay frames are in flight loses and doubles nothing', () => {
  const { a, b, gotB } = pair();
  const r = pipe('relay', a, b);
  const d = pipe('direct', a, b);
  a.attach(r.aSide);
  b.attach(r.bSide);
  for (let i = 0; i < 10; i++) a.send(i); // still queued on the relay
  a.attach(d.aSide);
  b.attach(d.bSide);
  d.flush(); // probes answered: a resends 0..9 on direct, which overtakes the relay
  for (let i = 10; i < 20; i++) a.send(i);
  d.flush();
  r.flush(); // the slow relay copies arrive last and must be dropped
  assert.deepEqual(
    gotB,
    Array.from({ length: 20 }, (_, i) => i),
  );
});

test('when the direct path dies, unacknowledged frames are resent on the relay', () => {
  const { a, b, gotB, timers, r, d } = onDirect();
  assert.equal(a.path, 'direct');
  a.send('delivered');
  d.flush();
  timers.runPending(); // b's delayed ack
  d.flush();
  assert.equal(a.inFlight, 0, 'acked');
  a.send('lost-1');
  a.send('lost-2');
  d.kill(); // both frames vanish with the data channel
  a.detach(d.aSide);
  b.detach(d.bSide);
  assert.equal(a.path, 'relay');
  r.flush();
  assert.deepEqual(gotB, ['delivered', 'lost-1', 'lost-2']);
});

test('out-of-order arrival is reordered, duplicates are dropped', () => {
  const { a, b, gotB } = pair();
  const r = pipe('relay', a, b);
  a.attach(r.aSide);
  // Feed b frames by hand: 2, 1, 1, 3.
  const frames: string[] = [];
  const tap: Transport = { path: 'relay', send: (f) => void frames.push(f) };
  a.detach(r.aSide);
  a.attach(tap);
  a.send('one');
  a.send('two');
  a.send('three');
  const [f1, f2, f3] = frames;
  for (const f of [f2!, f1!, f1!, f3!]) b.receive(f, r.bSide);
  assert.deepEqual(gotB, ['one', 'two', 'three']);
});

test('malformed frames are reported and dropped, never thrown', () => {
  const { b, gotB } = pair();
  const reasons: string[] = [];
  b.on('invalid', (r) => reasons.push(r));
  const t: Transport = { path: 'relay', send: () => undefined };
  for (const junk of [
    '',
    'null',
    '{"t":"d"}',
    '{"t":"d","q":0,"a":0,"m":1}',
    '{"t":"x"}',
    '[[[[[[[[[[[[1]]]]]]]]]]]]',
    'x'.repeat(20000),
    new Uint8Array([0xff, 0xfe]),
  ]) {
    b.receive(junk, t);
  }
  assert.equal(reasons.length, 8);
  assert.deepEqual(gotB, []);
});

test('send() refuses past MAX_UNACKED with code overflow', () => {
  const { a } = pair();
  a.attach({ path: 'relay', send: () => undefined }); // peer never acks
  for (let i = 0; i < MAX_UNACKED; i++) a.send(i);
  assert.throws(
    () => a.send('one more'),
    (e) => isPinholeError(e, 'overflow'),
  );
});

test('send() after close throws link-closed', () => {
  const { a } = pair();
  a.close();
  assert.throws(
    () => a.send(1),
    (e) => isPinholeError(e, 'link-closed'),
  );
});

test('a frame dropped on a live path (e.g. a rate-limited relay) is resent after RETRANSMIT_MS', () => {
  const { a, b, gotB, timers } = pair();
  let drop = true;
  const toB: string[] = [];
  a.attach({ path: 'relay', send: (f) => void (drop ? (drop = false) : toB.push(f)) }); // loses the first frame only
  const bSide: Transport = { path: 'relay', send: (f) => a.receive(f, aSide) };
  const aSide: Transport = { path: 'relay', send: () => undefined };
  a.send('first');
  a.send('second');
  for (const f of toB.splice(0)) b.receive(f, bSide);
  assert.deepEqual(gotB, [], 'second is held until first arrives');
  timers.runPending(); // the retransmit timer fires
  for (const f of toB.splice(0)) b.receive(f, bSide);
  assert.deepEqual(gotB, ['first', 'second']);
});

test('a silent direct path is declared dead after KEEPALIVE_MISSES keepalives and the link falls back to the relay', () => {
  const { a, gotB, timers, r, d } = onDirect();
  assert.equal(a.path, 'direct');
  const dead: Transport[] = [];
  a.on('dead', (t) => dead.push(t));
  // A healthy path: keepalives are answered, nothing is declared dead.
  for (let i = 0; i < KEEPALIVE_MISSES + 2; i++) {
    timers.runPending();
    d.flush();
  }
  assert.deepEqual(dead, []);
  assert.equal(a.path, 'direct');
  // The path goes silent (a NAT dropped its mapping): nothing arrives any more.
  d.kill();
  a.send('during-outage');
  let ticks = 0;
  while (dead.length === 0 && ticks < 10) {
    timers.runPending();
    ticks++;
  }
  // The interval in which the path died may still have heard something: KEEPALIVE_MISSES to +1 ticks.
  assert.ok(ticks >= KEEPALIVE_MISSES && ticks <= KEEPALIVE_MISSES + 1, `declared dead after ${ticks} keepalive intervals`);
  assert.deepEqual(dead, [d.aSide]);
  assert.equal(a.path, 'relay');
  r.flush();
  assert.deepEqual(gotB, ['during-outage'], 'the frame sent into the dead path was resent on the relay');
});

test('receive takes a frame as text or as its UTF-8 bytes; bytes over the frame limit are refused undecoded', () => {
  const { a, b, gotB } = pair();
  const frames: string[] = [];
  a.attach({ path: 'relay', send: (f) => void frames.push(f) });
  const reasons: string[] = [];
  b.on('invalid', (r) => reasons.push(r));
  const t: Transport = { path: 'relay', send: () => undefined };
  a.send({ s: 'héllo ☃ 𝄞' });
  a.send('two');
  b.receive(new TextEncoder().encode(frames[0]!), t);
  b.receive(frames[1]!, t);
  assert.deepEqual(gotB, [{ s: 'héllo ☃ 𝄞' }, 'two']);
  b.receive(new Uint8Array(MAX_LINK_FRAME_BYTES + 1).fill(0x20), t);
  b.receive(new TextEncoder().encode(`\uFEFF${frames[1]}`), t); // a BOM stays in the text, as it did with Buffer
  assert.deepEqual(reasons, ['malformed link frame', 'malformed link frame']);
});

test('utf8Length counts UTF-8 bytes as Buffer.byteLength does, lone surrogates included', () => {
  for (const s of ['', 'abc', 'é', '☃', '𝄞', 'a𝄞b', '\uD800', '\uDC00x', '\uD800\uD800\uDC00', 'x'.repeat(1000) + '€']) {
    assert.equal(utf8Length(s), Buffer.byteLength(s), JSON.stringify(s));
  }
});

test('send() measures the payload in UTF-8 bytes: multi-byte text near the limit is refused as usage', () => {
  const { a } = pair();
  a.attach({ path: 'relay', send: () => undefined });
  const fits = 'é'.repeat(Math.floor((MAX_SEALED_PLAINTEXT_BYTES - 64 - 2) / 2));
  a.send(fits);
  assert.throws(
    () => a.send(`${fits}é`),
    (e) => isPinholeError(e, 'usage'),
  );
});
