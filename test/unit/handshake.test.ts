import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { expand, extract, hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import {
  ControllerHandshake,
  type ControllerHandshakeOptions,
  DeviceHandshake,
  type DeviceHandshakeOptions,
  encodeHandshake,
  HANDSHAKE_VERSION,
  type HandshakeErrorCode,
  type HandshakeIdentity,
  type HandshakeMessage,
  type HandshakeResult,
  isHandshakeText,
  MAX_HANDSHAKE_BYTES,
  MAX_PEER_NAME,
  parseHandshake,
  SESSION_SECRET_BYTES,
} from '../../crypto/handshake.js';
import { cpaceChannelId, cpaceStart, lvCat, parseCpaceMessage } from '../../crypto/pake.js';
import { deriveSealKeys, Opener, Sealer } from '../../crypto/seal.js';
import { codeOf } from './codes.js';

/*
 * Both sides are driven through the real message strings, as the relay
 * carries them: start() -> parseHandshake -> onC1 -> parseHandshake -> onD1
 * -> parseHandshake -> onC2. Failures are matched on PinholeError.code only.
 */

// ---------------------------------------------------------------------------
// Fixtures

function makeIdentity(): HandshakeIdentity {
  const sk = ed25519.utils.randomSecretKey();
  return { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
}

/** A DTLS fingerprint in SDP form: 32 upper-case hex bytes joined by colons. */
function fingerprint(seed: number): string {
  return Array.from({ length: 32 }, (_, i) => ((seed * 31 + i * 7) & 0xff).toString(16).padStart(2, '0').toUpperCase()).join(':');
}

const SID = 'sid-Q3vX9kP2mN7wR4tY';
const SECRET = 'K7XQ2M';
const WRONG = 'K7XQ2N';

interface Side {
  identity: HandshakeIdentity;
  name: string;
  certFp: string | null;
}

const CTL: Side = { identity: makeIdentity(), name: 'laptop', certFp: fingerprint(1) };
const DEV: Side = { identity: makeIdentity(), name: 'pi-zero-garage', certFp: fingerprint(2) };
const OTHER: Side = { identity: makeIdentity(), name: 'intruder', certFp: fingerprint(3) };

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const trusts =
  (...keys: Uint8Array[]) =>
  (k: Uint8Array): boolean =>
    keys.some((t) => sameBytes(t, k));

/** Controller at first pairing (by code). */
function pairCtl(o: Partial<ControllerHandshakeOptions> = {}): ControllerHandshake {
  return new ControllerHandshake({ ...CTL, sid: SID, direct: true, pairingSecret: SECRET, ...o });
}
/** Controller in a later session (pinned device key). */
function laterCtl(o: Partial<ControllerHandshakeOptions> = {}): ControllerHandshake {
  return new ControllerHandshake({ ...CTL, sid: SID, direct: false, expectDevice: DEV.identity.publicKey, ...o });
}
/** Device in a pairing room. */
function pairDev(o: Partial<DeviceHandshakeOptions> = {}): DeviceHandshake {
  return new DeviceHandshake({ ...DEV, sid: SID, pairingSecret: SECRET, isTrusted: () => false, ...o });
}
/** Device in its persistent room, trusting CTL. */
function laterDev(o: Partial<DeviceHandshakeOptions> = {}): DeviceHandshake {
  return new DeviceHandshake({ ...DEV, sid: SID, isTrusted: trusts(CTL.identity.publicKey), ...o });
}

function parse(text: string): HandshakeMessage {
  const m = parseHandshake(text);
  assert.ok(m, `expected a valid handshake message: ${text}`);
  return m;
}

function assertCode(fn: () => unknown, ...codes: HandshakeErrorCode[]): void {
  const code = codeOf(fn);
  assert.ok((codes as readonly string[]).includes(code), `expected ${codes.join(' or ')}, got ${code}`);
}

interface Run {
  c1: string;
  d1: string;
  c2: string;
  ctlResult: HandshakeResult;
  devResult: HandshakeResult;
}

/** A complete honest run through the message strings. */
function run(ctl: ControllerHandshake, dev: DeviceHandshake): Run {
  const c1 = ctl.start();
  const d1 = dev.onC1(parse(c1));
  const { reply: c2, result: ctlResult } = ctl.onD1(parse(d1));
  const devResult = dev.onC2(parse(c2));
  return { c1, d1, c2, ctlResult, devResult };
}

type Json = Record<string, unknown>;
/** Rewrites one field of a message's JSON, as a server in the middle could. */
function edit(text: string, f: (o: Json) => void): string {
  const o = JSON.parse(text) as Json;
  f(o);
  return JSON.stringify(o);
}
const field = (text: string, k: string): string => (JSON.parse(text) as Json)[k] as string;

/** Changes one character in the middle of a base64url string to another base64url character (stays canonical). */
function flipChar(s: string, at = Math.floor(s.length / 2)): string {
  const c = s[at] === 'A' ? 'B' : 'A';
  return s.slice(0, at) + c + s.slice(at + 1);
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64url'));
const AD_PREFIX = utf8ToBytes('pinhole/1');

/** Keeps a CPace message's Y, but puts `share` in its associated data: what a server that swaps X25519 shares must do to pass the AD check. */
function rewritePakeAd(pake: string, share: Uint8Array): string {
  const p = parseCpaceMessage(unb64(pake));
  assert.ok(p);
  return b64(lvCat(p.y, concatBytes(AD_PREFIX, share)));
}

/** A deterministic rng: SHA-256 of a seed and a counter. */
function seededRng(seed: string): (n: number) => Uint8Array {
  let i = 0;
  return (n: number) => {
    const out = new Uint8Array(n);
    for (let off = 0; off < n; off += 32) out.set(sha256(utf8ToBytes(`${seed}/${i++}`)).subarray(0, Math.min(32, n - off)), off);
    return out;
  };
}

// The key schedule as crypto/handshake.ts documents it, written out independently:
// used to play the attacker, and to check the implementation against its comment.
const th1Of = (sid: string, ec: Uint8Array, ed: Uint8Array, pakeA: Uint8Array, pakeB: Uint8Array, tb: Uint8Array): Uint8Array =>
  sha256(lvCat(utf8ToBytes('pinhole/1 handshake'), utf8ToBytes(sid), ec, ed, pakeA, pakeB, tb));
function boxKeysOf(shared: Uint8Array, th1: Uint8Array): { kc: Uint8Array; kd: Uint8Array } {
  const prk = extract(sha256, shared, th1);
  return { kc: expand(sha256, prk, utf8ToBytes('pinhole/1 hs c2d'), 32), kd: expand(sha256, prk, utf8ToBytes('pinhole/1 hs d2c'), 32) };
}
const NONCE0 = new Uint8Array(12);
const openBoxRaw = (key: Uint8Array, th: Uint8Array, box: string): Json =>
  JSON.parse(Buffer.from(chacha20poly1305(key, NONCE0, th).decrypt(unb64(box))).toString('utf8')) as Json;
const sealBoxRaw = (key: Uint8Array, th: Uint8Array, body: Json): string => b64(chacha20poly1305(key, NONCE0, th).encrypt(utf8ToBytes(JSON.stringify(body))));
const statement = (role: 'device' | 'controller', th: Uint8Array, pub: Uint8Array, name: string, fp: string | null, direct: boolean): Uint8Array =>
  concatBytes(utf8ToBytes(`pinhole/1 ${role} identity`), lvCat(th, pub, utf8ToBytes(name), utf8ToBytes(fp ?? ''), new Uint8Array([direct ? 1 : 0])));

function assertPeer(result: HandshakeResult, side: Side, direct: boolean): void {
  assert.deepEqual(result.peer.publicKey, side.identity.publicKey);
  assert.equal(result.peer.name, side.name);
  assert.equal(result.peer.certFp, side.certFp);
  assert.equal(result.peer.direct, direct);
}

/** The session secrets make working seal keys in both directions. */
function assertSealWorks(ctlSecret: Uint8Array, devSecret: Uint8Array, sid = SID): void {
  const kc = deriveSealKeys(ctlSecret, sid);
  const kd = deriveSealKeys(devSecret, sid);
  const toDevice = new Sealer(kc.c2d, 'c2d', sid).seal('gpio write 17 1');
  const r1 = new Opener(kd.c2d, 'c2d', sid).open(toDevice);
  assert.ok(r1.ok, 'device opens what the controller sealed');
  assert.equal(Buffer.from(r1.plaintext).toString('utf8'), 'gpio write 17 1');
  const toController = new Sealer(kd.d2c, 'd2c', sid).seal('ok');
  const r2 = new Opener(kc.d2c, 'd2c', sid).open(toController);
  assert.ok(r2.ok, 'controller opens what the device sealed');
  assert.equal(Buffer.from(r2.plaintext).toString('utf8'), 'ok');
}

// ---------------------------------------------------------------------------

describe('handshake: pairing by code', () => {
  test("issue 4: pairing with the right secret gives both sides the same secret and each other's identity", () => {
    const dev = pairDev();
    assert.equal(dev.pakeAttempted, false);
    const r = run(pairCtl({ direct: true }), dev);
    assert.equal(dev.pakeAttempted, true);
    assert.equal(r.ctlResult.secret.length, SESSION_SECRET_BYTES);
    assert.equal(r.ctlResult.secret.length, 32);
    assert.deepEqual(r.ctlResult.secret, r.devResult.secret);
    assert.equal(r.ctlResult.paired, true);
    assert.equal(r.devResult.paired, true);
    assertPeer(r.ctlResult, DEV, false); // the device never offers a direct path
    assertPeer(r.devResult, CTL, true); // the controller's direct flag reaches the device
    assertSealWorks(r.ctlResult.secret, r.devResult.secret);
    // The handshake messages carry the PAKE.
    assert.equal(typeof field(r.c1, 'pake'), 'string');
    assert.equal(typeof field(r.d1, 'pake'), 'string');
    assert.equal(typeof field(r.d1, 'conf'), 'string');
    assert.equal(typeof field(r.c2, 'conf'), 'string');
  });

  test('issue 4: direct false and no certificate on the controller reach the device as such', () => {
    const ctlSide: Side = { ...CTL, certFp: null };
    const r = run(pairCtl({ ...ctlSide, direct: false }), pairDev({ certFp: null }));
    assert.deepEqual(r.ctlResult.secret, r.devResult.secret);
    assertPeer(r.devResult, ctlSide, false);
    assertPeer(r.ctlResult, { ...DEV, certFp: null }, false);
  });

  test('issue 4: every run has a fresh secret, even with the same sid and code', () => {
    const a = run(pairCtl(), pairDev());
    const b = run(pairCtl(), pairDev());
    assert.notDeepEqual(a.ctlResult.secret, b.ctlResult.secret);
    assert.notEqual(a.c1, b.c1);
    assert.notEqual(a.d1, b.d1);
  });

  test('issue 4: a wrong secret fails with wrong-code at the controller, and the device counts the attempt', () => {
    for (const [ctlSecret, devSecret] of [
      [WRONG, SECRET],
      [SECRET, WRONG],
    ] as const) {
      const ctl = pairCtl({ pairingSecret: ctlSecret });
      const dev = pairDev({ pairingSecret: devSecret });
      const d1 = dev.onC1(parse(ctl.start()));
      assert.equal(dev.pakeAttempted, true, 'the code is spent once c1 carried a PAKE');
      assert.equal(
        codeOf(() => ctl.onD1(parse(d1))),
        'wrong-code',
      );
    }
  });

  test('issue 4: a device that saw a wrong-code c1 refuses a c2 taken from another, correct run', () => {
    // The attacker tried a wrong code, so the real controller throws before producing c2;
    // its best move is a c2 recorded elsewhere (same sid, same code).
    const other = run(pairCtl(), pairDev());
    const attacker = pairCtl({ pairingSecret: WRONG });
    const dev = pairDev();
    const d1 = dev.onC1(parse(attacker.start()));
    assert.equal(dev.pakeAttempted, true);
    assertCode(() => attacker.onD1(parse(d1)), 'wrong-code');
    assertCode(() => dev.onC2(parse(other.c2)), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: a device that saw a correct c1 refuses a c2 taken from another correct run', () => {
    const other = run(pairCtl(), pairDev());
    const ctl = pairCtl();
    const dev = pairDev();
    dev.onC1(parse(ctl.start()));
    assertCode(() => dev.onC2(parse(other.c2)), 'wrong-code', 'bad-handshake');
  });
});

describe('handshake: later sessions (pinned keys)', () => {
  test('issue 4: a trusted controller and the expected device complete, paired false', () => {
    const dev = laterDev();
    const r = run(laterCtl({ direct: true }), dev);
    assert.equal(dev.pakeAttempted, false);
    assert.equal(r.ctlResult.paired, false);
    assert.equal(r.devResult.paired, false);
    assert.equal(r.ctlResult.secret.length, SESSION_SECRET_BYTES);
    assert.deepEqual(r.ctlResult.secret, r.devResult.secret);
    assertPeer(r.ctlResult, DEV, false);
    assertPeer(r.devResult, CTL, true);
    assertSealWorks(r.ctlResult.secret, r.devResult.secret);
    for (const m of [r.c1, r.d1, r.c2]) {
      assert.equal((JSON.parse(m) as Json).pake, undefined);
      assert.equal((JSON.parse(m) as Json).conf, undefined);
    }
  });

  test('issue 4: an untrusted controller is refused with not-paired', () => {
    const ctl = new ControllerHandshake({ ...OTHER, sid: SID, direct: false, expectDevice: DEV.identity.publicKey });
    const dev = laterDev();
    const d1 = dev.onC1(parse(ctl.start()));
    const { reply: c2 } = ctl.onD1(parse(d1)); // the controller cannot tell yet
    assert.equal(
      codeOf(() => dev.onC2(parse(c2))),
      'not-paired',
    );
  });

  test('issue 4: a revoked controller (isTrusted now false) is refused with not-paired', () => {
    const ctl = laterCtl();
    const dev = laterDev({ isTrusted: () => false });
    const d1 = dev.onC1(parse(ctl.start()));
    const { reply: c2 } = ctl.onD1(parse(d1));
    assert.equal(
      codeOf(() => dev.onC2(parse(c2))),
      'not-paired',
    );
  });

  test("issue 4: isTrusted is asked about the controller's proven key", () => {
    const asked: Uint8Array[] = [];
    run(laterCtl(), laterDev({ isTrusted: (k) => (asked.push(k), true) }));
    assert.equal(asked.length, 1);
    assert.deepEqual(asked[0], CTL.identity.publicKey);
  });

  test('issue 4: a controller expecting another device key fails with device-changed', () => {
    const ctl = laterCtl({ expectDevice: OTHER.identity.publicKey });
    const d1 = laterDev().onC1(parse(ctl.start()));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1))),
      'device-changed',
    );
  });

  test('issue 4: a server answering as the device with its own identity gets device-changed, not a session', () => {
    const ctl = laterCtl();
    const impostor = new DeviceHandshake({ ...OTHER, sid: SID, isTrusted: () => true });
    const d1 = impostor.onC1(parse(ctl.start()));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1))),
      'device-changed',
    );
  });

  test('issue 4: a controller without a code in a pairing room, or with one in the persistent room, is refused', () => {
    assertCode(() => pairDev().onC1(parse(laterCtl().start())), 'bad-handshake');
    const dev = laterDev();
    assertCode(() => dev.onC1(parse(pairCtl().start())), 'bad-handshake');
    assert.equal(dev.pakeAttempted, false);
  });
});

