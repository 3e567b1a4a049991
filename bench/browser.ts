/**
 * `npm run bench:browser`: the browser controller (real Chromium, platform/browser) beside the
 * Node controller, in one run, on loopback: page load (already paired) → first acknowledged
 * command, page load → direct, and the direct command round trip; for Node, connect() → first
 * ack, connect() → direct, and the same round trip. Chromium runs in a loopback-only network
 * namespace: this script re-runs itself under `unshare -n` (root). Prints figures; asserts nothing.
 *
 *   --quick   fewer loads and round trips
 *   --json    one JSON object instead of the table
 */
import { inLoopbackNamespace, launchChromium, servePage } from '../test/browser/harness.js';
import { openCommands, pairedConnectTimes, removeBenchState, startBenchServer, startDevice } from './pinhole.js';
import { type Summary, summarize } from './stats.js';

/** Set in the re-run inside the namespace. */
const IN_NETNS = 'PINHOLE_BENCH_NETNS';
/** Longest wait for one page load's figures. */
const LOAD_TIMEOUT_MS = 20_000;

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const LOADS = quick ? 3 : 10;
const ROUND_TRIPS = quick ? 200 : 2000;

inLoopbackNamespace(IN_NETNS, 'bench:browser');

const server = await startBenchServer();
const { agent, sim } = await startDevice(server.url, true);
const chromium = await launchChromium({ persistent: true });
const served = await servePage('bench/browser-page.ts', 'pinhole bench');
const rows: { figure: string; page: Summary; node: Summary }[] = [];
try {
  // Pair the page once (untimed); its IndexedDB keeps the pairing across loads.
  const setup = await chromium.context.newPage();
  await setup.goto(served.url);
  const name = await setup.evaluate(
    ([s, c]) => (window as unknown as { bench: { pair(s: string, c: string): Promise<string> } }).bench.pair(s!, c!),
    [server.url, agent.pairingCode!],
  );
  await setup.close();

  const acks: number[] = [];
  const directs: number[] = [];
  let rtts: number[] = [];
  for (let i = 0; i <= LOADS; i++) {
    const page = await chromium.context.newPage();
    await page.goto(`${served.url}#device=${encodeURIComponent(name)}&server=${encodeURIComponent(server.url)}`);
    const r = await page.waitForFunction(
      () => {
        const b = (window as unknown as { bench?: { result: { ack?: number; direct?: number; error?: string } } }).bench;
        return b && (b.result.error || (b.result.ack !== undefined && b.result.direct !== undefined)) ? b.result : undefined;
      },
      undefined,
      { timeout: LOAD_TIMEOUT_MS },
    );
    const res = (await r.jsonValue()) as { ack?: number; direct?: number; error?: string };
    if (res.error) throw new Error(`page load ${i}: ${res.error}`);
    if (i > 0) {
      // The first load is a warm-up (the browser's caches, the bundle's compile).
      acks.push(res.ack!);
      directs.push(res.direct!);
    }
    if (i === LOADS)
      rtts = await page.evaluate((n) => (window as unknown as { bench: { roundTrips(n: number): Promise<number[]> } }).bench.roundTrips(n), ROUND_TRIPS);
    await page.evaluate(() => (window as unknown as { bench: { close(): Promise<void> } }).bench.close());
    await page.close();
    // Let the device see the page leave before the next load.
    await new Promise((r) => setTimeout(r, 200));
  }

  const node = await pairedConnectTimes(server.url, LOADS, 1, 60_000);
  const nodeRtt = await nodeDirectRoundTrips(server.url, ROUND_TRIPS);
  rows.push({ figure: 'load/connect → first ack', page: summarize(acks), node: node.firstAck });
  rows.push({ figure: 'load/connect → direct', page: summarize(directs), node: node.direct });
  rows.push({ figure: 'direct round trip (write)', page: summarize(rtts), node: nodeRtt });
} finally {
  await served.close();
  await chromium.dispose();
  await agent.stop();
  sim.close();
  await server.close();
  removeBenchState();
}

if (json) console.log(JSON.stringify({ rows }));
else {
  const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(3));
  console.log('| figure | page p50 ms | page p99 ms | Node p50 ms | Node p99 ms | page / Node (p50) |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.figure} | ${f(r.page.p50)} | ${f(r.page.p99)} | ${f(r.node.p50)} | ${f(r.node.p99)} | ${(r.page.p50 / r.node.p50).toFixed(2)}× |`);
  console.log(
    `page: Chromium, from navigation start (the page's time origin); Node: from connect(). ${LOADS} loads/connections after one warm-up, ${ROUND_TRIPS} round trips.`,
  );
}

/** Direct round trips of a Node controller (connect by code, wait for direct), in ms. */
async function nodeDirectRoundTrips(url: string, n: number): Promise<Summary> {
  const r = await openCommands(url, true);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await r.roundTrip();
      out.push(performance.now() - t);
    }
    r.verify?.();
  } finally {
    await r.close();
  }
  return summarize(out);
}
