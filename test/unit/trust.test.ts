import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { CipherContext, type DtlsKeys, RTCPeerConnection } from 'werift';
import { fingerprintOf } from '../../crypto/identity.js';
import { CONTROLLERS_FILE, DEVICES_FILE } from '../../crypto/peers.js';
import { DTLS_FILE, type DtlsKeyPair, loadOrCreateDtlsCert } from '../../platform/node/dtls-cert.js';
import { KnownDevices, TrustedControllers } from '../../platform/node/peer-files.js';
import { createSecureFile, ensureStateDir as ensureDir, loadOrCreateIdentity, readSecureFile, writeSecureFile } from '../../platform/node/state-files.js';
import { PinholeError } from '../../protocol/errors.js';
import { isValidPeerName } from '../../protocol/names.js';
import { FULL_RIGHTS } from '../../protocol/rpc.js';
import { parseSdpFingerprint } from '../../protocol/sdp.js';

const posix = process.platform !== 'win32';
let root: string;
let n = 0;
const freshDir = () => join(root, `state-${++n}`, 'pinhole');
const mode = (p: string) => statSync(p).mode & 0o777;
/** A real Ed25519 public key, one per `b` (the stores refuse bytes that are not a usable key). */
const key = (b: number) => ed25519.getPublicKey(new Uint8Array(32).fill(b));
const T0 = 1_700_000_000_000;

