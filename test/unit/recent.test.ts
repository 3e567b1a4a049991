// RecentResults: the bounded memory behind at-most-once execution. No sockets, no clock.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_RECENT_RESULTS, RecentResults } from '../../device/recent.js';
import type { RpcResponse } from '../../protocol/rpc.js';

const ok = (id: number | string, result: unknown = null): RpcResponse => ({ jsonrpc: '2.0', id, result });

/** An exec that counts its calls and answers with its call number. */
function counter() {
  let calls = 0;
  const exec = (id: number | string) => async (): Promise<RpcResponse> => ok(id, ++calls);
  return { exec, calls: () => calls };
}

test('issue 5: the default bound is 4096 entries', () => {
  assert.equal(MAX_RECENT_RESULTS, 4096);
  assert.equal(new RecentResults().limit, MAX_RECENT_RESULTS);
});

test('issue 5: a known (peer, id) is answered from memory without running again', async () => {
  const r = new RecentResults();
  const c = counter();
  const first = r.run('ctl-a', 'k3J9x2:17', c.exec('k3J9x2:17'));
  assert.equal(first.duplicate, false);
  const second = r.run('ctl-a', 'k3J9x2:17', c.exec('k3J9x2:17'));
  assert.equal(second.duplicate, true);
  assert.deepEqual(await first.response, await second.response);
  assert.equal(c.calls(), 1);
  assert.equal(r.duplicates, 1);
  assert.equal(r.size, 1);
});

test('issue 5: a retry while the first run is in flight waits for the same response', async () => {
  const r = new RecentResults();
  let release!: (v: RpcResponse) => void;
  let calls = 0;
  const exec = () => {
    calls++;
    return new Promise<RpcResponse>((res) => (release = res));
  };
  const a = r.run('p', 1, exec);
  const b = r.run('p', 1, exec);
  assert.equal(b.duplicate, true);
  assert.equal(calls, 1);
  release(ok(1, 'done'));
  assert.deepEqual(await b.response, ok(1, 'done'));
  assert.equal(await a.response, await b.response);
});

test('issue 5: the same id from two controllers, and 17 vs "17", are different entries', async () => {
  const r = new RecentResults();
  const c = counter();
  assert.equal(r.run('a', 17, c.exec(17)).duplicate, false);
  assert.equal(r.run('b', 17, c.exec(17)).duplicate, false);
  assert.equal(r.run('a', '17', c.exec('17')).duplicate, false);
  // a peer string cannot run into the id
  assert.equal(r.run('a",17', '', c.exec('')).duplicate, false);
  assert.equal(c.calls(), 4);
  assert.ok(r.has('a', 17) && r.has('b', 17) && r.has('a', '17'));
  assert.equal(r.has('c', 17), false);
});

test('issue 5: past the limit the oldest entry is evicted and its id may run again', async () => {
  const r = new RecentResults({ limit: 3 });
  const c = counter();
  for (const id of [1, 2, 3, 4]) r.run('p', id, c.exec(id));
  assert.equal(r.size, 3);
  assert.equal(r.has('p', 1), false, 'the oldest id is forgotten');
  assert.ok(r.has('p', 2) && r.has('p', 4));
  assert.equal(r.run('p', 1, c.exec(1)).duplicate, false, 'a forgotten id runs again');
  assert.equal(r.has('p', 2), false);
  assert.equal(r.size, 3);
});

test('issue 5: the default memory holds MAX_RECENT_RESULTS ids, then forgets the oldest', async () => {
  const r = new RecentResults();
  const c = counter();
  for (let id = 0; id < MAX_RECENT_RESULTS; id++) r.run('p', id, c.exec(id));
  assert.equal(r.size, MAX_RECENT_RESULTS);
  assert.equal(r.run('p', 0, c.exec(0)).duplicate, true);
  r.run('p', MAX_RECENT_RESULTS, c.exec(MAX_RECENT_RESULTS));
  assert.equal(r.size, MAX_RECENT_RESULTS);
  assert.equal(r.has('p', 0), false);
  assert.equal(r.has('p', 1), true);
});

test('issue 5: perPeerLimit keeps one busy controller from flushing another', async () => {
  const r = new RecentResults({ limit: 10, perPeerLimit: 3 });
  const c = counter();
  r.run('quiet', 1, c.exec(1));
  for (let id = 1; id <= 20; id++) r.run('busy', id, c.exec(id));
  assert.ok(r.has('quiet', 1), "the quiet controller's id survives");
  assert.equal(r.size, 4);
  assert.deepEqual(
    [18, 19, 20].map((id) => r.has('busy', id)),
    [true, true, true],
  );
  assert.equal(r.has('busy', 17), false);
});

test('issue 5: a run that rejects is not remembered', async () => {
  const r = new RecentResults();
  const failing = r.run('p', 9, async () => {
    throw new Error('boom');
  });
  await assert.rejects(failing.response);
  assert.equal(r.has('p', 9), false);
  const throwing = r.run('p', 10, () => {
    throw new Error('sync boom');
  });
  await assert.rejects(throwing.response);
  assert.equal(r.has('p', 10), false);
  assert.equal(r.run('p', 9, async () => ok(9)).duplicate, false);
});

test('issue 5: bad limits are refused; clear forgets everything', () => {
  assert.throws(() => new RecentResults({ limit: 0 }), RangeError);
  assert.throws(() => new RecentResults({ perPeerLimit: 1.5 }), RangeError);
  const r = new RecentResults({ limit: 2 });
  r.run('p', 1, async () => ok(1));
  r.clear();
  assert.equal(r.size, 0);
  assert.equal(r.has('p', 1), false);
});
