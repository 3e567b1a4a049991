// Pairing end to end: real `pinhole device` and `pinhole control` processes and a real
// signaling server on loopback. Single-use codes, pair once then by name, revocation,
// state files, --no-pairing, a device whose identity changed, and the server's join limit.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadOrCreateIdentity } from '../../platform/node/state-files.js';
import { CODE_ALPHABET, formatPairingCode, generatePairingCode } from '../../protocol/code.js';
import type { SignalServer } from '../../signaling/index.js';
import { pair, runCli, spawnDevice, startServer, stateDir, waitFor } from './helpers.js';

let server: SignalServer;
before(async () => {
  server = await startServer(); // join limit raised: this file pairs many times from 127.0.0.1
});
after(async () => {
  await server.close();
});

/** `pinhole control NAME --state-dir DIR --json ...`: no --code, no --server. */
const byName = (name: string, dir: string, ...args: string[]) => ['control', name, '--state-dir', dir, '--json', ...args];
const oneStderrLine = (stderr: string) => assert.match(stderr, /^pinhole: [^\n]+\n$/, `stderr: ${stderr}`);
const FINGERPRINT = /^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$/;

/** The same code with its secret's first symbol changed: right room, wrong secret. */
function wrongSecret(code: string): string {
  const [room, ...secret] = code.split('-');
  const s = secret.join('');
  const other = CODE_ALPHABET[(CODE_ALPHABET.indexOf(s[0]!) + 1) % CODE_ALPHABET.length]!;
  return formatPairingCode({ room: room!, secret: other + s.slice(1) });
}

test('issue 4: a wrong secret fails on both sides and spends the code; the old code is then unknown, the new one pairs', async () => {
  const dev = await spawnDevice(server, { name: 'wc-board' });
  try {
    const code = dev.code!;
    const rooms = server.stats().rooms; // the device's own room and its pairing room
    const wrong = await runCli(['control', '--server', server.url, '--code', wrongSecret(code), '--state-dir', stateDir(), '--json', 'read', '20']);
    assert.equal(wrong.code, 3, wrong.stderr);
    assert.equal(wrong.json.at(-1)!.error, 'wrong-code');
    oneStderrLine(wrong.stderr);
    // The device refused too, and offers a new code at once.
    await waitFor(() => dev.events().find((e) => e.event === 'refused'), 3000, 'the device to report the refusal');
    assert.equal(dev.events().find((e) => e.event === 'refused')!.code, 'wrong-code');
    const next = await dev.nextCode(code);
    assert.notEqual(next, code);
    // The device left the spent room (close 4000), so the server forgot it at once.
    await waitFor(() => server.stats().rooms === rooms, 3000, 'the device to leave the spent room');

    const retry = await runCli(['control', '--server', server.url, '--code', code, '--state-dir', stateDir(), '--json', 'read', '20']);
    assert.equal(retry.code, 3, retry.stderr);
    assert.equal(retry.json.at(-1)!.error, 'unknown-room');
    assert.ok(retry.ms < 3000, `the retry took ${retry.ms} ms`);
    oneStderrLine(retry.stderr);

    const ok = await runCli(['control', '--server', server.url, '--code', next, '--state-dir', stateDir(), '--json', 'info']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.json.at(-1)!.name, 'wc-board');
    assert.equal(dev.events().filter((e) => e.event === 'controller' && e.paired === true).length, 1, 'only the right code paired');
  } finally {
    assert.equal(await dev.stop(), 0);
  }
});

