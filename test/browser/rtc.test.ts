// Real Chromium against real werift: platform/browser/rtc.ts's browserDialer opens a data channel
// with platform/node/rtc.ts's DirectPath, the SignalPayloads relayed through this test as the
// sealed relay would carry them; the DTLS certificate and the StateStore live in IndexedDB and
// survive a reload and a browser restart. Runs inside the browser tier's loopback-only namespace.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { DirectPath, type DtlsKeyPair, generateDtlsKeys } from '../../platform/node/rtc.js';
import { parseSdpFingerprint } from '../../protocol/sdp.js';
import { parseSignalPayload, type SignalPayload } from '../../protocol/signaling.js';
import { type Chromium, LOOPBACK, launchChromium, servePage, type TestPage, unavailable } from './harness.js';

/** Longest wait for a data channel between Chromium and werift on loopback (it opens in about a second). */
const OPENS_WITHIN_MS = 15_000;
/** Longest wait for an echo over an open channel. */
const ECHO_WITHIN_MS = 5_000;

const skip = unavailable();
/** The veth of the candidate test, its address, and a gateway that does not exist (Chromium gathers only with a default route). */
const VETH = 'pinhole0';
const VETH_ADDR = '10.213.0.1';
const VETH_GATEWAY = '10.213.0.2';

