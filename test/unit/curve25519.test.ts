import assert from 'node:assert/strict';
import { createPublicKey, verify as opensslVerify, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { type Curve25519, nobleCurve25519 } from '../../crypto/curve25519.js';
import { ControllerHandshake, DeviceHandshake, type HandshakeMessage, type HandshakeResult, parseHandshake } from '../../crypto/handshake.js';
import { type Identity, openIdentity, verifyIdentitySignature } from '../../crypto/identity.js';
import { nodeCurve25519, scalarBelowOrder } from '../../platform/node/curve25519.js';
import { FileStateStore, loadOrCreateIdentity } from '../../platform/node/state-files.js';
import { codeOf } from './codes.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const IMPLS: [string, Curve25519][] = [
  ['noble', nobleCurve25519],
  ['node:crypto', nodeCurve25519],
];

// ---------------------------------------------------------------------------
// Scalars and points for hand-made signatures

const L = ed25519.Point.CURVE().n;
const P = ed25519.Point.CURVE().p;
const B = ed25519.Point.BASE;
type Pt = typeof B;
const leBytes = (n: bigint, len = 32): Uint8Array => {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
};
const leNumber = (b: Uint8Array): bigint => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);
const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));
/** k = SHA-512(R || A || M) mod L, over the bytes as given (RFC 8032 5.1.7). */
const challenge = (r: Uint8Array, a: Uint8Array, msg: Uint8Array): bigint => leNumber(sha512(cat(r, a, msg))) % L;
const randomScalar = (): bigint => (leNumber(bytes(64)) % (L - 1n)) + 1n;
/** A point of order 8 (the torsion subgroup's generator). */
const T8: Pt = ed25519.Point.fromHex(ED25519_TORSION_SUBGROUP[1]!);

/**
 * A signature with secret scalar `a` whose key is aB plus `keyTorsion`, and
 * whose R is rB plus `rTorsion`: valid under the cofactored equation
 * (which ignores the small-order parts), under the cofactorless one only when
 * they happen to cancel. `wantCancel` picks a message for which they do (or not).
 */
function mixedSignature(keyTorsion: Pt, rTorsion: Pt, wantCancel: boolean): { key: Uint8Array; msg: Uint8Array; sig: Uint8Array } {
  const a = randomScalar();
  const key = B.multiply(a).add(keyTorsion).toBytes();
  for (let i = 0; ; i++) {
    const rs = randomScalar();
    const r = B.multiply(rs).add(rTorsion).toBytes();
    const msg = new TextEncoder().encode(`pinhole mixed-order vector ${i}`);
    const k = challenge(r, key, msg);
    // SB - R - kA' = -(rTorsion + k keyTorsion): zero only if the torsion parts cancel.
    const cancels = rTorsion.add(keyTorsion.multiplyUnsafe(k)).is0();
    if (cancels !== wantCancel) continue;
    return { key, msg, sig: cat(r, leBytes((rs + k * a) % L)) };
  }
}

/** OpenSSL's own verdict, with none of nodeCurve25519's checks around it; undefined if it will not take the key. */
function opensslAlone(key: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean | undefined {
  try {
    const k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key).toString('base64url') }, format: 'jwk' });
    return opensslVerify(null, msg, k, sig);
  } catch {
    return undefined;
  }
}

interface Vector {
  name: string;
  key: Uint8Array;
  msg: Uint8Array;
  sig: Uint8Array;
  /** What today's strict check (noble, zip215: false) says. */
  accept: boolean;
}

