// The device's pairing link: the page URL from --server or --page-url, the link, its QR code, and how the CLI prints them.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import QRCode from 'qrcode';
import { type Flags, resolveDevice } from '../../cli/config.js';
import { deviceEventPrinter } from '../../cli/main.js';
import { defaultPageUrl, insecurePageProblem, loadQrRenderer, pairingLink, resolvePageUrl } from '../../cli/page-url.js';
import { FULL_RIGHTS } from '../../protocol/index.js';
import { codeOf } from './codes.js';

const CODE = 'K7QM-X3P-D9H';

describe('issue 13: the page URL derived from --server', () => {
  test('wss -> https, ws -> http; host and port kept, path and query dropped', () => {
    const cases: [string, string][] = [
      ['wss://pinhole.example', 'https://pinhole.example/'],
      ['wss://pinhole.example/', 'https://pinhole.example/'],
      ['wss://pinhole.example:8443/signal?x=1', 'https://pinhole.example:8443/'],
      ['ws://127.0.0.1:8080', 'http://127.0.0.1:8080/'],
      ['ws://Board.Example:8080/a/b', 'http://board.example:8080/'],
      ['ws://[::1]:8080', 'http://[::1]:8080/'],
    ];
    for (const [server, page] of cases) assert.equal(defaultPageUrl(server), page, server);
  });

  test("a scheme's default port stays dropped, another scheme's default is kept", () => {
    assert.equal(defaultPageUrl('wss://h:443/'), 'https://h/');
    assert.equal(defaultPageUrl('ws://h:80/'), 'http://h/');
    assert.equal(defaultPageUrl('ws://h:443/'), 'http://h:443/');
    assert.equal(defaultPageUrl('wss://h:80/'), 'https://h:80/');
  });

  test('resolvePageUrl: no flag -> the default; a flag is normalised', () => {
    assert.equal(resolvePageUrl(undefined, 'wss://s.example/x'), 'https://s.example/');
    assert.equal(resolvePageUrl('HTTPS://Static.Example', 'wss://s.example'), 'https://static.example/');
    assert.equal(resolvePageUrl('http://127.0.0.1:8080/app/', 'wss://s.example'), 'http://127.0.0.1:8080/app/');
    assert.equal(resolvePageUrl('https://p.example/#server=wss://s.example', 'wss://s.example'), 'https://p.example/#server=wss://s.example');
  });

  test('a bad --page-url is a usage error', () => {
    for (const bad of [
      '',
      'not a url',
      'ftp://p.example/',
      'javascript:alert(1)',
      'file:///tmp/index.html',
      'ws://p.example/',
      'https://u:pw@p.example/',
      'https://p.example/#pair=X',
    ])
      assert.equal(
        codeOf(() => resolvePageUrl(bad, 'ws://127.0.0.1:1')),
        'usage',
        JSON.stringify(bad),
      );
  });

  test('through resolveDevice: --page-url is read, checked, and refused with the trust-list actions', () => {
    const dev = (f: Flags) => resolveDevice({ 'state-dir': '/nonexistent/pinhole-test', ...f }, {});
    assert.equal(dev({ server: 'wss://s.example:9000/' }).pageUrl, 'https://s.example:9000/');
    assert.equal(dev({ server: 'wss://s.example', 'page-url': 'https://p.example/' }).pageUrl, 'https://p.example/');
    assert.equal(dev({ server: 'wss://s.example' }).qr, true);
    assert.equal(dev({ server: 'wss://s.example', 'no-qr': true }).qr, false);
    assert.equal(
      codeOf(() => dev({ server: 'wss://s.example', 'page-url': 'gopher://p' })),
      'usage',
    );
    assert.equal(
      codeOf(() => dev({ controllers: true, 'page-url': 'https://p.example/' })),
      'usage',
    );
    assert.equal(dev({ controllers: true }).pageUrl, '');
  });
});

