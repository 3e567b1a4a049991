// Issue 5, fault 2: the controller's router loses its WAN link for 10 s while it watches a
// pin that the device keeps toggling. The session must recover, the edges that happened
// meanwhile must be reported (or their loss stated with a resync), the pin's value must be
// re-synced, and the direct path must come back. Needs root; skipped otherwise.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FaultDriverConfig, FaultResult } from './fault-driver.js';
import { createLab, labAvailable } from './lab.js';
import { CODE, controllerStateDir, Lines, serverUrl, startDevice, startSignal } from './peers.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;
const FAULT_DRIVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fault-driver.js');
/** How long the WAN link is down (the issue says 10 s). */
const OUTAGE_MS = 10_000;
/** The blink runs across the outage: 16 toggles 1 s apart. */
const TIMES = 16;
const INTERVAL_MS = 1_000;

test("issue 5: fault 2: the controller's WAN goes down for 10 s during watch; the session recovers, edges are reported or their loss stated, the value re-syncs, direct comes back", {
  skip,
  timeout: 150_000,
}, async () => {
  const lab = await createLab({ a: 'cone', b: 'cone', delayMs: 20 });
  after(() => lab.destroy());
  const server = await startSignal(lab);
  const device = await startDevice(lab);
  const cfg: FaultDriverConfig = {
    server: serverUrl(lab),
    code: CODE,
    stateDir: controllerStateDir(lab),
    times: TIMES,
    intervalMs: INTERVAL_MS,
    directWaitMs: 45_000,
    timeoutMs: 60_000,
  };
  const proc = lab.run('ctl', [process.execPath, FAULT_DRIVER, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = new Lines(proc.stdout!);
  const err = new Lines(proc.stderr!);
  await out.waitFor((l) => l.includes('"blinking"'), 30_000, 'the driver to start the blink');
  await new Promise((r) => setTimeout(r, 1_500)); // a couple of edges on the direct path first
  const downAt = Date.now();
  await lab.setWanUp('b', false, { mode: 'link' });
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  await lab.setWanUp('b', true, { mode: 'link' });
  const upAt = Date.now();
  const line = await out.waitFor((l) => l.includes('"directBefore"'), 120_000, 'the driver result');
  const r = JSON.parse(line) as FaultResult;
  const summary = JSON.stringify({ ...r, outage: { downAt, upAt } });
  assert.equal(r.ok, true, `driver failed: ${r.error}\n${summary}\nstderr: ${err.all.join('\n')}\ndevice: ${device.out.all.slice(-20).join('\n')}`);
  assert.equal(r.directBefore, true, summary);
  assert.equal(r.blink?.toggles, TIMES, 'the blink ran to the end on the device');
  const resynced = r.events.some((e) => e.event === 'resync');
  // Every toggle is an edge on the device. Either all of them reached us (the session
  // survived, the link resent them), or the session was replaced and a resync says so.
  if (!resynced) assert.equal(r.changes.length, TIMES, `all ${TIMES} edges reported: ${summary}`);
  else assert.ok(r.changes.length < TIMES, 'a resync only when edges were lost');
  // The last value we know is the device's.
  const last = r.changes.at(-1)?.value;
  assert.equal(r.finalRead, r.blink?.value);
  if (!resynced) assert.equal(last, r.blink?.value);
  assert.equal(r.directAfter, true, `direct again after the outage: ${summary}`);
  assert.ok(r.finalPath === 'direct', summary);
  process.stdout.write(
    `# fault 2: ${r.changes.length} edges seen of ${TIMES}, resync: ${resynced}, events: ${r.events.map((e) => `${e.atMs}:${e.event}${e.detail ? `(${e.detail})` : ''}`).join(' ')}\n`,
  );
  server.proc.kill();
  device.proc.kill();
});