describe('handshake: a server in the middle (pairing)', () => {
  test('issue 4: replacing c1.e alone is refused by the device (bad-handshake)', () => {
    const ctl = pairCtl();
    const attackerShare = x25519.getPublicKey(x25519.utils.randomSecretKey());
    const c1 = edit(ctl.start(), (o) => (o.e = b64(attackerShare)));
    assertCode(() => pairDev().onC1(parse(c1)), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: replacing c1.e and the PAKE AD to match: the device answers, but no side completes', () => {
    const ctl = pairCtl();
    const dev = pairDev();
    const a = x25519.utils.randomSecretKey();
    const A = x25519.getPublicKey(a);
    const c1 = ctl.start();
    const c1x = edit(c1, (o) => {
      o.e = b64(A);
      o.pake = rewritePakeAd(o.pake as string, A);
    });
    const d1 = dev.onC1(parse(c1x));
    // Relay d1 unchanged: the CPace transcripts differ (ADa), so Tb fails.
    assertCode(() => ctl.onD1(parse(d1)), 'wrong-code', 'bad-handshake');
    // The attacker has DH with the device, but no Ta: any c2 it makes is refused.
    const shared = x25519.getSharedSecret(a, unb64(field(d1, 'e')));
    const th1 = th1Of(SID, A, unb64(field(d1, 'e')), unb64(field(c1x, 'pake')), unb64(field(d1, 'pake')), unb64(field(d1, 'conf')));
    const { kc } = boxKeysOf(shared, th1);
    const ta = unb64(field(d1, 'conf')); // reflect Tb: the best tag the attacker has
    const th2 = sha256(concatBytes(th1, lvCat(unb64(field(d1, 'box')), ta)));
    const sig = OTHER.identity.sign(statement('controller', th2, OTHER.identity.publicKey, OTHER.name, OTHER.certFp, true));
    const box = sealBoxRaw(kc, th2, { id: b64(OTHER.identity.publicKey), name: OTHER.name, fp: OTHER.certFp, direct: true, sig: b64(sig) });
    const forged = encodeHandshake({ hs: 'c2', conf: b64(ta), box });
    assertCode(() => dev.onC2(parse(forged)), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: a full swap of both X25519 shares (with both PAKE ADs rewritten) never completes', () => {
    const ctl = pairCtl();
    const dev = pairDev();
    const a1 = x25519.utils.randomSecretKey(); // attacker towards the device
    const a2 = x25519.utils.randomSecretKey(); // attacker towards the controller
    const A1 = x25519.getPublicKey(a1);
    const A2 = x25519.getPublicKey(a2);
    const c1x = edit(ctl.start(), (o) => {
      o.e = b64(A1);
      o.pake = rewritePakeAd(o.pake as string, A1);
    });
    const d1 = dev.onC1(parse(c1x));
    const d1x = edit(d1, (o) => {
      o.e = b64(A2);
      o.pake = rewritePakeAd(o.pake as string, A2);
    });
    assertCode(() => ctl.onD1(parse(d1x)), 'wrong-code');
    // Nothing the attacker holds confirms the device's PAKE.
    assertCode(() => dev.onC2(parse(encodeHandshake({ hs: 'c2', conf: b64(new Uint8Array(64)), box: field(d1, 'box') }))), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: replacing d1.e alone is refused by the controller (bad-handshake)', () => {
    const ctl = pairCtl();
    const d1 = pairDev().onC1(parse(ctl.start()));
    const attackerShare = x25519.getPublicKey(x25519.utils.randomSecretKey());
    const d1x = edit(d1, (o) => (o.e = b64(attackerShare)));
    assertCode(() => ctl.onD1(parse(d1x)), 'wrong-code', 'bad-handshake');
  });

  test("issue 4: replacing d1.e and sealing the attacker's own identity box (device PAKE relayed) is refused", () => {
    // Tb is the real device's and verifies; only the PAKE AD (which carries Ed) ties it to the X25519 share.
    // Without that check the controller would pair with the attacker's identity key.
    const ctl = pairCtl();
    const c1 = ctl.start();
    const d1 = pairDev().onC1(parse(c1));
    const a = x25519.utils.randomSecretKey();
    const A = x25519.getPublicKey(a);
    const ec = unb64(field(c1, 'e'));
    const th1 = th1Of(SID, ec, A, unb64(field(c1, 'pake')), unb64(field(d1, 'pake')), unb64(field(d1, 'conf')));
    const { kd } = boxKeysOf(x25519.getSharedSecret(a, ec), th1);
    const sig = OTHER.identity.sign(statement('device', th1, OTHER.identity.publicKey, OTHER.name, OTHER.certFp, false));
    const box = sealBoxRaw(kd, th1, { id: b64(OTHER.identity.publicKey), name: OTHER.name, fp: OTHER.certFp, direct: false, sig: b64(sig) });
    const d1x = edit(d1, (o) => {
      o.e = b64(A);
      o.box = box;
    });
    assertCode(() => ctl.onD1(parse(d1x)), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: replacing d1.e and the device PAKE AD to match is refused (wrong-code)', () => {
    const ctl = pairCtl();
    const d1 = pairDev().onC1(parse(ctl.start()));
    const A = x25519.getPublicKey(x25519.utils.randomSecretKey());
    const d1x = edit(d1, (o) => {
      o.e = b64(A);
      o.pake = rewritePakeAd(o.pake as string, A);
    });
    assertCode(() => ctl.onD1(parse(d1x)), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: one character changed in d1.box fails with bad-handshake', () => {
    const ctl = pairCtl();
    const d1 = pairDev().onC1(parse(ctl.start()));
    const d1x = edit(d1, (o) => (o.box = flipChar(o.box as string)));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1x))),
      'bad-handshake',
    );
  });

  test('issue 4: one character changed in c2.box fails with bad-handshake', () => {
    const ctl = pairCtl();
    const dev = pairDev();
    const d1 = dev.onC1(parse(ctl.start()));
    const { reply: c2 } = ctl.onD1(parse(d1));
    const c2x = edit(c2, (o) => (o.box = flipChar(o.box as string)));
    assert.equal(
      codeOf(() => dev.onC2(parse(c2x))),
      'bad-handshake',
    );
  });

  test('issue 4: one character changed in the first or last position of a box fails with bad-handshake', () => {
    for (const pos of ['first', 'last'] as const) {
      const ctl = pairCtl();
      const dev = pairDev();
      const d1 = dev.onC1(parse(ctl.start()));
      const at = (s: string) => (pos === 'first' ? 0 : s.length - 1);
      const d1x = edit(d1, (o) => (o.box = flipChar(o.box as string, at(o.box as string))));
      assert.equal(
        codeOf(() => ctl.onD1(parse(d1x))),
        'bad-handshake',
        `d1.box ${pos}`,
      );
    }
  });

  test("issue 4: d1.conf swapped for another run's tag fails with wrong-code", () => {
    const other = run(pairCtl(), pairDev());
    const ctl = pairCtl();
    const d1 = pairDev().onC1(parse(ctl.start()));
    const d1x = edit(d1, (o) => (o.conf = field(other.d1, 'conf')));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1x))),
      'wrong-code',
    );
  });

  test("issue 4: c2.conf swapped for another run's tag fails with wrong-code", () => {
    const other = run(pairCtl(), pairDev());
    const ctl = pairCtl();
    const dev = pairDev();
    const d1 = dev.onC1(parse(ctl.start()));
    const { reply: c2 } = ctl.onD1(parse(d1));
    const c2x = edit(c2, (o) => (o.conf = field(other.c2, 'conf')));
    assert.equal(
      codeOf(() => dev.onC2(parse(c2x))),
      'wrong-code',
    );
  });

  test('issue 4: dropping d1.conf or c2.conf fails with bad-handshake', () => {
    const ctl = pairCtl();
    const dev = pairDev();
    const d1 = dev.onC1(parse(ctl.start()));
    assert.equal(
      codeOf(() => pairCtl().onD1(parse(edit(d1, (o) => delete o.conf)))),
      'bad-handshake',
    );
    const { reply: c2 } = ctl.onD1(parse(d1));
    assert.equal(
      codeOf(() => dev.onC2(parse(edit(c2, (o) => delete o.conf)))),
      'bad-handshake',
    );
  });
});