test('issue 4: pair once, then `pinhole control NAME` with no code and no server; the device lists the controller', async () => {
  const dev = await spawnDevice(server, { name: 'po-board' });
  try {
    const laptop = await pair(server, dev, { name: 'alice' });
    assert.equal(laptop.device, 'po-board');
    const w = await runCli(byName('po-board', laptop.stateDir, 'write', '20', '1'));
    assert.equal(w.code, 0, w.stderr);
    assert.equal(w.stderr, '', 'no pairing message once paired');
    const r = await runCli(byName('po-board', laptop.stateDir, 'read', '20'));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([r.json.at(-1)!.cmd, r.json.at(-1)!.value], ['read', 1]);

    // The device shows who paired, and the later sessions as known controllers.
    const fp = loadOrCreateIdentity(laptop.stateDir).fingerprint;
    const seen = await waitFor(
      () => {
        const c = dev.events().filter((e) => e.event === 'controller');
        return c.length === 3 && c;
      },
      3000,
      'three sessions on the device',
    );
    assert.deepEqual(
      seen.map((e) => [e.name, e.fingerprint, e.paired]),
      [
        ['alice', fp, true],
        ['alice', fp, false],
        ['alice', fp, false],
      ],
    );

    const list = await runCli(['device', '--state-dir', dev.stateDir, '--controllers', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const l = list.json.at(-1) as { ok: boolean; device: string; controllers: { name: string; fingerprint: string; addedAt: string }[] };
    assert.equal(l.ok, true);
    assert.match(l.device, FINGERPRINT);
    assert.deepEqual(
      l.controllers.map((c) => [c.name, c.fingerprint]),
      [['alice', fp]],
    );
    assert.ok(!Number.isNaN(Date.parse(l.controllers[0]!.addedAt)));
  } finally {
    assert.equal(await dev.stop(), 0);
  }
});

test('issue 4: a revoked controller is refused with not-paired and changes nothing; another paired one still works', async () => {
  const dev = await spawnDevice(server, { name: 'rv-board', json: false });
  try {
    const alice = await pair(server, dev, { name: 'alice' });
    const bob = await pair(server, dev, { name: 'bob' });
    assert.equal((await runCli(byName('rv-board', alice.stateDir, 'write', '20', '1'))).code, 0);

    // Revoked while the device runs: it re-reads the list at every handshake.
    const rv = await runCli(['device', '--state-dir', dev.stateDir, '--revoke', 'alice']);
    assert.equal(rv.code, 0, rv.stderr);
    assert.match(rv.stdout, /^revoked "alice" \([A-Z2-7-]+\); its next connection is refused\n$/);

    const refused = await runCli(byName('rv-board', alice.stateDir, 'write', '20', '0'));
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal(refused.json.at(-1)!.error, 'not-paired');
    oneStderrLine(refused.stderr);
    await waitFor(() => /^pinhole: refused a controller: not-paired: /m.test(dev.err()), 3000, 'the device to report the refusal on stderr');

    const read = await runCli(byName('rv-board', bob.stateDir, 'read', '20'));
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.json.at(-1)!.value, 1, 'the revoked controller changed nothing');

    const again = await runCli(['device', '--state-dir', dev.stateDir, '--revoke', 'alice', '--json']);
    assert.equal(again.code, 2, again.stderr);
    assert.equal(again.json.at(-1)!.error, 'unknown-controller');
    oneStderrLine(again.stderr.replace(/ \(see 'pinhole --help'\)/, ''));
    const list = await runCli(['device', '--state-dir', dev.stateDir, '--controllers', '--json']);
    assert.deepEqual(
      (list.json.at(-1)!.controllers as { name: string }[]).map((c) => c.name),
      ['bob'],
    );
  } finally {
    assert.equal(await dev.stop(), 0);
  }
});

test('issue 4: `pinhole control` with an unknown device name exits 3 with unknown-device', async () => {
  const r = await runCli(['control', 'nosuch', '--state-dir', stateDir(), '--json', 'read', '1']);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.json.at(-1)!.error, 'unknown-device');
  oneStderrLine(r.stderr);
});

test('issue 4: state files are 0600 in a 0700 dir, on both sides', async () => {
  const dev = await spawnDevice(server, { name: 'sf-board' });
  try {
    const laptop = await pair(server, dev);
    // One-shot commands (the pairing `info` too) stay on the relay; the first that tries the direct path makes the certificate.
    const r = await runCli(['control', laptop.device, '--state-dir', laptop.stateDir, '--json', 'blink', '20', '--times', '1', '--interval', '10']);
    assert.equal(r.code, 0, r.stderr);
    const expect: [string, string[]][] = [
      [dev.stateDir, ['controllers.json', 'dtls.json', 'identity.json']],
      [laptop.stateDir, ['devices.json', 'dtls.json', 'identity.json']],
    ];
    for (const [dir, files] of expect) {
      assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
      assert.deepEqual(readdirSync(dir).sort(), files, `${dir}: no other (temp) files left behind`);
      for (const f of files) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, join(dir, f));
    }
  } finally {
    assert.equal(await dev.stop(), 0);
  }
});

test('issue 4: without --state-dir the state lives in $XDG_CONFIG_HOME/pinhole', async () => {
  const xdg = stateDir('xdg');
  const r = await runCli(['device', '--controllers', '--json'], { env: { XDG_CONFIG_HOME: xdg } });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(xdg, 'pinhole', 'identity.json')));
});

