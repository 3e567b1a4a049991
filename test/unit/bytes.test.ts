import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { describe, test } from 'node:test';
import { base32, decodeBase64url, equalBytes, fromBase64url, toBase64url, utf8ByteLength, utf8Decode, utf8Encode } from '../../protocol/bytes.js';

describe('issue 11: protocol/bytes without Buffer', () => {
  test("base64url agrees with Node's Buffer for every length up to 300 and a full link frame", () => {
    for (const n of [...Array.from({ length: 301 }, (_, i) => i), 12_262, 16_384]) {
      const b = new Uint8Array(randomBytes(n));
      const s = toBase64url(b);
      assert.equal(s, Buffer.from(b).toString('base64url'), `length ${n}`);
      assert.deepEqual(fromBase64url(s), b, `length ${n}`);
    }
  });

  test('fromBase64url takes only the canonical unpadded form', () => {
    assert.deepEqual(fromBase64url(''), new Uint8Array(0));
    assert.deepEqual(fromBase64url('_-8'), new Uint8Array([0xff, 0xef]));
    for (const bad of ['A', 'AB==', 'AAA=', 'A+/A', 'AA AA', ' AAAA', 'AAAA\n', 'AR', 'AAF', 'AAB', 'é', 'AAAAA', '\u0000AAA']) {
      assert.equal(fromBase64url(bad), undefined, JSON.stringify(bad));
    }
    for (const v of [undefined, null, 42, ['AAAA'], new Uint8Array(3)]) assert.equal(fromBase64url(v), undefined);
    // non-canonical: the unused low bits of the last character set
    for (let i = 0; i < 200; i++) {
      const b = randomBytes(randomInt(1, 40));
      if (b.length % 3 === 0) continue;
      const s = b.toString('base64url');
      const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(s.at(-1)!);
      const alt = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[last ^ 1]!;
      assert.equal(fromBase64url(s.slice(0, -1) + alt), undefined, `${s} with its last bit changed`);
    }
  });

  test('decodeBase64url wants exactly n bytes', () => {
    const k = new Uint8Array(randomBytes(32));
    assert.deepEqual(decodeBase64url(toBase64url(k), 32), k);
    assert.equal(decodeBase64url(toBase64url(k), 31), undefined);
    assert.equal(decodeBase64url(toBase64url(k.subarray(0, 31)), 32), undefined);
    assert.equal(decodeBase64url(`${toBase64url(k)}=`, 32), undefined);
    assert.equal(decodeBase64url(32, 32), undefined);
  });

  test('base32 is RFC 4648 section 10, unpadded', () => {
    const v: [string, string][] = [
      ['', ''],
      ['f', 'MY'],
      ['fo', 'MZXQ'],
      ['foo', 'MZXW6'],
      ['foob', 'MZXW6YQ'],
      ['fooba', 'MZXW6YTB'],
      ['foobar', 'MZXW6YTBOI'],
    ];
    for (const [i, o] of v) assert.equal(base32(utf8Encode(i)), o);
  });

  test('equalBytes compares content and length', () => {
    const a = new Uint8Array(randomBytes(64));
    assert.equal(equalBytes(a, a.slice()), true);
    assert.equal(equalBytes(new Uint8Array(0), new Uint8Array(0)), true);
    assert.equal(equalBytes(a, a.subarray(0, 63)), false);
    for (const i of [0, 31, 63]) {
      const b = a.slice();
      b[i]! ^= 0x80;
      assert.equal(equalBytes(a, b), false, `byte ${i}`);
    }
  });

  test('UTF-8 length and decoding match Buffer, lone surrogates and invalid bytes included', () => {
    const samples = ['', 'a', 'é', '€', '😀', '\ud800', '\udc00x', 'a\ud800\udc00b', '\ud83d', 'x\ud83d\ud83d\ude00'];
    for (let i = 0; i < 300; i++) samples.push(String.fromCharCode(...Array.from({ length: randomInt(0, 20) }, () => randomInt(0, 0x10000))));
    for (const s of samples) {
      assert.equal(utf8ByteLength(s), Buffer.byteLength(s), JSON.stringify(s));
      assert.equal(utf8Encode(s).length, Buffer.byteLength(s), JSON.stringify(s));
    }
    for (const b of [
      [0xff, 0x00, 0x7b],
      [0xe2, 0x82],
      [0xc3, 0xa9],
      [0xf0, 0x9f, 0x98, 0x80],
    ]) {
      assert.equal(utf8Decode(new Uint8Array(b)), Buffer.from(b).toString('utf8'), JSON.stringify(b));
    }
  });
});