describe('handshake: a server in the middle (later sessions)', () => {
  test("issue 4: swapping c1.e and re-encrypting the device's identity box is caught by its signature", () => {
    const ctl = laterCtl();
    const dev = laterDev();
    const c1 = ctl.start();
    const ec = unb64(field(c1, 'e'));
    const a1 = x25519.utils.randomSecretKey();
    const A1 = x25519.getPublicKey(a1);
    const d1 = dev.onC1(parse(edit(c1, (o) => (o.e = b64(A1)))));
    const ed = unb64(field(d1, 'e'));
    // The attacker opens the device's box (it holds the DH towards the device) ...
    const th1d = th1Of(SID, A1, ed, new Uint8Array(0), new Uint8Array(0), new Uint8Array(0));
    const body = openBoxRaw(boxKeysOf(x25519.getSharedSecret(a1, ed), th1d).kd, th1d, field(d1, 'box'));
    assert.equal(body.id, b64(DEV.identity.publicKey));
    // ... and re-seals it towards the controller under its own second share.
    const a2 = x25519.utils.randomSecretKey();
    const A2 = x25519.getPublicKey(a2);
    const th1c = th1Of(SID, ec, A2, new Uint8Array(0), new Uint8Array(0), new Uint8Array(0));
    const box = sealBoxRaw(boxKeysOf(x25519.getSharedSecret(a2, ec), th1c).kd, th1c, body);
    assert.equal(
      codeOf(() => ctl.onD1(parse(encodeHandshake({ hs: 'd1', e: b64(A2), box })))),
      'bad-handshake',
    );
  });

  test('issue 4: one character changed in d1.box or c2.box fails with bad-handshake', () => {
    const ctl = laterCtl();
    const dev = laterDev();
    const d1 = dev.onC1(parse(ctl.start()));
    assert.equal(
      codeOf(() => laterCtl().onD1(parse(edit(d1, (o) => (o.box = flipChar(o.box as string)))))),
      'bad-handshake',
    );
    const { reply: c2 } = ctl.onD1(parse(d1));
    assert.equal(
      codeOf(() => dev.onC2(parse(edit(c2, (o) => (o.box = flipChar(o.box as string)))))),
      'bad-handshake',
    );
  });

  test('issue 4: a PAKE or confirmation nobody asked for is refused', () => {
    const paired = run(pairCtl(), pairDev());
    const ctl = laterCtl();
    const dev = laterDev();
    const d1 = dev.onC1(parse(ctl.start()));
    const withPake = edit(d1, (o) => {
      o.pake = field(paired.d1, 'pake');
      o.conf = field(paired.d1, 'conf');
    });
    assert.equal(
      codeOf(() => laterCtl().onD1(parse(withPake))),
      'bad-handshake',
    );
    const { reply: c2 } = ctl.onD1(parse(d1));
    assert.equal(
      codeOf(() => dev.onC2(parse(edit(c2, (o) => (o.conf = field(paired.c2, 'conf')))))),
      'bad-handshake',
    );
  });

  test('issue 4: low-order, short or non-canonical X25519 shares are refused with bad-handshake', () => {
    const bad = [
      b64(new Uint8Array(32)), // u = 0, low order
      b64(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))), // u = 1, low order
      b64(new Uint8Array(31)),
      b64(new Uint8Array(33)),
      b64(new Uint8Array(32)).slice(0, -1) + 'B', // non-zero trailing bits: not canonical base64url
    ];
    for (const e of bad) {
      const c1 = edit(laterCtl().start(), (o) => (o.e = e));
      assert.equal(
        codeOf(() => laterDev().onC1(parse(c1))),
        'bad-handshake',
        `c1.e = ${e}`,
      );
      const ctl = laterCtl();
      const d1 = edit(laterDev().onC1(parse(ctl.start())), (o) => (o.e = e));
      assert.equal(
        codeOf(() => ctl.onD1(parse(d1))),
        'bad-handshake',
        `d1.e = ${e}`,
      );
    }
  });
});

