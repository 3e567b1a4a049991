// pinhole through NATs on an impaired internet: 0–5 ms of jitter (packets reorder) and 2%
// loss per crossing, 10 fresh labs per direct cell, and every relay cell of the perfect
// matrix. Each attempt is a full matrix cell (cells.ts): connect, commands over the relay,
// the wait for a data channel, commands again; it counts as a success when it passes that
// cell's checks. Prints a table (cell, successes, time to direct p50 and worst) at the end;
// docs/nat.md quotes it. PINHOLE_NATLAB_SEED=<n> repeats a run's impairment draws;
// PINHOLE_NATLAB_IMPAIR='{"jitterMs":0,"loss":0}' (any subset) runs the same cells on another
// internet, e.g. the perfect one as a baseline, with the same targets.
// Needs root; skipped otherwise (see docs/natlab.md).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { after, describe, test } from 'node:test';
import {
  assertCommands,
  assertDirect,
  assertRelay,
  CELL_TIMEOUT_MS,
  type CellRun,
  DIRECT_WAIT_MS,
  type Expected,
  expectation,
  fmt,
  MATRIX_KINDS,
  median,
  runCell,
  timeline,
} from './cells.js';
import { type Impairment, impairment, mixSeed, parseSeed } from './impair.js';
import { labAvailable, type RouterKind } from './lab.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;

const DELAY_MS = 20;
/** The internet the targets are set for: uniform 0–5 ms extra per packet, 2% lost, per crossing. */
const TARGET_IMPAIRMENT: Impairment = { jitterMs: 5, loss: 0.02, duplicate: 0 };
/** Overrides TARGET_IMPAIRMENT for a measurement run (JSON, any subset of the fields). */
const IMPAIR_ENV = 'PINHOLE_NATLAB_IMPAIR';

function impairmentFromEnv(): Impairment {
  const raw = process.env[IMPAIR_ENV];
  let over: Partial<Impairment> = {};
  if (raw) {
    try {
      over = JSON.parse(raw) as Partial<Impairment>;
    } catch {
      throw new Error(`${IMPAIR_ENV} must be JSON like {"jitterMs":0,"loss":0}, got ${raw}`);
    }
  }
  return impairment({ ...TARGET_IMPAIRMENT, ...over });
}
const IMPAIRMENT = impairmentFromEnv();
/**
 * How long a direct cell's controller waits for a data channel: the first attempt's 2.2 s
 * plus room for a few retries of a failed attempt (1–2 s apart, growing).
 */
const IMPAIRED_DIRECT_WAIT_MS = 15_000;
/** Direct cells: [device's site, controller's site, attempts, successes required]. */
const DIRECT_CELLS: Array<[a: RouterKind, b: RouterKind, attempts: number, need: number]> = [
  ['cone', 'cone', 10, 9],
  ['open', 'cone', 10, 10],
  ['cone', 'open', 10, 10],
  ['open', 'open', 10, 10],
  ['cgnat', 'cone', 10, 9],
];
/** Attempts per relay cell: each one waits the full DIRECT_WAIT_MS to show it stays on the relay. */
const RELAY_ATTEMPTS = 1;
const RELAY_CELLS: Array<[a: RouterKind, b: RouterKind]> = MATRIX_KINDS.flatMap((a) =>
  MATRIX_KINDS.filter((b) => expectation(a, b).path === 'relay').map((b): [RouterKind, RouterKind] => [a, b]),
);

/** Base seed of this run; each attempt's lab gets mixSeed(base, cell, attempt). */
const BASE_SEED = process.env.PINHOLE_NATLAB_SEED !== undefined ? parseSeed(process.env.PINHOLE_NATLAB_SEED) : randomBytes(4).readUInt32BE(0);

interface Attempt {
  seed: number;
  /** Passed the cell's path checks (direct or relay). */
  ok: boolean;
  /** Every command was answered (and both pushed changes arrived). */
  commandsOk: boolean;
  directMs: number | null;
  lost: number;
  reordered: number;
  /** Packets the delay router delivered. */
  forwarded: number;
  /** From ICE connected to the peer connection's `connected` in the attempt that got there (werift: DTLS, then SCTP's association), in ms; null if none did. */
  dtlsMs: number | null;
  /** Direct attempts the controller gave up on and retried (session's `direct backoff`). */
  retries: number;
  /** go / ICE connected / pc connected, in ms (cells.ts timeline). */
  timeline: string;
  error?: string;
}

