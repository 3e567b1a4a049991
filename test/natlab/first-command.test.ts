// The first command rides the relay and waits for nothing the direct path does: with the
// controller's UDP blocked (its STUN gathering waits out its timeout) it must arrive as
// fast as with UDP open. Fresh lab per attempt; medians compared. Needs root.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { assertCommands, CELL_TIMEOUT_MS, fmt, median, runCell } from './cells.js';
import { labAvailable, type RouterKind } from './lab.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;
const DELAY_MS = 20;
const ATTEMPTS = 3;
/** Allowed excess of the blocked median over the open one. */
const MAX_RATIO = 1.1;

const lines: string[] = [];
after(() => {
  if (!skip && lines.length) console.log(['', '## first command, controller UDP open vs blocked', ...lines, ''].join('\n'));
});

async function firstCommands(b: RouterKind): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < ATTEMPTS; i++) {
    const run = await runCell({ a: 'cone', b, delayMs: DELAY_MS });
    assertCommands(run.result, DELAY_MS);
    assert.equal(run.result.phase1[0]?.pathBefore, 'relay', 'the first command goes over the relay');
    out.push(run.result.firstCmdMs!);
  }
  return out;
}

describe('issue 11: the first command does not wait for the direct path', { skip }, () => {
  test(`controller behind udpblock: first command within ${MAX_RATIO}× of a cone controller's (${ATTEMPTS} attempts each, ${DELAY_MS} ms per leg)`, {
    timeout: 2 * ATTEMPTS * CELL_TIMEOUT_MS,
  }, async (t) => {
    const open = await firstCommands('cone');
    const blocked = await firstCommands('udpblock');
    const ratio = median(blocked) / median(open);
    const line = `- cone × cone: first command median ${fmt(median(open))} ms (${open.map(fmt).join('/')}); cone × udpblock: ${fmt(median(blocked))} ms (${blocked.map(fmt).join('/')}); ratio ${ratio.toFixed(2)}`;
    lines.push(line);
    t.diagnostic(line);
    assert.ok(ratio <= MAX_RATIO, `blocked/open = ${ratio.toFixed(2)} > ${MAX_RATIO}`);
  });
});