describe('handshake: mismatched rooms, versions and sessions', () => {
  test('issue 4: a PAKE in the persistent room (device without pairingSecret) fails with bad-handshake', () => {
    const dev = new DeviceHandshake({ ...DEV, sid: SID, isTrusted: () => true });
    assert.equal(
      codeOf(() => dev.onC1(parse(pairCtl().start()))),
      'bad-handshake',
    );
    assert.equal(dev.pakeAttempted, false);
  });

  test('issue 4: no PAKE in a pairing room fails with bad-handshake', () => {
    const dev = pairDev({ isTrusted: () => true }); // even a trusted controller needs the code here
    assert.equal(
      codeOf(() => dev.onC1(parse(laterCtl().start()))),
      'bad-handshake',
    );
    assert.equal(dev.pakeAttempted, false);
  });

  test('issue 4: a device answering a pairing c1 without its PAKE fails with bad-handshake at the controller', () => {
    const ctl = pairCtl();
    const c1 = ctl.start();
    // A device in its persistent room would never answer; the server forges a PAKE-less d1.
    const d1 = laterDev().onC1(parse(edit(c1, (o) => delete o.pake)));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1))),
      'bad-handshake',
    );
  });

  test('issue 4: handshake version 2 (or 0) in c1 fails with bad-handshake', () => {
    for (const v of [2, 0, HANDSHAKE_VERSION + 1]) {
      assert.equal(
        codeOf(() => pairDev().onC1(parse(edit(pairCtl().start(), (o) => (o.v = v))))),
        'bad-handshake',
      );
      assert.equal(
        codeOf(() => laterDev().onC1(parse(edit(laterCtl().start(), (o) => (o.v = v))))),
        'bad-handshake',
      );
    }
  });

  test('issue 4: a sid differing between the two sides fails (pairing and later sessions)', () => {
    {
      const ctl = pairCtl({ sid: 'sid-A' });
      const dev = pairDev({ sid: 'sid-B' });
      const d1 = dev.onC1(parse(ctl.start()));
      assertCode(() => ctl.onD1(parse(d1)), 'wrong-code', 'bad-handshake');
    }
    {
      const ctl = laterCtl({ sid: 'sid-A' });
      const dev = laterDev({ sid: 'sid-B' });
      const d1 = dev.onC1(parse(ctl.start()));
      assertCode(() => ctl.onD1(parse(d1)), 'bad-handshake');
    }
  });

  test('issue 4: messages out of order, repeated, or of the wrong kind fail with bad-handshake', () => {
    const fail = parse(encodeHandshake({ hs: 'fail', code: 'wrong-code' }));
    // Controller: d1 before start(), a non-d1, and d1 twice.
    const honest = pairCtl();
    const d1 = pairDev().onC1(parse(honest.start()));
    assert.equal(
      codeOf(() => pairCtl().onD1(parse(d1))),
      'bad-handshake',
      'd1 before start()',
    );
    assert.equal(
      codeOf(() => honest.onD1(fail)),
      'bad-handshake',
      'fail instead of d1',
    );
    const ctl = pairCtl();
    const dev = pairDev();
    const d1b = dev.onC1(parse(ctl.start()));
    const { reply: c2 } = ctl.onD1(parse(d1b));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1b))),
      'bad-handshake',
      'd1 twice',
    );
    // Device: c2 before c1, c1 twice, c2 twice.
    assert.equal(
      codeOf(() => pairDev().onC2(parse(c2))),
      'bad-handshake',
      'c2 before c1',
    );
    assert.equal(
      codeOf(() => dev.onC1(parse(pairCtl().start()))),
      'bad-handshake',
      'c1 twice',
    );
    const result = dev.onC2(parse(c2));
    assert.equal(result.paired, true);
    assert.equal(
      codeOf(() => dev.onC2(parse(c2))),
      'bad-handshake',
      'c2 twice',
    );
    assert.equal(
      codeOf(() => laterDev().onC1(parse(d1b))),
      'bad-handshake',
      'd1 to a device',
    );
  });

  test('issue 4: a device whose onC1 failed refuses any c2 afterwards', () => {
    const dev = pairDev();
    assertCode(() => dev.onC1(parse(edit(pairCtl().start(), (o) => (o.v = 2)))), 'bad-handshake');
    const good = run(pairCtl(), pairDev());
    assert.equal(
      codeOf(() => dev.onC2(parse(good.c2))),
      'bad-handshake',
    );
  });

  test('issue 4: the controller needs exactly one of pairingSecret and expectDevice', () => {
    assert.throws(() => new ControllerHandshake({ ...CTL, sid: SID, direct: false }), TypeError);
    assert.throws(() => new ControllerHandshake({ ...CTL, sid: SID, direct: false, pairingSecret: SECRET, expectDevice: DEV.identity.publicKey }), TypeError);
  });

  test('issue 4: a peer name over MAX_PEER_NAME is refused by the receiver with bad-handshake', () => {
    const long = 'n'.repeat(MAX_PEER_NAME + 1);
    const ctl = laterCtl();
    const d1 = laterDev({ name: long }).onC1(parse(ctl.start()));
    assert.equal(
      codeOf(() => ctl.onD1(parse(d1))),
      'bad-handshake',
    );
    const dev = laterDev();
    const ctl2 = laterCtl({ name: long });
    const { reply: c2 } = ctl2.onD1(parse(dev.onC1(parse(ctl2.start()))));
    assert.equal(
      codeOf(() => dev.onC2(parse(c2))),
      'bad-handshake',
    );
  });
});

