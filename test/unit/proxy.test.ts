// issue 15: the client address behind trusted reverse proxies (signaling/proxy.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clientAddress, isTrustedProxy, trustedProxySet } from '../../signaling/proxy.js';

describe('issue 15: X-Forwarded-For', () => {
  const trusted = trustedProxySet(['127.0.0.1', '10.0.0.2', '::1']);

  test('only a trusted peer is believed', () => {
    assert.equal(clientAddress('203.0.113.5', '192.0.2.1', trusted), '203.0.113.5');
    assert.equal(clientAddress('127.0.0.1', '192.0.2.1', trusted), '192.0.2.1');
    assert.equal(clientAddress('::ffff:127.0.0.1', '192.0.2.1', trusted), '192.0.2.1');
    assert.equal(clientAddress('::1', '2001:db8::7', trusted), '2001:db8::7');
    assert.equal(clientAddress('127.0.0.1', '192.0.2.1', new Set()), '127.0.0.1');
  });

  test('the rightmost untrusted hop, over several headers and proxies', () => {
    assert.equal(clientAddress('127.0.0.1', '198.51.100.1, 192.0.2.1', trusted), '192.0.2.1');
    assert.equal(clientAddress('127.0.0.1', '192.0.2.1, 10.0.0.2', trusted), '192.0.2.1');
    assert.equal(clientAddress('127.0.0.1', ['198.51.100.1', '192.0.2.1 , 10.0.0.2'], trusted), '192.0.2.1');
  });

  test('no header, only trusted hops, or a hop that is no address', () => {
    assert.equal(clientAddress('127.0.0.1', undefined, trusted), '127.0.0.1');
    assert.equal(clientAddress('127.0.0.1', '10.0.0.2', trusted), '10.0.0.2');
    assert.equal(clientAddress('127.0.0.1', 'unknown', trusted), '127.0.0.1');
    assert.equal(clientAddress('127.0.0.1', '192.0.2.1, garbage, 10.0.0.2', trusted), '10.0.0.2');
    assert.equal(clientAddress('127.0.0.1', '', trusted), '127.0.0.1');
  });

  test('the list must hold IP addresses', () => {
    assert.ok(isTrustedProxy('10.0.0.2', trusted));
    assert.ok(!isTrustedProxy('10.0.0.3', trusted));
    for (const bad of ['proxy.local', '10.0.0.0/8', '']) assert.throws(() => trustedProxySet([bad]), { code: 'usage' });
  });
});
