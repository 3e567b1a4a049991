// `pinhole doctor` behind each NAT lab router kind: the server namespace runs
// `pinhole signal --stun-alt-host <second address>`, dev (behind router A) runs
// `pinhole doctor --json`, and the RFC 5780 classification must match the router's rules
// (docs/natlab.md "Router kinds"). Needs root; skipped otherwise.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { BIN } from '../integration/helpers.js';
import { createLab, type Lab, labAvailable, type RouterKind } from './lab.js';

const avail = labAvailable();
const skip: string | false = avail.ok ? false : avail.reason;

const SIGNAL_PORT = 8080;
const STUN_PORT = 3478;
// The doctor's worst case is about 2 × its timeout (filtering negatives, then hairpinning); generous on a busy 2-core machine.
const DOCTOR_EXEC_TIMEOUT_MS = 20_000;
const LISTEN_TIMEOUT_MS = 10_000;
const LAB_TIMEOUT_MS = 60_000;

/** Creates a lab with router A of `kind`, starts the RFC 5780 signaling server, tears both down after. */
function withDoctorLab(kind: RouterKind): () => Lab {
  let lab: Lab | undefined;
  let server: ChildProcess | undefined;
  before(async () => {
    lab = await createLab({ a: kind, b: 'cone' });
    const [primary, alt] = lab.serverAddrs;
    server = lab.run(
      'server',
      [process.execPath, BIN, 'signal', '--host', primary, '--port', String(SIGNAL_PORT), '--stun-port', String(STUN_PORT), '--stun-alt-host', alt],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('pinhole signal did not print its listening line')), LISTEN_TIMEOUT_MS);
      createInterface({ input: server!.stdout! }).once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
    assert.deepEqual(JSON.parse(first), {
      event: 'listening',
      ws: `ws://${primary}:${SIGNAL_PORT}`,
      http: `http://${primary}:${SIGNAL_PORT}/healthz`,
      metrics: `http://${primary}:${SIGNAL_PORT}/metrics`,
      stun: `udp://${primary}:${STUN_PORT}`,
      stunAlt: `udp://${alt}:${STUN_PORT + 1}`,
    });
  });
  after(async () => {
    server?.kill('SIGTERM');
    await lab?.destroy();
  });
  return () => lab!;
}

async function doctor(lab: Lab, extra: string[] = []): Promise<{ code: number | null; stdout: string; json: Record<string, unknown> }> {
  const r = await lab.exec('dev', [process.execPath, BIN, 'doctor', '--server', `ws://${lab.serverAddrs[0]}:${SIGNAL_PORT}`, '--json', ...extra], {
    timeoutMs: DOCTOR_EXEC_TIMEOUT_MS,
  });
  assert.equal(r.timedOut, false, 'doctor finished');
  return { code: r.code, stdout: r.stdout, json: JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown> };
}

test('natlab is available for the doctor tests', { skip }, () => {
  assert.ok(avail.ok);
});

describe('natlab doctor: behind cone', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withDoctorLab('cone');

  test('issue 3: endpoint-independent mapping, address-and-port-dependent filtering, direct likely', async () => {
    const r = await doctor(lab());
    assert.equal(r.code, 0, r.stdout);
    const j = r.json;
    assert.equal(j.udp, 'ok');
    assert.equal(j.nat, 'yes');
    assert.match(String(j.publicAddress), new RegExp(`^${lab().addrs.routerA.replaceAll('.', '\\.')}:\\d+$`));
    assert.equal(j.localAddress?.toString().split(':')[0], lab().addrs.dev);
    assert.equal(j.discovery, 'available');
    assert.equal(j.stunAlt, `udp://${lab().serverAddrs[1]}:${STUN_PORT + 1}`);
    assert.equal(j.mapping, 'endpoint-independent');
    assert.equal(j.filtering, 'address-and-port-dependent');
    assert.equal(j.hairpinning, 'no', 'the lab does not model hairpinning (docs/natlab.md)');
    assert.equal(j.verdict, 'direct');
    // Two internet legs each way at the lab's default 20 ms: about 80 ms.
    assert.ok(typeof j.latencyMs === 'number' && j.latencyMs >= 4 * lab().delayMs && j.latencyMs < 4 * lab().delayMs + 60, `latency ${j.latencyMs}`);
  });
});

describe('natlab doctor: behind symmetric', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withDoctorLab('symmetric');

  test('issue 3: endpoint-dependent (address-and-port-dependent) mapping, relay will be used', async () => {
    const r = await doctor(lab());
    assert.equal(r.code, 0, r.stdout);
    const j = r.json;
    assert.equal(j.udp, 'ok');
    assert.equal(j.nat, 'yes');
    assert.equal(j.mapping, 'address-and-port-dependent');
    assert.equal(j.filtering, 'address-and-port-dependent');
    assert.equal(j.verdict, 'relay');
    assert.match((j.reasons as string[])[0]!, /symmetric/);
  });
});

describe('natlab doctor: behind udpblock', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withDoctorLab('udpblock');

  test('issue 3: UDP blocked (the server is reached over TCP), relay, exit 0', async () => {
    const r = await doctor(lab());
    assert.equal(r.code, 0, r.stdout);
    const j = r.json;
    assert.equal(j.ok, true);
    assert.equal(j.udp, 'blocked');
    assert.equal(j.publicAddress, null);
    assert.equal(j.verdict, 'relay');
    assert.match((j.reasons as string[])[0]!, /UDP is blocked/);
  });
});

describe('natlab doctor: behind open', { skip, timeout: LAB_TIMEOUT_MS }, () => {
  const lab = withDoctorLab('open');

  test("issue 3: no NAT (the public address is dev's own), nothing filtered, direct", async () => {
    const r = await doctor(lab());
    assert.equal(r.code, 0, r.stdout);
    const j = r.json;
    assert.equal(j.udp, 'ok');
    assert.equal(j.nat, 'none');
    assert.equal(String(j.publicAddress).split(':')[0], lab().addrs.dev);
    assert.equal(j.publicAddress, j.localAddress);
    assert.equal(j.mapping, 'endpoint-independent');
    assert.equal(j.filtering, 'endpoint-independent');
    assert.equal(j.verdict, 'direct');
  });
});
