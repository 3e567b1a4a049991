import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { describe, test } from 'node:test';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { deriveSealKeys, MAX_SEAL_COUNTER, MAX_SEALED_PLAINTEXT_BYTES, Opener, type OpenResult, Sealer } from '../../crypto/seal.js';
import { PinholeError } from '../../protocol/errors.js';
import { MAX_LINK_FRAME_BYTES } from '../../protocol/signaling.js';

const SECRET = Uint8Array.from({ length: 64 }, (_, i) => i);
const SID = 'session-0123456789';
const keys = deriveSealKeys(SECRET, SID);
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

function pair(opts: { sid?: string } = {}) {
  const sid = opts.sid ?? SID;
  const k = deriveSealKeys(SECRET, sid);
  return { sealer: new Sealer(k.c2d, 'c2d', sid), opener: new Opener(k.c2d, 'c2d', sid) };
}

function failed(r: OpenResult, code: string): void {
  assert.equal(r.ok, false, 'expected the frame to be dropped');
  assert.equal((r as { code: string }).code, code);
}

function opened(r: OpenResult): string {
  if (!r.ok) assert.fail(`expected the frame to open, got ${r.code}`);
  return text(r.plaintext);
}

/**
 * Builds a frame by the format documented in crypto/seal.ts with node:crypto's
 * ChaCha20-Poly1305 (an independent implementation), to pin the wire format.
 */
function referenceFrame(key: Uint8Array, dirByte: number, counter: bigint, sid: string, pt: Uint8Array): string {
  const header = Buffer.alloc(10);
  header[0] = 1;
  header[1] = dirByte;
  header.writeBigUInt64BE(counter, 2);
  const nonce = Buffer.alloc(12);
  nonce[0] = dirByte;
  nonce.writeBigUInt64BE(counter, 4);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(Buffer.concat([header, Buffer.from(sid, 'utf8')]), { plaintextLength: pt.length });
  const ct = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
  return Buffer.concat([header, ct]).toString('base64url');
}

describe('key derivation', () => {
  test('HKDF-SHA-256 with one label per direction, bound to the session id', () => {
    const info = (d: string) => concatBytes(utf8ToBytes(`pinhole/1 seal ${d}`), Uint8Array.of(0), utf8ToBytes(SID));
    assert.equal(bytesToHex(keys.c2d), bytesToHex(hkdf(sha256, SECRET, undefined, info('c2d'), 32)));
    assert.equal(bytesToHex(keys.d2c), bytesToHex(hkdf(sha256, SECRET, undefined, info('d2c'), 32)));
    assert.notEqual(bytesToHex(keys.c2d), bytesToHex(keys.d2c));
    const other = deriveSealKeys(SECRET, 'another-session');
    assert.notEqual(bytesToHex(other.c2d), bytesToHex(keys.c2d));
  });

  test('refuses short secrets and empty session ids', () => {
    assert.throws(
      () => deriveSealKeys(new Uint8Array(16), SID),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-usage',
    );
    assert.throws(
      () => deriveSealKeys(SECRET, ''),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-usage',
    );
  });
});