/** An honest signature, then the ways it can be bent. */
function bentVectors(): Vector[] {
  const sk = bytes(32);
  const key = ed25519.getPublicKey(sk);
  const msg = new TextEncoder().encode('pinhole/1 device identity ...');
  const sig = ed25519.sign(msg, sk);
  const s = leNumber(sig.subarray(32));
  const withS = (n: bigint): Uint8Array => cat(sig.subarray(0, 32), leBytes(n));
  const out: Vector[] = [
    { name: 'honest signature', key, msg, sig, accept: true },
    { name: 'wrong message', key, msg: cat(msg, Uint8Array.of(0)), sig, accept: false },
    { name: 'empty message', key, msg: new Uint8Array(0), sig, accept: false },
    { name: 'another key', key: ed25519.getPublicKey(bytes(32)), msg, sig, accept: false },
    { name: 'non-canonical S = S + L (same point equation)', key, msg, sig: withS(s + L), accept: false },
    { name: 'S + 2L (< 2^256)', key, msg, sig: withS(s + 2n * L), accept: false },
    { name: 'S = L', key, msg, sig: withS(L), accept: false },
    { name: 'S with the top bit set', key, msg, sig: withS(s | (1n << 255n)), accept: false },
    {
      name: 'R with its sign bit flipped',
      key,
      msg,
      sig: (() => {
        const b = sig.slice();
        b[31]! ^= 0x80;
        return b;
      })(),
      accept: false,
    },
    {
      name: 'one bit of S flipped',
      key,
      msg,
      sig: (() => {
        const b = sig.slice();
        b[40]! ^= 0x01;
        return b;
      })(),
      accept: false,
    },
  ];
  // Every small-order key, with R = the identity and S = 0: SB = R + kA holds for A = identity
  // whatever the message, so a check that lets small-order keys through accepts it.
  const identityR = hex(ED25519_TORSION_SUBGROUP[0]!);
  for (const t of ED25519_TORSION_SUBGROUP) {
    out.push({ name: `small-order key ${t.slice(0, 8)}…, R = identity, S = 0`, key: hex(t), msg, sig: cat(identityR, new Uint8Array(32)), accept: false });
    out.push({ name: `small-order key ${t.slice(0, 8)}…, R = key, S = 0`, key: hex(t), msg, sig: cat(hex(t), new Uint8Array(32)), accept: false });
  }
  // Non-canonical encodings: y >= p (only y + p for y < 19 fits), and x = 0 with the sign bit set.
  const nonCanonical = [
    leBytes(P + 1n), // y = 1: the identity
    leBytes(P), // y = 0
    leBytes(P | (1n << 255n)), // y = 0, sign bit set
    leBytes((P + 1n) | (1n << 255n)), // y = 1, sign bit set
    leBytes(1n | (1n << 255n)), // the identity with x = 0 "negative"
    leBytes((P - 1n) | (1n << 255n)), // (0, -1) with x = 0 "negative"
  ];
  for (const enc of nonCanonical) {
    out.push({
      name: `non-canonical key ${toHex(enc).slice(0, 8)}…${toHex(enc).slice(-2)}, R = identity, S = 0`,
      key: enc,
      msg,
      sig: cat(identityR, new Uint8Array(32)),
      accept: false,
    });
    out.push({
      name: `non-canonical R ${toHex(enc).slice(0, 8)}…${toHex(enc).slice(-2)}, honest key`,
      key,
      msg,
      sig: cat(enc, sig.subarray(32)),
      accept: false,
    });
  }
  // Not points at all.
  out.push({ name: 'R all 0xff', key, msg, sig: cat(new Uint8Array(32).fill(0xff), sig.subarray(32)), accept: false });
  out.push({ name: 'key all 0xff (not canonical)', key: new Uint8Array(32).fill(0xff), msg, sig, accept: false });
  // Mixed-order points (a prime-order part plus a torsion part): the cofactored check that noble
  // runs takes them; OpenSSL's cofactorless one only when the torsion parts cancel.
  const zero = ed25519.Point.ZERO;
  const ka = mixedSignature(T8, zero, false);
  out.push({ name: 'mixed-order key (torsion does not cancel)', ...ka, accept: true });
  const kc = mixedSignature(T8, zero, true);
  out.push({ name: 'mixed-order key (torsion cancels)', ...kc, accept: true });
  const ra = mixedSignature(zero, T8, false);
  out.push({ name: 'mixed-order R (torsion does not cancel)', ...ra, accept: true });
  const rb = mixedSignature(T8, T8.negate(), true);
  out.push({ name: 'mixed-order key and R (torsion cancels)', ...rb, accept: true });
  out.push({ name: 'mixed-order key, wrong message', key: ka.key, msg: cat(ka.msg, Uint8Array.of(1)), sig: ka.sig, accept: false });
  out.push({
    name: 'mixed-order key, S + L',
    key: ka.key,
    msg: ka.msg,
    sig: cat(ka.sig.subarray(0, 32), leBytes(leNumber(ka.sig.subarray(32)) + L)),
    accept: false,
  });
  return out;
}

