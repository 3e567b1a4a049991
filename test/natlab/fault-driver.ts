// Controller driver for the NAT-lab WAN-outage fault (issue 5), run inside the ctl namespace:
//
//   node dist/test/natlab/fault-driver.js '<FaultDriverConfig as JSON>'
//
// Pairs, waits for the direct path, watches pin 21, starts a blink of pin 21 on the
// device's clock (the edges happen on the device whatever the network does), prints
// {"event":"blinking"} and, while the test takes the WAN down and up again, records every
// change, disconnect, reconnect, resync and path change. Then it waits for the blink's
// result, for the direct path to come back, and reads pin 21. Prints one JSON result line.
import { performance } from 'node:perf_hooks';
import { connect, type Path } from '../../controller/index.js';

export interface FaultDriverConfig {
  server: string;
  code: string;
  stateDir: string;
  /** Blink of pin 21: toggles and their interval (ms). */
  times: number;
  intervalMs: number;
  /** How long to wait for direct, before and after the outage (ms). */
  directWaitMs: number;
  /** Timeout of each command, including the blink beyond its own duration (ms). */
  timeoutMs: number;
}

export interface FaultResult {
  ok: boolean;
  error?: string;
  directBefore: boolean;
  blink?: { toggles: number; value: number };
  /** Changes of pin 21 seen, in order: value and path. */
  changes: Array<{ value: number; path: Path; atMs: number }>;
  events: Array<{ event: string; atMs: number; detail?: string }>;
  directAfter: boolean;
  finalRead?: number;
  finalPath?: Path;
}

const cfg = JSON.parse(process.argv[2]!) as FaultDriverConfig;
const t0 = performance.now();
const at = (): number => Math.round(performance.now() - t0);
const result: FaultResult = { ok: false, directBefore: false, changes: [], events: [], directAfter: false };

try {
  const dev = await connect({ server: cfg.server, code: cfg.code, stateDir: cfg.stateDir, name: 'natlab-ctl', timeoutMs: cfg.timeoutMs });
  dev.on('path', (p, prev) => result.events.push({ event: 'path', atMs: at(), detail: `${prev}->${p}` }));
  dev.on('disconnected', (e) => result.events.push({ event: 'disconnected', atMs: at(), detail: e.code }));
  dev.on('reconnected', () => result.events.push({ event: 'reconnected', atMs: at() }));
  dev.on('resync', (r) => result.events.push({ event: 'resync', atMs: at(), detail: `${r.pin}: ${r.previous}->${r.value}` }));
  dev.on('change', (c) => {
    if (c.pin === 21) result.changes.push({ value: c.value, path: dev.path, atMs: at() });
  });
  result.directBefore = await dev.whenDirect(cfg.directWaitMs);
  await dev.write(21, 0);
  await dev.watch(21);
  const blink = dev.blink(21, { times: cfg.times, intervalMs: cfg.intervalMs });
  process.stdout.write(JSON.stringify({ event: 'blinking', atMs: at() }) + '\n');
  const b = await blink;
  result.blink = { toggles: b.toggles, value: b.value };
  result.directAfter = await dev.whenDirect(cfg.directWaitMs);
  result.finalRead = await dev.read(21);
  result.finalPath = dev.path;
  result.ok = true;
  await dev.close();
} catch (e) {
  result.error = `${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message}`;
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
