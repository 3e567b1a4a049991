// The coordinated start both direct-path shells (werift, the browser) run: the offerer times `go`
// with pings once every description and candidate is out; each side adds the peer's candidates
// only then.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SignalPayload } from '../../protocol/index.js';
import { type CandidateSignal, CoordinatedStart, GO_PINGS, PING_TIMEOUT_MS, type StartPeer } from '../../session/coordinated-start.js';
import { ManualTimers } from './timers.js';

/** Lets queued promise callbacks run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function harness(role: 'offerer' | 'answerer', failAdd = false) {
  const timers = new ManualTimers();
  const sent: SignalPayload[] = [];
  const calls: string[] = [];
  const added: string[] = [];
  const states: string[] = [];
  const peer: StartPeer = {
    setRemoteDescription: async (type, sdp) => void calls.push(`remote ${type} ${sdp}`),
    answer: async () => void calls.push('answer'),
    addCandidate: async (c) => {
      if (failAdd) throw new Error('no');
      added.push(c.candidate);
    },
    bye: () => void calls.push('bye'),
    state: (s) => void states.push(s),
  };
  const start = new CoordinatedStart(role, (p) => sent.push(p), peer, { timers, now: () => timers.now });
  const kinds = () => sent.map((p) => p.kind);
  const pings = () => sent.flatMap((p) => (p.kind === 'ping' ? [p.n] : []));
  return { timers, sent, calls, added, states, start, kinds, pings };
}

const cand = (candidate: string): CandidateSignal => ({ kind: 'candidate', candidate, sdpMid: '0', sdpMLineIndex: 0 });

describe('CoordinatedStart', () => {
  test('offerer: no pings until the answer, the peer end-of-candidates and our own are all in; then go, RTT/2, the held candidates', async () => {
    const h = harness('offerer');
    await h.start.handleSignal({ kind: 'answer', sdp: 'A' });
    await h.start.handleSignal(cand('c1'));
    await h.start.handleSignal(cand('c2'));
    await h.start.handleSignal({ kind: 'end-of-candidates' });
    assert.deepEqual(h.kinds(), [], 'our candidates are not all out yet');
    h.start.ourCandidatesSent();
    await settle();
    assert.equal(h.pings().length, GO_PINGS);
    h.timers.advance(40);
    for (const n of h.pings()) await h.start.handleSignal({ kind: 'pong', n });
    await settle();
    assert.deepEqual(h.kinds().at(-1), 'go');
    assert.ok(h.states.includes('go rtt=40.0ms'), h.states.join());
    assert.deepEqual(h.added, [], 'held for RTT/2 after go');
    h.timers.advance(19);
    await settle();
    assert.deepEqual(h.added, []);
    h.timers.advance(1);
    await settle();
    assert.deepEqual(h.added, ['c1', 'c2']);
    assert.deepEqual(h.calls, ['remote answer A']);
    h.start.ourCandidatesSent();
    await h.start.handleSignal({ kind: 'end-of-candidates' });
    assert.equal(h.kinds().filter((k) => k === 'go').length, 1, 'go goes once');
  });

  test('offerer: pongs that never come give go at once, with the RTT unknown', async () => {
    const h = harness('offerer');
    h.start.ourCandidatesSent();
    await h.start.handleSignal({ kind: 'end-of-candidates' });
    await h.start.handleSignal(cand('c1'));
    assert.deepEqual(h.kinds(), [], 'no answer yet');
    await h.start.handleSignal({ kind: 'answer', sdp: 'A' });
    await settle();
    h.timers.advance(PING_TIMEOUT_MS - 1);
    await settle();
    assert.ok(!h.kinds().includes('go'));
    h.timers.advance(1);
    await settle();
    assert.equal(h.kinds().at(-1), 'go');
    assert.ok(h.states.includes('go rtt=?ms'));
    assert.deepEqual(h.added, ['c1']);
    assert.equal(h.timers.pending, 0);
  });

  test('answerer: answers the offer, pongs each ping, adds the held candidates on go only, and never pings', async () => {
    const h = harness('answerer');
    await h.start.handleSignal({ kind: 'offer', sdp: 'O' });
    assert.deepEqual(h.calls, ['remote offer O', 'answer']);
    h.start.ourCandidatesSent();
    await h.start.handleSignal(cand('c1'));
    await h.start.handleSignal({ kind: 'end-of-candidates' });
    await h.start.handleSignal({ kind: 'ping', n: 7 });
    await settle();
    assert.deepEqual(h.sent, [{ kind: 'pong', n: 7 }]);
    assert.deepEqual(h.added, []);
    await h.start.handleSignal({ kind: 'go' });
    assert.deepEqual(h.added, ['c1']);
    await h.start.handleSignal({ kind: 'answer', sdp: 'A' });
    assert.deepEqual(h.calls, ['remote offer O', 'answer'], 'an answerer ignores answers');
  });

  test('a candidate the peer connection refuses is a state, and the rest are still added', async () => {
    const h = harness('answerer', true);
    await h.start.handleSignal(cand('c1'));
    await h.start.handleSignal(cand('c2'));
    await h.start.handleSignal({ kind: 'go' });
    assert.deepEqual(h.states, ['bad-candidate: no', 'bad-candidate: no']);
  });

  test('tasks and signals run one at a time, in order; after close() nothing is applied', async () => {
    const h = harness('offerer');
    const order: string[] = [];
    let release!: () => void;
    void h.start.enqueue(() => new Promise<void>((r) => (release = r)).then(() => void order.push('task')));
    const sig = h.start.handleSignal({ kind: 'bye' }).then(() => order.push('bye'));
    await settle();
    assert.deepEqual(order, []);
    release();
    await sig;
    assert.deepEqual(order, ['task', 'bye']);
    assert.deepEqual(h.calls, ['bye']);
    await h.start.close();
    await h.start.handleSignal({ kind: 'answer', sdp: 'A' });
    await h.start.handleSignal({ kind: 'ping', n: 1 });
    assert.deepEqual(h.calls, ['bye']);
    assert.deepEqual(h.sent, []);
  });
});