/**
 * The twelve vectors of "Taming the many EdDSAs" (Chalkias, Garillot,
 * Nikolaenko, SSR 2020; the ed25519-speccheck set): small-order A and R,
 * mixed-order points, S >= L, a pre-reduced scalar, non-canonical R and A.
 * `accept` is today's strict cofactored verdict: cases 2 to 5 (a
 * mixed-order key, canonical encodings, S < L) pass; bare OpenSSL instead
 * takes 0, 1 and 11 (small-order or non-canonical keys) and refuses 4 and 5.
 */
const TAMING: [msg: string, key: string, sig: string, accept: boolean][] = [
  [
    '8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000',
    false,
  ],
  [
    '9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
    'f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04',
    false,
  ],
  [
    'aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab',
    'f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e',
    true,
  ],
  [
    '9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79',
    'cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d',
    '9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009',
    true,
  ],
  [
    'e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c',
    'cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d',
    '160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09',
    true,
  ],
  [
    'e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c',
    'cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d',
    '21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405',
    true,
  ],
  [
    '85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40',
    '442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623',
    'e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514',
    false,
  ],
  [
    '85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40',
    '442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623',
    '8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22',
    false,
  ],
  [
    '9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41',
    'f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f',
    false,
  ],
  [
    '9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41',
    'f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908',
    false,
  ],
  [
    'e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    'a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04',
    false,
  ],
  [
    '39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    'a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04',
    false,
  ],
];

describe('Ed25519 verification: node:crypto accepts exactly what the strict pure check accepts', () => {
  const vectors: Vector[] = [
    ...TAMING.map(([m, k, s, accept], i): Vector => ({ name: `Taming the many EdDSAs, case ${i}`, key: hex(k), msg: hex(m), sig: hex(s), accept })),
    ...bentVectors(),
  ];

  test("every vector: noble (today's rule), verifyIdentitySignature and nodeCurve25519 give the expected verdict", (t) => {
    const opensslDiffers: string[] = [];
    for (const v of vectors) {
      assert.equal(nobleCurve25519.ed25519Verify(v.key, v.msg, v.sig), v.accept, `noble: ${v.name}`);
      assert.equal(verifyIdentitySignature(v.key, v.msg, v.sig), v.accept, `verifyIdentitySignature: ${v.name}`);
      assert.equal(nodeCurve25519.ed25519Verify(v.key, v.msg, v.sig), v.accept, `node: ${v.name}`);
      const alone = opensslAlone(v.key, v.msg, v.sig);
      if (alone !== v.accept) opensslDiffers.push(`${v.name}: OpenSSL alone says ${alone}`);
    }
    // Where bare OpenSSL would have decided otherwise: what the checks around it are for.
    t.diagnostic(`${vectors.length} vectors; bare OpenSSL differs on ${opensslDiffers.length}:\n  ${opensslDiffers.join('\n  ')}`);
  });

  test('the vectors reach both sides of the checks around OpenSSL', () => {
    // A vector set in which OpenSSL alone agreed everywhere would not show that the checks matter.
    const tooLenient = vectors.filter((v) => !v.accept && opensslAlone(v.key, v.msg, v.sig) === true);
    const tooStrict = vectors.filter((v) => v.accept && opensslAlone(v.key, v.msg, v.sig) !== true);
    assert.ok(tooLenient.length > 0, 'some vector that bare OpenSSL accepts and the strict check refuses (small-order or non-canonical key)');
    assert.ok(tooStrict.length > 0, 'some vector that only the cofactored check accepts (mixed order)');
  });

  test('random keys, messages and single-bit changes: the two agree', () => {
    for (let i = 0; i < 50; i++) {
      const sk = bytes(32);
      const key = ed25519.getPublicKey(sk);
      const msg = bytes(i * 7);
      const sig = ed25519.sign(msg, sk);
      const bent = sig.slice();
      bent[i % 64]! ^= 1 << (i % 8);
      const badKey = key.slice();
      badKey[i % 32]! ^= 1 << ((i + 3) % 8);
      for (const [k, s] of [
        [key, sig],
        [key, bent],
        [badKey, sig],
      ] as const) {
        assert.equal(nodeCurve25519.ed25519Verify(k, msg, s), nobleCurve25519.ed25519Verify(k, msg, s), `case ${i}`);
      }
      assert.equal(nodeCurve25519.ed25519Verify(key, msg, sig), true);
    }
  });

  test('malformed inputs are false, never a throw', () => {
    for (const [, c] of IMPLS) {
      const msg = bytes(3);
      assert.equal(c.ed25519Verify(new Uint8Array(31), msg, new Uint8Array(64)), false);
      assert.equal(c.ed25519Verify(new Uint8Array(32), msg, new Uint8Array(63)), false);
      assert.equal(c.ed25519Verify(new Uint8Array(32).fill(0xff), msg, new Uint8Array(64)), false);
      assert.equal(c.ed25519Verify('x' as unknown as Uint8Array, msg, new Uint8Array(64)), false);
      assert.equal(c.ed25519Verify(new Uint8Array(32), 'm' as unknown as Uint8Array, new Uint8Array(64)), false);
    }
  });

  test('more keys than the cache holds still verify correctly, in any order', () => {
    const keys = Array.from({ length: 80 }, () => {
      const sk = bytes(32);
      return { sk, key: ed25519.getPublicKey(sk) };
    });
    const msg = bytes(20);
    for (const round of [0, 1]) {
      for (const { sk, key } of round ? [...keys].reverse() : keys) {
        assert.equal(nodeCurve25519.ed25519Verify(key, msg, ed25519.sign(msg, sk)), true);
        assert.equal(nodeCurve25519.ed25519Verify(key, msg, ed25519.sign(bytes(4), sk)), false);
      }
    }
  });

  test('scalarBelowOrder is S < L', () => {
    for (const [n, below] of [
      [0n, true],
      [1n, true],
      [L - 1n, true],
      [L, false],
      [L + 1n, false],
      [2n ** 253n, false],
      [2n ** 256n - 1n, false],
      [L - 2n ** 8n, true],
    ] as const) {
      assert.equal(scalarBelowOrder(leBytes(n)), below, `${n}`);
    }
  });
});

