// The CLI contract on loopback: real signaling server, real device agent, real controller processes.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { DTLS_FILE } from '../../platform/node/dtls-cert.js';
import { PROTOCOL_VERSION, parseServerMessage } from '../../protocol/signaling.js';
import type { SignalServer } from '../../signaling/index.js';
import { BIN, exited, pair, runCli, spawnDevice, spawnUntil, startDevice, startServer, stateDir, type TestDevice, waitFor } from './helpers.js';

/** The --import hook that logs every module a CLI process resolves (./module-log.ts). */
const MODULE_LOG_HOOK = join(dirname(fileURLToPath(import.meta.url)), 'module-log.js');

let server: SignalServer;
let dev: TestDevice;
/** One controller state dir, paired once; every command below goes by the device's name. */
let laptop: Awaited<ReturnType<typeof pair>>;

before(async () => {
  server = await startServer();
  dev = await startDevice(server, { pins: [5, 7, 20, 21] });
  laptop = await pair(server, dev);
});
after(async () => {
  await dev.agent.stop();
  await server.close();
});

const ctl = (...args: string[]) => ['control', laptop.device, '--state-dir', laptop.stateDir, '--json', ...args];
/** A generated-looking code: RRRR-SSS-SSS from the code alphabet. */
const CODE_RE = /^[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{3}-[2-9A-HJKMNP-TV-Z]{3}$/;

test('issue 2: control write drives the pin and the last JSON line carries the path', async () => {
  const r = await runCli(ctl('write', '20', '1'));
  assert.equal(r.code, 0, r.stderr);
  const last = r.json.at(-1)!;
  assert.equal(last.ok, true);
  assert.equal(last.cmd, 'write');
  assert.equal(last.pin, 20);
  assert.equal(last.value, 1);
  assert.ok(last.path === 'relay' || last.path === 'direct');
  assert.equal(typeof last.rttMs, 'number');
  assert.equal(dev.gpio.read(20), 1);
});

test('issue 2: control read returns the pin level', async () => {
  dev.gpio.setMode(7, 'in');
  dev.gpio.drive(7, 1);
  const r = await runCli(ctl('read', '7'));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual([r.json.at(-1)!.cmd, r.json.at(-1)!.value], ['read', 1]);
});

test('issue 2: control blink toggles N times on the device', async () => {
  const before = dev.gpio.trace(21).length;
  const r = await runCli(ctl('blink', '21', '--times', '4', '--interval', '20'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.at(-1)!.toggles, 4);
  assert.equal(dev.gpio.trace(21).length - before, 4);
});

test('issue 2: control watch streams pushed edges and stops after --count', async () => {
  dev.gpio.setMode(5, 'in');
  dev.gpio.drive(5, 0);
  const run = runCli(ctl('watch', '5', '--count', '3'));
  // Toggle the input until the watcher has had its 3 edges (it subscribes a little later).
  let level: 0 | 1 = 0;
  const driver = setInterval(() => dev.gpio.drive(5, (level = level ? 0 : 1)), 50);
  const r = await run;
  clearInterval(driver);
  assert.equal(r.code, 0, r.stderr);
  const edges = r.json.filter((j) => j.event === 'change');
  assert.equal(edges.length, 3);
  for (const e of edges) assert.equal(e.pin, 5);
  assert.deepEqual([r.json.at(-1)!.cmd, r.json.at(-1)!.edges], ['watch', 3]);
});

test('issue 2: control info reports name, backend, allowed pins and path', async () => {
  const r = await runCli(ctl('info'));
  assert.equal(r.code, 0, r.stderr);
  const i = r.json.at(-1)!;
  assert.deepEqual([i.name, i.backend, i.pins], ['test-board', 'sim', [5, 7, 20, 21]]);
  assert.ok(i.path === 'relay' || i.path === 'direct');
});

test('issue 2: shell runs several commands over one session', async () => {
  const r = await runCli(ctl('shell'), { stdin: 'write 20 0\nread 20\ninfo\nquit\n' });
  assert.equal(r.code, 0, r.stderr);
  const results = r.json.filter((j) => j.ok === true).map((j) => j.cmd);
  assert.deepEqual(results, ['write', 'read', 'info']);
  assert.equal(r.json.find((j) => j.cmd === 'read')!.value, 0);
});

test('issue 11: a one-shot command does not load werift', async () => {
  // A fresh controller, paired by a one-shot `info`: nothing in its state dir may need werift yet.
  const fresh = await pair(server, dev, { name: 'one-shot-laptop' });
  const moduleLog = join(stateDir('modules'), 'loaded.txt');
  const loaded = (): string[] => readFileSync(moduleLog, 'utf8').split('\n').filter(Boolean);
  const traced = (...args: string[]) =>
    runCli(['control', fresh.device, '--state-dir', fresh.stateDir, '--json', ...args], {
      env: { NODE_OPTIONS: `--import=${pathToFileURL(MODULE_LOG_HOOK).href}`, PINHOLE_TEST_MODULE_LOG: moduleLog },
    });
  const werift = (urls: string[]): string[] => urls.filter((u) => /\/node_modules\/werift\//.test(u) || u.endsWith('/platform/node/rtc.js'));
  for (const args of [['write', '20', '1'], ['read', '20'], ['info']]) {
    writeFileSync(moduleLog, '');
    const r = await traced(...args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.at(-1)!.path, 'relay', args.join(' '));
    const urls = loaded();
    // The log works: it saw the CLI and the WebSocket client this command needs.
    assert.ok(urls.some((u) => u.endsWith('/cli/main.js')) && urls.some((u) => /\/node_modules\/ws\//.test(u)), `module log: ${urls.length} entries`);
    assert.deepEqual(werift(urls).slice(0, 3), [], `${args.join(' ')} loaded werift`);
  }
  assert.equal(dev.gpio.read(20), 1);
  assert.ok(!existsSync(join(fresh.stateDir, DTLS_FILE)), 'a one-shot command created the DTLS certificate');
  // The same log does see werift when a command takes the direct path (blink may: it runs for a while).
  writeFileSync(moduleLog, '');
  const b = await traced('blink', '21', '--times', '2', '--interval', '20');
  assert.equal(b.code, 0, b.stderr);
  assert.notDeepEqual(werift(loaded()), [], 'blink tries the direct path, so werift must show in the log');
  assert.ok(existsSync(join(fresh.stateDir, DTLS_FILE)));
});

test('issue 2: a pin outside --pins is refused with exit 5 and one stderr line', async () => {
  const r = await runCli(ctl('write', '13', '1'));
  assert.equal(r.code, 5);
  assert.equal(r.json.at(-1)!.error, 'pin-not-allowed');
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(dev.gpio.counters(13).writes, 0);
});

test('issue 2: a wrong code exits 3 in under 5 s', async () => {
  // A well-formed code whose room no device holds (wrong secrets: pairing.test.ts).
  const r = await runCli(['control', '--server', server.url, '--code', 'ZZZZ-ZZZ-ZZZ', '--state-dir', stateDir(), '--json', 'read', '20']);
  assert.equal(r.code, 3, r.stderr);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  assert.match(r.stderr, /^pinhole: .+\n$/);
  assert.equal(r.json.at(-1)!.error, 'unknown-room');
});

test('issue 2: an absent device exits 4 within the timeout', async () => {
  // A paired device that went away; its room is kept for the server's grace period.
  const gone = await startDevice(server, { name: 'gone-away' });
  const paired = await pair(server, gone);
  await gone.agent.stop();
  const r = await runCli(['control', 'gone-away', '--state-dir', paired.stateDir, '--timeout', '1500', '--json', 'read', '20']);
  assert.equal(r.code, 4, r.stderr);
  assert.ok(r.ms < 1500 + 2000, `took ${r.ms} ms`);
  assert.equal(r.json.at(-1)!.error, 'device-offline');
});

test('issue 2: an unreachable server exits 4', async () => {
  const r = await runCli(['control', '--server', 'ws://127.0.0.1:1', '--code', 'ABCD-EFG-HJK', '--state-dir', stateDir(), '--timeout', '1000', 'read', '20']);
  assert.equal(r.code, 4, r.stderr);
  // So does a paired device's saved server, overridden with --server.
  const r2 = await runCli(['control', laptop.device, '--state-dir', laptop.stateDir, '--server', 'ws://127.0.0.1:1', '--timeout', '1000', 'read', '20']);
  assert.equal(r2.code, 4, r2.stderr);
});

test('issue 2: usage errors exit 2 with a one-line reason', async () => {
  const named = ['control', laptop.device, '--state-dir', laptop.stateDir];
  // Usage is checked before connecting, so none of these spends the device's code.
  const code = dev.code!;
  for (const args of [
    [...named, 'write', '20'],
    [...named, 'write', '20', '7'],
    [...named, 'fly'],
    ['control', '--code', code, 'read', '1'],
    [...named, 'read', '1', '--times', '3'],
    ['control', '--server', server.url, '--code', code, 'write', '20'],
    ['control', '--server', server.url, '--code', 'ABCD-EF0-HJK', 'read', '1'],
    ['control', '--server', server.url, '--code', 'ABCD-EFG', 'read', '1'],
    ['control'],
    ['device', '--server', server.url, '--gpio', 'arduino'],
    ['device', '--controllers', '--revoke', 'x'],
    ['device', '--server', server.url, '--max-controllers', '0'],
    ['device', '--server', server.url, '--max-controllers', '65'],
    ['device', '--server', server.url, '--pair-rights', 'admin'],
    ['device', '--server', server.url, '--pins', '13', '--pair-pins', '20'],
    ['device', '--allow', 'x', '--read-only', 'x'],
    ['device', '--allow', 'x', '--pins', 'seven'],
    ['device', '--read-only', 'x', '--max-controllers', '2'],
    ['nonsense'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, args.join(' '));
  }
  assert.equal(dev.code, code, 'no usage error spent the code');
});

test('issue 2: --help helps', async () => {
  for (const args of [['--help'], ['control', '--help'], ['device', '--help'], ['signal', '--help'], ['demo', '--help']]) {
    const r = await runCli(args);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /pinhole/);
  }
});

test('issue 2: device CLI prints its code, serves a controller, and exits 0 on SIGTERM', async () => {
  const d = await spawnUntil(['device', '--server', server.url, '--state-dir', stateDir('device'), '--name', 'cli-board'], /^pairing code: /);
  const code = d.line.replace('pairing code: ', '').trim();
  assert.match(code, CODE_RE);
  const r = await runCli(['control', '--server', server.url, '--code', code.toLowerCase().replaceAll('-', ''), '--state-dir', stateDir(), '--json', 'info']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.at(-1)!.name, 'cli-board');
  // Pairing is reported on both sides, and the device offers a new code at once.
  assert.match(r.stderr, /^pinhole: paired with device "cli-board" \([A-Z2-7]{4}(-[A-Z2-7]{4}){3}\); from now on: pinhole control cli-board COMMAND\n$/);
  await waitFor(
    () => /^paired with controller ".+" \(.+\); it is now trusted with full access, all pins; on \w+, 1 of 8 connected$/m.test(d.out()),
    3000,
    'the device to report the pairing',
  );
  const next = await waitFor(
    () =>
      d
        .out()
        .split('\n')
        .filter((l) => l.startsWith('pairing code: '))
        .at(1),
    3000,
    'a second code',
  );
  assert.match(next.replace('pairing code: ', ''), CODE_RE);
  assert.notEqual(next.replace('pairing code: ', ''), code);
  d.proc.kill('SIGTERM');
  assert.equal(await exited(d.proc), 0);
});

test('issue 2: device --json prints the code as a JSON event', async () => {
  const d = await spawnUntil(['device', '--server', server.url, '--state-dir', stateDir('device'), '--json'], /"event":"code"/);
  assert.match(String(JSON.parse(d.line).code), CODE_RE);
  d.proc.kill('SIGINT');
  assert.equal(await exited(d.proc), 0);
});

test('issue 2: signal CLI prints bound addresses first and answers /healthz', async () => {
  const s = await spawnUntil(['signal', '--host', '127.0.0.1', '--port', '0', '--stun-port', '0'], /listening/);
  const first = JSON.parse(s.out().split('\n')[0]!) as { ws: string; http: string; stun: string };
  assert.match(first.ws, /^ws:\/\/127\.0\.0\.1:\d+$/);
  assert.match(first.stun, /^udp:\/\/127\.0\.0\.1:\d+$/);
  const status = await new Promise<number>((resolve, reject) =>
    http.get(first.http, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject),
  );
  assert.equal(status, 200);
  s.proc.kill('SIGTERM');
  assert.equal(await exited(s.proc), 0);
});

test('issue 15: signal whose reader has gone (| head -1) stops as on SIGTERM, with no stack trace', async () => {
  const s = await spawnUntil(['signal', '--host', '127.0.0.1', '--port', '0', '--stun-port', '0'], /listening/);
  const first = JSON.parse(s.out().split('\n')[0]!) as { ws: string };
  let stderr = '';
  s.proc.stderr!.on('data', (d) => (stderr += String(d)));
  s.proc.stdout!.destroy();
  // Anything the server logs now meets a closed pipe.
  for (let i = 0; i < 3 && s.proc.exitCode === null; i++) {
    const ws = new WebSocket(first.ws);
    await new Promise((r) => ws.once('message', r));
    ws.send(JSON.stringify({ type: 'register', v: PROTOCOL_VERSION, room: `EPIPE${i}QRSTUVWXYZ` }));
    await new Promise((r) => ws.once('message', r));
    ws.close();
    await new Promise((r) => setTimeout(r, 200));
  }
  const code = await Promise.race([exited(s.proc), new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000))]);
  if (code === 'running') s.proc.kill('SIGKILL');
  assert.equal(code, 0);
  assert.doesNotMatch(stderr, /EPIPE|Error/);
});

test('issue 2: demo (npm start) pairs, blinks pin 20 and goes direct', async () => {
  const r = await runCli(['demo', '--json', '--times', '8', '--interval', '150']);
  assert.equal(r.code, 0, r.stderr);
  const writes = r.json.filter((j) => j.event === 'write');
  assert.equal(writes.length, 8);
  const trace = r.json.find((j) => j.event === 'trace')!;
  assert.deepEqual(trace.values, [1, 0, 1, 0, 1, 0, 1, 0]);
  const last = r.json.at(-1)!;
  assert.equal(last.cmd, 'demo');
  assert.equal(last.path, 'direct');
  assert.equal(typeof last.directAtMs, 'number');
});

// ---- hostile strings, broken state files, name collisions ----

/** Bytes a hostile peer uses to drive a terminal: ESC, BEL, C1 controls, bidi overrides, zero-width characters. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this test looks for
const TERMINAL_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/u;
const TITLE = '\u001b]0;pwned\u0007';
const CLIPBOARD = '\u001b]52;c;cm0gLXJmIH4K\u0007';
const CLEAR = '\u001b[2J';
const HOSTILE = `${TITLE}${CLIPBOARD}${CLEAR}\u202eevil\r\npin 20 = 1`;

/**
 * A hostile signaling server on loopback: answers `register` and `join` with the frames `answer`
 * gives, each `afterMs` later (default at once). Every frame must pass parseServerMessage, so the
 * test reaches the client's printing code rather than its validation (whatever the protocol
 * version is now).
 */
async function hostileServer(answer: (m: { type: string }) => { frame: object; afterMs?: number }[]): Promise<{ url: string; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, nonce: randomBytes(32).toString('base64url') }));
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as { type: string; v?: unknown };
      if (m.type !== 'register' && m.type !== 'join') return;
      assert.equal(m.v, PROTOCOL_VERSION, 'the client speaks the current protocol');
      for (const { frame, afterMs = 0 } of answer(m)) {
        const text = JSON.stringify(frame);
        assert.ok(parseServerMessage(text).ok, `a frame the client accepts: ${text}`);
        setTimeout(() => ws.send(text), afterMs);
      }
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise((r) => wss.close(() => r()));
    },
  };
}

