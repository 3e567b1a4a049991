// TURN: both peers behind symmetric NATs (where the matrix shows the link stays on the
// relay) reach each other through coturn in the server namespace, and report path 'turn'.
// Once through the controller API (`iceServers`), once through the CLI (`--ice-server` on
// both `device` and `control`). Needs root and coturn (`apt-get install -y coturn`);
// skipped otherwise, with the reason.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';
import { createLab, type Lab, labAvailable } from './lab.js';
import {
  CLI,
  CODE,
  controllerStateDir,
  devicePaths,
  deviceReaches,
  Lines,
  runDriver,
  serverFrames,
  serverUrl,
  startDevice,
  startSignal,
  startTurn,
  TURN_PASS,
  TURN_PORT,
  TURN_USER,
  turnAddr,
  turnAvailable,
  turnRelayedPackets,
  turnUrl,
} from './peers.js';

const avail = labAvailable();
const skip: string | false = !avail.ok ? avail.reason : !turnAvailable() ? 'coturn not installed (apt-get install -y coturn)' : false;

const DELAY_MS = 20;
const WAIT_MS = 8_000;
const DEVICE_SWITCH_MS = 3_000;
const TEST_TIMEOUT_MS = 60_000;

const summary: string[] = [];
after(() => {
  if (!skip && summary.length) console.log(['', '## TURN summary (symmetric × symmetric, coturn in the server namespace)', '', ...summary, ''].join('\n'));
});

/** A symmetric × symmetric lab with the signaling server and coturn running; destroyed by the test. */
async function turnLab(t: { after: (f: () => Promise<void>) => void }): Promise<Lab> {
  const lab = await createLab({ a: 'symmetric', b: 'symmetric', delayMs: DELAY_MS });
  let dir: string | undefined;
  t.after(async () => {
    await lab.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  await startSignal(lab);
  dir = (await startTurn(lab)).dir;
  return lab;
}

describe('pinhole over TURN: symmetric × symmetric with coturn', { skip }, () => {
  test('controller API (iceServers) and device --ice-server: path "turn", commands and watch work', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const lab = await turnLab(t);
    const dev = await startDevice(lab, { iceServers: [turnUrl(lab)] });
    let turnBefore = NaN;
    let framesBefore = NaN;
    let relayed = NaN;
    let frames = NaN;
    const { result: r } = await runDriver(
      lab,
      {
        directWaitMs: WAIT_MS,
        iceServers: [{ urls: `turn:${turnAddr(lab)}:${TURN_PORT}`, username: TURN_USER, credential: TURN_PASS }],
      },
      {
        beforePhase2: async (path) => {
          if (path === 'turn') await deviceReaches(dev, ['turn', 'direct'], DEVICE_SWITCH_MS);
          [turnBefore, framesBefore] = await Promise.all([turnRelayedPackets(lab), serverFrames(lab)]);
        },
        afterPhase2: async () => {
          const [turnAfter, framesAfter] = await Promise.all([turnRelayedPackets(lab), serverFrames(lab)]);
          relayed = turnAfter - turnBefore;
          frames = framesAfter - framesBefore;
        },
      },
    );
    const line =
      `API: path ${r.finalPath}, first command ${Math.round(r.firstCmdMs ?? NaN)} ms, on TURN after ${Math.round(r.directMs ?? NaN)} ms, ` +
      `phase-2 RTTs ${r.phase2.map((c) => c.rttMs).join('/')} ms; during phase 2 coturn sent ${relayed} packets from its relay ports ` +
      `and the signaling server received ${frames} frames`;
    summary.push(`- ${line}`);
    t.diagnostic(line);

    assert.ok(r.ok, `driver failed at ${r.stage}: ${r.error}`);
    assert.equal(r.phase1[0]!.pathBefore, 'relay', 'first command over the server relay');
    assert.equal(r.phase1.find((c) => c.cmd === 'read 20')?.value, 1);
    assert.equal(r.change1?.edge, 'rising');
    assert.equal(r.phase2.find((c) => c.cmd === 'read 20')?.value, 0);
    assert.equal(r.change2?.edge, 'falling');
    assert.equal(r.reachedDirect, true, `no data channel within ${WAIT_MS} ms; rtc: ${r.rtc.map((x) => x.state).join(', ')}`);
    assert.deepEqual(
      r.paths.map((p) => p.path),
      ['turn'],
      'relay → turn, never direct',
    );
    assert.ok(devicePaths(dev).includes('turn'), `device paths: ${devicePaths(dev).join(', ')}`);
    assert.ok(!devicePaths(dev).includes('direct'), `device paths: ${devicePaths(dev).join(', ')}`);
    assert.equal(r.pathChangesInPhase2, 0);
    for (const c of r.phase2) {
      assert.equal(c.pathBefore, 'turn', c.cmd);
      assert.equal(c.pathAfter, 'turn', c.cmd);
    }
    assert.equal(r.change2?.path, 'turn');
    // Phase 2 sent 3 requests and got 3 answers and 1 change, one message at a time; one
    // direction leaves coturn from a relay port (which one depends on the chosen pair).
    assert.ok(relayed >= 3, `coturn relayed only ${relayed} packets during phase 2`);
    assert.equal(frames, 0, `the signaling server relayed ${frames} frames during phase 2`);
  });

  test('CLI: control --ice-server … --json shell reports path "turn"', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const lab = await turnLab(t);
    const dev = await startDevice(lab, { iceServers: [turnUrl(lab)] });
    const ctl = lab.run(
      'ctl',
      [
        process.execPath,
        CLI,
        'control',
        '--server',
        serverUrl(lab),
        '--code',
        CODE,
        '--state-dir',
        controllerStateDir(lab),
        '--name',
        'natlab-cli',
        '--json',
        '--ice-server',
        turnUrl(lab),
        'shell',
      ],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    ctl.stdin!.on('error', () => {});
    const out = new Lines(ctl.stdout!);
    const err = new Lines(ctl.stderr!);
    const exited = new Promise<number | null>((r) => ctl.once('close', (code) => r(code)));
    const isTurnEvent = (l: string): boolean => /"event":"path"/.test(l) && /"path":"turn"/.test(l);
    await out.waitFor(isTurnEvent, WAIT_MS + 5_000, 'controller path event "turn"');
    await deviceReaches(dev, ['turn'], DEVICE_SWITCH_MS);
    ctl.stdin!.write('write 20 1\nread 20\npath\nquit\n');
    const code = await exited;
    const results = out.json().filter((o) => 'ok' in o);
    const line = `CLI: ${results.map((o) => `${String(o.cmd)} → ${String(o.path)}${o.rttMs !== undefined ? ` (${String(o.rttMs)} ms)` : ''}`).join(', ')}`;
    summary.push(`- ${line}`);
    t.diagnostic(line);
    assert.equal(code, 0, `exit ${code}; stderr: ${err.all.join('\n')}`);
    assert.deepEqual(
      results.map((o) => [o.ok, o.cmd, o.value, o.path]),
      [
        [true, 'write', 1, 'turn'],
        [true, 'read', 1, 'turn'],
        [true, 'path', undefined, 'turn'],
      ],
      out.all.join('\n'),
    );
  });
});
