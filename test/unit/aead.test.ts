import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { describe, test } from 'node:test';
import { type Aead, nobleAead } from '../../crypto/aead.js';
import { deriveSealKeys, Opener, Sealer } from '../../crypto/seal.js';
import { browserAead } from '../../platform/browser/aead.js';
import { nodeAead } from '../../platform/node/aead.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const IMPLS: [string, Aead][] = [
  ['noble', nobleAead],
  ['node:crypto', nodeAead],
];

// RFC 8439 section 2.8.2, "Example and Test Vector for AEAD_CHACHA20_POLY1305".
const V282 = {
  key: hex('808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f'),
  nonce: hex('07000000 4041424344454647'), // constant 07 00 00 00 || IV 40..47
  ad: hex('50515253c0c1c2c3c4c5c6c7'),
  plaintext: new TextEncoder().encode("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."),
  ciphertext: hex(`
    d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6
    3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36
    92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
    3ff4def08e4b7a9de576d26586cec64b 6116`),
  tag: hex('1ae10b594f09e26a7e902ecbd0600691'),
};

// RFC 8439 appendix A.5, "ChaCha20-Poly1305 AEAD Decryption" (the plaintext keeps the RFC's "/" before each curly quote).
const VA5 = {
  key: hex('1c9240a5eb55d38af333888604f6b5f0 473917c1402b80099dca5cbc207075c0'),
  nonce: hex('000000000102030405060708'),
  ad: hex('f33388860000000000004e91'),
  ciphertext: hex(`
    64a0861575861af460f062c79be643bd 5e805cfd345cf389f108670ac76c8cb2
    4c6cfc18755d43eea09ee94e382d26b0 bdb7b73c321b0100d4f03b7f355894cf
    332f830e710b97ce98c8a84abd0b9481 14ad176e008d33bd60f982b1ff37c855
    9797a06ef4f0ef61c186324e2b350638 3606907b6a7c02b0f9f6157b53c867e4
    b9166c767b804d46a59b5216cde7a4e9 9040c5a40433225ee282a1b0a06c523e
    af4534d7f83fa1155b0047718cbc546a 0d072b04b3564eea1b422273f548271a
    0bb2316053fa76991955ebd63159434e cebb4e466dae5a1073a6727627097a10
    49e617d91d361094fa68f0ff77987130 305beaba2eda04df997b714d6c6f2c29
    a6ad5cb4022b02709b`),
  tag: hex('eead9d67890cbb22392336fea1851f38'),
  plaintext:
    'Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, or obsoleted by other documents at any time. ' +
    'It is inappropriate to use Internet-Drafts as reference material or to cite them other than as /\u201cwork in progress./\u201d',
};

const cat = (a: Uint8Array, b: Uint8Array): Uint8Array => new Uint8Array([...a, ...b]);
/** Sizes 0..16 KiB: every block and tag boundary near the small end, then random ones. */
const SIZES = [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 16 * 1024, ...Array.from({ length: 40 }, () => randomInt(0, 16 * 1024 + 1))];
const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const flip = (b: Uint8Array, i: number): Uint8Array => {
  const c = Uint8Array.from(b);
  c[i]! ^= 0x01;
  return c;
};