describe('handshake: replay', () => {
  test('issue 4: a c2 recorded in session 1 is refused by the device in session 2 (pairing, same sid)', () => {
    const s1 = run(pairCtl(), pairDev());
    const dev = pairDev();
    dev.onC1(parse(pairCtl().start()));
    assertCode(() => dev.onC2(parse(s1.c2)), 'wrong-code', 'bad-handshake');
  });

  test('issue 4: a c2 recorded in session 1 is refused by the device in session 2 (later session, same sid)', () => {
    const s1 = run(laterCtl(), laterDev());
    const dev = laterDev();
    dev.onC1(parse(laterCtl().start()));
    assertCode(() => dev.onC2(parse(s1.c2)), 'bad-handshake');
  });

  test('issue 4: a whole session 1 replayed to a fresh device: c1 is answered, the recorded c2 is refused', () => {
    const s1 = run(laterCtl(), laterDev());
    const dev = laterDev();
    const d1 = dev.onC1(parse(s1.c1)); // the replayed c1 itself looks fine
    assert.notEqual(d1, s1.d1, 'the device picks a fresh share');
    assertCode(() => dev.onC2(parse(s1.c2)), 'bad-handshake');
  });

  test('issue 4: a d1 recorded in session 1 is refused by the controller in session 2', () => {
    const s1p = run(pairCtl(), pairDev());
    const ctl = pairCtl();
    ctl.start();
    assertCode(() => ctl.onD1(parse(s1p.d1)), 'wrong-code', 'bad-handshake');
    const s1l = run(laterCtl(), laterDev());
    const ctl2 = laterCtl();
    ctl2.start();
    assertCode(() => ctl2.onD1(parse(s1l.d1)), 'bad-handshake');
  });
});