/** Over every attempt of the run: packets the delay router lost, delivered, delivered out of order. */
const totals = { lost: 0, forwarded: 0, reordered: 0 };
/** The measured loss rate of the whole run must be this close to IMPAIRMENT.loss (thousands of packets: many σ). */
const LOSS_RATE_TOLERANCE = 0.005;

const rows: string[] = [];
const failures: string[] = [];
const started = Date.now();

const firstLine = (e: unknown): string => (e as Error).message.split('\n')[0]!;

/** Runs one attempt of a cell and judges it; never throws for a failed check (the cell's test counts). */
async function attempt(a: RouterKind, b: RouterKind, expected: Expected, seed: number): Promise<Attempt> {
  let run: CellRun | undefined;
  try {
    run = await runCell({ a, b, delayMs: DELAY_MS, impair: IMPAIRMENT, seed, directWaitMs: expected === 'direct' ? IMPAIRED_DIRECT_WAIT_MS : DIRECT_WAIT_MS });
  } catch (e) {
    return {
      seed,
      ok: false,
      commandsOk: false,
      directMs: null,
      lost: 0,
      reordered: 0,
      forwarded: 0,
      dtlsMs: null,
      retries: 0,
      timeline: '—',
      error: `lab: ${firstLine(e)}`,
    };
  }
  const r = run.result;
  const st = run.routerStats;
  const pc = r.rtc.find((x) => x.state === 'connected')?.atMs;
  // The ICE connection of the attempt that connected: the last one before it (an earlier attempt may have been retried).
  const ice = pc === undefined ? undefined : r.rtc.filter((x) => x.state === 'ice-connected' && x.atMs <= pc).at(-1)?.atMs;
  const res: Attempt = {
    seed,
    ok: false,
    commandsOk: false,
    directMs: r.directMs,
    lost: st.lost ?? 0,
    reordered: st.reordered ?? 0,
    forwarded: st.forwarded ?? 0,
    dtlsMs: ice !== undefined && pc !== undefined ? pc - ice : null,
    retries: r.rtc.filter((x) => x.state === 'direct backoff').length,
    timeline: timeline(r),
  };
  totals.lost += res.lost;
  totals.forwarded += res.forwarded;
  totals.reordered += res.reordered;
  try {
    assertCommands(r, DELAY_MS);
    res.commandsOk = true;
    if (expected === 'direct') assertDirect(run, DELAY_MS);
    else assertRelay(run, DELAY_MS);
    res.ok = true;
  } catch (e) {
    // What the direct attempt got to, for the failure list: its last few states.
    const rtc = r.rtc
      .map((x) => `${x.state}@${Math.round(x.atMs)}`)
      .slice(-8)
      .join(' ');
    res.error = `${firstLine(e)} [rtc: ${rtc}]`;
  }
  return res;
}