describe('X25519 and Ed25519 keys: node:crypto and noble compute the same bytes', () => {
  test('RFC 7748 section 6.1 (Alice and Bob), both implementations', () => {
    const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const b = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    for (const [name, c] of IMPLS) {
      const ka = c.x25519(a);
      const kb = c.x25519(b);
      assert.equal(toHex(ka.publicKey), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', name);
      assert.equal(toHex(kb.publicKey), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', name);
      assert.equal(toHex(ka.sharedSecret(kb.publicKey)), '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742', name);
      assert.equal(toHex(kb.sharedSecret(ka.publicKey)), '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742', name);
    }
  });

  test('RFC 8032 section 7.1 test 2, both implementations', () => {
    const sk = hex('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb');
    for (const [name, c] of IMPLS) {
      const k = c.ed25519(sk);
      assert.equal(toHex(k.publicKey), '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', name);
      assert.equal(
        toHex(k.sign(Uint8Array.of(0x72))),
        '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
        name,
      );
    }
  });

  test("random secrets: same public keys, shared secrets and signatures; each verifies the other's", () => {
    for (let i = 0; i < 30; i++) {
      const x1 = bytes(32);
      const x2 = bytes(32);
      const [n1, n2, o1, o2] = [nodeCurve25519.x25519(x1), nodeCurve25519.x25519(x2), nobleCurve25519.x25519(x1), nobleCurve25519.x25519(x2)];
      assert.equal(toHex(n1.publicKey), toHex(o1.publicKey));
      assert.equal(toHex(n1.sharedSecret(o2.publicKey)), toHex(o2.sharedSecret(n1.publicKey)));
      assert.equal(toHex(n1.sharedSecret(n2.publicKey)), toHex(o1.sharedSecret(o2.publicKey)));
      const sk = bytes(32);
      const msg = bytes(i * 13);
      const [ne, oe] = [nodeCurve25519.ed25519(sk), nobleCurve25519.ed25519(sk)];
      assert.equal(toHex(ne.publicKey), toHex(oe.publicKey));
      assert.equal(toHex(ne.sign(msg)), toHex(oe.sign(msg)), 'Ed25519 signing is deterministic');
      assert.ok(nobleCurve25519.ed25519Verify(ne.publicKey, msg, ne.sign(msg)));
      assert.ok(nodeCurve25519.ed25519Verify(oe.publicKey, msg, oe.sign(msg)));
    }
  });

  test('X25519 peer shares: small-order ones are refused by both (a throw or all zeros), others agree, top bit and u >= p included', () => {
    const u = (n: bigint): Uint8Array => leBytes(n);
    const orderEight = [
      u(325606250916557431795983626356110631294008115727848805560023387167927233504n),
      u(39382357235489614581723060781553021112529911719440698176882885853963445705823n),
    ];
    const smallOrder = [u(0n), u(1n), u(P - 1n), u(P), u(P + 1n), ...orderEight];
    const withTopBit = (b: Uint8Array): Uint8Array => {
      const c = b.slice();
      c[31]! |= 0x80;
      return c;
    };
    const refuses = (k: ReturnType<Curve25519['x25519']>, share: Uint8Array): boolean => {
      try {
        return k.sharedSecret(share).every((x) => x === 0);
      } catch {
        return true;
      }
    };
    const secret = bytes(32);
    for (const share of [...smallOrder, ...smallOrder.map(withTopBit)]) {
      for (const [name, c] of IMPLS) assert.ok(refuses(c.x25519(secret), share), `${name} refuses ${toHex(share)}`);
    }
    const ordinary = [
      u(9n),
      u(P + 9n),
      withTopBit(u(9n)),
      nobleCurve25519.x25519(bytes(32)).publicKey,
      withTopBit(nobleCurve25519.x25519(bytes(32)).publicKey),
      new Uint8Array(32).fill(0xff),
    ];
    for (const share of ordinary) {
      const a = nobleCurve25519.x25519(secret).sharedSecret(share);
      assert.equal(toHex(nodeCurve25519.x25519(secret).sharedSecret(share)), toHex(a), `share ${toHex(share)}`);
    }
  });

  test('wrong-length keys are refused by both', () => {
    for (const [name, c] of IMPLS) {
      assert.throws(() => c.x25519(new Uint8Array(31)), `${name} x25519 secret`);
      assert.throws(() => c.x25519(bytes(32)).sharedSecret(new Uint8Array(33)), `${name} x25519 share`);
      assert.throws(() => c.ed25519(new Uint8Array(33)), `${name} ed25519 secret`);
    }
  });
});

describe('the Node identity signs with OpenSSL, byte for byte as the pure one', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'pinhole-curve25519-'));
  });
  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  test('loadOrCreateIdentity and openIdentity (noble) on the same state dir: same key, same signatures', () => {
    const dir = join(root, 'state');
    const node = loadOrCreateIdentity(dir);
    const noble = openIdentity(FileStateStore.open(dir));
    assert.equal(node.created, true);
    assert.equal(noble.created, false);
    assert.equal(toHex(node.publicKey), toHex(noble.publicKey));
    const msg = new TextEncoder().encode('pinhole/1 dtls-fp sha-256 AB:CD');
    assert.equal(toHex(node.sign(msg)), toHex(noble.sign(msg)));
    assert.ok(verifyIdentitySignature(node.publicKey, msg, node.sign(msg)));
    assert.throws(() => node.sign('x' as unknown as Uint8Array), TypeError);
  });
});

