// The signaling server's Origin check: normalising origins, the configured list, --allow-origin, and the decision per upgrade.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveSignal } from '../../cli/config.js';
import { checkOrigin, normalizeOrigin, parseAllowedOrigins, parseOriginFlag, resolveSignalConfig } from '../../signaling/index.js';
import { codeOf } from './codes.js';

describe('issue 13: normalizeOrigin', () => {
  test('scheme://host[:port], lowercased, default ports dropped, a trailing slash allowed', () => {
    const cases: [string, string][] = [
      ['https://pinhole.example', 'https://pinhole.example'],
      ['HTTPS://Pinhole.EXAMPLE', 'https://pinhole.example'],
      ['https://pinhole.example:443', 'https://pinhole.example'],
      ['http://pinhole.example:80/', 'http://pinhole.example'],
      ['https://pinhole.example:8443', 'https://pinhole.example:8443'],
      ['http://pinhole.example:443', 'http://pinhole.example:443'],
      ['http://127.0.0.1:8080', 'http://127.0.0.1:8080'],
      ['http://[::1]:8080', 'http://[::1]:8080'],
      ['http://[0:0:0:0:0:0:0:1]:8080', 'http://[::1]:8080'],
      ['https://bücher.example', 'https://xn--bcher-kva.example'],
    ];
    for (const [input, want] of cases) assert.equal(normalizeOrigin(input), want, input);
  });

  test('anything that is not an http(s) origin is refused', () => {
    for (const bad of [
      '',
      'null',
      '*',
      'pinhole.example',
      'https://',
      'https://pinhole.example/app',
      'https://pinhole.example?x=1',
      'https://pinhole.example?',
      'https://pinhole.example#x',
      'https://pinhole.example#',
      'https://user@pinhole.example',
      'https://u:p@pinhole.example',
      'ws://pinhole.example',
      'file:///tmp',
      'chrome-extension://abcdef',
      ' https://pinhole.example',
      'https://pinhole.example ',
      'https://a, https://b',
      `https://${'a'.repeat(400)}.example`,
    ])
      assert.equal(normalizeOrigin(bad), undefined, JSON.stringify(bad));
  });
});

describe('issue 13: the allowed-origins setting', () => {
  test("'*' or a list, each normalised, duplicates merged", () => {
    assert.deepEqual(parseAllowedOrigins('*'), { ok: true, value: '*' });
    assert.deepEqual(parseAllowedOrigins(['HTTPS://A.example:443', 'https://a.example', 'http://127.0.0.1:8080/']), {
      ok: true,
      value: ['https://a.example', 'http://127.0.0.1:8080'],
    });
    assert.deepEqual(parseAllowedOrigins([]), { ok: true, value: [] });
    for (const bad of [['*', 'https://a.example'], ['https://a.example/x'], [42], 'https://a.example', null]) assert.equal(parseAllowedOrigins(bad).ok, false);
  });

  test("resolveSignalConfig: default '*', a list normalised, a bad value is usage", () => {
    assert.equal(resolveSignalConfig({}).allowedOrigins, '*');
    assert.deepEqual(resolveSignalConfig({ allowedOrigins: ['https://A.example:443/'] }).allowedOrigins, ['https://a.example']);
    assert.equal(
      codeOf(() => resolveSignalConfig({ allowedOrigins: ['https://a.example/path'] })),
      'usage',
    );
    assert.equal(
      codeOf(() => resolveSignalConfig({ allowedOrigins: 'https://a.example' as never })),
      'usage',
    );
  });

  test('--allow-origin: comma lists and repeats; * alone; bad values are usage', () => {
    assert.equal(resolveSignal({}).allowedOrigins, '*');
    assert.equal(resolveSignal({ 'allow-origin': ['*'] }).allowedOrigins, '*');
    assert.deepEqual(resolveSignal({ 'allow-origin': ['https://a.example, https://B.example:443', 'http://127.0.0.1:8080'] }).allowedOrigins, [
      'https://a.example',
      'https://b.example',
      'http://127.0.0.1:8080',
    ]);
    for (const bad of [[''], ['https://a.example,'], ['*,https://a.example'], ['*', 'https://a.example'], ['a.example'], ['https://a.example/app']])
      assert.equal(
        codeOf(() => resolveSignal({ 'allow-origin': bad })),
        'usage',
        JSON.stringify(bad),
      );
    assert.deepEqual(parseOriginFlag(['https://a.example']), { ok: true, value: ['https://a.example'] });
  });
});

describe('issue 13: checkOrigin', () => {
  const list = ['https://a.example', 'http://127.0.0.1:8080'];
  test('no Origin (a Node client) is always allowed', () => {
    assert.deepEqual(checkOrigin(list, undefined), { allow: true });
    assert.deepEqual(checkOrigin([], undefined), { allow: true });
  });
  test("'*' allows any Origin, malformed ones included", () => {
    for (const o of ['https://evil.example', 'null', 'garbage']) assert.deepEqual(checkOrigin('*', o), { allow: true });
  });
  test('a list allows its origins, compared normalised', () => {
    for (const o of ['https://a.example', 'https://A.example:443', 'http://127.0.0.1:8080']) assert.deepEqual(checkOrigin(list, o), { allow: true }, o);
  });
  test('a list refuses the rest, naming them normalised (never the raw header)', () => {
    assert.deepEqual(checkOrigin(list, 'https://EVIL.example'), { allow: false, origin: 'https://evil.example' });
    assert.deepEqual(checkOrigin(list, 'http://a.example'), { allow: false, origin: 'http://a.example' });
    assert.deepEqual(checkOrigin(list, 'http://127.0.0.1:8081'), { allow: false, origin: 'http://127.0.0.1:8081' });
    assert.deepEqual(checkOrigin(list, 'null'), { allow: false, origin: 'null' });
    assert.deepEqual(checkOrigin(list, '\u001b]0;x\u0007'), { allow: false, origin: 'invalid' });
    assert.deepEqual(checkOrigin(list, 'https://a.example, https://evil.example'), { allow: false, origin: 'invalid' });
    assert.deepEqual(checkOrigin([], 'https://a.example'), { allow: false, origin: 'https://a.example' });
  });
});
