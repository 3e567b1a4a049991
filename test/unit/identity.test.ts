import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sha256 } from '@noble/hashes/sha2.js';
import { fingerprintOf, IDENTITY_FILE, verifyIdentitySignature } from '../../crypto/identity.js';
import { loadOrCreateIdentity, resolveStateDir } from '../../platform/node/state-files.js';
import { base32 } from '../../protocol/bytes.js';
import { PinholeError } from '../../protocol/errors.js';

const posix = process.platform !== 'win32';
let root: string;
let n = 0;
const freshDir = () => join(root, `state-${++n}`, 'pinhole');
const mode = (p: string) => statSync(p).mode & 0o777;

function expectCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PinholeError, `expected PinholeError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** Verifies an Ed25519 signature with node:crypto (OpenSSL), independently of noble. */
function nodeVerifies(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(pub)]);
  return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'pinhole-identity-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('resolveStateDir', () => {
  test('override first, then absolute XDG_CONFIG_HOME, then HOME/.config', () => {
    assert.equal(resolveStateDir({ XDG_CONFIG_HOME: '/x', HOME: '/h' }, '/override'), '/override');
    assert.equal(resolveStateDir({ XDG_CONFIG_HOME: '/x', HOME: '/h' }), '/x/pinhole');
    assert.equal(resolveStateDir({ HOME: '/h' }), '/h/.config/pinhole');
    assert.equal(resolveStateDir({ XDG_CONFIG_HOME: '', HOME: '/h' }), '/h/.config/pinhole');
    assert.equal(resolveStateDir({ XDG_CONFIG_HOME: 'relative/dir', HOME: '/h' }), '/h/.config/pinhole', 'a relative XDG path is ignored');
    assert.equal(resolveStateDir({ HOME: '/h' }, ''), '/h/.config/pinhole', 'an empty override is no override');
  });

  test('no usable variable: state-no-dir', () => {
    expectCode(() => resolveStateDir({}), 'state-no-dir');
    expectCode(() => resolveStateDir({ HOME: 'relative' }), 'state-no-dir');
  });
});

describe('fingerprints and signatures', () => {
  test('base32 is RFC 4648 (section 10 vectors, unpadded)', () => {
    const v: [string, string][] = [
      ['', ''],
      ['f', 'MY'],
      ['fo', 'MZXQ'],
      ['foo', 'MZXW6'],
      ['foob', 'MZXW6YQ'],
      ['fooba', 'MZXW6YTB'],
      ['foobar', 'MZXW6YTBOI'],
    ];
    for (const [i, o] of v) assert.equal(base32(Buffer.from(i)), o);
  });

  test('fingerprint is base32 of the first 10 bytes of SHA-256(publicKey), grouped by four', () => {
    const pub = new Uint8Array(32).fill(9);
    const fp = fingerprintOf(pub);
    assert.match(fp, /^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$/);
    assert.equal(fp.replace(/-/g, ''), base32(sha256(pub).subarray(0, 10)));
    assert.notEqual(fingerprintOf(new Uint8Array(32).fill(8)), fp);
  });

  test('RFC 8032 test 1: the verifier accepts the published signature and rejects a changed one', () => {
    const pub = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
    const sig = Buffer.from(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      'hex',
    );
    assert.equal(verifyIdentitySignature(pub, new Uint8Array(0), sig), true);
    assert.equal(verifyIdentitySignature(pub, Uint8Array.of(0), sig), false);
    const bad = Buffer.from(sig);
    bad[10] ^= 1;
    assert.equal(verifyIdentitySignature(pub, new Uint8Array(0), bad), false);
  });

  test('the verifier returns false, never throws, on malformed input; small-order keys are refused', () => {
    const msg = new Uint8Array(1);
    assert.equal(verifyIdentitySignature(new Uint8Array(31), msg, new Uint8Array(64)), false);
    assert.equal(verifyIdentitySignature(new Uint8Array(32), msg, new Uint8Array(63)), false);
    assert.equal(verifyIdentitySignature(new Uint8Array(32).fill(0xff), msg, new Uint8Array(64)), false);
    // The identity point (y = 1) is a small-order public key; with R = identity and S = 0 a
    // lenient verifier accepts any message. Strict RFC 8032 refuses it.
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const sig = new Uint8Array(64);
    sig[0] = 1;
    assert.equal(verifyIdentitySignature(identity, msg, sig), false);
    assert.equal(verifyIdentitySignature('x' as unknown as Uint8Array, msg, sig), false);
  });
});

describe('loadOrCreateIdentity', () => {
  test('first call creates dir 0700 and key file 0600; second call loads the same key', () => {
    const dir = freshDir();
    const a = loadOrCreateIdentity(dir);
    assert.equal(a.created, true);
    assert.equal(a.path, join(dir, IDENTITY_FILE));
    assert.equal(a.publicKey.length, 32);
    if (posix) {
      assert.equal(mode(dir), 0o700, 'state dir mode');
      assert.equal(mode(a.path), 0o600, 'key file mode');
    }
    assert.deepEqual(readdirSync(dir), [IDENTITY_FILE], 'no temp files left behind');
    const b = loadOrCreateIdentity(dir);
    assert.equal(b.created, false);
    assert.deepEqual(b.publicKey, a.publicKey);
    assert.equal(b.fingerprint, a.fingerprint);
    assert.equal(b.fingerprint, fingerprintOf(a.publicKey));
  });

  test('separate installations get separate keys', () => {
    assert.notDeepEqual(loadOrCreateIdentity(freshDir()).publicKey, loadOrCreateIdentity(freshDir()).publicKey);
  });

  test('sign() gives Ed25519 signatures that noble and node:crypto both verify, for the loaded key too', () => {
    const dir = freshDir();
    const id = loadOrCreateIdentity(dir);
    const msg = new TextEncoder().encode('pinhole/1 dtls-fp sha-256 AB:CD');
    const sig = id.sign(msg);
    assert.equal(sig.length, 64);
    assert.equal(verifyIdentitySignature(id.publicKey, msg, sig), true);
    assert.equal(nodeVerifies(id.publicKey, msg, sig), true);
    assert.equal(verifyIdentitySignature(id.publicKey, new TextEncoder().encode('pinhole/1 dtls-fp sha-256 AB:CE'), sig), false);
    const again = loadOrCreateIdentity(dir);
    assert.equal(verifyIdentitySignature(id.publicKey, msg, again.sign(msg)), true);
    assert.equal(verifyIdentitySignature(loadOrCreateIdentity(freshDir()).publicKey, msg, sig), false, 'another identity does not verify');
  });

  test('the file holds the keys as documented', () => {
    const id = loadOrCreateIdentity(freshDir());
    const j = JSON.parse(readFileSync(id.path, 'utf8'));
    assert.equal(j.v, 1);
    assert.equal(j.alg, 'ed25519');
    assert.deepEqual(new Uint8Array(Buffer.from(j.publicKey, 'base64url')), id.publicKey);
    assert.equal(Buffer.from(j.secretKey, 'base64url').length, 32);
  });

  test('an existing state dir is kept; a created one is exactly 0700 even with a permissive umask', { skip: !posix }, () => {
    const old = process.umask(0o000);
    try {
      const dir = freshDir();
      loadOrCreateIdentity(dir);
      assert.equal(mode(dir), 0o700);
      assert.equal(mode(join(dir, IDENTITY_FILE)), 0o600);
    } finally {
      process.umask(old);
    }
  });

  for (const wide of [0o644, 0o640, 0o604, 0o660, 0o700, 0o666]) {
    test(`refuses a key file with mode ${wide.toString(8)}: state-permissions`, { skip: !posix }, () => {
      const dir = freshDir();
      const { path } = loadOrCreateIdentity(dir);
      chmodSync(path, wide);
      expectCode(() => loadOrCreateIdentity(dir), 'state-permissions');
      chmodSync(path, 0o600);
      assert.equal(loadOrCreateIdentity(dir).created, false);
    });
  }

  test('accepts a read-only key file (0400)', { skip: !posix }, () => {
    const dir = freshDir();
    const a = loadOrCreateIdentity(dir);
    chmodSync(a.path, 0o400);
    assert.deepEqual(loadOrCreateIdentity(dir).publicKey, a.publicKey);
  });

  test('refuses a state dir others can write to: state-dir-permissions', { skip: !posix }, () => {
    const dir = freshDir();
    loadOrCreateIdentity(dir);
    chmodSync(dir, 0o777);
    expectCode(() => loadOrCreateIdentity(dir), 'state-dir-permissions');
    chmodSync(dir, 0o755); // readable by others is fine: the file itself is 0600
    assert.equal(loadOrCreateIdentity(dir).created, false);
  });

  test('refuses a symlinked key file: state-not-file', { skip: !posix }, () => {
    const dir = freshDir();
    const real = loadOrCreateIdentity(freshDir()).path;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    symlinkSync(real, join(dir, IDENTITY_FILE));
    expectCode(() => loadOrCreateIdentity(dir), 'state-not-file');
  });

  test('refuses a directory where the key file should be: state-not-file', () => {
    const dir = freshDir();
    mkdirSync(join(dir, IDENTITY_FILE), { recursive: true, mode: 0o700 });
    expectCode(() => loadOrCreateIdentity(dir), 'state-not-file');
  });

  const corrupt: [string, (valid: Record<string, unknown>) => string][] = [
    ['empty file', () => ''],
    ['not JSON', () => 'not json'],
    ['an array', () => '[]'],
    ['wrong version', (v) => JSON.stringify({ ...v, v: 2 })],
    ['wrong algorithm', (v) => JSON.stringify({ ...v, alg: 'rsa' })],
    ['missing secret key', (v) => JSON.stringify({ ...v, secretKey: undefined })],
    ['short public key', (v) => JSON.stringify({ ...v, publicKey: Buffer.alloc(31).toString('base64url') })],
    ['non-base64url key', (v) => JSON.stringify({ ...v, secretKey: `${String(v.secretKey).slice(0, 42)}+` })],
    ['public key of another secret', (v) => JSON.stringify({ ...v, publicKey: Buffer.alloc(32, 1).toString('base64url') })],
    ['oversized', () => ' '.repeat(5000)],
  ];
  for (const [what, make] of corrupt) {
    test(`corrupt file (${what}): state-corrupt, and the file is left untouched`, () => {
      const dir = freshDir();
      const { path } = loadOrCreateIdentity(dir);
      const valid = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      const content = make(valid);
      writeFileSync(path, content, { mode: 0o600 });
      expectCode(() => loadOrCreateIdentity(dir), 'state-corrupt');
      assert.equal(readFileSync(path, 'utf8'), content, 'a corrupt identity is never overwritten');
    });
  }

  test('a corrupt identity moved away is replaced by a new one', () => {
    const dir = freshDir();
    const a = loadOrCreateIdentity(dir);
    writeFileSync(a.path, 'garbage', { mode: 0o600 });
    expectCode(() => loadOrCreateIdentity(dir), 'state-corrupt');
    renameSync(a.path, `${a.path}.bad`);
    const b = loadOrCreateIdentity(dir);
    assert.equal(b.created, true);
    assert.notDeepEqual(b.publicKey, a.publicKey);
  });

  test('an empty dir argument is refused', () => {
    expectCode(() => loadOrCreateIdentity(''), 'state-no-dir');
  });
});