function cellTest(index: number, a: RouterKind, b: RouterKind, attempts: number, need: number): void {
  const exp = expectation(a, b);
  test(`issue 10: ${a} × ${b} → ${exp.path} in ≥ ${need}/${attempts} attempts on the impaired internet, commands arrive in all`, {
    timeout: attempts * 2 * CELL_TIMEOUT_MS,
  }, async (t) => {
    const results: Attempt[] = [];
    for (let i = 0; i < attempts; i++) {
      const at = await attempt(a, b, exp.path, mixSeed(BASE_SEED, index, i));
      results.push(at);
      t.diagnostic(
        `attempt ${i + 1} (seed ${at.seed}): ${at.ok ? exp.path : 'FAIL'}, direct ${fmt(at.directMs)} ms, commands ${at.commandsOk ? 'ok' : 'FAILED'}, ` +
          `go / ICE connected / pc connected ${at.timeline}, retries ${at.retries}, lost ${at.lost}, reordered ${at.reordered}${at.error ? `; ${at.error}` : ''}`,
      );
      if (at.error) failures.push(`${a} × ${b}, attempt ${i + 1} (seed ${at.seed}): ${at.error}`);
    }
    const ok = results.filter((x) => x.ok).length;
    const commandsOk = results.filter((x) => x.commandsOk).length;
    const times = results.filter((x) => x.ok && x.directMs !== null).map((x) => x.directMs!);
    const dtls = results.filter((x) => x.ok && x.dtlsMs !== null).map((x) => x.dtlsMs!);
    const retried = results.filter((x) => x.retries > 0).length;
    const lost = results.reduce((n, x) => n + x.lost, 0);
    const reordered = results.reduce((n, x) => n + x.reordered, 0);
    rows.push(
      `| ${a} × ${b} | ${exp.path} | ${ok}/${attempts} (need ${need}) | ${commandsOk}/${attempts} | ` +
        `${exp.path === 'direct' ? fmt(median(times)) : '—'} | ${exp.path === 'direct' && times.length ? fmt(Math.max(...times)) : '—'} | ` +
        `${dtls.length ? `${fmt(median(dtls))} / ${fmt(Math.max(...dtls))}` : '—'} | ${exp.path === 'direct' ? retried : '—'} | ${lost} / ${reordered} |`,
    );
    assert.equal(commandsOk, attempts, 'every command arrives in every attempt');
    assert.ok(ok >= need, `${ok}/${attempts} ended on ${exp.path}, need ${need}`);
  });
}

after(() => {
  if (skip) return;
  console.log(
    [
      '',
      `## natlab impaired summary (${new Date().toISOString()}, ${os.cpus().length}× ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, ${Math.round((Date.now() - started) / 1000)} s)`,
      '',
      `internet: ${DELAY_MS} ms per leg, jitter 0–${IMPAIRMENT.jitterMs} ms, loss ${IMPAIRMENT.loss * 100}%, duplicate ${IMPAIRMENT.duplicate * 100}% per crossing; ` +
        `base seed ${BASE_SEED} (PINHOLE_NATLAB_SEED=${BASE_SEED} repeats the draws); time to direct in ms from connect() start, over the successful attempts`,
      '',
      '| dev (A) × ctl (B) | expected | on the expected path | commands arrived | time to direct p50 | worst | ICE connected → pc connected (DTLS + SCTP) p50 / worst | attempts with a retry | packets lost / reordered |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
      ...failures.map((f) => `- ${f}`),
      '',
    ].join('\n'),
  );
});

describe(`pinhole on an impaired internet: ${DELAY_MS} ms per leg, 0–${IMPAIRMENT.jitterMs} ms jitter, ${IMPAIRMENT.loss * 100}% loss (base seed ${BASE_SEED})`, {
  skip,
}, () => {
  DIRECT_CELLS.forEach(([a, b, attempts, need], i) => cellTest(i, a, b, attempts, need));
  RELAY_CELLS.forEach(([a, b], i) => cellTest(DIRECT_CELLS.length + i, a, b, RELAY_ATTEMPTS, RELAY_ATTEMPTS));

  // Last: the internet really was impaired (a no-op impairment would pass every cell above).
  test(`issue 10: the run's measured loss rate is within ${LOSS_RATE_TOLERANCE} of ${IMPAIRMENT.loss}${IMPAIRMENT.jitterMs > 0 ? ', and packets were reordered' : ''}`, (t) => {
    const rate = totals.lost / (totals.lost + totals.forwarded);
    t.diagnostic(`lost ${totals.lost}, delivered ${totals.forwarded}, reordered ${totals.reordered}: loss rate ${rate.toFixed(4)}`);
    assert.ok(totals.forwarded > 10_000, `only ${totals.forwarded} packets crossed`);
    assert.ok(Math.abs(rate - IMPAIRMENT.loss) < LOSS_RATE_TOLERANCE, `loss rate ${rate}`);
    if (IMPAIRMENT.jitterMs > 0) assert.ok(totals.reordered > 0);
    else assert.equal(totals.reordered, 0, 'no jitter, no reordering');
  });
});