function isCode(code: string): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(e instanceof PinholeError, `expected PinholeError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}
const expectCode = (fn: () => unknown, code: string) => assert.throws(fn, isCode(code));
const expectCodeAsync = (fn: () => Promise<unknown>, code: string) => assert.rejects(fn, isCode(code));

/** A real self-signed ECDSA P-256 certificate, as werift makes it (counts calls). */
function makeGenerator(): { generate: () => Promise<DtlsKeyPair>; calls: () => number } {
  let calls = 0;
  return {
    generate: async () => {
      calls++;
      return CipherContext.createSelfSignedCertificateWithKey({ hash: 4, signature: 3 }, 23);
    },
    calls: () => calls,
  };
}
const noGenerator = async (): Promise<DtlsKeyPair> => {
  throw new Error('generator must not be called');
};

before(() => {
  root = mkdtempSync(join(tmpdir(), 'pinhole-trust-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('secure file helpers', () => {
  test('writeSecureFile replaces atomically with mode 0600; readSecureFile reads it; createSecureFile never overwrites', { skip: !posix }, () => {
    const dir = freshDir();
    assert.equal(readSecureFile(dir, 'x.json', 100), undefined, 'absent dir: undefined');
    writeSecureFile(dir, 'x.json', 'one');
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(join(dir, 'x.json')), 0o600);
    writeSecureFile(dir, 'x.json', 'two');
    assert.equal(readSecureFile(dir, 'x.json', 100), 'two');
    assert.equal(createSecureFile(dir, 'x.json', 'three'), false);
    assert.equal(readSecureFile(dir, 'x.json', 100), 'two');
    assert.equal(createSecureFile(dir, 'y.json', 'new'), true);
    assert.equal(mode(join(dir, 'y.json')), 0o600);
    assert.deepEqual(readdirSync(dir).sort(), ['x.json', 'y.json'], 'no temp files left behind');
    expectCode(() => readSecureFile(dir, 'x.json', 2), 'state-corrupt');
    expectCode(() => writeSecureFile(dir, '../escape', 'x'), 'state-bad-input');
  });

  test('invalid UTF-8 is corrupt', () => {
    const dir = freshDir();
    writeSecureFile(dir, 'x.json', 'ok');
    writeFileSync(join(dir, 'x.json'), Buffer.from([0x7b, 0xff, 0x7d]), { mode: 0o600 });
    expectCode(() => readSecureFile(dir, 'x.json', 100), 'state-corrupt');
  });
});

/** Creates each of the three files in a fresh dir and returns the dir. */
async function allThree(): Promise<string> {
  const dir = freshDir();
  TrustedControllers.load(dir).add('laptop', key(1), T0);
  KnownDevices.load(dir).save('board', key(2), 'wss://pinhole.example/ws', T0);
  await loadOrCreateDtlsCert(dir, makeGenerator().generate);
  return dir;
}
const loaders: [string, (dir: string) => Promise<unknown>][] = [
  [CONTROLLERS_FILE, async (dir) => TrustedControllers.load(dir)],
  [DEVICES_FILE, async (dir) => KnownDevices.load(dir)],
  [DTLS_FILE, (dir) => loadOrCreateDtlsCert(dir, noGenerator)],
];

describe('file modes and refusals (all three stores)', () => {
  test('every file is 0600 in a 0700 dir, and no temp files are left', { skip: !posix }, async () => {
    const old = process.umask(0o000); // exact modes even with a permissive umask
    try {
      const dir = await allThree();
      assert.equal(mode(dir), 0o700);
      for (const f of [CONTROLLERS_FILE, DEVICES_FILE, DTLS_FILE]) assert.equal(mode(join(dir, f)), 0o600, f);
      assert.deepEqual(readdirSync(dir).sort(), [CONTROLLERS_FILE, DEVICES_FILE, DTLS_FILE].sort());
      for (const f of [CONTROLLERS_FILE, DEVICES_FILE, DTLS_FILE]) assert.equal(JSON.parse(readFileSync(join(dir, f), 'utf8')).v, 1, f);
    } finally {
      process.umask(old);
    }
  });

  for (const [file, load] of loaders) {
    test(`${file}: mode 0644 is refused with state-permissions; 0600 and 0400 load`, { skip: !posix }, async () => {
      const dir = await allThree();
      chmodSync(join(dir, file), 0o644);
      await expectCodeAsync(() => load(dir), 'state-permissions');
      chmodSync(join(dir, file), 0o600);
      await load(dir);
      chmodSync(join(dir, file), 0o400);
      await load(dir);
    });

    test(`${file}: corrupt file is refused with state-corrupt and left untouched`, async () => {
      const dir = await allThree();
      for (const content of ['', 'not json', '[]', '{"v":2}', '{"v":1}']) {
        writeFileSync(join(dir, file), content, { mode: 0o600 });
        await expectCodeAsync(() => load(dir), 'state-corrupt');
        assert.equal(readFileSync(join(dir, file), 'utf8'), content, 'never overwritten');
      }
    });

    test(`${file}: a symlink is refused with state-not-file`, { skip: !posix }, async () => {
      const dir = await allThree();
      const other = await allThree();
      rmSync(join(dir, file));
      symlinkSync(join(other, file), join(dir, file));
      await expectCodeAsync(() => load(dir), 'state-not-file');
    });
  }

  test('a group-writable state dir is refused with state-dir-permissions', { skip: !posix }, async () => {
    const dir = await allThree();
    chmodSync(dir, 0o770);
    for (const [, load] of loaders) await expectCodeAsync(() => load(dir), 'state-dir-permissions');
  });

  test('the stores live next to identity.json without disturbing it', () => {
    const dir = freshDir();
    const id = loadOrCreateIdentity(dir);
    TrustedControllers.load(dir).add('laptop', key(1), T0);
    assert.deepEqual(loadOrCreateIdentity(dir).publicKey, id.publicKey);
  });
});

describe('corrupt and non-regular state files', () => {
  /** Each store's file and its list key, with one valid entry to damage. */
  const stores = [
    {
      file: CONTROLLERS_FILE,
      list: 'controllers',
      load: (dir: string) => TrustedControllers.load(dir),
      entry: (k: Uint8Array) => ({ name: 'laptop', publicKey: Buffer.from(k).toString('base64url'), fingerprint: fingerprintOf(k), addedAt: T0 }),
    },
    {
      file: DEVICES_FILE,
      list: 'devices',
      load: (dir: string) => KnownDevices.load(dir),
      entry: (k: Uint8Array) => ({
        name: 'board',
        publicKey: Buffer.from(k).toString('base64url'),
        fingerprint: fingerprintOf(k),
        server: 'wss://pinhole.example/ws',
        pairedAt: T0,
      }),
    },
  ];
  // 32 bytes that are no curve point, and the encoding of a small-order point (the identity).
  const NOT_A_POINT = new Uint8Array(32).fill(2);
  const SMALL_ORDER = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0));

  for (const { file, list, load, entry } of stores) {
    test(`issue 9: ${file}: every kind of corruption is state-corrupt, naming the file`, () => {
      const good = entry(key(1));
      const bodies: [string, unknown][] = [
        ['bad JSON', '{"v":1,'],
        ['empty', ''],
        ['JSON null', null],
        ['an array', []],
        ['list missing', { v: 1 }],
        ['list not an array', { v: 1, [list]: {} }],
        ['extra top-level field', { v: 1, [list]: [], x: 1 }],
        ['version as a string', { v: '1', [list]: [] }],
        ['entry not an object', { v: 1, [list]: [7] }],
        ['entry with an extra field', { v: 1, [list]: [{ ...good, x: 1 }] }],
        ['entry missing a field', { v: 1, [list]: [{ ...good, fingerprint: undefined }] }],
        ['name not a string', { v: 1, [list]: [{ ...good, name: 5 }] }],
        ['name with an escape', { v: 1, [list]: [{ ...good, name: '\u001b]0;x\u0007' }] }],
        ['time as a string', { v: 1, [list]: [{ ...good, [file === DEVICES_FILE ? 'pairedAt' : 'addedAt']: '2024' }] }],
        ['key not base64url', { v: 1, [list]: [{ ...good, publicKey: '!!!' }] }],
        ['key too short', { v: 1, [list]: [{ ...good, publicKey: Buffer.from(key(1)).subarray(1).toString('base64url') }] }],
        [
          'key not a curve point',
          { v: 1, [list]: [{ ...good, publicKey: Buffer.from(NOT_A_POINT).toString('base64url'), fingerprint: fingerprintOf(NOT_A_POINT) }] },
        ],
        [
          'key of small order',
          { v: 1, [list]: [{ ...good, publicKey: Buffer.from(SMALL_ORDER).toString('base64url'), fingerprint: fingerprintOf(SMALL_ORDER) }] },
        ],
        ['fingerprint of another key', { v: 1, [list]: [{ ...good, fingerprint: fingerprintOf(key(2)) }] }],
        ['duplicate entry', { v: 1, [list]: [good, good] }],
      ];
      for (const [what, body] of bodies) {
        const dir = freshDir();
        ensureDir(dir);
        const path = join(dir, file);
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        writeFileSync(path, text, { mode: 0o600 });
        assert.throws(
          () => load(dir),
          (e: unknown) => {
            assert.ok(e instanceof PinholeError, `${what}: expected PinholeError, got ${String(e)}`);
            assert.equal(e.code, 'state-corrupt', `${what}: ${e.message}`);
            assert.ok(e.message.includes(path), `${what}: the message names the file: ${e.message}`);
            assert.equal(e.path, path, what);
            return true;
          },
          what,
        );
        assert.equal(readFileSync(path, 'utf8'), text, `${what}: never overwritten`);
      }
    });
  }

  test('issue 9: a key that is not a usable Ed25519 key cannot be stored either (state-bad-input)', () => {
    const dir = freshDir();
    for (const k of [NOT_A_POINT, SMALL_ORDER]) {
      expectCode(() => TrustedControllers.load(dir).add('laptop', k, T0), 'state-bad-input');
      expectCode(() => KnownDevices.load(dir).save('board', k, 'wss://pinhole.example/ws', T0), 'state-bad-input');
    }
    assert.deepEqual(readdirSync(dir), []);
  });

  /** Five seconds: a load that fails fast takes milliseconds; one that hangs on a FIFO never ends. */
  const HANG_MS = 5000;
  const modules = {
    peers: new URL('../../platform/node/peer-files.js', import.meta.url).href,
    dtls: new URL('../../platform/node/dtls-cert.js', import.meta.url).href,
    identity: new URL('../../platform/node/state-files.js', import.meta.url).href,
  };
  /**
   * Runs one loader in a child process: a load blocked in open(2) on a FIFO blocks its
   * whole event loop, so only another process can time it out.
   */
  function loadInChild(dir: string, which: string): { code?: string; message?: string; path?: string } {
    const script = `
      const { TrustedControllers, KnownDevices } = await import(${JSON.stringify(modules.peers)});
      const { loadOrCreateDtlsCert } = await import(${JSON.stringify(modules.dtls)});
      const { loadOrCreateIdentity } = await import(${JSON.stringify(modules.identity)});
      const dir = ${JSON.stringify(dir)};
      const loaders = {
        'controllers.json': () => TrustedControllers.load(dir),
        'devices.json': () => KnownDevices.load(dir),
        'identity.json': () => loadOrCreateIdentity(dir),
        'dtls.json': () => loadOrCreateDtlsCert(dir, async () => { throw new Error('must not generate'); }),
      };
      try { await loaders[${JSON.stringify(which)}](); console.log(JSON.stringify({ loaded: true })); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, path: e.path })); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: HANG_MS, killSignal: 'SIGKILL' });
    assert.ok(r.signal !== 'SIGKILL', `${which}: the load hung for ${HANG_MS} ms`);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { code?: string; message?: string; path?: string };
  }

  for (const file of [CONTROLLERS_FILE, DEVICES_FILE, 'identity.json', DTLS_FILE]) {
    test(`issue 9: a FIFO in place of ${file} is refused at once with state-not-file, naming it`, { skip: !posix, timeout: 3 * HANG_MS }, () => {
      const dir = freshDir();
      ensureDir(dir);
      const path = join(dir, file);
      execFileSync('mkfifo', ['-m', '600', path]);
      const t0 = performance.now();
      const r = loadInChild(dir, file);
      assert.equal(r.code, 'state-not-file', JSON.stringify(r));
      assert.equal(r.path, path);
      assert.ok(r.message!.includes(path) && /FIFO/.test(r.message!), r.message);
      assert.ok(performance.now() - t0 < HANG_MS, 'fails fast');
    });
  }

  test('issue 9: a socket or a directory in place of a state file is refused with state-not-file too', { skip: !posix }, async () => {
    const dir = freshDir();
    ensureDir(dir);
    const sock = createServer();
    await new Promise<void>((r) => sock.listen(join(dir, CONTROLLERS_FILE), r));
    try {
      expectCode(() => TrustedControllers.load(dir), 'state-not-file');
    } finally {
      await new Promise((r) => sock.close(r));
    }
    mkdirSync(join(dir, DEVICES_FILE), { mode: 0o700 });
    expectCode(() => KnownDevices.load(dir), 'state-not-file');
    mkdirSync(join(dir, 'identity.json'), { mode: 0o700 });
    expectCode(() => loadOrCreateIdentity(dir), 'state-not-file');
  });
});

