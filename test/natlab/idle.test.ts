// An idle direct session behind two cone NATs whose UDP conntrack entries expire after 30 s
// (DEFAULT_CONNTRACK_UDP): no command for 3 minutes, only the link's keepalives (every
// KEEPALIVE_MS) keep the mappings and filters open. It must stay direct the whole time, and
// the next commands must go direct too. Needs root; skipped otherwise (see docs/natlab.md).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KEEPALIVE_MS } from '../../transport/reliable.js';
import { assertCommands, assertDirect, CELL_TIMEOUT_MS, fmt, runCell } from './cells.js';
import { labAvailable } from './lab.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;
const DELAY_MS = 20;
/** How long the session sits idle on the direct path. */
const IDLE_MS = 180_000;

test('issue 10: an idle direct session (no commands) stays direct for 3 minutes behind short conntrack timeouts; then a command goes direct', {
  skip,
  timeout: IDLE_MS + 2 * CELL_TIMEOUT_MS,
}, async (t) => {
  const run = await runCell({ a: 'cone', b: 'cone', delayMs: DELAY_MS, idleMs: IDLE_MS });
  const r = run.result;
  const ct = run.conntrackUdp;
  t.diagnostic(
    `conntrack UDP ${ct ? `${ct.unrepliedS} s / ${ct.streamS} s` : 'kernel defaults'}, keepalive every ${KEEPALIVE_MS} ms; direct at ${fmt(r.directMs)} ms; ` +
      `path changes while idle ${r.pathChangesInIdle}; after idle ${r.pathAfterIdle}; phase-2 RTTs ${r.phase2.map((c) => c.rttMs).join('/')} ms; ` +
      `frames via the server during idle and phase 2 ${run.phase2Frames}; device paths ${run.devicePaths.join(', ')}; ` +
      `paths ${JSON.stringify(r.paths)}; rtc: ${r.rtc.map((x) => `${x.state}@${fmt(x.atMs)}`).join(' ')}`,
  );
  // The idle time must outlast the routers' timeouts, or this proves nothing about keepalives.
  assert.ok(ct && ct.streamS * 1000 < IDLE_MS / 2, `conntrack timeouts ${JSON.stringify(ct)}`);
  assertCommands(r, DELAY_MS);
  assertDirect(run, DELAY_MS);
  assert.equal(r.pathChangesInIdle, 0, `path changes while idle: ${JSON.stringify(r.paths)}`);
  assert.equal(r.pathAfterIdle, 'direct');
  // The device reports 'relay' when its session starts, then 'direct'; nothing after that.
  const sinceDirect = run.devicePaths.slice(run.devicePaths.indexOf('direct'));
  assert.ok(sinceDirect.length > 0 && sinceDirect.every((p) => p === 'direct'), `the device's side left the data channel: ${run.devicePaths.join(', ')}`);
});
