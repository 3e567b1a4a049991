// The controller page (page/, as the signaling server serves it at /) in real Chromium, driven
// through its accessible names as a person or a screen reader would, against a real server and a
// device agent on the sim board. Runs in the browser tier's loopback-only namespace.

import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import type { SignalServer } from '../../signaling/index.js';
import { pair as pairCli, runCli, startDevice, startServer, stateDir, type TestDevice } from '../integration/helpers.js';
import { type Chromium, launchChromium, unavailable } from './harness.js';

/** Longest wait for pairing or reconnecting through the page on loopback. */
const CONNECTS_WITHIN_MS = 15_000;
/** Longest wait for the direct path (Chromium ↔ werift) on loopback. */
const DIRECT_WITHIN_MS = 15_000;
/** Longest wait for the DOM to show what a command or an edge did. */
const SHOWS_WITHIN_MS = 5_000;

const skip = unavailable();
const httpOf = (ws: string): string => `${ws.replace(/^ws:/, 'http:').replace(/\/$/, '')}/`;

/** Polls `ok` every 20 ms until it holds or `ms` pass. */
async function until(ok: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pathOf = async (page: Page): Promise<string> => (await page.getByLabel('path', { exact: true }).textContent()) ?? '';
const stateOf = async (page: Page): Promise<string> => (await page.locator('#state').textContent()) ?? '';
const errorOf = async (page: Page): Promise<string> => (await page.getByRole('alert').textContent()) ?? '';

async function waitPath(page: Page, ok: (p: string) => boolean, ms = CONNECTS_WITHIN_MS): Promise<string> {
  let last = '';
  await until(
    async () => {
      last = await pathOf(page);
      return ok(last);
    },
    ms,
    'the path indicator',
  );
  return last;
}

async function pairByCode(page: Page, base: string, code: string): Promise<void> {
  await page.goto(base);
  await page.getByLabel('Pairing code').fill(code);
  await page.getByRole('button', { name: 'Pair' }).click();
}

/** Makes pin `pin` an output (the page's mode control), so that its switch drives it. */
async function asOutput(page: Page, pin: number): Promise<void> {
  await page.getByLabel(`pin ${pin} mode`).selectOption('out');
}

/**
 * A TCP forwarder in front of the server that keeps the head (request line and headers) of every
 * HTTP request the browser makes, WebSocket upgrades included.
 */
async function recordingProxy(target: SignalServer): Promise<{ url: string; heads: string[]; close(): Promise<void> }> {
  const port = Number(new URL(target.url).port);
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(port, '127.0.0.1');
    sockets.add(upstream);
    let head = '';
    let inHead = true;
    client.on('data', (d: Buffer) => {
      // Keep-alive: a new request starts after the last head's body; pages here send no bodies.
      let text = d.toString('latin1');
      while (text.length) {
        if (inHead) {
          const end = text.indexOf('\r\n\r\n');
          if (end < 0) {
            head += text;
            break;
          }
          head += text.slice(0, end);
          heads.push(head);
          head = '';
          if (/^GET [^\r]*\r\n(?:[^\r]*\r\n)*?upgrade: websocket/im.test(heads.at(-1)!)) inHead = false; // WebSocket frames follow
          text = text.slice(end + 4);
        } else break;
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => client.write(d));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port: p } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${p}/`,
    heads,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('the controller page (Chromium, real server and device)', { skip }, () => {
  let chromium: Chromium;
  let server: SignalServer;
  let base: string;
  before(async () => {
    chromium = await launchChromium({ persistent: true });
    server = await startServer();
    base = httpOf(server.url);
  });
  after(async () => {
    await chromium?.dispose();
    await server?.close();
  });

  /** A fresh browser context's page (its own IndexedDB) and a fresh device. */
  async function fresh(opts: { pins?: number[]; context?: BrowserContext } = {}): Promise<{ page: Page; device: TestDevice; done(): Promise<void> }> {
    const device = await startDevice(server, { pins: opts.pins ?? [20, 21] });
    const page = await (opts.context ?? chromium.context).newPage();
    return {
      page,
      device,
      done: async () => {
        await page.close();
        await device.agent.stop();
      },
    };
  }

  test('issue 13: pair by typed code; write, read and watch, checked against the sim pins; direct, and the server relays nothing afterwards', async () => {
    const { page, device, done } = await fresh();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Trusted Type|integrity/i.test(m.text())) violations.push(m.text());
    });
    page.on('pageerror', (e) => violations.push(e.message));
    try {
      await pairByCode(page, base, device.code!);
      assert.match(await waitPath(page, (p) => p === 'relay' || p === 'direct'), /^(relay|direct)$/);
      await asOutput(page, 20);
      const sw = page.getByRole('switch', { name: 'pin 20' });
      await sw.click();
      await until(() => device.gpio.read(20) === 1, SHOWS_WITHIN_MS, 'pin 20 high');
      await until(async () => (await sw.getAttribute('aria-checked')) === 'true', SHOWS_WITHIN_MS, 'the switch on');
      await sw.click();
      await until(() => device.gpio.read(20) === 0, SHOWS_WITHIN_MS, 'pin 20 low');
      await page.getByLabel('pin 21 mode').selectOption('in');
      await until(() => device.gpio.mode(21) === 'in', SHOWS_WITHIN_MS, 'pin 21 an input');
      device.gpio.drive(21, 1);
      await until(async () => (await page.getByLabel('pin 21 level').textContent()) === '1', SHOWS_WITHIN_MS, 'the edge on the page');
      device.gpio.drive(21, 0);
      await until(async () => (await page.getByLabel('pin 21 level').textContent()) === '0', SHOWS_WITHIN_MS, 'the falling edge on the page');
      assert.equal(await waitPath(page, (p) => p === 'direct', DIRECT_WITHIN_MS), 'direct');
      assert.equal(await stateOf(page), 'direct');
      const relayed = server.stats().relayed;
      for (let i = 0; i < 6; i++) await sw.click();
      await until(() => device.gpio.counters(20).writes >= 8, SHOWS_WITHIN_MS, 'the writes on the device');
      assert.equal(server.stats().relayed, relayed, 'a frame went over the relay after the direct path opened');
      assert.deepEqual(violations, [], 'the page runs under its CSP (Trusted Types included) with no violation or error');
    } finally {
      await done();
    }
  });

  test('issue 13: pair by link; the fragment never reaches the server, and leaves the address bar', async () => {
    const proxy = await recordingProxy(server);
    const { page, device, done } = await fresh();
    try {
      const code = device.code!;
      // The page's own server setting (its origin is the proxy's), and the code, both in the fragment.
      await page.goto(`${proxy.url}#server=${encodeURIComponent(server.url)}&pair=${code}`);
      await waitPath(page, (p) => p === 'relay' || p === 'direct');
      assert.equal(new URL(page.url()).hash, '', 'the fragment is gone from the address bar');
      const secret = code.replace(/-/g, '').slice(4);
      assert.ok(proxy.heads.length >= 3, 'the proxy saw the page and its assets');
      for (const h of proxy.heads) {
        assert.doesNotMatch(h, /pair=|#/i, 'no request carries the fragment');
        assert.ok(!h.toUpperCase().replace(/-/g, '').includes(secret), 'no request carries the code');
      }
      assert.ok(device.events.some((e) => e.event === 'controller'));
    } finally {
      await done();
      await proxy.close();
    }
  });

  test('issue 13: a reload keeps the pairing; the device restarting is picked up without a reload; removing forgets it', async () => {
    const { page, device, done } = await fresh();
    try {
      await pairByCode(page, base, device.code!);
      await waitPath(page, (p) => p === 'relay' || p === 'direct');
      await page.reload();
      // Still paired: the page reconnects to the device it used last, by name.
      await waitPath(page, (p) => p === 'relay' || p === 'direct');
      await asOutput(page, 20);
      await page.getByRole('switch', { name: 'pin 20' }).click();
      await until(() => device.gpio.read(20) === 1, SHOWS_WITHIN_MS, 'pin 20 high after the reload');

      await device.agent.stop();
      await until(async () => ['reconnecting', 'offline'].includes(await stateOf(page)), CONNECTS_WITHIN_MS, 'the page seeing the device go');
      const again = await startDevice(server, { pins: [20, 21], stateDir: device.stateDir });
      try {
        await waitPath(page, (p) => p === 'relay' || p === 'direct');
        await asOutput(page, 21);
        await page.getByRole('switch', { name: 'pin 21' }).click();
        await until(() => again.gpio.read(21) === 1, SHOWS_WITHIN_MS, 'pin 21 high on the restarted device');
        await page.getByRole('button', { name: 'Disconnect' }).click();
        await page.getByRole('button', { name: 'Remove test-board' }).click();
        await until(async () => (await page.getByRole('button', { name: 'Remove test-board' }).count()) === 0, SHOWS_WITHIN_MS, 'the entry gone');
        await page.reload();
        assert.equal(await page.getByRole('button', { name: 'Connect test-board' }).count(), 0, 'removed for good');
      } finally {
        await again.agent.stop();
      }
    } finally {
      await done();
    }
  });

  test('issue 13: a wrong code is refused in plain words, and the code is spent', async () => {
    const { page, device, done } = await fresh();
    try {
      const code = device.code!;
      const last = code.at(-1)!;
      const wrong = code.slice(0, -1) + (last === '2' ? '3' : '2');
      await pairByCode(page, base, wrong);
      await until(async () => (await errorOf(page)).length > 0, CONNECTS_WITHIN_MS, 'an error');
      assert.match(await errorOf(page), /wrong/i);
      assert.equal(device.events.find((e) => e.event === 'refused')?.code, 'wrong-code');
      const next = await device.nextCode(code);
      assert.notEqual(next, code, 'the device made a new code');
      await page.getByLabel('Pairing code').fill(code);
      await page.getByRole('button', { name: 'Pair' }).click();
      await until(async () => /used|no device/i.test(await errorOf(page)), CONNECTS_WITHIN_MS, 'the spent code refused');
      assert.equal(await pathOf(page), 'none');
    } finally {
      await done();
    }
  });

  test('issue 13: with WebRTC unavailable to the page, everything works over the relay', async () => {
    const other = await launchChromium();
    // A page without RTCPeerConnection (a browser with WebRTC off).
    await other.context.addInitScript(() => {
      Object.defineProperty(window, 'RTCPeerConnection', { value: undefined });
    });
    const { page, device, done } = await fresh({ context: other.context });
    try {
      assert.equal(await page.evaluate(() => typeof RTCPeerConnection), 'undefined');
      await pairByCode(page, base, device.code!);
      assert.equal(await waitPath(page, (p) => p === 'relay'), 'relay');
      await asOutput(page, 20);
      await page.getByRole('switch', { name: 'pin 20' }).click();
      await until(() => device.gpio.read(20) === 1, SHOWS_WITHIN_MS, 'pin 20 high over the relay');
      await new Promise((r) => setTimeout(r, 2_000));
      assert.equal(await pathOf(page), 'relay', 'still on the relay');
    } finally {
      await done();
      await other.dispose();
    }
  });

  test('issue 13: the page and a CLI controller work at once', async () => {
    const { page, device, done } = await fresh();
    try {
      const cli = await pairCli(server, device, { stateDir: stateDir('cli-controller') });
      await pairByCode(page, base, device.code!);
      await waitPath(page, (p) => p === 'relay' || p === 'direct');
      await asOutput(page, 20);
      await until(() => device.gpio.mode(20) === 'out', SHOWS_WITHIN_MS, 'pin 20 an output');
      // The CLI writes pin 20 while the page is connected and watching it; then the page writes it.
      const r = await runCli(['control', cli.device, '--state-dir', cli.stateDir, '--json', 'write', '20', '1']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(device.gpio.read(20), 1);
      const sw = page.getByRole('switch', { name: 'pin 20' });
      await until(async () => (await sw.getAttribute('aria-checked')) === 'true', SHOWS_WITHIN_MS, "the CLI's write on the page");
      await sw.click();
      await until(() => device.gpio.read(20) === 0, SHOWS_WITHIN_MS, "the page's write");
      const info = await runCli(['control', cli.device, '--state-dir', cli.stateDir, '--json', 'info']);
      assert.equal(info.code, 0, info.stderr);
      assert.equal(info.json.at(-1)!.controllers, 2, 'the page and the CLI, both connected');
    } finally {
      await done();
    }
  });
});
