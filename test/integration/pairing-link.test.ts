// `pinhole device` prints a pairing link (the controller page with the code in its fragment) and its QR code; real server, real processes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadQrRenderer } from '../../cli/page-url.js';
import type { SignalServer } from '../../signaling/index.js';
import { exited, runCli, spawnUntil, startServer, stateDir, waitFor } from './helpers.js';

let server: SignalServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

/** The code in a link's fragment, as the page reads it. */
const codeIn = (link: string): string | null => new URLSearchParams(new URL(link).hash.slice(1)).get('pair');

test('issue 13: the device prints `pairing link: PAGE#pair=CODE` and its QR after each code; the link carries the code that pairs', async () => {
  const page = `http://127.0.0.1:${server.port}/`;
  const d = await spawnUntil(['device', '--server', server.url, '--state-dir', stateDir('device'), '--name', 'link-board'], /^pairing link: /);
  const lines = d.out().split('\n');
  const at = lines.findIndex((l) => l.startsWith('pairing code: '));
  const code = lines[at]!.slice('pairing code: '.length);
  assert.equal(lines[at + 1], `pairing link: ${page}#pair=${code}`);
  // Not a terminal: the QR in plain characters, right after the link.
  const qr = (await loadQrRenderer())(`${page}#pair=${code}`, false);
  await waitFor(() => d.out().includes(`pairing link: ${page}#pair=${code}\n${qr}\n`), 3000, 'the QR code after the link');
  assert.ok(!d.out().includes('\u001b'), 'no escape sequences off a terminal');

  // What a phone that scanned it would type: the fragment's code pairs.
  const r = await runCli(['control', '--server', server.url, '--code', codeIn(`${page}#pair=${code}`)!, '--state-dir', stateDir(), '--json', 'info']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.at(-1)!.name, 'link-board');
  // The next code gets its own link.
  const next = await waitFor(
    () =>
      d
        .out()
        .split('\n')
        .filter((l) => l.startsWith('pairing link: '))
        .at(1),
    5000,
    'a second link',
  );
  assert.notEqual(codeIn(next.slice('pairing link: '.length)), code);
  d.proc.kill('SIGTERM');
  assert.equal(await exited(d.proc), 0);
});

test('issue 13: --no-qr prints the link only; --json carries the link in the code event; --page-url names the page (and the server when it is elsewhere)', async () => {
  const noQr = await spawnUntil(['device', '--server', server.url, '--state-dir', stateDir('device'), '--no-qr'], /^device ".*" \(.+\) is online/);
  const lines = noQr.out().split('\n');
  const at = lines.findIndex((l) => l.startsWith('pairing link: '));
  assert.ok(at > 0 && lines[at - 1]!.startsWith('pairing code: '));
  assert.match(lines[at + 1]!, /^device /, 'nothing between the link and the online line');
  noQr.proc.kill('SIGTERM');
  assert.equal(await exited(noQr.proc), 0);

  const json = await spawnUntil(['device', '--server', server.url, '--state-dir', stateDir('device'), '--json'], /"event":"code"/);
  const e = JSON.parse(json.line) as { event: string; code: string; link: string };
  assert.equal(e.link, `http://127.0.0.1:${server.port}/#pair=${e.code}`);
  assert.equal(json.out().split('\n').filter(Boolean).length, 1, 'one JSON line, no QR');
  json.proc.kill('SIGTERM');
  assert.equal(await exited(json.proc), 0);

  const elsewhere = await spawnUntil(
    ['device', '--server', server.url, '--state-dir', stateDir('device'), '--no-qr', '--page-url', 'http://127.0.0.1:9/app/'],
    /^pairing link: /,
  );
  const link = new URL(elsewhere.line.slice('pairing link: '.length));
  assert.equal(`${link.origin}${link.pathname}`, 'http://127.0.0.1:9/app/');
  const params = new URLSearchParams(link.hash.slice(1));
  assert.equal(params.get('server'), server.url);
  assert.match(params.get('pair') ?? '', /^[2-9A-Z]{4}-[2-9A-Z]{3}-[2-9A-Z]{3}$/);
  elsewhere.proc.kill('SIGTERM');
  assert.equal(await exited(elsewhere.proc), 0);
});

test('issue 13: a bad --page-url is a usage error (exit 2, one line), before anything is registered', async () => {
  const rooms = server.stats().rooms;
  for (const bad of ['ftp://p.example/', 'not a url', 'https://p.example/#pair=ABCD-EFG-HJK', 'https://u:p@p.example/']) {
    const r = await runCli(['device', '--server', server.url, '--state-dir', stateDir('device'), '--page-url', bad]);
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, bad);
  }
  const r = await runCli(['device', '--controllers', '--state-dir', stateDir('device'), '--page-url', 'https://p.example/']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(server.stats().rooms, rooms);
});

test('issue 13: demo --json carries the link in its code event', async () => {
  const r = await runCli(['demo', '--json', '--times', '2', '--interval', '50', '--no-direct']);
  assert.equal(r.code, 0, r.stderr);
  const e = r.json.find((j) => j.event === 'code') as { code: string; link: string };
  assert.match(e.link, /^http:\/\/127\.0\.0\.1:\d+\/#pair=/);
  assert.equal(codeIn(e.link), e.code);
});
