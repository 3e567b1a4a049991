// The CLI contract on loopback: real signaling server, real device agent, real controller processes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { runCli, spawnUntil, exited, startServer, startDevice } from './helpers.js';
import type { SignalServer } from '../../signaling/index.js';

let server: SignalServer;
let dev: Awaited<ReturnType<typeof startDevice>>;

before(async () => {
  server = await startServer();
  dev = await startDevice(server, { pins: [5, 7, 20, 21] });
});
after(async () => {
  await dev.agent.stop();
  await server.close();
});

const ctl = (...args: string[]) => ['control', '--server', server.url, '--code', dev.code, '--json', ...args];

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
  const r = await runCli(['control', '--server', server.url, '--code', 'ZZZZ-ZZZZ-ZZZZ', 'read', '20']);
  assert.equal(r.code, 3, r.stderr);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  assert.match(r.stderr, /^pinhole: .+\n$/);
});

test('issue 2: an absent device exits 4 within the timeout', async () => {
  const gone = await startDevice(server, { code: 'GONE-AWAY-22' });
  await gone.agent.stop();
  const r = await runCli(['control', '--server', server.url, '--code', 'gone-away-22', '--timeout', '1500', 'read', '20']);
  assert.equal(r.code, 4, r.stderr);
  assert.ok(r.ms < 1500 + 2000, `took ${r.ms} ms`);
});

test('issue 2: an unreachable server exits 4', async () => {
  const r = await runCli(['control', '--server', 'ws://127.0.0.1:1', '--code', 'ABCD-EFGH', '--timeout', '1000', 'read', '20']);
  assert.equal(r.code, 4, r.stderr);
});

test('issue 2: usage errors exit 2 with a one-line reason', async () => {
  for (const args of [
    ['control', '--server', server.url, '--code', dev.code, 'write', '20'],
    ['control', '--server', server.url, '--code', dev.code, 'write', '20', '7'],
    ['control', '--server', server.url, '--code', dev.code, 'fly'],
    ['control', '--code', dev.code, 'read', '1'],
    ['control', '--server', server.url, '--code', dev.code, 'read', '1', '--times', '3'],
    ['device', '--server', server.url, '--gpio', 'arduino'],
    ['nonsense'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, args.join(' '));
  }
});

test('issue 2: --help helps', async () => {
  for (const args of [['--help'], ['control', '--help'], ['device', '--help'], ['signal', '--help'], ['demo', '--help']]) {
    const r = await runCli(args);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /pinhole/);
  }
});

test('issue 2: device CLI prints its code, serves a controller, and exits 0 on SIGTERM', async () => {
  const d = await spawnUntil(['device', '--server', server.url, '--name', 'cli-board'], /^pairing code: /);
  const code = d.line.replace('pairing code: ', '').trim();
  assert.match(code, /^[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}$/);
  const r = await runCli(['control', '--server', server.url, '--code', code.toLowerCase().replaceAll('-', ''), '--json', 'info']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.at(-1)!.name, 'cli-board');
  d.proc.kill('SIGTERM');
  assert.equal(await exited(d.proc), 0);
});

test('issue 2: device --json prints the code as a JSON event', async () => {
  const d = await spawnUntil(['device', '--server', server.url, '--json'], /"event":"code"/);
  assert.match(String(JSON.parse(d.line).code), /^[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}$/);
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