/** Polls `ok` every 20 ms until it holds or `ms` pass. */
async function waitFor(ok: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What the page and the werift side did during one attempt. */
interface Call {
  page: Page;
  node: DirectPath;
  /** Signals in the order each side sent them. */
  fromPage: SignalPayload[];
  fromNode: SignalPayload[];
  pageFrames: string[];
  nodeFrames: string[];
  pageEvents: string[];
  nodeStates: string[];
  nodeUp: boolean;
  close(): Promise<void>;
}

type PageApi = { pinhole: Record<string, (...a: never[]) => unknown> };

/** Opens the test page and wires it to a werift DirectPath playing `nodeRole`. */
async function call(
  chromium: Chromium,
  served: TestPage,
  nodeRole: 'offerer' | 'answerer',
  dtlsKeys: DtlsKeyPair,
  dbName: string,
  hostAddresses = [LOOPBACK],
): Promise<Call & { browserFp: string }> {
  const page = await chromium.context.newPage();
  const c = {
    page,
    fromPage: [] as SignalPayload[],
    fromNode: [] as SignalPayload[],
    pageFrames: [] as string[],
    nodeFrames: [] as string[],
    pageEvents: [] as string[],
    nodeStates: [] as string[],
    nodeUp: false,
  } as Call;
  let toPage: Promise<unknown> = Promise.resolve();
  const node = new DirectPath(
    nodeRole,
    { iceServers: [], hostAddresses, dtlsKeys },
    (p) => {
      c.fromNode.push(p);
      // in order, as the relay delivers them
      toPage = toPage.then(() => page.evaluate((j) => (window as unknown as PageApi).pinhole.signal!(j as never), JSON.stringify(p))).catch(() => undefined);
    },
    (data, t) => {
      const s = typeof data === 'string' ? data : `<binary ${data.length}>`;
      c.nodeFrames.push(s);
      if (s.startsWith('ping-')) t.send(`echo:${s}`);
    },
  );
  c.node = node;
  node.on('up', () => {
    c.nodeUp = true;
  });
  node.on('state', (s) => c.nodeStates.push(s));
  await page.exposeFunction('pinholeSignal', (json: string) => {
    const p = parseSignalPayload(JSON.parse(json));
    assert.notEqual(typeof p, 'string', `the page sent a malformed signal: ${json}`);
    c.fromPage.push(p as SignalPayload);
    void node.handleSignal(p as SignalPayload);
  });
  await page.exposeFunction('pinholeFrame', (d: string) => void c.pageFrames.push(d));
  await page.exposeFunction('pinholeEvent', (e: string, d: string) => void c.pageEvents.push(d ? `${e}:${d}` : e));
  await page.goto(served.url);
  await page.waitForFunction(() => document.title === 'ready');
  const browserRole = nodeRole === 'answerer' ? 'offerer' : 'answerer';
  const browserFp = await page.evaluate(
    ([r, db]) => (window as unknown as PageApi).pinhole.dial!(r as never, db as never) as Promise<string>,
    [browserRole, dbName],
  );
  if (nodeRole === 'offerer') await node.start();
  c.close = async () => {
    await page.evaluate(() => (window as unknown as PageApi).pinhole.hangUp!()).catch(() => undefined);
    await node.close();
    await page.close().catch(() => undefined);
  };
  return Object.assign(c, { browserFp });
}

/** The kinds of `signals`, in order. */
const kinds = (signals: SignalPayload[]) => signals.map((s) => s.kind);

/**
 * Checks one side's signals follow DirectPath's sequence: description without candidates,
 * candidates, end-of-candidates, no candidate after. `minCandidates`: Chromium gathers no
 * candidate at all in the loopback-only namespace (it never lists lo, and without a default
 * route it finds no address), so there it connects through the peer-reflexive candidate werift
 * learns from its checks; the veth test below has a real one.
 */
function assertSequence(signals: SignalPayload[], description: 'offer' | 'answer', minCandidates = 0): void {
  const k = kinds(signals);
  assert.equal(k[0], description, `first signal: ${k.join(',')}`);
  const d = signals[0] as { sdp: string };
  assert.doesNotMatch(d.sdp, /^a=candidate:/m, 'candidates are withheld from the SDP');
  const eoc = k.indexOf('end-of-candidates');
  assert.ok(eoc >= 1 + minCandidates, `candidates, then end-of-candidates: ${k.join(',')}`);
  assert.equal(k.lastIndexOf('end-of-candidates'), eoc, 'one end-of-candidates');
  assert.ok(
    k.slice(1, eoc).every((x) => x === 'candidate' || x === 'pong'),
    `only candidates before end-of-candidates: ${k.join(',')}`,
  );
  assert.ok(!k.slice(eoc).includes('candidate'), 'no candidate after end-of-candidates');
  for (const s of signals) if (s.kind === 'candidate') assert.match(s.candidate, /^candidate:\S+ \d+ (udp|tcp) /i, 'a real candidate, never the null one');
}

describe('browser: browserDialer against werift, certificate and state in IndexedDB', { skip }, () => {
  let chromium: Chromium;
  let served: TestPage;
  let nodeKeys: DtlsKeyPair;
  let firstFp = '';

  before(async () => {
    served = await servePage('test/browser/pages/rtc-page.ts');
    chromium = await launchChromium({ persistent: true });
    nodeKeys = await generateDtlsKeys();
  });

  after(async () => {
    await chromium?.dispose();
    await served?.close();
  });

  test('a browser offerer opens a data channel with a werift DirectPath answerer; a message echoes each way', async () => {
    const c = await call(chromium, served, 'answerer', nodeKeys, 'rtc-a');
    try {
      await waitFor(() => c.nodeUp && c.pageEvents.includes('up:direct'), OPENS_WITHIN_MS, 'the channel on both sides');
      // the browser spoke DirectPath's sequence: offer, candidates, end-of-candidates, pings, go
      assertSequence(c.fromPage, 'offer');
      const k = kinds(c.fromPage);
      assert.ok(k.includes('go') && k.indexOf('go') > k.indexOf('end-of-candidates'), `go after our end-of-candidates: ${k.join(',')}`);
      assert.equal(k.filter((x) => x === 'ping').length, 3, 'GO_PINGS pings');
      assert.ok(k.indexOf('go') > k.lastIndexOf('ping'), 'go after the pings');
      assertSequence(c.fromNode, 'answer', 1);
      assert.ok(kinds(c.fromNode).filter((x) => x === 'pong').length === 3, 'werift answered every ping');
      // the offer announces the certificate the page would sign
      const offer = c.fromPage[0] as { sdp: string };
      assert.equal(parseSdpFingerprint(offer.sdp), c.browserFp);
      firstFp = c.browserFp;

      await c.page.evaluate(() => (window as unknown as PageApi).pinhole.send!('ping-from-browser' as never));
      await waitFor(() => c.pageFrames.includes('echo:ping-from-browser'), ECHO_WITHIN_MS, 'the echo from werift');
      assert.deepEqual(c.nodeFrames, ['ping-from-browser']);
      assert.deepEqual(c.pageFrames, ['echo:ping-from-browser']);

      c.pageFrames.length = 0;
      c.nodeFrames.length = 0;
      await c.page.evaluate(() => (window as unknown as PageApi).pinhole.send!('hello' as never));
      await waitFor(() => c.nodeFrames.includes('hello'), ECHO_WITHIN_MS, 'hello at werift');
      assert.deepEqual(c.pageFrames, [], 'only ping- frames are echoed');
    } finally {
      await c.close();
    }
  });

  test('werift sends first: a frame from the device echoes back from the browser', async () => {
    const c = await call(chromium, served, 'answerer', nodeKeys, 'rtc-a');
    let nodeTransport: { send(f: string): void } | undefined;
    c.node.on('up', (t) => {
      nodeTransport = t;
    });
    try {
      await waitFor(() => nodeTransport !== undefined && c.pageEvents.includes('up:direct'), OPENS_WITHIN_MS, 'the channel');
      nodeTransport!.send('ping-from-werift');
      await waitFor(() => c.nodeFrames.includes('echo:ping-from-werift'), ECHO_WITHIN_MS, 'the echo from the browser');
      assert.deepEqual(c.pageFrames, ['ping-from-werift']);
      assert.equal(c.browserFp, firstFp, 'the same stored certificate as the first call');
    } finally {
      await c.close();
    }
  });

  test('reverse roles: a werift offerer and a browser answerer open a channel', async () => {
    const c = await call(chromium, served, 'offerer', nodeKeys, 'rtc-a');
    let nodeTransport: { send(f: string): void } | undefined;
    c.node.on('up', (t) => {
      nodeTransport = t;
    });
    try {
      await waitFor(() => nodeTransport !== undefined && c.pageEvents.includes('up:direct'), OPENS_WITHIN_MS, 'the channel');
      assertSequence(c.fromPage, 'answer');
      assert.equal(parseSdpFingerprint((c.fromPage[0] as { sdp: string }).sdp), c.browserFp);
      nodeTransport!.send('ping-reverse');
      await waitFor(() => c.nodeFrames.includes('echo:ping-reverse'), ECHO_WITHIN_MS, 'the echo');
    } finally {
      await c.close();
    }
  });

  test("the browser's own candidates reach werift: a veth address with a default route inside the namespace", {
    skip: process.env.PINHOLE_BROWSER_NETNS !== '1' && 'changes interfaces: only inside the browser tier namespace',
  }, async () => {
    // Only inside our own namespace: a veth pair whose far end has no address, so nothing can leave.
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    ip('link', 'add', VETH, 'type', 'veth', 'peer', 'name', `${VETH}p`);
    let own: Chromium | undefined;
    let c: Awaited<ReturnType<typeof call>> | undefined;
    try {
      ip('addr', 'add', `${VETH_ADDR}/24`, 'dev', VETH);
      ip('link', 'set', VETH, 'up');
      ip('link', 'set', `${VETH}p`, 'up');
      ip('route', 'add', 'default', 'via', VETH_GATEWAY, 'dev', VETH);
      own = await launchChromium(); // a fresh browser sees the interface from its start
      c = await call(own, served, 'answerer', nodeKeys, 'rtc-veth', [VETH_ADDR]);
      await waitFor(() => c!.nodeUp && c!.pageEvents.includes('up:direct'), OPENS_WITHIN_MS, 'the channel over the veth address');
      assertSequence(c.fromPage, 'offer', 1);
      const cands = c.fromPage.filter((p) => p.kind === 'candidate').map((p) => (p as { candidate: string }).candidate);
      assert.ok(
        cands.some((x) => x.split(' ')[4] === VETH_ADDR && / typ host/.test(x)),
        `a host candidate on ${VETH_ADDR}: ${cands.join(' | ')}`,
      );
      const k = kinds(c.fromPage);
      assert.ok(k.indexOf('go') > k.lastIndexOf('candidate'), 'every candidate went before go');
      await c.page.evaluate(() => (window as unknown as PageApi).pinhole.send!('ping-veth' as never));
      await waitFor(() => c!.pageFrames.includes('echo:ping-veth'), ECHO_WITHIN_MS, 'the echo');
    } finally {
      await c?.close();
      await own?.dispose();
      ip('link', 'del', VETH);
    }
  });

  test('certFingerprint is the SDP fingerprint, and the certificate survives a reload and a browser restart', async () => {
    const page = await chromium.context.newPage();
    await page.goto(served.url);
    await page.waitForFunction(() => document.title === 'ready');
    type Cert = { fingerprint: string; sdpFingerprint: string | undefined; expires: number };
    const get = (p: Page) => p.evaluate(() => (window as unknown as PageApi).pinhole.certificate!('rtc-b' as never) as Promise<Cert>);
    const first = await get(page);
    assert.match(first.fingerprint, /^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/);
    assert.equal(first.sdpFingerprint?.toUpperCase(), first.fingerprint);
    assert.equal(parseSdpFingerprint(`a=fingerprint:sha-256 ${first.sdpFingerprint}`), first.fingerprint, 'the format parseSdpFingerprint returns');
    assert.ok(first.expires - Date.now() > 7 * 24 * 3600_000, 'more than the renewal margin left');
    assert.notEqual(first.fingerprint, firstFp, 'another database, another certificate');

    await page.reload();
    await page.waitForFunction(() => document.title === 'ready');
    const reloaded = await get(page);
    assert.deepEqual(reloaded, first, 'the same certificate after a reload');
    await page.close();

    chromium = await chromium.relaunch();
    const again = await chromium.context.newPage();
    await again.goto(served.url);
    await again.waitForFunction(() => document.title === 'ready');
    assert.deepEqual(await get(again), first, 'the same certificate after a browser restart');
    await again.close();
    // and the restored certificate still works for DTLS
    const c = await call(chromium, served, 'answerer', nodeKeys, 'rtc-b');
    try {
      await waitFor(() => c.nodeUp && c.pageEvents.includes('up:direct'), OPENS_WITHIN_MS, 'the channel with the restored certificate');
      assert.equal(c.browserFp, first.fingerprint);
      assert.equal(parseSdpFingerprint((c.fromPage[0] as { sdp: string }).sdp), first.fingerprint);
    } finally {
      await c.close();
    }
  });

  test('IdbStateStore: writes survive a reload; create() writes only once; oversized reads are refused', async () => {
    const page = await chromium.context.newPage();
    await page.goto(served.url);
    await page.waitForFunction(() => document.title === 'ready');
    const api = <T>(p: Page, fn: string, ...args: unknown[]) =>
      p.evaluate(([f, a]) => (window as unknown as PageApi).pinhole[f as string]!(...((a as never[]) ?? [])) as T, [fn, args] as const) as Promise<T>;
    await api(page, 'storeOpen', 'state-c');
    assert.equal(await api(page, 'storeRead', 'identity.json', 4096), null, 'empty at first');
    assert.equal(await api(page, 'storeCreate', 'identity.json', '{"v":1}\n'), true, 'create on an empty name');
    assert.equal(await api(page, 'storeCreate', 'identity.json', '{"v":2}\n'), false, 'create refuses an existing name');
    assert.equal(await api(page, 'storeRead', 'identity.json', 4096), '{"v":1}\n', 'and wrote nothing');
    for (let i = 0; i < 20; i++) await api(page, 'storeWrite', 'devices.json', `v${i}`);
    await api(page, 'storeWrite', 'big', 'x'.repeat(100));
    assert.equal(await api(page, 'storeRead', 'devices.json', 4096), 'v19', 'memory is updated at once');
    assert.equal(await api(page, 'storeFlush'), 'ok');
    assert.equal(await api(page, 'storeWhere', 'devices.json'), 'indexeddb:state-c/devices.json');

    await page.reload();
    await page.waitForFunction(() => document.title === 'ready');
    await api(page, 'storeOpen', 'state-c');
    assert.equal(await api(page, 'storeRead', 'identity.json', 4096), '{"v":1}\n', 'created record after reload');
    assert.equal(await api(page, 'storeRead', 'devices.json', 4096), 'v19', 'the last of twenty ordered writes after reload');
    assert.equal(await api(page, 'storeCreate', 'identity.json', '{"v":3}\n'), false, 'create still refuses after reload');
    assert.equal(await api(page, 'storeReadCode', 'big', 99), 'state-corrupt', 'a record over maxBytes is refused');
    assert.equal(await api(page, 'storeReadCode', 'big', 100), 'ok');
    await api(page, 'storeOpen', 'state-other');
    assert.equal(await api(page, 'storeRead', 'devices.json', 4096), null, 'databases are separate');
    await page.close();
  });
});