test("issue 9: a hostile device's info fields reach the human output without escape sequences; --json keeps them exact", async () => {
  const evil = await startDevice(server, { name: 'evil-board', board: `${TITLE}board${CLEAR}`, version: `${CLIPBOARD}1.0\u202e\u200b\nfake: line` });
  try {
    const p = await pair(server, evil);
    const human = await runCli(['control', 'evil-board', '--state-dir', p.stateDir, 'info']);
    assert.equal(human.code, 0, human.stderr);
    assert.doesNotMatch(human.stdout, TERMINAL_CONTROL, JSON.stringify(human.stdout));
    assert.ok(!human.stdout.includes('pwned') && !human.stdout.includes('52;c'), 'whole sequences are gone');
    assert.match(human.stdout, /^evil-board: sim backend on board, pinhole 1\.0 fake: line$/m, 'the text around them stays, on one line');
    // name, pins, controllers, your rights, path
    assert.equal(human.stdout.split('\n').filter(Boolean).length, 5, 'no line added by the device');

    const json = await runCli(['control', 'evil-board', '--state-dir', p.stateDir, '--json', 'info']);
    assert.equal(json.code, 0, json.stderr);
    assert.doesNotMatch(json.stdout, TERMINAL_CONTROL);
    assert.ok(json.stdout.includes('\\u001b]0;pwned\\u0007board\\u001b[2J'), json.stdout);
    assert.ok(json.stdout.includes('\\u202e\\u200b\\nfake'), json.stdout);
    const i = json.json.at(-1)!;
    assert.equal(i.board, `${TITLE}board${CLEAR}`, 'exact after parsing');
    assert.equal(i.version, `${CLIPBOARD}1.0\u202e\u200b\nfake: line`);
  } finally {
    await evil.agent.stop();
  }
});

