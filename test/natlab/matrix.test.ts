// pinhole through NATs: the 4×4 matrix of router kinds (device behind router A × controller
// behind router B), cone ↔ cone repeatability at three delays and behind routers that accept
// unsolicited WAN input (the coordinated start's case), and two peers on one LAN.
// Real processes in lab namespaces: `pinhole signal` (server), `pinhole device --json` (dev,
// simulated GPIO), the controller driver (ctl, compiled controller API). Prints a summary
// table at the end; docs/nat.md quotes it. Needs root; skipped otherwise (see docs/natlab.md).
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { createLab, labAvailable, type RouterKind } from './lab.js';
import { acceptWanInput, plainPunch, startSignal, startDevice, runDriver, deviceReaches, devicePaths, serverFrames } from './peers.js';
import type { DriverResult } from './driver.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;

const KINDS: RouterKind[] = ['open', 'cone', 'symmetric', 'udpblock'];
const DELAY_MS = 20;
/** How long the controller waits for a data channel; also how long a relay cell must stay relay. */
const DIRECT_WAIT_MS = 8_000;
/** Each side moves to the channel when its own probe is answered; the device may land a little later. */
const DEVICE_SWITCH_MS = 3_000;
const CELL_TIMEOUT_MS = 60_000;
/** cone ↔ cone repeatability: [one-way delay per leg, attempts, successes required]. */
const CONE_RUNS: Array<[delayMs: number, attempts: number, need: number]> = [
  [20, 10, 9],
  [5, 3, 3],
  [50, 3, 3],
];
/** cone ↔ cone behind routers that accept unsolicited WAN input: attempts, successes required. */
const HARSH_CONE_RUNS: [attempts: number, need: number] = [5, 5];
/** Stagger of the plain punch that must fail behind those routers (ICE's answerer starts about this much earlier). */
const PLAIN_PUNCH_STAGGER_MS = 100;
const PLAIN_PUNCH_TIMEOUT_MS = 2_000;

type Expected = 'direct' | 'relay';

/** The path each cell must end on, and why. docs/nat.md has the same table. */
export function expectation(a: RouterKind, b: RouterKind): { path: Expected; why: string } {
  if (a === 'udpblock' || b === 'udpblock')
    return { path: 'relay', why: 'no UDP leaves that site: no STUN answer, no connectivity check; only the TCP relay works' };
  if (a === 'open' && b === 'open') return { path: 'direct', why: 'both hosts have routable addresses and no filter: host ↔ host' };
  if (a === 'open' || b === 'open')
    return {
      path: 'direct',
      why:
        (a === 'symmetric' || b === 'symmetric'
          ? "the NATed side's checks reach the open host's own address (no filter there); the open side answers the new mapping it learns (peer-reflexive)"
          : "the cone side's checks reach the open host's own address; the open side's checks to the cone's srflx address pass once the cone side has sent to it (same public port for every destination)"),
    };
  if (a === 'cone' && b === 'cone')
    return { path: 'direct', why: 'endpoint-independent mappings: each srflx address is valid for the peer too; the coordinated start makes both first checks cross' };
  if (a === 'symmetric' && b === 'symmetric') return { path: 'relay', why: 'both mappings are new and random per destination: no address the peer learns is ever valid' };
  return {
    path: 'relay',
    why: "the symmetric side reaches the peer from a new, random port; the cone side's port-restricted filter admits only the srflx port it sent to (the symmetric side's STUN mapping)",
  };
}

interface CellRun {
  result: DriverResult;
  devicePaths: string[];
  /** Data-carrying TCP segments the signaling server received during phase 2 (relayed frames). */
  phase2Frames: number;
}

