// pinhole through NATs: the 4×4 matrix of router kinds (device behind router A × controller
// behind router B), carrier-grade NAT cells, cone ↔ cone repeatability at three delays and behind routers that accept
// unsolicited WAN input (the coordinated start's case), and two peers on one LAN.
// Real processes in lab namespaces: `pinhole signal` (server), `pinhole device --json` (dev,
// simulated GPIO), the controller driver (ctl, compiled controller API). Prints a summary
// table at the end; docs/nat.md quotes it. Needs root; skipped otherwise (see docs/natlab.md).

import assert from 'node:assert/strict';
import os from 'node:os';
import { after, describe, test } from 'node:test';
import {
  assertCommands,
  assertDirect,
  assertRelay,
  CELL_TIMEOUT_MS,
  type CellRun,
  expectation,
  fmt,
  MATRIX_KINDS,
  median,
  runCell,
  timeline,
} from './cells.js';
import { createLab, labAvailable, type RouterKind } from './lab.js';
import { acceptWanInput, plainPunch } from './peers.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;

const KINDS = MATRIX_KINDS;
/** Carrier-grade NAT cells beside the matrix (device's site × controller's site). */
const CGNAT_CELLS: Array<[RouterKind, RouterKind]> = [
  ['cgnat', 'cone'],
  ['cgnat', 'cgnat'],
];
const DELAY_MS = 20;
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

// ---------------------------------------------------------------- summary

const rows: string[] = [];
const rateRows: string[] = [];
const started = Date.now();

function row(label: string, expected: string, run: CellRun | undefined, error?: string): void {
  const r = run?.result;
  const relayRtt = median((r?.phase1 ?? []).filter((c) => c.pathBefore === 'relay' && c.pathAfter === 'relay').map((c) => c.rttMs));
  const phase2Rtt = median((r?.phase2 ?? []).map((c) => c.rttMs));
  const path = error ? `FAIL (${r?.finalPath ?? 'none'})` : (r?.finalPath ?? '—');
  rows.push(
    `| ${label} | ${expected} | ${path} | ${fmt(r?.firstCmdMs)} | ${fmt(r?.directMs)} | ${fmt(relayRtt)} | ${fmt(phase2Rtt)} | ${run ? fmt(run.phase2Frames) : '—'} | ${r ? timeline(r) : '—'} |`,
  );
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

/** One matrix cell: it must end on the path theory predicts and pass that path's checks. */
function cellTest(a: RouterKind, b: RouterKind): void {
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

describe(`pinhole NAT matrix: device behind A × controller behind B, ${DELAY_MS} ms per leg`, { skip }, () => {
  for (const a of KINDS) for (const b of KINDS) cellTest(a, b);
});

describe("issue 10: pinhole behind a carrier-grade NAT (a cone router behind the carrier's cone NAT)", { skip }, () => {
  for (const [a, b] of CGNAT_CELLS) cellTest(a, b);
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
  // Behind these routers whoever sends first loses (platform/node/rtc.ts): the control shows a plain
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