describe('handshake: key schedule as documented', () => {
  test('later session: th1, the box keys, th2 and the secret match the comment in crypto/handshake.ts', () => {
    const crng = seededRng('controller');
    const drng = seededRng('device');
    const ecSecret = seededRng('controller')(32);
    const edSecret = seededRng('device')(32);
    const r = run(laterCtl({ rng: crng, direct: true }), laterDev({ rng: drng }));
    const ec = x25519.getPublicKey(ecSecret);
    const ed = x25519.getPublicKey(edSecret);
    assert.equal(field(r.c1, 'e'), b64(ec));
    assert.equal(field(r.d1, 'e'), b64(ed));
    const dh = x25519.getSharedSecret(ecSecret, ed);
    const empty = new Uint8Array(0);
    const th1 = th1Of(SID, ec, ed, empty, empty, empty);
    const { kc, kd } = boxKeysOf(dh, th1);
    const bodyD = openBoxRaw(kd, th1, field(r.d1, 'box'));
    assert.deepEqual(bodyD, { id: b64(DEV.identity.publicKey), name: DEV.name, fp: DEV.certFp, direct: false, sig: bodyD.sig });
    assert.ok(
      ed25519.verify(unb64(bodyD.sig as string), statement('device', th1, DEV.identity.publicKey, DEV.name, DEV.certFp, false), DEV.identity.publicKey),
    );
    const th2 = sha256(concatBytes(th1, lvCat(unb64(field(r.d1, 'box')), empty)));
    const bodyC = openBoxRaw(kc, th2, field(r.c2, 'box'));
    assert.equal(bodyC.id, b64(CTL.identity.publicKey));
    assert.equal(bodyC.direct, true);
    assert.ok(
      ed25519.verify(unb64(bodyC.sig as string), statement('controller', th2, CTL.identity.publicKey, CTL.name, CTL.certFp, true), CTL.identity.publicKey),
    );
    const secret = hkdf(sha256, dh, th2, utf8ToBytes('pinhole/1 session'), 32);
    assert.deepEqual(r.ctlResult.secret, secret);
    assert.deepEqual(r.devResult.secret, secret);
  });

  test('pairing: the secret mixes in the CPace ISK, and the PAKE ADs carry the X25519 shares', () => {
    // Replay the controller's randomness: rng(32) for its X25519 key, then rng(32) for its CPace scalar.
    const outs = (() => {
      const g = seededRng('pc');
      return [g(32), g(32)];
    })();
    const r = run(pairCtl({ rng: seededRng('pc') }), pairDev());
    const ec = x25519.getPublicKey(outs[0]!);
    const ed = unb64(field(r.d1, 'e'));
    const pa = parseCpaceMessage(unb64(field(r.c1, 'pake')));
    const pb = parseCpaceMessage(unb64(field(r.d1, 'pake')));
    assert.ok(pa && pb);
    assert.deepEqual(pa.ad, concatBytes(AD_PREFIX, ec));
    assert.deepEqual(pb.ad, concatBytes(AD_PREFIX, ed));
    const cp = cpaceStart({
      password: utf8ToBytes(SECRET),
      role: 'initiator',
      sid: utf8ToBytes(SID),
      ci: cpaceChannelId('pinhole/1 controller', 'pinhole/1 device'),
      ad: concatBytes(AD_PREFIX, ec),
      rng: () => outs[1]!,
    });
    assert.equal(b64(cp.message), field(r.c1, 'pake'));
    const session = cp.finish(unb64(field(r.d1, 'pake')));
    assert.ok(session.verifyConfirm(unb64(field(r.d1, 'conf'))));
    assert.equal(b64(session.confirm), field(r.c2, 'conf'));
    const isk = session.key();
    const dh = x25519.getSharedSecret(outs[0]!, ed);
    const th1 = th1Of(SID, ec, ed, unb64(field(r.c1, 'pake')), unb64(field(r.d1, 'pake')), unb64(field(r.d1, 'conf')));
    const th2 = sha256(concatBytes(th1, lvCat(unb64(field(r.d1, 'box')), session.confirm)));
    const secret = hkdf(sha256, concatBytes(dh, isk), th2, utf8ToBytes('pinhole/1 session'), 32);
    assert.deepEqual(r.ctlResult.secret, secret);
    assert.deepEqual(r.devResult.secret, secret);
    // Without the ISK the attacker's best guess (DH only) is not the secret.
    assert.notDeepEqual(hkdf(sha256, dh, th2, utf8ToBytes('pinhole/1 session'), 32), secret);
  });
});