describe('issue 11: AEAD', () => {
  test("the vectors are the RFC's sizes (a mistyped vector cannot pass silently)", () => {
    assert.equal(V282.key.length, 32);
    assert.equal(V282.nonce.length, 12);
    assert.equal(V282.plaintext.length, 114);
    assert.equal(V282.ciphertext.length, 114);
    assert.equal(VA5.key.length, 32);
    assert.equal(VA5.ciphertext.length, 265);
    assert.equal(new TextEncoder().encode(VA5.plaintext).length, 265);
  });

  for (const [name, aead] of IMPLS) {
    test(`${name}: RFC 8439 2.8.2 seals to the published ciphertext and tag, and opens back`, () => {
      const sealed = aead.seal(V282.key, V282.nonce, V282.plaintext, V282.ad);
      assert.equal(toHex(sealed), toHex(cat(V282.ciphertext, V282.tag)));
      const opened = aead.open(V282.key, V282.nonce, cat(V282.ciphertext, V282.tag), V282.ad);
      assert.ok(opened);
      assert.equal(toHex(opened), toHex(V282.plaintext));
    });

    test(`${name}: RFC 8439 A.5 decrypts to the published plaintext, and seals back to it`, () => {
      const opened = aead.open(VA5.key, VA5.nonce, cat(VA5.ciphertext, VA5.tag), VA5.ad);
      assert.ok(opened, 'the A.5 tag verifies');
      assert.equal(new TextDecoder().decode(opened), VA5.plaintext);
      assert.equal(toHex(aead.seal(VA5.key, VA5.nonce, opened, VA5.ad)), toHex(cat(VA5.ciphertext, VA5.tag)));
    });

    test(`${name}: a changed tag, ciphertext, ad, nonce or key, or a frame shorter than a tag, is refused without a throw`, () => {
      const sealed = cat(V282.ciphertext, V282.tag);
      const refuses = (what: string, key: Uint8Array, nonce: Uint8Array, s: Uint8Array, ad: Uint8Array) => {
        let r: Uint8Array | undefined;
        assert.doesNotThrow(() => (r = aead.open(key, nonce, s, ad)), what);
        assert.equal(r, undefined, what);
      };
      refuses('tag', V282.key, V282.nonce, flip(sealed, sealed.length - 1), V282.ad);
      refuses('ciphertext', V282.key, V282.nonce, flip(sealed, 0), V282.ad);
      refuses('ad', V282.key, V282.nonce, sealed, flip(V282.ad, 0));
      refuses('ad dropped', V282.key, V282.nonce, sealed, new Uint8Array(0));
      refuses('nonce', V282.key, flip(V282.nonce, 11), sealed, V282.ad);
      refuses('key', flip(V282.key, 31), V282.nonce, sealed, V282.ad);
      refuses('truncated', V282.key, V282.nonce, sealed.subarray(0, 15), V282.ad);
      refuses('empty', V282.key, V282.nonce, new Uint8Array(0), V282.ad);
    });
  }

  test('the browser shell uses the pure implementation', () => {
    assert.equal(browserAead, nobleAead);
  });

  test("node:crypto and noble give the same bytes and open each other's, 0..16 KiB", () => {
    for (const n of SIZES) {
      const key = bytes(32);
      const nonce = bytes(12);
      const ad = bytes(randomInt(0, 64));
      const pt = bytes(n);
      const byNode = nodeAead.seal(key, nonce, pt, ad);
      const byNoble = nobleAead.seal(key, nonce, pt, ad);
      assert.equal(byNode.length, n + 16, `size ${n}`);
      assert.equal(toHex(byNode), toHex(byNoble), `size ${n}: same sealed bytes`);
      assert.equal(toHex(nobleAead.open(key, nonce, byNode, ad) ?? new Uint8Array([1])), toHex(pt), `size ${n}: node seals, noble opens`);
      assert.equal(toHex(nodeAead.open(key, nonce, byNoble, ad) ?? new Uint8Array([1])), toHex(pt), `size ${n}: noble seals, node opens`);
      const at = randomInt(0, byNode.length);
      for (const [name, aead] of IMPLS) {
        assert.equal(aead.open(key, nonce, flip(byNode, at), ad), undefined, `size ${n}: ${name} refuses byte ${at} changed`);
        assert.equal(aead.open(key, nonce, flip(byNode, byNode.length - 1), ad), undefined, `size ${n}: ${name} refuses a changed tag`);
        assert.equal(aead.open(key, flip(nonce, 0), byNode, ad), undefined, `size ${n}: ${name} refuses another nonce`);
        assert.equal(aead.open(key, nonce, byNode, cat(ad, new Uint8Array([0]))), undefined, `size ${n}: ${name} refuses another ad`);
      }
    }
  });

  test('a Sealer with one implementation and an Opener with the other interoperate, both ways', () => {
    const keys = deriveSealKeys(randomBytes(32), 'session-aead');
    for (const [sealWith, openWith] of [
      [nodeAead, nobleAead],
      [nobleAead, nodeAead],
    ] as const) {
      const sealer = new Sealer(keys.c2d, 'c2d', 'session-aead', { aead: sealWith });
      const opener = new Opener(keys.c2d, 'c2d', 'session-aead', { aead: openWith });
      const reference = new Sealer(keys.c2d, 'c2d', 'session-aead'); // the default (pure) one
      for (const n of [0, 1, 100, 12_000]) {
        const pt = randomBytes(n);
        const frame = sealer.seal(pt);
        assert.equal(frame, reference.seal(pt), `size ${n}: the same frame whichever AEAD sealed it`);
        const r = opener.open(frame);
        assert.ok(r.ok, `size ${n}`);
        assert.equal(toHex(r.plaintext), toHex(pt));
        assert.deepEqual(opener.open(frame), { ok: false, code: 'replay' });
      }
      const forger = new Sealer(deriveSealKeys(randomBytes(32), 'session-aead').c2d, 'c2d', 'session-aead', { aead: sealWith });
      for (let i = 0; i < 4; i++) forger.seal('x'); // past the counters already accepted, so only the MAC can refuse it
      const before = opener.lastCounter;
      assert.deepEqual(opener.open(forger.seal('x')), { ok: false, code: 'bad-mac' });
      assert.equal(opener.lastCounter, before);
    }
  });

  test('Opener.open never throws, even when the injected AEAD does, and a failure leaves its state unchanged', () => {
    const keys = deriveSealKeys(randomBytes(32), 'session-throw');
    const sealer = new Sealer(keys.c2d, 'c2d', 'session-throw', { aead: nodeAead });
    let explode = false;
    const flaky: Aead = {
      seal: nobleAead.seal,
      open: (...args) => {
        if (explode) throw new Error('boom');
        return nobleAead.open(...args);
      },
    };
    const opener = new Opener(keys.c2d, 'c2d', 'session-throw', { aead: flaky });
    assert.ok(opener.open(sealer.seal('one')).ok);
    assert.equal(opener.lastCounter, 0n);
    explode = true;
    const second = sealer.seal('two');
    let r: ReturnType<Opener['open']> | undefined;
    assert.doesNotThrow(() => (r = opener.open(second)));
    assert.deepEqual(r, { ok: false, code: 'bad-mac' });
    assert.equal(opener.lastCounter, 0n, 'a failed frame does not move the counter');
    explode = false;
    const again = opener.open(second);
    assert.ok(again.ok && again.counter === 1n, 'the same frame opens once the AEAD works');
  });
});