describe('TrustedControllers', () => {
  test('add, list sorted by name, find, and persistence across load', () => {
    const dir = freshDir();
    const s = TrustedControllers.load(dir);
    assert.deepEqual(s.list(), []);
    assert.equal(readdirSync(dir).length, 0, 'loading an empty store writes nothing');
    const a = s.add('zeta', key(1), T0);
    assert.deepEqual(a, { name: 'zeta', publicKey: key(1), fingerprint: fingerprintOf(key(1)), addedAt: T0, rights: FULL_RIGHTS });
    s.add('alpha', key(2), T0 + 1);
    assert.deepEqual(
      s.list().map((e) => e.name),
      ['alpha', 'zeta'],
    );
    assert.equal(s.find(key(2))?.name, 'alpha');
    assert.equal(s.find(key(3)), undefined);
    assert.equal(s.find(new Uint8Array(31)), undefined);

    const again = TrustedControllers.load(dir);
    assert.deepEqual(again.list(), s.list());
    const j = JSON.parse(readFileSync(join(dir, CONTROLLERS_FILE), 'utf8'));
    assert.equal(j.v, 1);
    assert.equal(j.controllers[0].publicKey, Buffer.from(key(2)).toString('base64url'));
  });

  test('returned entries are copies: mutating them does not change the store', () => {
    const s = TrustedControllers.load(freshDir());
    const e = s.add('laptop', key(1), T0);
    e.publicKey[0] = 99;
    assert.deepEqual(s.find(key(1))?.publicKey, key(1));
    assert.equal(s.find(e.publicKey), undefined);
  });

  test('a different key with a used name gets -2, -3, ...; names stay unique', () => {
    const dir = freshDir();
    const s = TrustedControllers.load(dir);
    assert.equal(s.add('laptop', key(1), T0).name, 'laptop');
    assert.equal(s.add('laptop', key(2), T0).name, 'laptop-2');
    assert.equal(s.add('laptop', key(3), T0).name, 'laptop-3');
    assert.equal(s.add('laptop-2', key(4), T0).name, 'laptop-2-2');
    const long = 'x'.repeat(64);
    assert.equal(s.add(long, key(5), T0).name, long);
    const suffixed = s.add(long, key(6), T0).name;
    assert.equal(suffixed, `${'x'.repeat(62)}-2`, 'shortened to stay within 64 characters');
    assert.ok(isValidPeerName(suffixed));
    const names = TrustedControllers.load(dir)
      .list()
      .map((e) => e.name);
    assert.equal(new Set(names).size, names.length);
  });

  test('re-adding the same key updates the name and keeps addedAt', () => {
    const dir = freshDir();
    const s = TrustedControllers.load(dir);
    s.add('laptop', key(1), T0);
    s.add('phone', key(2), T0);
    const e = s.add('work laptop', key(1), T0 + 5000);
    assert.equal(e.name, 'work laptop');
    assert.equal(e.addedAt, T0);
    assert.equal(s.list().length, 2);
    assert.equal(s.add('work laptop', key(1), T0 + 9000).name, 'work laptop', 'its own name is not a clash');
    assert.equal(s.add('phone', key(1), T0).name, 'phone-2', "renaming onto another key's name is suffixed");
    assert.deepEqual(TrustedControllers.load(dir).find(key(1)), {
      name: 'phone-2',
      publicKey: key(1),
      fingerprint: fingerprintOf(key(1)),
      addedAt: T0,
      rights: FULL_RIGHTS,
    });
  });

  test('revoke by exact name, by fingerprint (case-insensitive, dashes optional); persists', () => {
    const dir = freshDir();
    const s = TrustedControllers.load(dir);
    s.add('laptop', key(1), T0);
    s.add('phone', key(2), T0);
    s.add('tablet', key(3), T0);
    assert.deepEqual(s.revoke('Laptop'), [], 'names are exact');
    assert.deepEqual(s.revoke('nobody'), []);
    assert.deepEqual(s.revoke(''), []);
    assert.deepEqual(
      s.revoke('laptop').map((e) => e.name),
      ['laptop'],
    );
    const fp = fingerprintOf(key(2));
    assert.deepEqual(
      s.revoke(fp.toLowerCase().replace(/-/g, '')).map((e) => e.name),
      ['phone'],
    );
    assert.deepEqual(s.revoke(fp.slice(0, 9)), [], 'a fingerprint prefix matches nothing');
    assert.deepEqual(
      s.revoke(fingerprintOf(key(3))).map((e) => e.name),
      ['tablet'],
    );
    assert.deepEqual(s.list(), []);
    assert.deepEqual(TrustedControllers.load(dir).list(), []);
  });

  test("a controller named after another's fingerprint cannot shield it from revocation", () => {
    const s = TrustedControllers.load(freshDir());
    s.add('laptop', key(1), T0);
    const fp = fingerprintOf(key(1));
    s.add(fp, key(2), T0);
    assert.deepEqual(
      s
        .revoke(fp)
        .map((e) => e.name)
        .sort(),
      [fp, 'laptop'].sort(),
    );
  });

  test('invalid names, keys and times are refused with state-bad-input; nothing is written', () => {
    const dir = freshDir();
    const s = TrustedControllers.load(dir);
    for (const name of ['', ' lead', 'trail ', 'x'.repeat(65), 'bell\x07', 'new\nline', 'rtl\u202eoverride', 'zero\u200bwidth', 42]) {
      expectCode(() => s.add(name as string, key(1), T0), 'state-bad-input');
    }
    expectCode(() => s.add('ok', new Uint8Array(31), T0), 'state-bad-input');
    expectCode(() => s.add('ok', key(1), -1), 'state-bad-input');
    expectCode(() => s.add('ok', key(1), 1.5), 'state-bad-input');
    assert.ok(isValidPeerName('Ünïcødé laptop 🍓'));
    assert.ok(isValidPeerName('x'.repeat(64)));
    assert.ok(isValidPeerName('🍓'.repeat(64)), 'counted in code points');
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a failed write changes neither the file nor the store', () => {
    const dir = freshDir();
    const s = TrustedControllers.load(dir);
    s.add('laptop', key(1), T0);
    const before = readFileSync(join(dir, CONTROLLERS_FILE), 'utf8');
    // a directory where the file is renamed to makes rename() fail, even for root
    rmSync(join(dir, CONTROLLERS_FILE));
    mkdirSync(join(dir, CONTROLLERS_FILE, 'x'), { recursive: true });
    expectCode(() => s.add('phone', key(2), T0), 'state-io');
    expectCode(() => s.revoke('laptop'), 'state-io');
    assert.deepEqual(
      s.list().map((e) => e.name),
      ['laptop'],
    );
    assert.deepEqual(readdirSync(dir), [CONTROLLERS_FILE], 'no temp files left behind');
    rmSync(join(dir, CONTROLLERS_FILE), { recursive: true });
    writeFileSync(join(dir, CONTROLLERS_FILE), before, { mode: 0o600 });
    assert.deepEqual(
      TrustedControllers.load(dir)
        .list()
        .map((e) => e.name),
      ['laptop'],
    );
  });

  const valid = () => ({ name: 'laptop', publicKey: Buffer.from(key(1)).toString('base64url'), fingerprint: fingerprintOf(key(1)), addedAt: T0 });
  const bad: [string, unknown][] = [
    ['unknown top-level field', { v: 1, controllers: [], extra: 1 }],
    ['controllers not an array', { v: 1, controllers: {} }],
    ['unknown entry field', { v: 1, controllers: [{ ...valid(), extra: 1 }] }],
    ['fingerprint of another key', { v: 1, controllers: [{ ...valid(), fingerprint: fingerprintOf(key(2)) }] }],
    ['short key', { v: 1, controllers: [{ ...valid(), publicKey: Buffer.alloc(31).toString('base64url') }] }],
    ['control character in name', { v: 1, controllers: [{ ...valid(), name: 'a\x1b[2J' }] }],
    ['fractional addedAt', { v: 1, controllers: [{ ...valid(), addedAt: 1.5 }] }],
    [
      'duplicate name',
      { v: 1, controllers: [valid(), { ...valid(), publicKey: Buffer.from(key(2)).toString('base64url'), fingerprint: fingerprintOf(key(2)) }] },
    ],
    ['duplicate key', { v: 1, controllers: [valid(), { ...valid(), name: 'other' }] }],
  ];
  for (const [what, body] of bad) {
    test(`controllers.json with ${what}: state-corrupt`, () => {
      const dir = freshDir();
      TrustedControllers.load(dir).add('laptop', key(1), T0);
      const text = JSON.stringify(body);
      writeFileSync(join(dir, CONTROLLERS_FILE), text, { mode: 0o600 });
      expectCode(() => TrustedControllers.load(dir), 'state-corrupt');
      assert.equal(readFileSync(join(dir, CONTROLLERS_FILE), 'utf8'), text);
    });
  }

  test('controllers.json written by hand in the documented shape loads', () => {
    const dir = freshDir();
    TrustedControllers.load(dir);
    writeFileSync(join(dir, CONTROLLERS_FILE), JSON.stringify({ v: 1, controllers: [valid()] }), { mode: 0o600 });
    assert.equal(TrustedControllers.load(dir).find(key(1))?.name, 'laptop');
  });
});