test('issue 4: --no-pairing prints no code, and a paired controller still works', async () => {
  const first = await spawnDevice(server, { name: 'np-board' });
  const spent = first.code!;
  const laptop = await pair(server, first);
  assert.equal(await first.stop(), 0);

  const dev = await spawnDevice(server, { name: 'np-board', stateDir: first.stateDir, json: false, args: ['--no-pairing'] });
  try {
    const r = await runCli(byName('np-board', laptop.stateDir, 'write', '20', '1'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await runCli(byName('np-board', laptop.stateDir, 'read', '20'))).json.at(-1)!.value, 1);
    assert.doesNotMatch(dev.out(), /pairing code/);
    assert.equal(dev.code, undefined);
    // Nobody can pair: the code spent at pairing is unknown to the server.
    const old = await runCli(['control', '--server', server.url, '--code', spent, '--state-dir', stateDir(), '--json', 'info']);
    assert.equal(old.code, 3, old.stderr);
    assert.equal(old.json.at(-1)!.error, 'unknown-room');
  } finally {
    assert.equal(await dev.stop(), 0);
  }
});

test('issue 4: a device that lost its identity is not found under its old name (device-offline), and pairs again', async () => {
  const first = await spawnDevice(server, { name: 'id-board', json: false });
  const laptop = await pair(server, first);
  const oldFp = /\(([A-Z2-7-]+)\) is online/.exec(first.out())![1];
  assert.equal(await first.stop(), 0);
  rmSync(join(first.stateDir, 'identity.json'));
  rmSync(join(first.stateDir, 'dtls.json'));

  const dev = await spawnDevice(server, { name: 'id-board', stateDir: first.stateDir, json: false });
  try {
    const newFp = /\(([A-Z2-7-]+)\) is online/.exec(dev.out())![1];
    assert.notEqual(newFp, oldFp, 'a new identity key');
    // One might expect `device-changed` (exit 3). But a paired device's room is derived from its
    // identity key (deviceRoom), so the controller joins the OLD key's room, which no new device
    // ever registers: the server keeps it for its grace period after the old process left
    // (the controller waits, then gives up) and then forgets it (unknown-room). Either way the
    // controller reports the device offline (exit 4). device-changed needs someone answering in
    // the old room with another key; the handshake unit tests cover that.
    const r = await runCli(byName('id-board', laptop.stateDir, '--timeout', '1500', 'read', '1'));
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.json.at(-1)!.error, 'device-offline');
    oneStderrLine(r.stderr);

    // A new key under a saved name is another device to the controller: refused until
    // the user says --replace (with the next code: the refused attempt spent this one).
    const code = dev.code!;
    const refused = await runCli(['control', '--server', server.url, '--code', code, '--state-dir', laptop.stateDir, '--json', 'info']);
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal(refused.json.at(-1)!.error, 'name-taken');
    const again = await runCli([
      'control',
      '--server',
      server.url,
      '--code',
      await dev.nextCode(code),
      '--state-dir',
      laptop.stateDir,
      '--replace',
      '--json',
      'info',
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /replacing the one saved under that name/);
    assert.equal((await runCli(byName('id-board', laptop.stateDir, 'read', '1'))).code, 0);
  } finally {
    assert.equal(await dev.stop(), 0);
  }
});

test('issue 4: with the default join limit, the 11th rapid join of an unknown pairing room is refused (join-limited, exit 4)', async () => {
  // Default limits (10 joins at once, then 20/min per address). The server's clock stands still
  // while the joins run, so the bucket cannot refill between processes however slow this machine
  // is; it moves only where the test says so.
  let now = Date.now();
  const limited = await startServer({}, { clock: () => now });
  const dev = await spawnDevice(limited, { name: 'jl-board' });
  try {
    const laptop = await pair(limited, dev); // one join token
    now += 60_000; // a minute later: the bucket is full again
    const results = [];
    for (let i = 0; i < 11; i++) {
      const code = formatPairingCode(generatePairingCode());
      results.push(await runCli(['control', '--server', limited.url, '--code', code, '--state-dir', stateDir(), '--json', '--timeout', '3000', 'read', '1']));
    }
    for (const r of results.slice(0, 10)) {
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.json.at(-1)!.error, 'unknown-room');
    }
    const last = results[10]!;
    assert.equal(last.code, 4, last.stderr);
    assert.equal(last.json.at(-1)!.error, 'join-limited');
    oneStderrLine(last.stderr);
    assert.equal(limited.stats().joinLimited, 1);
    // A paired controller's joins of the device's own room are not limited.
    const mine = await runCli(byName('jl-board', laptop.stateDir, 'read', '1'));
    assert.equal(mine.code, 0, mine.stderr);
  } finally {
    assert.equal(await dev.stop(), 0);
    await limited.close();
  }
});
