// The controller page as the signaling server and `pinhole page` serve it: the built files, their
// CSP and SRI, and the bundle hash that `pinhole --version` prints (real server, real HTTP).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PAGE_DIR, type PageManifest } from '../../signaling/page.js';
import { runCli, spawnUntil, startServer, stateDir } from './helpers.js';

const servers: { close(): Promise<void> }[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

const manifest = (): PageManifest => JSON.parse(readFileSync(join(PAGE_DIR, 'manifest.json'), 'utf8')) as PageManifest;
const httpOf = (ws: string): string => ws.replace(/^ws:/, 'http:').replace(/\/?$/, '/');
const sri = (b: Buffer): string => `sha384-${createHash('sha384').update(b).digest('base64')}`;

test('issue 13: the server serves the page at / with its CSP, and index.html pins each asset with SRI', async () => {
  const s = await startServer();
  servers.push(s);
  const base = httpOf(s.url);
  const index = await fetch(base);
  assert.equal(index.status, 200);
  const csp = index.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(index.headers.get('referrer-policy'), 'no-referrer');
  const html = await index.text();
  const m = manifest();
  const assets = [...html.matchAll(/(?:src|href)="(app\.[0-9a-f]+\.(?:js|css))" integrity="([^"]+)"/g)];
  assert.equal(assets.length, 2, 'the script and the style sheet, each with integrity');
  for (const [, file, integrity] of assets) {
    const r = await fetch(base + file);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('cache-control') ?? '', /immutable/);
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(integrity, sri(body), `${file}: its SRI is the served bytes'`);
    assert.ok(m.files.includes(file!));
  }
  const js = assets.find((a) => a[1]!.endsWith('.js'))![1]!;
  assert.equal(
    createHash('sha256')
      .update(Buffer.from(await (await fetch(base + js)).arrayBuffer()))
      .digest('hex'),
    m.hash,
  );
  // Nothing else is served: no directory listing, no source, no manifest of the build dir's other files.
  for (const p of ['app.js', 'build.js', 'manifest.json', '../package.json', 'index.html/']) assert.equal((await fetch(base + p)).status, 404, p);
  assert.equal((await fetch(base, { method: 'POST' })).status, 405);
  assert.equal((await fetch(`${base}healthz`)).status, 200, 'the health check is still there');
});

test('issue 13: page: false (pinhole signal --no-page) serves no page', async () => {
  const s = await startServer(undefined, { page: false });
  servers.push(s);
  assert.equal((await fetch(httpOf(s.url))).status, 404);
  const p = await spawnUntil(['signal', '--host', '127.0.0.1', '--port', '0', '--stun-port', '0', '--no-page'], /"event":"listening"/);
  try {
    const ws = /"ws":"([^"]+)"/.exec(p.out())![1]!;
    assert.equal((await fetch(httpOf(ws))).status, 404);
  } finally {
    p.proc.kill('SIGTERM');
  }
});

test('issue 13: pinhole page --out writes the built files; --version prints the bundle hash', async () => {
  const dir = stateDir('page-out');
  const r = await runCli(['page', '--out', dir]);
  assert.equal(r.code, 0, r.stderr);
  const m = manifest();
  for (const f of [...m.files, 'manifest.json']) assert.deepEqual(readFileSync(join(dir, f)), readFileSync(join(PAGE_DIR, f)), f);
  const v = await runCli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, new RegExp(`^page ${m.hash} `, 'm'));
  const bad = await runCli(['page']);
  assert.equal(bad.code, 2);
  const both = await runCli(['page', '--out', dir, '--serve']);
  assert.equal(both.code, 2);
});

test('issue 13: pinhole page --serve serves the same page on loopback', async () => {
  const p = await spawnUntil(['page', '--serve', '--port', '0'], /serving the page at (\S+)/);
  try {
    const url = /serving the page at (\S+)/.exec(p.out())![1]!;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const r = await fetch(url);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(await r.text(), readFileSync(join(PAGE_DIR, 'index.html'), 'utf8'));
  } finally {
    p.proc.kill('SIGTERM');
  }
});