describe('issue 12: rights in controllers.json', () => {
  test('issue 12: setRights writes the file at once; a load sees it', () => {
    const dir = freshDir();
    TrustedControllers.load(dir).add('laptop', key(1), T0);
    TrustedControllers.load(dir).setRights('laptop', { access: 'read-only', pins: [13] });
    const j = JSON.parse(readFileSync(join(dir, CONTROLLERS_FILE), 'utf8'));
    assert.deepEqual(j.controllers[0].rights, { access: 'read-only', pins: [13] });
    assert.deepEqual(TrustedControllers.load(dir).find(key(1))?.rights, { access: 'read-only', pins: [13] });
    expectCode(() => TrustedControllers.load(dir).setRights('phone', { access: 'full', pins: null }), 'unknown-controller');
  });

  test('issue 12: reader() parses the file again only when it changed, and sees every change', { skip: !posix }, () => {
    const dir = freshDir();
    const read = TrustedControllers.reader(dir);
    assert.deepEqual(read().list(), [], 'absent file: empty');
    TrustedControllers.load(dir).add('laptop', key(1), T0);
    const a = read();
    assert.equal(a.find(key(1))?.name, 'laptop');
    assert.equal(read(), a, 'unchanged: the same store, not parsed again');
    TrustedControllers.load(dir).setRights('laptop', { access: 'read-only', pins: null });
    assert.equal(read().find(key(1))?.rights.access, 'read-only', 'a change by another process is seen at the next read');
    chmodSync(join(dir, CONTROLLERS_FILE), 0o644);
    expectCode(() => read(), 'state-permissions');
    chmodSync(join(dir, CONTROLLERS_FILE), 0o600);
    assert.equal(read().find(key(1))?.rights.access, 'read-only');
    rmSync(join(dir, CONTROLLERS_FILE));
    assert.deepEqual(read().list(), [], 'removed: empty again');
  });
});