// ---------------------------------------------------------------------------
// The handshake with node:crypto on one side and noble on the other

const SID = 'sid-curve25519-interop';
const SECRET = 'K7XQ2M';
function identity(c: Curve25519): Identity {
  const dir = mkdtempSync(join(tmpdir(), 'pinhole-hs-identity-'));
  try {
    return openIdentity(FileStateStore.open(dir), undefined, c);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const parse = (text: string): HandshakeMessage => {
  const m = parseHandshake(text);
  assert.ok(m, text);
  return m;
};
const same = (a: Uint8Array, b: Uint8Array): boolean => toHex(a) === toHex(b);
describe('handshake interop: node:crypto on one side, noble on the other', () => {
  const pairs: [string, Curve25519, Curve25519][] = [
    ['node controller, noble device', nodeCurve25519, nobleCurve25519],
    ['noble controller, node device', nobleCurve25519, nodeCurve25519],
    ['node on both sides', nodeCurve25519, nodeCurve25519],
  ];
  for (const [label, cc, dc] of pairs) {
    const ctlId = identity(cc);
    const devId = identity(dc);
    const run = (pairing: boolean, code = SECRET): { ctl: HandshakeResult; dev: HandshakeResult } => {
      const ctl = new ControllerHandshake({
        identity: ctlId,
        name: 'laptop',
        certFp: null,
        sid: SID,
        direct: false,
        curve25519: cc,
        ...(pairing ? { pairingSecret: code } : { expectDevice: devId.publicKey }),
      });
      const dev = new DeviceHandshake({
        identity: devId,
        name: 'board',
        certFp: null,
        sid: SID,
        curve25519: dc,
        isTrusted: (k) => !pairing && same(k, ctlId.publicKey),
        ...(pairing ? { pairingSecret: SECRET } : {}),
      });
      const d1 = dev.onC1(parse(ctl.start()));
      const { reply, result } = ctl.onD1(parse(d1));
      return { ctl: result, dev: dev.onC2(parse(reply)) };
    };

    for (const pairing of [true, false]) {
      test(`${label}, ${pairing ? 'pairing by code' : 'paired'}: same secret, each proves its identity`, () => {
        const r = run(pairing);
        assert.ok(same(r.ctl.secret, r.dev.secret));
        assert.equal(r.ctl.secret.length, 32);
        assert.ok(same(r.ctl.peer.publicKey, devId.publicKey));
        assert.ok(same(r.dev.peer.publicKey, ctlId.publicKey));
        assert.equal(r.ctl.paired, pairing);
        assert.equal(r.dev.paired, pairing);
      });
    }

    test(`${label}: a wrong code is wrong-code, a changed device key is device-changed`, () => {
      assert.equal(
        codeOf(() => run(true, 'K7XQ2N')),
        'wrong-code',
      );
      const other = identity(dc);
      const ctl = new ControllerHandshake({
        identity: ctlId,
        name: 'laptop',
        certFp: null,
        sid: SID,
        direct: false,
        curve25519: cc,
        expectDevice: devId.publicKey,
      });
      const dev = new DeviceHandshake({ identity: other, name: 'impostor', certFp: null, sid: SID, curve25519: dc, isTrusted: () => true });
      assert.equal(
        codeOf(() => ctl.onD1(parse(dev.onC1(parse(ctl.start()))))),
        'device-changed',
      );
    });

    test(`${label}: a signature by another key than the one in the box is bad-handshake`, () => {
      const liar = { publicKey: devId.publicKey, sign: (m: Uint8Array) => identity(dc).sign(m) };
      const ctl = new ControllerHandshake({
        identity: ctlId,
        name: 'laptop',
        certFp: null,
        sid: SID,
        direct: false,
        curve25519: cc,
        expectDevice: devId.publicKey,
      });
      const dev = new DeviceHandshake({ identity: liar, name: 'board', certFp: null, sid: SID, curve25519: dc, isTrusted: () => true });
      assert.equal(
        codeOf(() => ctl.onD1(parse(dev.onC1(parse(ctl.start()))))),
        'bad-handshake',
      );
    });
  }

  test('node:crypto sides refuse small-order X25519 shares with bad-handshake', () => {
    const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
    const id = identity(nodeCurve25519);
    for (const share of [
      new Uint8Array(32),
      leBytes(1n),
      leBytes(P - 1n),
      leBytes(39382357235489614581723060781553021112529911719440698176882885853963445705823n),
    ]) {
      const ctl = (): ControllerHandshake =>
        new ControllerHandshake({
          identity: id,
          name: 'laptop',
          certFp: null,
          sid: SID,
          direct: false,
          curve25519: nodeCurve25519,
          expectDevice: id.publicKey,
        });
      const c1 = JSON.parse(ctl().start()) as Record<string, unknown>;
      c1.e = b64(share);
      const dev = new DeviceHandshake({ identity: id, name: 'board', certFp: null, sid: SID, curve25519: nodeCurve25519, isTrusted: () => true });
      assert.equal(
        codeOf(() => dev.onC1(parse(JSON.stringify(c1)))),
        'bad-handshake',
        `c1.e = ${toHex(share)}`,
      );
      const victim = ctl();
      const honest = new DeviceHandshake({ identity: id, name: 'board', certFp: null, sid: SID, isTrusted: () => true });
      const d1 = JSON.parse(honest.onC1(parse(victim.start()))) as Record<string, unknown>;
      d1.e = b64(share);
      assert.equal(
        codeOf(() => victim.onD1(parse(JSON.stringify(d1)))),
        'bad-handshake',
        `d1.e = ${toHex(share)}`,
      );
    }
  });
});
