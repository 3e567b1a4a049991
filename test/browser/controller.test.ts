// The browser's controller (platform/browser/controller.ts) in real Chromium against a real
// signaling server and device agent on the sim board: the same Device and connectDevice() as
// Node's, with the page's WebSocket, RTCPeerConnection and IndexedDB. Runs in the browser tier's
// loopback-only namespace.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { startDevice, startServer } from '../integration/helpers.js';
import { type Chromium, launchChromium, servePage, type TestPage, unavailable } from './harness.js';

/** Longest wait for the direct path between Chromium and the device's werift on loopback. */
const DIRECT_WITHIN_MS = 15_000;

const skip = unavailable();

/** Polls the async `ok` every 20 ms until it holds or `ms` pass. */
async function until(ok: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

type Api = Record<string, (...a: never[]) => Promise<unknown>>;
const call = <T>(page: Page, fn: string, ...args: unknown[]): Promise<T> =>
  page.evaluate(([f, a]) => (window as unknown as { pinhole: Api }).pinhole[f as string]!(...(a as never[])), [fn, args] as const) as Promise<T>;

describe('browser controller (Chromium, real server and device)', { skip }, () => {
  let chromium: Chromium;
  let served: TestPage;
  before(async () => {
    chromium = await launchChromium({ persistent: true });
    served = await servePage('test/browser/pages/controller-page.ts');
  });
  after(async () => {
    await served?.close();
    await chromium?.dispose();
  });

  test('issue 13: pairs by code, drives and watches the sim pins, reaches direct, and the server relays nothing afterwards', async () => {
    const server = await startServer();
    const device = await startDevice(server, { pins: [20, 21] });
    const page = await chromium.context.newPage();
    try {
      await page.goto(served.url);
      await call(page, 'open', server.url, true, 'ctl-1');
      assert.ok(['relay', 'direct'].includes(await call<string>(page, 'pair', device.code)));
      const saved = await call<{ name: string }[]>(page, 'devices');
      assert.deepEqual(
        saved.map((d) => d.name),
        ['test-board'],
      );
      await call(page, 'write', 20, 1);
      assert.equal(device.gpio.read(20), 1);
      await call(page, 'mode', 21, 'in');
      assert.equal(await call(page, 'watch', 21), 0);
      device.gpio.drive(21, 1);
      await until(
        async () => (await call<{ pin: number; value: number }[]>(page, 'changes')).some((c) => c.pin === 21 && c.value === 1),
        5_000,
        'the edge in the page',
      );
      assert.equal(await call(page, 'whenDirect', DIRECT_WITHIN_MS), true);
      const relayed = server.stats().relayed;
      for (let i = 0; i < 10; i++) await call(page, 'write', 20, (i % 2) as 0 | 1);
      assert.equal(device.gpio.read(20), 1);
      assert.equal(server.stats().relayed, relayed, 'frames went over the relay after the direct path opened');
      const info = await call<{ controllers: number; name: string }>(page, 'info');
      assert.equal(info.name, 'test-board');
    } finally {
      await call(page, 'close').catch(() => undefined);
      await page.close();
      await device.agent.stop();
      await server.close();
    }
  });

  test('issue 13: with WebRTC off the page works over the relay; a wrong code is refused and spent', async () => {
    const server = await startServer();
    const device = await startDevice(server, { pins: [20] });
    const page = await chromium.context.newPage();
    try {
      await page.goto(served.url);
      await call(page, 'open', server.url, false, 'ctl-2');
      const code = device.code!;
      // Same room, another secret: the PAKE fails and the device gives the code up.
      const wrong = `${code.slice(0, -1)}${code.endsWith('2') ? '3' : '2'}`;
      assert.equal(await call(page, 'tryPair', wrong), 'wrong-code');
      assert.notEqual(await call(page, 'tryPair', code), 'ok');
      const next = await device.nextCode(code);
      assert.equal(await call(page, 'pair', next), 'relay');
      await call(page, 'write', 20, 1);
      assert.equal(device.gpio.read(20), 1);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await call(page, 'path'), 'relay');
    } finally {
      await call(page, 'close').catch(() => undefined);
      await page.close();
      await device.agent.stop();
      await server.close();
    }
  });
});