test("issue 9: a hostile server's error message reaches the controller's stderr clean, and --json keeps it exact", async () => {
  const h = await hostileServer((m) => (m.type === 'join' ? [{ frame: { type: 'error', code: 'bad-room', message: HOSTILE } }] : []));
  try {
    const args = ['control', '--server', h.url, '--code', 'ABCD-EFG-HJK', '--state-dir', stateDir(), '--timeout', '3000'];
    const r = await runCli([...args, 'read', '20']);
    assert.equal(r.code, 3, r.stderr);
    assert.doesNotMatch(r.stderr, TERMINAL_CONTROL, JSON.stringify(r.stderr));
    assert.equal(r.stderr, 'pinhole: evil  pin 20 = 1\n', 'one line, the text only');
    const j = await runCli([...args, '--json', 'read', '20']);
    assert.equal(j.code, 3);
    assert.doesNotMatch(j.stdout + j.stderr, TERMINAL_CONTROL);
    assert.ok(j.stdout.includes('\\u001b]0;pwned\\u0007'), j.stdout);
    assert.equal(j.json.at(-1)!.message, HOSTILE);
  } finally {
    await h.close();
  }
});

test("issue 9: a hostile server's error messages reach the device's stderr clean", async () => {
  // At registration (the device gives up) ...
  const refuse = await hostileServer((m) => (m.type === 'register' ? [{ frame: { type: 'error', code: 'bad-room', message: HOSTILE } }] : []));
  try {
    const r = await runCli(['device', '--server', refuse.url, '--state-dir', stateDir('device'), '--name', 'b1', '--no-direct'], { killAfterMs: 10_000 });
    assert.equal(r.code, 3, r.stderr);
    assert.doesNotMatch(r.stderr, TERMINAL_CONTROL, JSON.stringify(r.stderr));
    assert.match(r.stderr, /^pinhole: evil {2}pin 20 = 1\n$/);
  } finally {
    await refuse.close();
  }
  // ... and later, as an event (it carries on).
  const later = await hostileServer((m) =>
    m.type === 'register'
      ? [
          { frame: { type: 'registered', room: 'ABCD', ttlMs: 600_000, stunPort: 0 } },
          { frame: { type: 'error', code: 'rate-limited', message: HOSTILE }, afterMs: 300 },
        ]
      : [],
  );
  try {
    const d = await spawnUntil(['device', '--server', later.url, '--state-dir', stateDir('device'), '--name', 'b2', '--no-direct'], /^pairing code: /);
    await waitFor(() => d.err().includes('pin 20 = 1'), 5000, 'the error line');
    assert.doesNotMatch(d.err(), TERMINAL_CONTROL, JSON.stringify(d.err()));
    assert.match(d.err(), /^pinhole: rate-limited: evil {2}pin 20 = 1$/m);
    d.proc.kill('SIGTERM');
    assert.equal(await exited(d.proc), 0);
  } finally {
    await later.close();
  }
});