/** One fresh lab; server, device and controller driver; everything destroyed afterwards. */
async function runCell(opts: { a: RouterKind; b: RouterKind; delayMs: number; sameLan?: boolean; acceptWanInput?: boolean }): Promise<CellRun> {
  const lab = await createLab({ a: opts.a, b: opts.b, delayMs: opts.delayMs, ...(opts.sameLan ? { sameLan: true } : {}) });
  try {
    if (opts.acceptWanInput) await acceptWanInput(lab);
    await startSignal(lab);
    const dev = await startDevice(lab);
    let before = NaN;
    let phase2Frames = NaN;
    const { result } = await runDriver(
      lab,
      { directWaitMs: DIRECT_WAIT_MS },
      {
        // Phase 2 must use the channel both ways: let the device's side switch too.
        beforePhase2: async (path) => {
          if (path === 'direct' || path === 'turn') await deviceReaches(dev, ['direct', 'turn'], DEVICE_SWITCH_MS);
          before = await serverFrames(lab);
        },
        afterPhase2: async () => {
          phase2Frames = (await serverFrames(lab)) - before;
        },
      },
    );
    return { result, devicePaths: devicePaths(dev), phase2Frames };
  } finally {
    await lab.destroy();
  }
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
const fmt = (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? '—' : String(Math.round(x)));

/** write/read/watch worked in both phases, and the first command went over the relay. */
function assertCommands(r: DriverResult, delayMs: number): void {
  assert.ok(r.ok, `driver failed at ${r.stage}: ${r.errorCode ?? ''} ${r.error ?? ''}`);
  const byName = (list: DriverResult['phase1'], name: string) => list.find((c) => c.cmd === name);
  assert.equal(byName(r.phase1, 'read 20')?.value, 1, 'read after write 20 1');
  assert.equal(byName(r.phase1, 'watch 21')?.value, 0, 'watch returns the current value');
  assert.deepEqual(r.change1 && { pin: r.change1.pin, value: r.change1.value, edge: r.change1.edge }, { pin: 21, value: 1, edge: 'rising' }, 'pushed change');
  assert.equal(byName(r.phase2, 'read 20')?.value, 0, 'read after write 20 0');
  assert.deepEqual(r.change2 && { pin: 21, value: r.change2.value, edge: r.change2.edge }, { pin: 21, value: 0, edge: 'falling' }, 'pushed change');
  // Relay first: the first command never waits for ICE. Its round trip crosses four legs
  // each way (ctl → server → dev and back), so it cannot be faster than 8 × delay.
  const first = r.phase1[0]!;
  assert.equal(first.pathBefore, 'relay', 'first command goes over the relay');
  assert.ok(first.rttMs >= 8 * delayMs - 1, `relay RTT ${first.rttMs} ms below the lab's floor ${8 * delayMs} ms`);
}

/**
 * Ended on the data channel, and phase 2 used it both ways: the signaling server received
 * no relayed frame while 3 requests, 3 answers and a change went back and forth, and both
 * sides say 'direct'. On one LAN the round trip also shows the data never crossed the
 * internet (that takes at least 4 × delay there and back).
 */
function assertDirect(run: CellRun, delayMs: number, sameLan = false): void {
  const r = run.result;
  assert.equal(r.reachedDirect, true, `no data channel within ${DIRECT_WAIT_MS} ms; rtc: ${r.rtc.map((x) => x.state).join(', ')}`);
  assert.equal(r.pathBeforePhase2, 'direct');
  assert.ok(run.devicePaths.includes('direct'), `device paths: ${run.devicePaths.join(', ')}`);
  assert.equal(r.pathChangesInPhase2, 0, 'no path change during phase 2');
  for (const c of r.phase2) {
    assert.equal(c.pathBefore, 'direct', c.cmd);
    assert.equal(c.pathAfter, 'direct', c.cmd);
  }
  assert.equal(r.change2?.path, 'direct', 'change pushed over the data channel');
  assert.equal(r.finalPath, 'direct');
  assert.equal(run.phase2Frames, 0, `the signaling server relayed ${run.phase2Frames} frames during phase 2`);
  if (sameLan) {
    const rtt = median(r.phase2.map((c) => c.rttMs));
    assert.ok(rtt < 2 * delayMs, `same-LAN round trip ${rtt} ms: the data crossed the internet`);
  }
}

/** Never left the relay, on either side, for the whole wait; commands kept working on it. */
function assertRelay(run: CellRun, delayMs: number): void {
  const r = run.result;
  assert.equal(r.reachedDirect, false, `unexpected data channel at ${r.directMs} ms`);
  assert.equal(r.directMs, null);
  assert.deepEqual(r.paths, [], 'no path change at all');
  assert.ok(!run.devicePaths.some((p) => p === 'direct' || p === 'turn'), `device paths: ${run.devicePaths.join(', ')}`);
  assert.equal(r.pathBeforePhase2, 'relay');
  for (const c of r.phase2) {
    assert.equal(c.pathBefore, 'relay', c.cmd);
    assert.equal(c.pathAfter, 'relay', c.cmd);
    assert.ok(c.rttMs >= 8 * delayMs - 1, `${c.cmd}: ${c.rttMs} ms is faster than the relay can be`);
  }
  assert.equal(r.finalPath, 'relay');
  // 3 requests, 3 answers and a change crossed the server; only the last answer and the
  // change may share a TCP segment.
  assert.ok(run.phase2Frames >= 6, `the signaling server saw only ${run.phase2Frames} frames during phase 2`);
}

// ---------------------------------------------------------------- summary

/** When the direct attempt passed its milestones: `go` sent, ICE connected, the peer connection `connected` (werift: after DTLS and the SCTP start), in ms since connect() start. */
function timeline(r: DriverResult): string {
  const at = (f: (s: string) => boolean): string => fmt(r.rtc.find((x) => f(x.state))?.atMs);
  return `${at((s) => s.startsWith('go '))} / ${at((s) => s === 'ice-connected')} / ${at((s) => s === 'connected')}`;
}

const rows: string[] = [];
const rateRows: string[] = [];
const started = Date.now();

function row(label: string, expected: string, run: CellRun | undefined, error?: string): void {
  const r = run?.result;
  const relayRtt = median((r?.phase1 ?? []).filter((c) => c.pathBefore === 'relay' && c.pathAfter === 'relay').map((c) => c.rttMs));
  const phase2Rtt = median((r?.phase2 ?? []).map((c) => c.rttMs));
  const path = error ? `FAIL (${r?.finalPath ?? 'none'})` : (r?.finalPath ?? '—');
  rows.push(`| ${label} | ${expected} | ${path} | ${fmt(r?.firstCmdMs)} | ${fmt(r?.directMs)} | ${fmt(relayRtt)} | ${fmt(phase2Rtt)} | ${run ? fmt(run.phase2Frames) : '—'} | ${r ? timeline(r) : '—'} |`);
  if (error) rows.push(`|   ↳ ${error.split('\n')[0]!.replace(/\|/g, '/')} | | | | | | | | |`);
}

after(() => {
  if (skip) return;
  const out = [
    '',
    `## natlab summary (${new Date().toISOString()}, ${os.cpus().length}× ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, ${Math.round((Date.now() - started) / 1000)} s)`,
    '',
    'times in ms from connect() start; RTTs are medians of the commands before and after the wait for a data channel',
    '',
    '| dev (A) × ctl (B) | expected | path | first command | direct | relay RTT | final RTT | frames via server in phase 2 | go / ICE connected / pc connected |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
    '',
    ...rateRows,
    '',
  ];
  console.log(out.join('\n'));
});

// ---------------------------------------------------------------- the matrix

describe(`pinhole NAT matrix: device behind A × controller behind B, ${DELAY_MS} ms per leg`, { skip }, () => {
  for (const a of KINDS)
    for (const b of KINDS) {
      const exp = expectation(a, b);
      test(`${a} × ${b} → ${exp.path}`, { timeout: CELL_TIMEOUT_MS }, async (t) => {
        let run: CellRun | undefined;
        try {
          run = await runCell({ a, b, delayMs: DELAY_MS });
          const r = run.result;
          t.diagnostic(
            `first command ${fmt(r.firstCmdMs)} ms, direct ${fmt(r.directMs)} ms, path ${r.finalPath}, phase-2 RTTs ${r.phase2.map((c) => c.rttMs).join('/')} ms, ` +
              `${run.phase2Frames} frames via the server in phase 2; ` +
              `rtc: ${r.rtc.map((x) => `${x.state}@${fmt(x.atMs)}`).join(' ')}`,
          );
          assertCommands(r, DELAY_MS);
          if (exp.path === 'direct') assertDirect(run, DELAY_MS);
          else assertRelay(run, DELAY_MS);
          row(`${a} × ${b}`, exp.path, run);
        } catch (e) {
          row(`${a} × ${b}`, exp.path, run, (e as Error).message);
          throw e;
        }
      });
    }
});

// ---------------------------------------------------------------- cone ↔ cone, repeated

/** Runs cone × cone `attempts` times (fresh lab each); returns successes, failures and a summary line. */
async function repeatCone(
  label: string,
  attempts: number,
  opts: { delayMs: number; acceptWanInput?: boolean },
): Promise<{ ok: number; failures: string[]; line: string }> {
  let ok = 0;
  const firsts: number[] = [];
  const directs: number[] = [];
  const failures: string[] = [];
  for (let i = 0; i < attempts; i++) {
    let run: CellRun | undefined;
    try {
      run = await runCell({ a: 'cone', b: 'cone', ...opts });
      assertCommands(run.result, opts.delayMs);
      assertDirect(run, opts.delayMs);
      ok++;
      firsts.push(run.result.firstCmdMs!);
      directs.push(run.result.directMs!);
    } catch (e) {
      const rtc = run?.result.rtc.map((x) => `${x.state}@${Math.round(x.atMs)}`).join(' ') ?? '';
      failures.push(`attempt ${i + 1}: ${(e as Error).message.split('\n')[0]} [rtc: ${rtc}]`);
    }
  }
  const line =
    `${label}: ${ok}/${attempts} direct; first command median ${fmt(median(firsts))} ms ` +
    `(${fmt(Math.min(...firsts))}–${fmt(Math.max(...firsts))}), direct median ${fmt(median(directs))} ms (${fmt(Math.min(...directs))}–${fmt(Math.max(...directs))})`;
  rateRows.push(`- ${line}`, ...failures.map((f) => `  - ${f}`));
  return { ok, failures, line };
}

describe('pinhole cone × cone repeatability (fresh lab per attempt)', { skip }, () => {
  for (const [delayMs, attempts, need] of CONE_RUNS) {
    test(`cone × cone at ${delayMs} ms per leg: direct in ≥ ${need}/${attempts} attempts`, { timeout: attempts * CELL_TIMEOUT_MS }, async (t) => {
      const { ok, failures, line } = await repeatCone(`cone × cone at ${delayMs} ms`, attempts, { delayMs });
      t.diagnostic(line);
      for (const f of failures) t.diagnostic(f);
      assert.ok(ok >= need, `${ok}/${attempts} direct, need ${need}:\n${failures.join('\n')}`);
    });
  }
});

// ---------------------------------------------------------------- the coordinated start

describe('pinhole cone × cone behind routers that accept unsolicited WAN input', { skip }, () => {
  // Behind these routers whoever sends first loses (link/rtc.ts): the control shows a plain
  // punch failing when one side starts PLAIN_PUNCH_STAGGER_MS late; pinhole's coordinated
  // start must still connect.
  test(`control: a plain UDP punch with one side ${PLAIN_PUNCH_STAGGER_MS} ms late fails`, { timeout: CELL_TIMEOUT_MS }, async (t) => {
    const lab = await createLab({ a: 'cone', b: 'cone', delayMs: DELAY_MS });
    try {
      await acceptWanInput(lab);
      const res = await plainPunch(lab, PLAIN_PUNCH_STAGGER_MS, PLAIN_PUNCH_TIMEOUT_MS);
      const line = `plain punch, ctl ${PLAIN_PUNCH_STAGGER_MS} ms late: ${res.map((r) => (r.ok ? `ok after ${r.afterMs} ms` : `failed after ${r.sent} packets`)).join(' / ')}`;
      rateRows.push(`- routers accepting WAN input, ${line}`);
      t.diagnostic(line);
      assert.ok(!res[0]!.ok && !res[1]!.ok, JSON.stringify(res));
    } finally {
      await lab.destroy();
    }
  });

  const [attempts, need] = HARSH_CONE_RUNS;
  test(`pinhole: direct in ≥ ${need}/${attempts} attempts`, { timeout: attempts * CELL_TIMEOUT_MS }, async (t) => {
    const { ok, failures, line } = await repeatCone(`cone × cone, routers accepting WAN input, ${DELAY_MS} ms`, attempts, {
      delayMs: DELAY_MS,
      acceptWanInput: true,
    });
    t.diagnostic(line);
    for (const f of failures) t.diagnostic(f);
    assert.ok(ok >= need, `${ok}/${attempts} direct, need ${need}:\n${failures.join('\n')}`);
  });
});

// ---------------------------------------------------------------- same LAN

describe('pinhole same LAN: device and controller behind one NAT', { skip }, () => {
  for (const kind of ['cone', 'symmetric'] as const) {
    test(`both behind one ${kind} router → direct over the LAN`, { timeout: CELL_TIMEOUT_MS }, async (t) => {
      let run: CellRun | undefined;
      try {
        run = await runCell({ a: kind, b: kind, delayMs: DELAY_MS, sameLan: true });
        const r = run.result;
        t.diagnostic(`first command ${fmt(r.firstCmdMs)} ms, direct ${fmt(r.directMs)} ms, phase-2 RTTs ${r.phase2.map((c) => c.rttMs).join('/')} ms`);
        assertCommands(r, DELAY_MS);
        assertDirect(run, DELAY_MS, true);
        row(`same LAN (${kind})`, 'direct', run);
      } catch (e) {
        row(`same LAN (${kind})`, 'direct', run, (e as Error).message);
        throw e;
      }
    });
  }
});
