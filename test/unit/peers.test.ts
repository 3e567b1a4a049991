import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { fingerprintOf, IDENTITY_FILE, openIdentity, verifyIdentitySignature } from '../../crypto/identity.js';
import { CONTROLLERS_FILE, DEVICES_FILE, KnownDeviceStore, TrustedControllerStore } from '../../crypto/peers.js';
import { MemoryStateStore } from '../../crypto/state.js';
import { PinholeError } from '../../protocol/errors.js';

const key = (b: number) => ed25519.getPublicKey(new Uint8Array(32).fill(b));
const T0 = 1_700_000_000_000;
const isCode = (code: string) => (e: unknown) => e instanceof PinholeError && e.code === code;

describe('issue 11: the identity and pairing stores run on any StateStore', () => {
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