describe('issue 11: injected randomness', () => {
  test('the same injected rng gives the same first messages; another gives others; the default gives fresh ones', () => {
    for (const ctl of [pairCtl, laterCtl]) {
      const a = ctl({ rng: seededRng('same') }).start();
      const b = ctl({ rng: seededRng('same') }).start();
      assert.equal(a, b, 'identical c1 from identical randomness');
      assert.notEqual(ctl({ rng: seededRng('other') }).start(), a, 'the rng is what the key share comes from');
      assert.notEqual(ctl().start(), ctl().start(), 'the default rng is random');
    }
    const c1 = pairCtl({ rng: seededRng('c') }).start();
    const d1 = (seed: string) => pairDev({ rng: seededRng(seed) }).onC1(parse(c1));
    assert.equal(d1('d'), d1('d'), "identical d1 (the device's X25519 key and CPace scalar) from identical randomness");
    assert.notEqual(d1('d'), d1('e'));
  });
});

describe('parseHandshake / isHandshakeText', () => {
  const E = b64(new Uint8Array(32).fill(9));
  const PAKE = b64(new Uint8Array(45).fill(1));
  const CONF = b64(new Uint8Array(64).fill(2));
  const BOX = b64(new Uint8Array(300).fill(3));

  test('accepts each valid shape, and keeps only the known fields', () => {
    const valid: HandshakeMessage[] = [
      { hs: 'c1', v: 1, e: E },
      { hs: 'c1', v: 1, e: E, pake: PAKE },
      { hs: 'c1', v: 7, e: E }, // other versions parse; onC1 refuses them
      { hs: 'd1', e: E, box: BOX },
      { hs: 'd1', e: E, pake: PAKE, conf: CONF, box: BOX },
      { hs: 'c2', box: BOX },
      { hs: 'c2', conf: CONF, box: BOX },
      ...(['wrong-code', 'code-spent', 'not-paired', 'device-changed', 'bad-handshake', 'fingerprint-mismatch'] as const).map((code) => ({
        hs: 'fail' as const,
        code,
      })),
    ];
    for (const m of valid) {
      const text = encodeHandshake(m);
      assert.ok(isHandshakeText(text));
      assert.deepEqual(parseHandshake(text), m, text);
    }
    assert.deepEqual(parseHandshake(JSON.stringify({ hs: 'c2', box: BOX, extra: 'x', v: 1 })), { hs: 'c2', box: BOX });
  });

  test('accepts the messages of a real run', () => {
    for (const r of [run(pairCtl(), pairDev()), run(laterCtl(), laterDev())]) {
      for (const m of [r.c1, r.d1, r.c2]) {
        assert.ok(isHandshakeText(m));
        assert.equal(encodeHandshake(parse(m)), m);
      }
    }
  });

  test('rejects non-JSON, non-objects and arrays', () => {
    for (const t of ['', '{', 'not json', '{"hs":"c2",}', 'null', '1', '"c1"', 'true', '[]', `[${encodeHandshake({ hs: 'c2', box: BOX })}]`]) {
      assert.equal(parseHandshake(t), undefined, t);
    }
    assert.equal(parseHandshake(undefined as unknown as string), undefined);
    assert.equal(parseHandshake(42 as unknown as string), undefined);
  });

  test('rejects unknown or missing hs', () => {
    for (const hs of ['c3', 'C1', 'd2', '', 'toString', '__proto__', 1, null, undefined]) {
      assert.equal(parseHandshake(JSON.stringify({ hs, v: 1, e: E, box: BOX, code: 'wrong-code' })), undefined, String(hs));
    }
  });

  test('rejects non-base64url, non-string, missing or oversize fields', () => {
    const bad: Json[] = [
      { hs: 'c1', v: 1 },
      { hs: 'c1', v: 1, e: E + '=' },
      { hs: 'c1', v: 1, e: E.replace(/.$/, '+') },
      { hs: 'c1', v: 1, e: E.replace(/.$/, '/') },
      { hs: 'c1', v: 1, e: 'a b' },
      { hs: 'c1', v: 1, e: 12 },
      { hs: 'c1', v: 1, e: 'A'.repeat(65) },
      { hs: 'c1', v: 1, e: E, pake: 'x.y' },
      { hs: 'c1', v: 1, e: E, pake: null },
      { hs: 'c1', v: 1, e: E, pake: 'A'.repeat(2049) },
      { hs: 'c1', v: '1', e: E },
      { hs: 'c1', v: 1.5, e: E },
      { hs: 'c1', e: E },
      { hs: 'd1', e: E },
      { hs: 'd1', box: BOX },
      { hs: 'd1', e: E, box: BOX + '!' },
      { hs: 'd1', e: E, box: BOX, conf: 'A'.repeat(129) },
      { hs: 'd1', e: E, box: BOX, pake: ['A'] },
      { hs: 'd1', e: E, box: 'A'.repeat(2049) },
      { hs: 'c2' },
      { hs: 'c2', box: { x: 1 } },
      { hs: 'c2', box: BOX, conf: 'A==' },
      { hs: 'c2', box: BOX, conf: 5 },
    ];
    for (const o of bad) assert.equal(parseHandshake(JSON.stringify(o)), undefined, JSON.stringify(o).slice(0, 120));
  });

  test('rejects unknown fail codes', () => {
    for (const code of ['nope', 'WRONG-CODE', 'toString', '__proto__', 'constructor', '', 1, null, undefined]) {
      assert.equal(parseHandshake(JSON.stringify({ hs: 'fail', code })), undefined, String(code));
    }
  });

  test('rejects text longer than MAX_HANDSHAKE_BYTES, accepts it at the limit', () => {
    const base = encodeHandshake({ hs: 'fail', code: 'bad-handshake' });
    const pad = (total: number): string => {
      const stub = base.slice(0, -1) + ',"x":""}';
      return base.slice(0, -1) + `,"x":"${'a'.repeat(total - stub.length)}"}`;
    };
    assert.equal(pad(MAX_HANDSHAKE_BYTES).length, MAX_HANDSHAKE_BYTES);
    assert.deepEqual(parseHandshake(pad(MAX_HANDSHAKE_BYTES)), { hs: 'fail', code: 'bad-handshake' });
    assert.equal(parseHandshake(pad(MAX_HANDSHAKE_BYTES + 1)), undefined);
    assert.equal(parseHandshake(' '.repeat(MAX_HANDSHAKE_BYTES) + base), undefined);
  });

  test('isHandshakeText tells JSON from a sealed (base64url) frame', () => {
    assert.equal(isHandshakeText('{"hs":"c1"}'), true);
    assert.equal(isHandshakeText('{'), true);
    assert.equal(isHandshakeText(''), false);
    assert.equal(isHandshakeText('AQEAAAAAAAAAAA'), false);
    assert.equal(isHandshakeText('-_abc'), false);
    const k = deriveSealKeys(new Uint8Array(32).fill(5), SID);
    assert.equal(isHandshakeText(new Sealer(k.c2d, 'c2d', SID).seal('{"hs":"c1"}')), false);
    assert.equal(isHandshakeText(pairCtl().start()), true);
  });
});

