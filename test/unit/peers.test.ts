import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { fingerprintOf, IDENTITY_FILE, openIdentity, verifyIdentitySignature } from '../../crypto/identity.js';
import { CONTROLLERS_FILE, DEVICES_FILE, KnownDeviceStore, MAX_RIGHTS_PINS, TrustedControllerStore } from '../../crypto/peers.js';
import { checkedText, MemoryStateStore } from '../../crypto/state.js';
import { PinholeError } from '../../protocol/errors.js';
import { FULL_RIGHTS, type Rights } from '../../protocol/rpc.js';

const key = (b: number) => ed25519.getPublicKey(new Uint8Array(32).fill(b));
const T0 = 1_700_000_000_000;
const isCode = (code: string) => (e: unknown) => e instanceof PinholeError && e.code === code;

describe('issue 11: the identity and pairing stores run on any StateStore', () => {
  test('the in-memory size check: up to maxBytes UTF-8 bytes is read, one more is state-corrupt naming where', () => {
    const store = new MemoryStateStore();
    store.write('r', 'é'.repeat(3)); // 6 bytes, 3 characters
    assert.equal(store.read('r', 6), 'ééé');
    assert.equal(store.read('none', 0), undefined);
    assert.throws(
      () => store.read('r', 5),
      (e: unknown) => isCode('state-corrupt')(e) && (e as PinholeError).path === store.where('r'),
    );
    assert.equal(checkedText(undefined, 0, 'x'), undefined);
    assert.equal(checkedText('abc', 3, 'x'), 'abc');
    assert.throws(() => checkedText('abcd', 3, 'x'), isCode('state-corrupt'));
  });

  test('openIdentity creates once, then loads the same key; the injected rng is the secret key', () => {
    const store = new MemoryStateStore();
    const seed = new Uint8Array(32).fill(5);
    const a = openIdentity(store, () => seed.slice());
    assert.equal(a.created, true);
    assert.deepEqual(a.publicKey, ed25519.getPublicKey(seed));
    assert.equal(a.path, store.where(IDENTITY_FILE));
    const b = openIdentity(store, () => assert.fail('a stored identity needs no randomness'));
    assert.equal(b.created, false);
    assert.deepEqual(b.publicKey, a.publicKey);
    const msg = new TextEncoder().encode('hello');
    assert.ok(verifyIdentitySignature(a.publicKey, msg, b.sign(msg)));
  });

  test('a corrupt identity record is refused with state-corrupt naming where it is', () => {
    const store = new MemoryStateStore();
    store.write(IDENTITY_FILE, '{"v":1,"alg":"ed25519"}');
    assert.throws(
      () => openIdentity(store),
      (e: unknown) => isCode('state-corrupt')(e) && (e as PinholeError).path === 'memory:identity.json',
    );
  });

  test('trusted controllers: add, find, revoke, reload from the same store', () => {
    const store = new MemoryStateStore();
    const s = TrustedControllerStore.open(store);
    assert.equal(store.read(CONTROLLERS_FILE, 1e6), undefined, 'nothing written before the first change');
    s.add('laptop', key(1), T0);
    s.add('laptop', key(2), T0 + 1);
    assert.deepEqual(
      s.list().map((e) => e.name),
      ['laptop', 'laptop-2'],
    );
    const again = TrustedControllerStore.open(store);
    assert.deepEqual(again.list(), s.list());
    assert.equal(again.find(key(2))?.fingerprint, fingerprintOf(key(2)));
    assert.deepEqual(
      again.revoke('laptop').map((e) => e.name),
      ['laptop'],
    );
    assert.deepEqual(
      TrustedControllerStore.open(store)
        .list()
        .map((e) => e.name),
      ['laptop-2'],
    );
  });

  test('known devices: save, get, remove, reload; a record failing validation is refused and never overwritten', () => {
    const store = new MemoryStateStore();
    const s = KnownDeviceStore.open(store);
    s.save('board', key(3), 'wss://pinhole.example/ws', T0);
    assert.equal(KnownDeviceStore.open(store).get('BOARD')?.server, 'wss://pinhole.example/ws');
    assert.equal(s.remove('board'), true);
    assert.deepEqual(KnownDeviceStore.open(store).list(), []);
    const bad = JSON.stringify({ v: 1, devices: [{ name: 'board', publicKey: 'x', fingerprint: 'y', server: 'wss://a/', pairedAt: 0, extra: 1 }] });
    store.write(DEVICES_FILE, bad);
    assert.throws(() => KnownDeviceStore.open(store), isCode('state-corrupt'));
    assert.equal(store.read(DEVICES_FILE, 1e6), bad);
  });

  test('a record over the size limit is refused', () => {
    const store = new MemoryStateStore();
    store.write(CONTROLLERS_FILE, ' '.repeat(1024 * 1024 + 1));
    assert.throws(() => TrustedControllerStore.open(store), isCode('state-corrupt'));
  });
});

