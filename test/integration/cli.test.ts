// The CLI contract on loopback: real signaling server, real device agent, real controller processes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { runCli, spawnUntil, exited, startServer, startDevice, pair, stateDir, waitFor, type TestDevice } from './helpers.js';
import type { SignalServer } from '../../signaling/index.js';

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

test('issue 2: a pin outside --pins is refused with exit 5 and one stderr line', async () => {
  const r = await runCli(ctl('write', '13', '1'));
  assert.equal(r.code, 5);
  assert.equal(r.json.at(-1)!.error, 'pin-not-allowed');
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(dev.gpio.counters(13).writes, 0);
});

test('issue 2: a wrong code exits 3 in under 5 s', async () => {
  // Issue 4: a well-formed code whose room no device holds (wrong secrets: pairing.test.ts).
  const r = await runCli(['control', '--server', server.url, '--code', 'ZZZZ-ZZZ-ZZZ', '--state-dir', stateDir(), '--json', 'read', '20']);
  assert.equal(r.code, 3, r.stderr);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  assert.match(r.stderr, /^pinhole: .+\n$/);
  assert.equal(r.json.at(-1)!.error, 'unknown-room');
});

test('issue 2: an absent device exits 4 within the timeout', async () => {
  // Issue 4: a paired device that went away; its room is kept for the server's grace period.
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
  // Issue 4: so does a paired device's saved server, overridden with --server.
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
  // Issue 4: pairing is reported on both sides, and the device offers a new code at once.
  assert.match(r.stderr, /^pinhole: paired with device "cli-board" \([A-Z2-7]{4}(-[A-Z2-7]{4}){3}\); from now on: pinhole control cli-board COMMAND\n$/);
  await waitFor(() => /^paired with controller ".+" \(.+\); it is now trusted$/m.test(d.out()), 3000, 'the device to report the pairing');
  const next = await waitFor(() => d.out().split('\n').filter((l) => l.startsWith('pairing code: ')).at(1), 3000, 'a second code');
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
  const status = await new Promise<number>((resolve, reject) => http.get(first.http, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject));
  assert.equal(status, 200);
  s.proc.kill('SIGTERM');
  assert.equal(await exited(s.proc), 0);
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
