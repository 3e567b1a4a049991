// ServerList (session/servers.ts): a deployment's servers in a random order, handed out in
// turn, passing over one that said goaway. Randomness and the clock are injected.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GOAWAY_AVOID_MS, ServerList, serverListProblem, splitServers } from '../../session/servers.js';
import { codeOf } from './codes.js';

const A = 'ws://a.example:8080';
const B = 'wss://b.example/';
const C = 'ws://127.0.0.1:9000';

/** Draws that keep every element in place (Fisher-Yates picks k = j each time). */
const keep = () => 0.999_999;

/** A random source handing out `draws` in turn. */
const draws = (...d: number[]) => {
  let i = 0;
  return () => d[i++] ?? assert.fail('more draws than expected');
};

/** The next `n` servers. */
const take = (l: ServerList, n: number): string[] => Array.from({ length: n }, () => l.next());

describe('issue 15: ServerList', () => {
  test('issue 15: a comma-separated list is split, spaces around commas and empty parts dropped', () => {
    assert.deepEqual(splitServers(` ${A} ,${B},, ${C} ,`), [A, B, C]);
    const l = new ServerList(` ${A} ,${B},, ${C} ,`, { random: keep });
    assert.equal(l.size, 3);
    assert.deepEqual(take(l, 3), [A, B, C]);
  });

  test('issue 15: a list with no URL, or with one that is not a ws:// or wss:// URL, throws usage', () => {
    for (const bad of ['', ' , ,', 'not a url', 'http://a.example', `${A},ftp://b.example`, `${A}, a.example:8080`]) {
      assert.notEqual(serverListProblem(bad), null, bad);
      assert.equal(
        codeOf(() => new ServerList(bad)),
        'usage',
        bad,
      );
    }
    assert.equal(serverListProblem(`${A}, ${B}`), null);
  });

  test('issue 15: the order comes from the injected randomness: each of the 6 orders of 3 servers from exactly one pair of draws', () => {
    const orders = new Set<string>();
    for (const k1 of [0, 1, 2]) {
      for (const k2 of [0, 1]) {
        // Fisher-Yates draws k = floor(r * (j + 1)) for j = 2, then j = 1.
        const l = new ServerList(`${A},${B},${C}`, { random: draws((k1 + 0.5) / 3, (k2 + 0.5) / 2) });
        orders.add(take(l, 3).join(' '));
      }
    }
    assert.equal(orders.size, 6);
    assert.deepEqual(take(new ServerList(`${A},${B},${C}`, { random: () => 0 }), 3), [B, C, A]);
  });

  test('issue 15: next() hands the servers out in turn and wraps around, in the same order', () => {
    const l = new ServerList(`${A},${B},${C}`, { random: draws(0, 0.999) });
    const first = take(l, 3);
    assert.equal(new Set(first).size, 3, 'each once per round');
    assert.deepEqual(take(l, 6), [...first, ...first]);
  });

  test('issue 15: a single URL is handed out every time, even while avoided', () => {
    let now = 0;
    const l = new ServerList(A, { now: () => now });
    assert.equal(l.size, 1);
    assert.deepEqual(take(l, 3), [A, A, A]);
    l.avoid(A);
    assert.deepEqual(take(l, 2), [A, A], 'a list of one still gets it');
    now += 1;
    assert.equal(l.next(), A);
  });

  test('issue 15: an avoided server is passed over until its time, then comes back in its turn', () => {
    let now = 1_000;
    const l = new ServerList(`${A},${B},${C}`, { random: keep, now: () => now });
    l.avoid(B, 500);
    assert.deepEqual(take(l, 4), [A, C, A, C]);
    now += 499;
    assert.deepEqual(take(l, 2), [A, C]);
    now += 1;
    assert.deepEqual(take(l, 3), [A, B, C], 'due: back in its place');
  });

  test('issue 15: avoid() defaults to GOAWAY_AVOID_MS', () => {
    let now = 0;
    const l = new ServerList(`${A},${B}`, { random: keep, now: () => now });
    l.avoid(A);
    now += GOAWAY_AVOID_MS - 1;
    assert.deepEqual(take(l, 2), [B, B]);
    now += 1;
    assert.deepEqual(take(l, 2), [A, B]);
  });

  test('issue 15: with every server avoided the next in turn is still handed out; a URL not in the list is not avoided', () => {
    const now = 0;
    const l = new ServerList(`${A},${B},${C}`, { random: keep, now: () => now });
    l.avoid('ws://elsewhere.example');
    assert.deepEqual(take(l, 3), [A, B, C]);
    for (const u of [A, B, C]) l.avoid(u);
    assert.deepEqual(take(l, 4), [A, B, C, A], 'wrapping around as before');
  });
});
