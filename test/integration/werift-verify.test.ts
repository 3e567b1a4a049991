// Two real werift peer connections on loopback, configured by platform/node/rtc.ts (DirectPath:
// iceServers [], host candidates and pairs on 127.0.0.1 only), signals handed over
// directly. One side presents a stolen certificate (the real peer's certPem) with a
// random key: the DTLS handshake must fail and the data channel never open.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { DirectPath, type DtlsKeyPair, generateDtlsKeys, type RtcConfig } from '../../platform/node/rtc.js';
import type { SignalPayload } from '../../protocol/signaling.js';
import { waitFor } from './helpers.js';

const LOOPBACK = '127.0.0.1';
/** How long a pairing with a stolen certificate is watched; an honest pairing opens in about a second here. */
const NEVER_OPENS_MS = 5_000;
/** Longest wait for the honest pairing's channel. */
const OPENS_WITHIN_MS = 10_000;

type Role = 'offerer' | 'answerer';
interface Watched {
  up: Record<Role, boolean>;
  /** Frames each side received over the data channel. */
  frames: Record<Role, string[]>;
  /** DirectPath 'state' events per side (connection and ICE states). */
  states: Record<Role, string[]>;
}

const rtcConfig = (dtlsKeys: DtlsKeyPair): RtcConfig => ({ iceServers: [], hostAddresses: [LOOPBACK], dtlsKeys });

/** A fresh P-256 key in place of `real`'s: its certificate is public, its key is not. */
function stolen(real: DtlsKeyPair): DtlsKeyPair {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { certPem: real.certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), signatureHash: real.signatureHash };
}

/** Runs an offerer/answerer pair until `done` holds or `ms` pass, then closes both. */
async function pair(keys: Record<Role, DtlsKeyPair>, ms: number, done: (w: Watched) => boolean): Promise<Watched> {
  const w: Watched = { up: { offerer: false, answerer: false }, frames: { offerer: [], answerer: [] }, states: { offerer: [], answerer: [] } };
  const paths = {} as Record<Role, DirectPath>;
  // Signals go through a tick, as through the relay.
  const relay = (to: Role) => (p: SignalPayload) => void setImmediate(() => void paths[to].handleSignal(p));
  for (const [role, other] of [
    ['offerer', 'answerer'],
    ['answerer', 'offerer'],
  ] as const) {
    // The offerer speaks first once its channel is up, the answerer answers what it receives.
    const path = new DirectPath(role, rtcConfig(keys[role]), relay(other), (data, t) => {
      w.frames[role].push(String(data));
      if (role === 'answerer') t.send(`hello from the ${role}`);
    });
    path.on('state', (s) => void w.states[role].push(s));
    path.on('up', (t) => {
      w.up[role] = true;
      if (role === 'offerer') t.send(`hello from the ${role}`);
    });
    paths[role] = path;
  }
  try {
    await paths.offerer.start();
    await waitFor(() => done(w), ms, 'the pairing').catch(() => undefined);
    return w;
  } finally {
    await Promise.all([paths.offerer.close(), paths.answerer.close()]);
  }
}

const iceConnected = (states: string[]) => states.includes('ice-connected');

test('an honest pairing opens its data channel (stored certificates, as pinhole configures werift)', async () => {
  const w = await pair(
    { offerer: await generateDtlsKeys(), answerer: await generateDtlsKeys() },
    OPENS_WITHIN_MS,
    (x) => x.frames.offerer.length > 0 && x.frames.answerer.length > 0,
  );
  assert.deepEqual(w.up, { offerer: true, answerer: true }, `states: ${JSON.stringify(w.states)}`);
  assert.deepEqual(w.frames, { offerer: ['hello from the answerer'], answerer: ['hello from the offerer'] });
});

for (const [attacker, honest] of [
  ['answerer', 'offerer'],
  ['offerer', 'answerer'],
] as const) {
  const check = attacker === 'answerer' ? "the offerer's DTLS server checks its CertificateVerify" : "the answerer's DTLS client checks its ServerKeyExchange";
  test(`the ${attacker} with a stolen certificate and a random key never opens a data channel (${check})`, async () => {
    const real = await generateDtlsKeys();
    const keys = { [attacker]: stolen(real), [honest]: await generateDtlsKeys() } as Record<Role, DtlsKeyPair>;
    const w = await pair(keys, NEVER_OPENS_MS, () => false);
    assert.deepEqual(w.up, { offerer: false, answerer: false }, `states: ${JSON.stringify(w.states)}`);
    assert.deepEqual(w.frames, { offerer: [], answerer: [] });
    // ICE connected, so it is DTLS that refused, and the honest side saw it fail.
    assert.ok(iceConnected(w.states.offerer) && iceConnected(w.states.answerer), `ICE did not connect: ${JSON.stringify(w.states)}`);
    assert.ok(w.states[honest].includes('failed'), `the ${honest}'s connection did not fail: ${JSON.stringify(w.states[honest])}`);
  });
}