describe('KnownDevices', () => {
  const URL_A = 'wss://pinhole.example/ws';
  const URL_B = 'ws://10.0.0.2:8080';

  test('save, get, list, and persistence across load', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    assert.deepEqual(s.list(), []);
    const r = s.save('garage', key(1), URL_A, T0);
    assert.deepEqual(r.replaced, []);
    assert.deepEqual(r.entry, { name: 'garage', publicKey: key(1), fingerprint: fingerprintOf(key(1)), server: URL_A, pairedAt: T0 });
    s.save('attic', key(2), URL_B, T0 + 1);
    assert.deepEqual(
      s.list().map((e) => e.name),
      ['attic', 'garage'],
    );
    assert.equal(s.get('attic')?.server, URL_B);
    assert.equal(s.get('cellar'), undefined);
    const again = KnownDevices.load(dir);
    assert.deepEqual(again.list(), s.list());
    assert.deepEqual(again.get('garage')?.publicKey, key(1));
  });

  const isNameTaken = (e: unknown): true => {
    assert.ok(e instanceof PinholeError, `expected PinholeError, got ${String(e)}`);
    assert.equal(e.code, 'name-taken', e.message);
    return true;
  };

  test('issue 9: another device under a saved name is refused (name-taken) and changes nothing; replace: true replaces it', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    s.save('garage', key(1), URL_A, T0);
    const before = readFileSync(join(dir, DEVICES_FILE), 'utf8');
    assert.throws(() => s.save('garage', key(2), URL_B, T0 + 10), isNameTaken);
    assert.equal(readFileSync(join(dir, DEVICES_FILE), 'utf8'), before, 'file untouched');
    assert.deepEqual(s.get('garage')?.publicKey, key(1), 'memory untouched');
    const r = s.save('garage', key(2), URL_B, T0 + 10, { replace: true });
    assert.deepEqual(r.replaced, [{ name: 'garage', publicKey: key(1), fingerprint: fingerprintOf(key(1)), server: URL_A, pairedAt: T0 }]);
    assert.deepEqual(r.entry.publicKey, key(2));
    assert.equal(s.list().length, 1);
    assert.deepEqual(KnownDevices.load(dir).get('garage')?.publicKey, key(2));
  });

  test('issue 9: names differing only in case (or NFKC width) collide; the same device re-pairs under its name in place', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    s.save('Garage', key(1), URL_A, T0);
    for (const name of ['garage', 'GARAGE', 'ｇａｒａｇｅ']) assert.throws(() => s.save(name, key(2), URL_A, T0), isNameTaken, name);
    // The same key again (a re-pair) needs no flag and leaves one entry, with the new spelling.
    const r = s.save('garage', key(1), URL_B, T0 + 5);
    assert.deepEqual(
      r.replaced.map((e) => e.name),
      ['Garage'],
    );
    assert.deepEqual(
      KnownDevices.load(dir)
        .list()
        .map((e) => [e.name, e.server]),
      [['garage', URL_B]],
    );
    // Another name for the same key is another entry, as before.
    s.save('garage-2', key(1), URL_A, T0);
    assert.equal(s.list().length, 2);
  });

  test('get: exact first, then a unique case-insensitive match (a file written before names were folded)', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    s.save('Garage', key(1), URL_A, T0);
    assert.equal(s.get('garage')?.name, 'Garage');
    assert.equal(s.get('GARAGE')?.name, 'Garage');
    const body = JSON.parse(readFileSync(join(dir, DEVICES_FILE), 'utf8'));
    body.devices.push({ ...body.devices[0], name: 'garage', publicKey: Buffer.from(key(2)).toString('base64url'), fingerprint: fingerprintOf(key(2)) });
    writeFileSync(join(dir, DEVICES_FILE), JSON.stringify(body), { mode: 0o600 });
    const old = KnownDevices.load(dir);
    assert.deepEqual(old.get('garage')?.publicKey, key(2), 'exact match wins');
    assert.deepEqual(old.get('Garage')?.publicKey, key(1));
    assert.equal(old.get('GARAGE'), undefined, 'ambiguous case-insensitive match: none');
    // Saving under that name with replace clears both spellings.
    old.save('GARAGE', key(3), URL_A, T0, { replace: true });
    assert.deepEqual(
      KnownDevices.load(dir)
        .list()
        .map((e) => e.name),
      ['GARAGE'],
    );
  });

  test('remove, by exact or unique case-insensitive name; persists', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    s.save('garage', key(1), URL_A, T0);
    s.save('attic', key(2), URL_A, T0);
    assert.equal(s.remove('cellar'), false);
    assert.equal(s.remove('GARAGE'), true);
    assert.equal(s.get('garage'), undefined);
    assert.deepEqual(
      KnownDevices.load(dir)
        .list()
        .map((e) => e.name),
      ['attic'],
    );
    assert.equal(s.remove('attic'), true);
    assert.deepEqual(KnownDevices.load(dir).list(), []);
  });

  test('invalid name, key, server URL or time: state-bad-input', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    expectCode(() => s.save('', key(1), URL_A, T0), 'state-bad-input');
    expectCode(() => s.save('a\tb', key(1), URL_A, T0), 'state-bad-input');
    expectCode(() => s.save('ok', key(1).subarray(1), URL_A, T0), 'state-bad-input');
    for (const url of ['http://x.example', 'pinhole.example', 'wss://', 'wss://a.example/\n', `wss://a.example/${'x'.repeat(2048)}`]) {
      expectCode(() => s.save('ok', key(1), url, T0), 'state-bad-input');
    }
    expectCode(() => s.save('ok', key(1), URL_A, Number.NaN), 'state-bad-input');
    assert.deepEqual(readdirSync(dir), []);
  });

  test('devices.json with a bad server URL, an unknown field or a duplicate name: state-corrupt', () => {
    const dir = freshDir();
    const s = KnownDevices.load(dir);
    s.save('garage', key(1), URL_A, T0);
    const good = JSON.parse(readFileSync(join(dir, DEVICES_FILE), 'utf8'));
    const e = good.devices[0];
    for (const body of [
      { v: 1, devices: [{ ...e, server: 'http://x.example' }] },
      { v: 1, devices: [{ ...e, extra: true }] },
      { v: 1, devices: [e, { ...e, publicKey: Buffer.from(key(2)).toString('base64url'), fingerprint: fingerprintOf(key(2)) }] },
      { v: 1, devices: [{ ...e, pairedAt: '2024' }] },
    ]) {
      writeFileSync(join(dir, DEVICES_FILE), JSON.stringify(body), { mode: 0o600 });
      expectCode(() => KnownDevices.load(dir), 'state-corrupt');
    }
  });
});