describe('handshake: message sizes', () => {
  test('issue 4: every message fits MAX_HANDSHAKE_BYTES with 64-character names and certificates on both sides', () => {
    const names = ['n'.repeat(MAX_PEER_NAME), '\u4e2d'.repeat(MAX_PEER_NAME), '\u{1F600}'.repeat(MAX_PEER_NAME / 2), '"\\'.repeat(MAX_PEER_NAME / 2)];
    for (const name of names) {
      assert.equal(name.length, MAX_PEER_NAME);
      for (const mode of ['pairing', 'later'] as const) {
        const ctl = mode === 'pairing' ? pairCtl({ name, direct: true }) : laterCtl({ name, direct: true });
        const dev = mode === 'pairing' ? pairDev({ name }) : laterDev({ name });
        const r = run(ctl, dev);
        assert.equal(r.ctlResult.peer.name, name);
        assert.equal(r.devResult.peer.name, name);
        for (const m of [r.c1, r.d1, r.c2]) {
          assert.ok(Buffer.byteLength(m, 'utf8') <= MAX_HANDSHAKE_BYTES, `${mode} ${Buffer.byteLength(m, 'utf8')} bytes: ${m.slice(0, 40)}`);
          assert.equal(Buffer.byteLength(m, 'utf8'), m.length, 'handshake messages are ASCII');
        }
      }
    }
    for (const code of ['wrong-code', 'code-spent', 'not-paired', 'device-changed', 'bad-handshake', 'fingerprint-mismatch'] as const) {
      assert.ok(Buffer.byteLength(encodeHandshake({ hs: 'fail', code })) <= MAX_HANDSHAKE_BYTES);
    }
  });
});