test('issue 9: a FIFO in place of controllers.json: `pinhole device --controllers` exits 2 at once, naming it', {
  skip: process.platform === 'win32',
}, async () => {
  const dir = stateDir('device');
  const path = join(dir, 'controllers.json');
  execFileSync('mkfifo', ['-m', '600', path]);
  const r = await runCli(['device', '--controllers', '--state-dir', dir], { killAfterMs: 5000 });
  assert.equal(r.code, 2, `exit ${r.code} after ${Math.round(r.ms)} ms (null: killed, it hung): ${r.stderr}`);
  assert.ok(r.stderr.includes(path) && /FIFO/.test(r.stderr), r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test('issue 9: a corrupt controllers.json or devices.json: the CLI names the file and exits 2', async () => {
  const dir = stateDir('state');
  writeFileSync(join(dir, 'controllers.json'), '{"v":1,"controllers":[{"name":"x"}]}', { mode: 0o600 });
  writeFileSync(join(dir, 'devices.json'), '{"v":1,"devices":7}', { mode: 0o600 });
  const list = await runCli(['device', '--controllers', '--state-dir', dir, '--json']);
  assert.equal(list.code, 2, list.stderr);
  assert.equal(list.json.at(-1)!.error, 'state-corrupt');
  assert.ok(list.stderr.includes(join(dir, 'controllers.json')), list.stderr);
  const ctl = await runCli(['control', 'anything', '--state-dir', dir, '--json', 'info']);
  assert.equal(ctl.code, 2, ctl.stderr);
  assert.equal(ctl.json.at(-1)!.error, 'state-corrupt');
  assert.ok(ctl.stderr.includes(join(dir, 'devices.json')), ctl.stderr);
});

/** The saved devices of a controller state dir: name -> fingerprint. */
function savedDevices(dir: string): Record<string, string> {
  const j = JSON.parse(readFileSync(join(dir, 'devices.json'), 'utf8')) as { devices: { name: string; fingerprint: string }[] };
  return Object.fromEntries(j.devices.map((d) => [d.name, d.fingerprint]));
}

test('issue 9: pairing a second device under a saved name is refused (name-taken, exit 3); --as keeps both, --replace replaces', async () => {
  const a = await startDevice(server, { name: 'board' });
  const b = await startDevice(server, { name: 'board' });
  const c = await startDevice(server, { name: 'BOARD' });
  try {
    const laptop = await pair(server, a);
    /** One pairing attempt with the device's current code; waits for the next code (this one is spent either way). */
    const pairWith = async (d: TestDevice, ...extra: string[]) => {
      const code = d.code!;
      const r = await runCli(['control', '--server', server.url, '--code', code, '--state-dir', laptop.stateDir, '--json', ...extra, 'info']);
      await d.nextCode(code);
      return r;
    };
    const fpA = a.agent.fingerprint;
    assert.deepEqual(savedDevices(laptop.stateDir), { board: fpA });

    const taken = await pairWith(b);
    assert.equal(taken.code, 3, taken.stderr);
    assert.equal(taken.json.at(-1)!.error, 'name-taken');
    assert.equal(taken.json.filter((j) => j.ok === true).length, 0, 'the command did not run');
    assert.match(taken.stderr, /--as .*--replace/, 'the way out is in the message');
    assert.deepEqual(savedDevices(laptop.stateDir), { board: fpA }, 'devices.json still has A');

    // The code was spent by that attempt: the new one, with --as.
    const as = await pairWith(b, '--as', 'board2');
    assert.equal(as.code, 0, as.stderr);
    assert.match(as.stderr, /paired with device "board2" .*pinhole control board2 COMMAND/);
    assert.deepEqual(savedDevices(laptop.stateDir), { board: fpA, board2: b.agent.fingerprint });

    // Case does not make another name.
    const upper = await pairWith(c);
    assert.equal(upper.code, 3, upper.stderr);
    assert.equal(upper.json.at(-1)!.error, 'name-taken');
    const replaced = await pairWith(c, '--replace');
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stderr, /paired with device "BOARD" .*replacing the one saved under that name/);
    assert.deepEqual(savedDevices(laptop.stateDir), { BOARD: c.agent.fingerprint, board2: b.agent.fingerprint }, 'one entry for the name');
    assert.equal((await runCli(['control', 'board', '--state-dir', laptop.stateDir, '--json', 'info'])).json.at(-1)!.ok, true, 'found by any case');

    // The same device pairing again under its name is a re-pair: no flag, no "replacing".
    const again = await pairWith(c);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /replacing/);
    assert.deepEqual(Object.keys(savedDevices(laptop.stateDir)).sort(), ['BOARD', 'board2']);
  } finally {
    await Promise.all([a.agent.stop(), b.agent.stop(), c.agent.stop()]);
  }
});

test('issue 9: --as and --replace need --code, and a bad --as is refused before the code is spent', async () => {
  const code = dev.code!;
  for (const args of [
    ['control', laptop.device, '--state-dir', laptop.stateDir, '--as', 'x', 'info'],
    ['control', laptop.device, '--state-dir', laptop.stateDir, '--replace', 'info'],
    ['control', '--server', server.url, '--code', code, '--state-dir', stateDir(), '--as', ' padded', 'info'],
    ['control', '--server', server.url, '--code', code, '--state-dir', stateDir(), '--as', `a${CLEAR}`, 'info'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, TERMINAL_CONTROL);
  }
  assert.equal(dev.code, code, 'no code was spent');
});

// ---- many controllers, each with its own rights ----

/** JSON objects among a process's stdout lines (a line still being written is skipped). */
const jsonOf = (text: string): Record<string, unknown>[] =>
  text.split('\n').flatMap((l) => {
    try {
      return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });

/** The rights `pinhole device --controllers --json` lists, by controller name. */
async function listedRights(dir: string): Promise<Record<string, unknown>> {
  const r = await runCli(['device', '--controllers', '--state-dir', dir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const list = r.json.at(-1)!.controllers as { name: string; rights: unknown }[];
  return Object.fromEntries(list.map((c) => [c.name, c.rights]));
}

/** `pinhole device --allow/--read-only ... --json` on a device's state dir; resolves with the rights it printed. */
async function setRights(dir: string, ...args: string[]): Promise<unknown> {
  const r = await runCli(['device', '--state-dir', dir, '--json', ...args]);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.json.at(-1)!.ok, true);
  return r.json.at(-1)!.rights;
}

test('issue 12: --pair-rights and --pair-pins pair with less; --allow, --read-only and --controllers edit and show the rights', async () => {
  const d = await spawnDevice(server, { name: 'shared-board', args: ['--no-direct', '--pair-rights', 'read-only', '--pair-pins', '13,20'] });
  try {
    await pair(server, d, { name: 'viewer' });
    assert.deepEqual(await listedRights(d.stateDir), { viewer: { access: 'read-only', pins: [13, 20] } }, 'the code gave what --pair-* said');

    assert.deepEqual(await setRights(d.stateDir, '--allow', 'viewer', '--pins', '5'), { access: 'full', pins: [5] });
    assert.deepEqual(await listedRights(d.stateDir), { viewer: { access: 'full', pins: [5] } }, 'saved in controllers.json');
    // --read-only alone keeps the pins; --allow alone opens every pin.
    assert.deepEqual(await setRights(d.stateDir, '--read-only', 'viewer'), { access: 'read-only', pins: [5] });
    assert.deepEqual(await setRights(d.stateDir, '--allow', 'viewer'), { access: 'full', pins: null });
    // By fingerprint too, as --revoke.
    const listing = await runCli(['device', '--controllers', '--state-dir', d.stateDir, '--json']);
    const fp = String((listing.json.at(-1)!.controllers as { fingerprint: string }[])[0]!.fingerprint);
    assert.deepEqual(await setRights(d.stateDir, '--read-only', fp.toLowerCase(), '--pins', '8,7'), { access: 'read-only', pins: [7, 8] });

    // Human forms: one line each.
    for (const args of [['--controllers'], ['--read-only', 'viewer']]) {
      const h = await runCli(['device', '--state-dir', d.stateDir, ...args]);
      assert.equal(h.code, 0, h.stderr);
      assert.equal(h.lines.length, 1, h.stdout);
    }

    // An unknown controller: exit 2, unknown-controller, and nothing changes.
    for (const args of [
      ['--allow', 'nobody'],
      ['--read-only', 'nobody', '--pins', '1'],
      ['--allow', 'AAAA-AAAA-AAAA-AAAA'],
    ]) {
      const r = await runCli(['device', '--state-dir', d.stateDir, '--json', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.json.at(-1)!.error, 'unknown-controller');
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    assert.deepEqual(await listedRights(d.stateDir), { viewer: { access: 'read-only', pins: [7, 8] } });
  } finally {
    await d.stop();
  }
});

/** `pinhole control ... --json shell` with stdin kept open: send one line, wait for its result. */
function openShell(args: string[]): { proc: ChildProcess; run: (line: string) => Promise<Record<string, unknown>>; close: () => Promise<number | null> } {
  const { PINHOLE_SERVER: _ignored, ...env } = process.env;
  const proc = spawn(process.execPath, [BIN, ...args, '--json', 'shell'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...env, XDG_CONFIG_HOME: stateDir('xdg') },
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.resume();
  let seen = 0;
  const run = async (line: string): Promise<Record<string, unknown>> => {
    proc.stdin!.write(`${line}\n`);
    const [i, result] = await waitFor(
      () => {
        const all = jsonOf(out);
        const i = all.findIndex((j, k) => k >= seen && j.ok !== undefined);
        return i < 0 ? undefined : ([i, all[i]!] as const);
      },
      10_000,
      `the shell's answer to ${line}`,
    );
    seen = i + 1;
    return result;
  };
  const close = (): Promise<number | null> => {
    proc.stdin!.end('quit\n');
    return exited(proc);
  };
  return { proc, run, close };
}

test('issue 12: a read-only controller may read and info, its write and blink exit 5 (not-allowed); new rights apply at its next command', async () => {
  // Needs the device side (rights checked per command): not-allowed comes from the device's handler.
  const d = await spawnDevice(server, { name: 'ro-board', args: ['--no-direct', '--pair-rights', 'read-only'] });
  try {
    const v = await pair(server, d, { name: 'viewer' });
    assert.deepEqual(v.info.rights, { access: 'read-only', pins: null }, 'info tells the caller its rights');
    assert.equal(v.info.controllers, 1, 'info tells how many are connected');
    const ctl = (...args: string[]) => runCli(['control', 'ro-board', '--state-dir', v.stateDir, '--json', ...args]);
    for (const args of [
      ['write', '13', '1'],
      ['blink', '13', '--times', '2', '--interval', '20'],
    ]) {
      const r = await ctl(...args);
      assert.equal(r.code, 5, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.json.at(-1)!.error, 'not-allowed');
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    // (Not pin 13: reading an unconfigured pin makes it an input, and 13 is written below.)
    const read = await ctl('read', '20');
    assert.equal(read.code, 0, read.stderr);

    // One session across changes of rights made while the device runs: each applies at the next command.
    const sh = openShell(['control', 'ro-board', '--state-dir', v.stateDir]);
    try {
      assert.equal((await sh.run('write 13 1')).error, 'not-allowed');
      await setRights(d.stateDir, '--allow', 'viewer', '--pins', '13');
      assert.equal((await sh.run('write 13 1')).ok, true, 'allowed now, same session');
      assert.equal((await sh.run('write 20 1')).error, 'not-allowed', 'outside its pins');
      const info = await sh.run('info');
      assert.deepEqual(info.rights, { access: 'full', pins: [13] });
      await setRights(d.stateDir, '--read-only', 'viewer');
      assert.equal((await sh.run('write 13 0')).error, 'not-allowed');
      assert.equal((await sh.run('read 13')).value, 1, 'the refused write changed nothing');
    } finally {
      assert.equal(await sh.close(), 0);
    }

    // The device printed a connect and a leave for each session, naming the controller.
    // (pair, write, blink, read, shell: five sessions)
    const named = (kind: string) => d.events().filter((e) => e.event === kind && e.name === 'viewer');
    await waitFor(() => named('controller-left').length >= 5, 5000, 'the leave events');
    assert.equal(named('controller').length, 5, JSON.stringify(d.events()));
    for (const e of named('controller')) assert.ok(typeof e.path === 'string' && typeof e.controllers === 'number', JSON.stringify(e));
  } finally {
    await d.stop();
  }
});

test("issue 12: `pinhole control board watch 13` in one process sees both edges of another controller's writes, marked with its name", async () => {
  // Needs the server and device sides of many controllers per device (two sessions at once).
  const d = await spawnDevice(server, { name: 'board' });
  try {
    const watcher = await pair(server, d, { name: 'watcher' });
    const screen = await pair(server, d, { name: 'screen' });
    const writer = await pair(server, d, { name: 'writer' });
    const write = (v: string) => runCli(['control', 'board', '--state-dir', writer.stateDir, '--json', 'write', '13', v]);
    // An output at 1 first: a watch on an unconfigured pin would make it an input.
    assert.equal((await write('1')).code, 0);
    const json = await spawnUntil(['control', 'board', '--state-dir', watcher.stateDir, '--json', 'watch', '13', '--count', '2'], /"event":"watching"/);
    const human = await spawnUntil(['control', 'board', '--state-dir', screen.stateDir, 'watch', '13', '--count', '2'], /^watching pin 13/);
    for (const v of ['0', '1']) {
      const r = await write(v);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(await exited(json.proc), 0, json.err());
    assert.equal(await exited(human.proc), 0, human.err());
    const edges = jsonOf(json.out())
      .filter((j) => j.event === 'change')
      .map((j) => [j.edge, j.value, j.by]);
    assert.deepEqual(edges, [
      ['falling', 0, 'writer'],
      ['rising', 1, 'writer'],
    ]);
    const lines = human
      .out()
      .split('\n')
      .filter((l) => l.startsWith('pin 13 '));
    assert.equal(lines.length, 2, human.out());
    for (const l of lines) assert.ok(l.includes('"writer"'), l);
    // Three at once at most: the watchers and the writer.
    assert.ok(d.events().some((e) => e.event === 'controller' && e.name === 'writer' && (e.controllers as number) >= 2));
  } finally {
    await d.stop();
  }
});

test('issue 12: past --max-controllers a controller exits 4 with device-busy and one line; it gets in once a slot is free', async () => {
  // Needs the server and device sides of many controllers per device.
  const d = await spawnDevice(server, { name: 'solo', args: ['--no-direct', '--max-controllers', '1'] });
  try {
    const left = (name: string) => waitFor(() => d.events().some((e) => e.event === 'controller-left' && e.name === name), 5000, `${name} to leave`);
    const one = await pair(server, d, { name: 'one' });
    await left('one'); // its one slot is free again before the next pairs
    const two = await pair(server, d, { name: 'two' });
    await left('two');
    const holder = await spawnUntil(['control', 'solo', '--state-dir', one.stateDir, '--json', 'watch', '20'], /"event":"watching"/);
    const r = await runCli(['control', 'solo', '--state-dir', two.stateDir, '--json', '--timeout', '5000', 'read', '20']);
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.json.at(-1)!.error, 'device-busy');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    holder.proc.kill('SIGINT');
    assert.equal(await exited(holder.proc), 0);
    await waitFor(() => d.events().filter((e) => e.event === 'controller-left' && e.name === 'one').length >= 2, 5000, 'the holder to leave');
    const again = await runCli(['control', 'solo', '--state-dir', two.stateDir, '--json', 'read', '20']);
    assert.equal(again.code, 0, again.stderr);
  } finally {
    await d.stop();
  }
});