describe('loadOrCreateDtlsCert', () => {
  test('generates once, then loads the same certificate without calling the generator', async () => {
    const dir = freshDir();
    const g = makeGenerator();
    const a = await loadOrCreateDtlsCert(dir, g.generate);
    assert.equal(a.created, true);
    assert.equal(g.calls(), 1);
    assert.match(a.fingerprint, /^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/);
    assert.equal(a.fingerprint, new X509Certificate(a.keys.certPem).fingerprint256);
    assert.deepEqual(a.keys.signatureHash, { hash: 4, signature: 3 });
    const b = await loadOrCreateDtlsCert(dir, g.generate);
    assert.equal(b.created, false);
    assert.equal(g.calls(), 1);
    assert.equal(b.fingerprint, a.fingerprint);
    assert.deepEqual(b.keys, a.keys);
  });

  test('the fingerprint is the one werift puts in its SDP', async () => {
    const { keys, fingerprint } = await loadOrCreateDtlsCert(freshDir(), makeGenerator().generate);
    const pc = new RTCPeerConnection({ dtls: { keys: keys as DtlsKeys } }); // werift types hash/signature as enums
    try {
      pc.createDataChannel('x');
      const offer = await pc.createOffer();
      assert.equal(parseSdpFingerprint(offer.sdp), fingerprint);
    } finally {
      await pc.close();
    }
  });

  test('two creators at once end with one file, and both get its certificate', async () => {
    const dir = freshDir();
    const g = makeGenerator();
    const [a, b] = await Promise.all([loadOrCreateDtlsCert(dir, g.generate), loadOrCreateDtlsCert(dir, g.generate)]);
    assert.equal(g.calls(), 2, 'both raced to generate');
    assert.equal(a.fingerprint, b.fingerprint);
    assert.deepEqual([a.created, b.created].sort(), [false, true]);
    assert.deepEqual(readdirSync(dir), [DTLS_FILE]);
    assert.equal((await loadOrCreateDtlsCert(dir, noGenerator)).fingerprint, a.fingerprint);
  });

  test('a keyPem of another certificate is refused with state-corrupt and left untouched', async () => {
    const dir = freshDir();
    await loadOrCreateDtlsCert(dir, makeGenerator().generate);
    const other = await makeGenerator().generate();
    const path = join(dir, DTLS_FILE);
    const j = JSON.parse(readFileSync(path, 'utf8'));
    const tampered = JSON.stringify({ ...j, keyPem: other.keyPem });
    writeFileSync(path, tampered, { mode: 0o600 });
    await expectCodeAsync(() => loadOrCreateDtlsCert(dir, noGenerator), 'state-corrupt');
    assert.equal(readFileSync(path, 'utf8'), tampered);
  });

  test('unparsable PEMs, two certificates, a wrong signature algorithm: state-corrupt', async () => {
    const dir = freshDir();
    await loadOrCreateDtlsCert(dir, makeGenerator().generate);
    const path = join(dir, DTLS_FILE);
    const j = JSON.parse(readFileSync(path, 'utf8'));
    for (const body of [
      { ...j, certPem: 'garbage' },
      { ...j, keyPem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' },
      { ...j, certPem: j.certPem + j.certPem },
      { ...j, signatureHash: { hash: 4, signature: 1 } },
      { ...j, signatureHash: { hash: 4 } },
      { ...j, v: 2 },
    ]) {
      writeFileSync(path, JSON.stringify(body), { mode: 0o600 });
      await expectCodeAsync(() => loadOrCreateDtlsCert(dir, noGenerator), 'state-corrupt');
    }
  });

  test('a generator returning a mismatched pair: state-bad-input, nothing written', async () => {
    const dir = freshDir();
    const a = await makeGenerator().generate();
    const b = await makeGenerator().generate();
    await expectCodeAsync(() => loadOrCreateDtlsCert(dir, async () => ({ ...a, keyPem: b.keyPem })), 'state-bad-input');
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a directory in place of dtls.json: state-not-file', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, DTLS_FILE), { recursive: true, mode: 0o700 });
    await expectCodeAsync(() => loadOrCreateDtlsCert(dir, noGenerator), 'state-not-file');
  });
});

describe('parseSdpFingerprint', () => {
  const FP = Array.from({ length: 32 }, (_, i) => (i * 7 + 10).toString(16).padStart(2, '0').toUpperCase()).join(':');
  const FP2 = FP.replace(/^../, '00');
  const sdp = (...lines: string[]) => ['v=0', 'o=- 1 1 IN IP4 0.0.0.0', 's=-', 't=0 0', ...lines, ''].join('\r\n');
  const media = 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel';

  test('one session- or media-level line', () => {
    assert.equal(parseSdpFingerprint(sdp(`a=fingerprint:sha-256 ${FP}`, media)), FP);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP}`, 'a=setup:actpass')), FP);
  });

  test('missing: undefined', () => {
    assert.equal(parseSdpFingerprint(sdp(media)), undefined);
    assert.equal(parseSdpFingerprint(''), undefined);
  });

  test('lower-case input is normalised to upper case', () => {
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:SHA-256 ${FP.toLowerCase()}`)), FP);
  });

  test('the same value at session and media level is fine; two different values are undefined', () => {
    assert.equal(parseSdpFingerprint(sdp(`a=fingerprint:sha-256 ${FP}`, media, `a=fingerprint:sha-256 ${FP.toLowerCase()}`)), FP);
    assert.equal(parseSdpFingerprint(sdp(`a=fingerprint:sha-256 ${FP}`, media, `a=fingerprint:sha-256 ${FP2}`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP}`, media, `a=fingerprint:sha-256 ${FP2}`)), undefined);
  });

  test('wrong length or malformed: undefined', () => {
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP.slice(3)}`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP}:AB`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP.replace(/:/g, '')}`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP.replace('0A', 'G0')}`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP} extra`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256  ${FP}`)), undefined);
  });

  test('any other hash function line makes it undefined (werift would verify against the strongest one)', () => {
    const sha512 = Array.from({ length: 64 }, () => 'AB').join(':');
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP}`, `a=fingerprint:sha-512 ${sha512}`)), undefined);
    assert.equal(parseSdpFingerprint(sdp(`a=fingerprint:sha-1 ${FP.slice(0, 59)}`, media, `a=fingerprint:sha-256 ${FP}`)), undefined);
  });

  test('a fingerprint line hidden behind a bare LF still counts', () => {
    assert.equal(parseSdpFingerprint(sdp(media, `a=fingerprint:sha-256 ${FP}\na=fingerprint:sha-256 ${FP2}`)), undefined);
  });
});