describe('issue 13: the pairing link', () => {
  test('the page on the server itself: PAGE#pair=CODE', () => {
    assert.equal(pairingLink('http://127.0.0.1:8080/', 'ws://127.0.0.1:8080', CODE), `http://127.0.0.1:8080/#pair=${CODE}`);
    assert.equal(pairingLink('https://s.example/', 'wss://s.example/', CODE), `https://s.example/#pair=${CODE}`);
  });

  test('a page on another origin, or a server path the page would not guess, gets server= too', () => {
    assert.equal(pairingLink('https://p.example/', 'wss://s.example', CODE), `https://p.example/#server=wss://s.example&pair=${CODE}`);
    assert.equal(pairingLink('https://s.example/', 'wss://s.example/pinhole', CODE), `https://s.example/#server=wss://s.example/pinhole&pair=${CODE}`);
    // The page reads its fragment as URLSearchParams: the server URL comes back whole.
    const link = new URL(pairingLink('https://s.example/', 'wss://s.example:8443/a?b=c&d', CODE));
    const params = new URLSearchParams(link.hash.slice(1));
    assert.equal(params.get('server'), 'wss://s.example:8443/a?b=c&d');
    assert.equal(params.get('pair'), CODE);
  });

  test("a fragment of the page's own is kept, and a server= in it is not overridden", () => {
    assert.equal(
      pairingLink('http://127.0.0.1:8080/#server=wss://s.example', 'wss://other.example', CODE),
      `http://127.0.0.1:8080/#server=wss://s.example&pair=${CODE}`,
    );
  });

  test('the code is only ever in the fragment', () => {
    for (const [page, server] of [
      ['https://s.example/', 'wss://s.example'],
      ['https://p.example/app?x=1', 'wss://s.example'],
    ] as const) {
      const u = new URL(pairingLink(page, server, CODE));
      assert.ok(!`${u.origin}${u.pathname}${u.search}`.includes(CODE));
      assert.equal(new URLSearchParams(u.hash.slice(1)).get('pair'), CODE);
    }
  });

  test('plain http:// off loopback is flagged (not a secure context); https and loopback are not', () => {
    for (const ok of [
      'https://s.example/',
      'http://127.0.0.1:8080/',
      'http://127.1.2.3/',
      'http://localhost:8080/',
      'http://board.localhost/',
      'http://[::1]:8080/',
    ])
      assert.equal(insecurePageProblem(ok), undefined, ok);
    for (const bad of ['http://192.168.1.4:8080/', 'http://s.example/', 'http://0.0.0.0:8080/']) assert.equal(typeof insecurePageProblem(bad), 'string', bad);
  });
});

describe('issue 13: the QR code', () => {
  test('is the link, in half blocks: plain characters, or black on white for a terminal', async () => {
    const render = await loadQrRenderer();
    const link = `http://127.0.0.1:8080/#pair=${CODE}`;
    const size = QRCode.create(link, { errorCorrectionLevel: 'L' }).modules.size;
    const plain = render(link, false);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: no escape may be in the plain form
    assert.doesNotMatch(plain, /\x1b/);
    const rows = plain.split('\n');
    // Two modules a line, a quiet zone of two modules each side.
    assert.equal(rows.length, Math.ceil(size / 2) + 2);
    for (const r of rows) assert.equal([...r].length, size + 4);
    assert.ok(rows.length <= 25, `small: ${rows.length} lines`);
    // The modules it draws are the link's, top-left finder pattern first: a full dark row.
    assert.equal(rows[1]!.slice(2, 9), '█▀▀▀▀▀█');
    const ansi = render(link, true);
    assert.ok(ansi.startsWith('\x1b[47m\x1b[30m'), 'black on white');
    assert.ok(ansi.endsWith('\x1b[0m'), 'resets the colours at the end');
    assert.ok(ansi.split('\n').length <= 25);
  });
});

describe('issue 13: how the device prints the link', () => {
  const base = { maxControllers: 8, pairRights: FULL_RIGHTS, server: 'ws://127.0.0.1:8080', pageUrl: 'http://127.0.0.1:8080/' };
  const capture = () => {
    const out: string[] = [];
    return { out, io: { stdout: (s: string) => out.push(s), stderr: (s: string) => out.push(`ERR ${s}`) } };
  };

  test('`pairing code:` stays as it was, then `pairing link:`, then the QR', async () => {
    const { out, io } = capture();
    const qr = await loadQrRenderer();
    deviceEventPrinter(io, { ...base, json: false, qr })({ event: 'code', code: CODE });
    assert.equal(out[0], `pairing code: ${CODE}`);
    assert.equal(out[1], `pairing link: http://127.0.0.1:8080/#pair=${CODE}`);
    assert.equal(out[2], qr(`http://127.0.0.1:8080/#pair=${CODE}`, false));
    assert.equal(out.length, 3);
  });

  test('--no-qr: the link and no QR; --json: the link in the code event, nothing else', () => {
    const a = capture();
    deviceEventPrinter(a.io, { ...base, json: false })({ event: 'code', code: CODE });
    assert.deepEqual(a.out, [`pairing code: ${CODE}`, `pairing link: http://127.0.0.1:8080/#pair=${CODE}`]);
    const b = capture();
    const print = deviceEventPrinter(b.io, { ...base, json: true });
    print({ event: 'code', code: CODE });
    print({ event: 'disconnected', retryMs: 500 });
    assert.deepEqual(
      b.out.map((l) => JSON.parse(l)),
      [
        { event: 'code', code: CODE, link: `http://127.0.0.1:8080/#pair=${CODE}` },
        { event: 'disconnected', retryMs: 500 },
      ],
    );
  });
});