describe('issue 12: rights per controller, stored with the trust list', () => {
  const READ_ONLY: Rights = { access: 'read-only', pins: null };
  const stored = (store: MemoryStateStore) => JSON.parse(store.read(CONTROLLERS_FILE, 1e6)!).controllers as Record<string, unknown>[];

  test('issue 12: add gives full rights by default and stores them only when they grant less', () => {
    const store = new MemoryStateStore();
    const s = TrustedControllerStore.open(store);
    assert.deepEqual(s.add('laptop', key(1), T0).rights, FULL_RIGHTS);
    assert.deepEqual(s.add('kid', key(2), T0, { access: 'full', pins: [20, 13, 20] }).rights, { access: 'full', pins: [13, 20] }, 'pins sorted, once each');
    assert.deepEqual(s.add('guest', key(3), T0, READ_ONLY).rights, READ_ONLY);
    const byName = Object.fromEntries(stored(store).map((e) => [e.name, e]));
    assert.equal(Object.hasOwn(byName.laptop, 'rights'), false, 'full rights are left out: an older pinhole still reads the file');
    assert.deepEqual(byName.kid.rights, { access: 'full', pins: [13, 20] });
    assert.deepEqual(byName.guest.rights, READ_ONLY);
    const again = TrustedControllerStore.open(store);
    assert.deepEqual(again.list(), s.list());
    assert.deepEqual(again.find(key(2))?.rights, { access: 'full', pins: [13, 20] });
  });

  test('issue 12: a file written before rights existed loads with full rights for everyone', () => {
    const store = new MemoryStateStore();
    const entry = { name: 'laptop', publicKey: Buffer.from(key(1)).toString('base64url'), fingerprint: fingerprintOf(key(1)), addedAt: T0 };
    store.write(CONTROLLERS_FILE, JSON.stringify({ v: 1, controllers: [entry] }));
    assert.deepEqual(TrustedControllerStore.open(store).find(key(1))?.rights, FULL_RIGHTS);
  });

  test('issue 12: re-adding a known key takes the new rights (and keeps addedAt)', () => {
    const store = new MemoryStateStore();
    const s = TrustedControllerStore.open(store);
    s.add('laptop', key(1), T0);
    const e = s.add('laptop', key(1), T0 + 5, READ_ONLY);
    assert.deepEqual(e.rights, READ_ONLY);
    assert.equal(e.addedAt, T0);
    assert.deepEqual(TrustedControllerStore.open(store).find(key(1))?.rights, READ_ONLY);
    assert.deepEqual(s.add('laptop', key(1), T0 + 9).rights, FULL_RIGHTS);
  });

  test('issue 12: setRights by name or fingerprint saves at once; unknown is unknown-controller; bad rights are state-bad-input', () => {
    const store = new MemoryStateStore();
    const s = TrustedControllerStore.open(store);
    s.add('laptop', key(1), T0);
    s.add('phone', key(2), T0);
    assert.deepEqual(s.setRights('laptop', READ_ONLY).rights, READ_ONLY);
    assert.deepEqual(TrustedControllerStore.open(store).find(key(1))?.rights, READ_ONLY, 'written at once');
    const fp = fingerprintOf(key(2)).toLowerCase().replace(/-/g, '');
    assert.deepEqual(s.setRights(fp, { access: 'full', pins: [21, 20] }).rights, { access: 'full', pins: [20, 21] });
    assert.deepEqual(TrustedControllerStore.open(store).find(key(2))?.rights, { access: 'full', pins: [20, 21] });
    assert.deepEqual(s.setRights('laptop', FULL_RIGHTS).rights, FULL_RIGHTS);
    assert.throws(() => s.setRights('nobody', READ_ONLY), isCode('unknown-controller'));
    assert.throws(() => s.setRights('', READ_ONLY), isCode('unknown-controller'));
    const before = store.read(CONTROLLERS_FILE, 1e6);
    for (const bad of [
      { access: 'admin', pins: null },
      { access: 'full', pins: [-1] },
      { access: 'full', pins: [1024] },
      { access: 'full', pins: [1.5] },
      { access: 'full', pins: 'all' },
      { access: 'full' },
      null,
    ]) {
      assert.throws(() => s.setRights('laptop', bad as unknown as Rights), isCode('state-bad-input'), JSON.stringify(bad));
      assert.throws(() => s.add('laptop', key(1), T0, bad as unknown as Rights), isCode('state-bad-input'), JSON.stringify(bad));
    }
    assert.equal(store.read(CONTROLLERS_FILE, 1e6), before, 'nothing written');
  });

  test("issue 12: a controller named after another's fingerprint does not receive that one's rights", () => {
    const s = TrustedControllerStore.open(new MemoryStateStore());
    s.add('laptop', key(1), T0);
    const fp = fingerprintOf(key(1));
    s.add(fp, key(2), T0, READ_ONLY);
    assert.equal(s.findWho(fp)?.name, 'laptop', 'findWho matches as setRights does (the CLI reads the pins to keep through it)');
    assert.equal(s.setRights(fp, { access: 'full', pins: [13] }).name, 'laptop');
    assert.deepEqual(s.find(key(2))?.rights, READ_ONLY);
    assert.equal(s.findWho('nobody'), undefined);
  });

  test('issue 12: no controller is stored as "input", the `by` of an outside edge', () => {
    const s = TrustedControllerStore.open(new MemoryStateStore());
    assert.equal(s.add('input', key(1), T0).name, 'input-2');
    assert.equal(s.add('Input', key(2), T0).name, 'Input', 'only the exact word is reserved');
  });

  test('issue 12: returned rights are frozen copies', () => {
    const s = TrustedControllerStore.open(new MemoryStateStore());
    const e = s.add('kid', key(1), T0, { access: 'full', pins: [13] });
    assert.throws(() => (e.rights.pins as number[]).push(20), TypeError);
    assert.throws(() => ((e.rights as Rights).access = 'full'), TypeError);
    assert.deepEqual(s.find(key(1))?.rights, { access: 'full', pins: [13] });
  });

  test('issue 12: stored rights are validated on load: state-corrupt, never rewritten', () => {
    const entry = { name: 'laptop', publicKey: Buffer.from(key(1)).toString('base64url'), fingerprint: fingerprintOf(key(1)), addedAt: T0 };
    const cases: [string, unknown][] = [
      ['null', null],
      ['a string', 'read-only'],
      ['an unknown access', { access: 'admin', pins: null }],
      ['no pins field', { access: 'full' }],
      ['an extra field', { access: 'full', pins: null, x: 1 }],
      ['pins not an array', { access: 'full', pins: 13 }],
      ['unsorted pins', { access: 'full', pins: [20, 13] }],
      ['a repeated pin', { access: 'full', pins: [13, 13] }],
      ['a pin out of range', { access: 'full', pins: [1024] }],
      ['a negative pin', { access: 'full', pins: [-1] }],
      ['a fractional pin', { access: 'full', pins: [1.5] }],
      ['a pin as a string', { access: 'full', pins: ['13'] }],
      ['too many pins', { access: 'full', pins: Array.from({ length: MAX_RIGHTS_PINS + 1 }, (_, i) => i) }],
    ];
    for (const [what, rights] of cases) {
      const store = new MemoryStateStore();
      const text = JSON.stringify({ v: 1, controllers: [{ ...entry, rights }] });
      store.write(CONTROLLERS_FILE, text);
      assert.throws(() => TrustedControllerStore.open(store), isCode('state-corrupt'), what);
      assert.equal(store.read(CONTROLLERS_FILE, 1e6), text, what);
    }
    const store = new MemoryStateStore();
    const all = Array.from({ length: MAX_RIGHTS_PINS }, (_, i) => i);
    store.write(CONTROLLERS_FILE, JSON.stringify({ v: 1, controllers: [{ ...entry, rights: { access: 'read-only', pins: all } }] }));
    assert.equal(TrustedControllerStore.open(store).find(key(1))?.rights.pins?.length, MAX_RIGHTS_PINS, 'every pin once is fine');
  });
});
