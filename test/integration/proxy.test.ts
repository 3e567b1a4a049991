// issue 15: behind a reverse proxy the per-address limits count the client
// X-Forwarded-For names, and only when the socket comes from a trusted proxy.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import WebSocket from 'ws';
import { type SignalServer, startSignalServer } from '../../signaling/index.js';
import { CLOSE_TRY_AGAIN } from '../../signaling/router.js';
import { RawClient } from './helpers.js';

/** The close code of a socket the server refuses at once (no hello), or 'open' if it greets it. */
function refusedWith(url: string, xff: string): Promise<number | 'open'> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { 'X-Forwarded-For': xff } });
    ws.once('message', () => {
      ws.terminate();
      resolve('open');
    });
    ws.once('close', (code) => resolve(code));
    ws.once('error', reject);
  });
}

describe('issue 15: X-Forwarded-For from trusted proxies (--trust-proxy)', () => {
  const servers: SignalServer[] = [];
  const clients: RawClient[] = [];
  after(async () => {
    for (const c of clients) c.ws.terminate();
    for (const s of servers) await s.close();
  });
  const start = async (trustedProxies: string[]) => {
    const s = await startSignalServer({ host: '127.0.0.1', port: 0, stunPort: null, log: () => undefined, trustedProxies, limits: { maxConnsPerAddr: 1 } });
    servers.push(s);
    return s.url;
  };

  test('from a trusted proxy, each forwarded client has its own per-address cap', async () => {
    const url = await start(['127.0.0.1']);
    clients.push(await RawClient.open(url, { headers: { 'X-Forwarded-For': '192.0.2.1' } }));
    clients.push(await RawClient.open(url, { headers: { 'X-Forwarded-For': '192.0.2.2' } }));
    // The rightmost untrusted hop is the client: what a client wrote further left does not count.
    assert.equal(await refusedWith(url, '198.51.100.7, 192.0.2.1'), CLOSE_TRY_AGAIN);
    // A trusted hop is passed over.
    assert.equal(await refusedWith(url, '192.0.2.2, 127.0.0.1'), CLOSE_TRY_AGAIN);
    // A hop that is no address: the proxy's own address counts, and it holds a connection already.
    clients.push(await RawClient.open(url));
    assert.equal(await refusedWith(url, 'not-an-address'), CLOSE_TRY_AGAIN);
  });

  test('from anyone else the header is ignored: the socket address counts', async () => {
    const url = await start([]);
    clients.push(await RawClient.open(url, { headers: { 'X-Forwarded-For': '192.0.2.1' } }));
    assert.equal(await refusedWith(url, '192.0.2.2'), CLOSE_TRY_AGAIN);
  });

  test('a trusted proxy that is not an IP address is a usage error', async () => {
    await assert.rejects(startSignalServer({ port: 0, stunPort: null, log: () => undefined, trustedProxies: ['proxy.local'] }), { code: 'usage' });
  });
});