describe('seal / open', () => {
  test('round trip, in order, with increasing counters', () => {
    const { sealer, opener } = pair();
    for (let i = 0; i < 5; i++) {
      const f = sealer.seal(`{"t":"d","q":${i + 1}}`);
      const r = opener.open(f);
      assert.equal(opened(r), `{"t":"d","q":${i + 1}}`);
      assert.equal((r as { counter: bigint }).counter, BigInt(i));
    }
    assert.equal(sealer.sent, 5n);
    assert.equal(opener.lastCounter, 4n);
  });

  test('frames are base64url strings that fit a relay data field, and hide the plaintext', () => {
    const { sealer } = pair();
    const f = sealer.seal('write 20 1');
    assert.match(f, /^[A-Za-z0-9_-]+$/);
    assert.ok(!f.includes('write'));
    const max = sealer.seal(new Uint8Array(MAX_SEALED_PLAINTEXT_BYTES));
    assert.equal(max.length, MAX_LINK_FRAME_BYTES);
    assert.throws(
      () => sealer.seal(new Uint8Array(MAX_SEALED_PLAINTEXT_BYTES + 1)),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-too-large',
    );
  });

  test('the same plaintext twice gives different frames (counter nonce)', () => {
    const { sealer } = pair();
    assert.notEqual(sealer.seal('x'), sealer.seal('x'));
  });

  test('wire format matches an independent ChaCha20-Poly1305 (node:crypto) built from the documented layout', () => {
    const { sealer, opener } = pair();
    const pt = utf8ToBytes('{"jsonrpc":"2.0","method":"write","params":[20,1],"id":1}');
    assert.equal(sealer.seal(pt), referenceFrame(keys.c2d, 0x01, 0n, SID, pt));
    assert.equal(sealer.seal(pt), referenceFrame(keys.c2d, 0x01, 1n, SID, pt));
    assert.equal(opened(opener.open(referenceFrame(keys.c2d, 0x01, 0n, SID, pt))), text(pt));
  });

  test('the highest counter (2^64 - 1) opens, and after it everything is a replay', () => {
    const { opener } = pair();
    assert.equal(opened(opener.open(referenceFrame(keys.c2d, 0x01, MAX_SEAL_COUNTER, SID, utf8ToBytes('last')))), 'last');
    failed(opener.open(referenceFrame(keys.c2d, 0x01, MAX_SEAL_COUNTER, SID, utf8ToBytes('again'))), 'replay');
  });

  test('tampering with any byte gives bad-mac (or replay/wrong-direction/malformed for header bytes), and the state stays put', () => {
    const { sealer, opener } = pair();
    const f = sealer.seal('write 20 1');
    const raw = Buffer.from(f, 'base64url');
    for (let i = 0; i < raw.length; i++) {
      const t = Buffer.from(raw);
      t[i] ^= 0x01;
      const r = opener.open(t.toString('base64url'));
      assert.equal(r.ok, false, `flipping byte ${i} must be detected`);
      const want = i === 0 ? 'malformed' : i === 1 ? 'malformed' : 'bad-mac';
      assert.equal((r as { code: string }).code, want, `byte ${i}`);
    }
    assert.equal(opener.lastCounter, -1n, 'failed frames do not advance the counter');
    assert.equal(opened(opener.open(f)), 'write 20 1', 'the genuine frame still opens');
  });

  test('truncated, extended and non-base64url frames are malformed', () => {
    const { sealer, opener } = pair();
    const f = sealer.seal('hello');
    const raw = Buffer.from(f, 'base64url');
    failed(opener.open(raw.subarray(0, 25).toString('base64url')), 'malformed'); // shorter than header + tag
    failed(opener.open(raw.subarray(0, raw.length - 1).toString('base64url')), 'bad-mac');
    failed(opener.open(Buffer.concat([raw, Buffer.of(0)]).toString('base64url')), 'bad-mac');
    failed(opener.open(`${f}=`), 'malformed');
    failed(opener.open(f.replace(/.$/, '+')), 'malformed');
    failed(opener.open(`{"t":"d","q":1,"a":0,"m":{}}`), 'malformed'); // an unsealed link frame
    failed(opener.open('A'.repeat(MAX_LINK_FRAME_BYTES + 4)), 'malformed');
    failed(opener.open(42 as unknown as string), 'malformed');
    // Canonical encoding only: the same bytes with non-zero trailing bits are refused.
    const f28 = sealer.seal('xy'); // 28 bytes -> 38 chars, 4 spare bits
    const mangled = f28.slice(0, -1) + String.fromCharCode(f28.charCodeAt(f28.length - 1) + 1);
    assert.ok(Buffer.from(mangled, 'base64url').equals(Buffer.from(f28, 'base64url')), 'decodes to the same bytes');
    failed(opener.open(mangled), 'malformed');
  });

  test('replay: a frame opened once is dropped the second time', () => {
    const { sealer, opener } = pair();
    const f1 = sealer.seal('write 20 1');
    opened(opener.open(f1));
    failed(opener.open(f1), 'replay');
    const f2 = sealer.seal('write 20 0');
    assert.equal(opened(opener.open(f2)), 'write 20 0');
    failed(opener.open(f1), 'replay');
    failed(opener.open(f2), 'replay');
  });

  test('reorder: an older frame after a newer one is dropped; gaps are allowed', () => {
    const { sealer, opener } = pair();
    const f0 = sealer.seal('a');
    const f1 = sealer.seal('b');
    const f2 = sealer.seal('c');
    const f3 = sealer.seal('d');
    assert.equal(opened(opener.open(f1)), 'b'); // f0 lost: gap allowed
    failed(opener.open(f0), 'replay');
    assert.equal(opened(opener.open(f3)), 'd');
    failed(opener.open(f2), 'replay');
  });

  test('wrong direction: our own frame reflected back, or a d2c frame at a c2d opener', () => {
    const ctrl = new Sealer(keys.c2d, 'c2d', SID);
    const ctrlIn = new Opener(keys.d2c, 'd2c', SID);
    failed(ctrlIn.open(ctrl.seal('write 20 1')), 'wrong-direction');
    // Even with the same key on both directions, the direction byte in nonce and AAD keeps them apart.
    const sameKeyIn = new Opener(keys.c2d, 'd2c', SID);
    failed(sameKeyIn.open(new Sealer(keys.c2d, 'c2d', SID).seal('x')), 'wrong-direction');
    const raw = Buffer.from(new Sealer(keys.c2d, 'c2d', SID).seal('x'), 'base64url');
    raw[1] = 0x02; // relabel as d2c
    failed(sameKeyIn.open(raw.toString('base64url')), 'bad-mac');
  });

  test('wrong key or wrong session id: bad-mac', () => {
    const { sealer } = pair();
    const f = sealer.seal('write 20 1');
    failed(new Opener(deriveSealKeys(new Uint8Array(32).fill(7), SID).c2d, 'c2d', SID).open(f), 'bad-mac');
    failed(new Opener(keys.c2d, 'c2d', 'session-other').open(f), 'bad-mac');
    failed(new Opener(keys.d2c, 'c2d', SID).open(f), 'bad-mac');
  });

  test('counter overflow guard: a sealer refuses to go past its frame limit', () => {
    const s = new Sealer(keys.c2d, 'c2d', SID, { maxFrames: 2n });
    s.seal('0');
    s.seal('1');
    assert.throws(
      () => s.seal('2'),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-exhausted',
    );
    assert.throws(
      () => s.seal('3'),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-exhausted',
    );
    assert.equal(s.sent, 2n);
    assert.throws(
      () => new Sealer(keys.c2d, 'c2d', SID, { maxFrames: 2n ** 64n + 1n }),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-usage',
    );
    assert.throws(
      () => new Sealer(keys.c2d, 'c2d', SID, { maxFrames: 0n }),
      (e: unknown) => e instanceof PinholeError && e.code === 'seal-usage',
    );
    new Sealer(keys.c2d, 'c2d', SID, { maxFrames: 2n ** 64n }); // the default: every counter value
  });

  test('bad constructor arguments are refused', () => {
    const usage = (e: unknown) => e instanceof PinholeError && e.code === 'seal-usage';
    assert.throws(() => new Sealer(new Uint8Array(16), 'c2d', SID), usage);
    assert.throws(() => new Sealer(keys.c2d, 'sideways' as 'c2d', SID), usage);
    assert.throws(() => new Opener(keys.c2d, '__proto__' as 'c2d', SID), usage);
    assert.throws(() => new Opener(keys.c2d, 'c2d', ''), usage);
  });

  test('both directions of one session work independently', () => {
    const c = { out: new Sealer(keys.c2d, 'c2d', SID), in: new Opener(keys.d2c, 'd2c', SID) };
    const d = { out: new Sealer(keys.d2c, 'd2c', SID), in: new Opener(keys.c2d, 'c2d', SID) };
    assert.equal(opened(d.in.open(c.out.seal('ping'))), 'ping');
    assert.equal(opened(c.in.open(d.out.seal('pong'))), 'pong');
    assert.equal(opened(c.in.open(d.out.seal('pong2'))), 'pong2');
  });
});
