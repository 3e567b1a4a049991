// A data channel that the real peer did not open carries nothing that is executed or
// believed. werift 0.25.2 authenticates a DTLS peer by its certificate's hash alone, and a
// certificate crosses the network in clear, so the data channel itself proves nothing. Here a
// rogue werift peer gets a channel to a real PeerSession (device, then controller) with the
// genuine certificate AND key, so DTLS cannot stop it and only the sealing of link frames can.
// Signaling is sealed too, so no server can set this up; the test bypasses it on purpose, by
// handing the session the rogue's description as if it had come sealed from the peer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { type RTCDataChannel, RTCPeerConnection } from 'werift';
import { weriftDialer } from '../../platform/node/direct.js';
import { loadOrCreateDtlsCert } from '../../platform/node/dtls-cert.js';
import { DC_LABEL, type DtlsKeyPair, generateDtlsKeys } from '../../platform/node/rtc.js';
import { splitCandidates } from '../../protocol/sdp.js';
import type { ServerMessage, SignalPayload } from '../../protocol/signaling.js';
import { PeerSession, type RelaySocket } from '../../session/session.js';
import { stateDir, waitFor } from './helpers.js';

const T = 30_000;
const LOOPBACK = ['127.0.0.1'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
}

/** What the test reaches inside a session: its signal path in and out. */
interface Internals {
  onSignal(p: SignalPayload): void;
  sendSignal(p: SignalPayload): void;
}
const inside = (s: PeerSession): Internals => s as unknown as Internals;

/** A controller and a device session, paired by pinned keys over an in-memory relay. */
async function securedPair() {
  const ci = identity();
  const di = identity();
  const cCert = await loadOrCreateDtlsCert(stateDir('seal-c'), generateDtlsKeys);
  const dCert = await loadOrCreateDtlsCert(stateDir('seal-d'), generateDtlsKeys);
  const rtc = (keys: DtlsKeyPair) => ({ iceServers: [], hostAddresses: LOOPBACK, dtlsKeys: keys });
  const controller = new PeerSession({
    role: 'controller',
    sid: 'S9',
    dialer: weriftDialer,
    rtc: rtc(cCert.keys),
    security: { role: 'controller', identity: ci, name: 'laptop', certFp: cCert.fingerprint, expectDevice: di.publicKey },
  });
  const device = new PeerSession({
    role: 'device',
    sid: 'S9',
    dialer: weriftDialer,
    rtc: rtc(dCert.keys),
    security: { role: 'device', identity: di, name: 'board', certFp: dCert.fingerprint, isTrusted: () => true },
  });
  const relayTo = (to: PeerSession) =>
    ({
      send(m: { type: string; data?: string }) {
        if (m.type === 'relay') setImmediate(() => to.handleServerMessage(m as ServerMessage));
      },
    }) as RelaySocket;
  const seen = {
    c: { security: [] as string[], messages: [] as unknown[], paths: [] as string[] },
    d: { security: [] as string[], messages: [] as unknown[], paths: [] as string[] },
  };
  for (const [k, s] of [
    ['c', controller],
    ['d', device],
  ] as const) {
    s.on('security', (code) => seen[k].security.push(code));
    s.on('message', (m) => seen[k].messages.push(m));
    s.on('path', (p) => seen[k].paths.push(p));
  }
  return { controller, device, seen, cCert, dCert, relayTo };
}

/** A werift peer of the attacker's, on loopback, presenting `keys`. */
function roguePeer(keys: DtlsKeyPair): RTCPeerConnection {
  return new RTCPeerConnection({
    iceServers: [],
    iceUseIpv6: false,
    iceAdditionalHostAddresses: LOOPBACK,
    iceInterfaceAddresses: { udp4: '127.0.0.1' },
    iceFilterCandidatePair: (pair) => LOOPBACK.includes(pair.remoteCandidate.host),
    dtls: { keys: keys as never },
  });
}

/** The rogue's description split as DirectPath does it: SDP, then candidates, then end-of-candidates. */
function signalsOf(pc: RTCPeerConnection, kind: 'offer' | 'answer'): SignalPayload[] {
  const { sdp, candidates, mid } = splitCandidates(pc.localDescription!.sdp);
  return [
    { kind, sdp },
    ...candidates.map((c): SignalPayload => ({ kind: 'candidate', candidate: c, sdpMid: mid, sdpMLineIndex: 0 })),
    { kind: 'end-of-candidates' },
  ];
}

async function addCandidates(pc: RTCPeerConnection, signals: SignalPayload[]): Promise<void> {
  for (const s of signals)
    if (s.kind === 'candidate')
      await pc.addIceCandidate({ candidate: s.candidate, sdpMid: s.sdpMid ?? undefined, sdpMLineIndex: s.sdpMLineIndex ?? undefined });
}

function whenOpen(dc: RTCDataChannel, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (dc.readyState === 'open') return resolve();
    const t = setTimeout(() => reject(new Error(`rogue channel not open within ${ms} ms`)), ms);
    dc.stateChanged.subscribe((s) => {
      if (s === 'open') {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

/** Frames the rogue sends: what an unsealed link would have executed or believed. */
function forged(m: unknown, q: number): string {
  return JSON.stringify({ t: 'd', q, a: 0, m });
}

/** A frame with a valid seal header for `dir` (1 = c2d, 2 = d2c) and a random body: only the key can make it open. */
function sealedLooking(dir: number, counter: number): string {
  const b = Buffer.alloc(10 + 40);
  b[0] = 1;
  b[1] = dir;
  b.writeBigUInt64BE(BigInt(counter), 2);
  for (let i = 10; i < b.length; i++) b[i] = (i * 37) & 0xff;
  return b.toString('base64url');
}

/**
 * Opens a data channel from a rogue werift peer to the device session, handing the device
 * the rogue's offer as if it had come sealed from the controller (nothing of the genuine
 * controller's WebRTC leaves it). Resolves with the rogue's open channel.
 */
async function rogueToDevice(p: Awaited<ReturnType<typeof securedPair>>, rogue: RTCPeerConnection): Promise<RTCDataChannel> {
  inside(p.controller).sendSignal = () => undefined;
  const toRogue: SignalPayload[] = [];
  inside(p.device).sendSignal = (s) => void toRogue.push(s);
  p.device.attachSignal(p.relayTo(p.controller));
  p.controller.attachSignal(p.relayTo(p.device));
  await waitFor(() => p.device.isSecured && p.controller.isSecured, 5_000, 'both secured');
  const dc = rogue.createDataChannel(DC_LABEL, { ordered: true });
  await rogue.setLocalDescription(await rogue.createOffer());
  for (const s of signalsOf(rogue, 'offer')) inside(p.device).onSignal(s);
  const answer = await waitFor(() => toRogue.find((s) => s.kind === 'answer'), 10_000, "the device's answer");
  await waitFor(() => toRogue.some((s) => s.kind === 'end-of-candidates'), 5_000, "the device's candidates");
  await rogue.setRemoteDescription({ type: 'answer', sdp: (answer as { sdp: string }).sdp });
  inside(p.device).onSignal({ kind: 'go' });
  await addCandidates(rogue, toRogue);
  await whenOpen(dc, 10_000);
  return dc;
}

test('a data channel the controller did not open executes nothing on the device', { timeout: T }, async () => {
  const p = await securedPair();
  const rogue = roguePeer(p.cCert.keys); // the controller's real certificate and key: DTLS passes
  try {
    const dc = await rogueToDevice(p, rogue);

    // The attack of the review: plain link frames carrying gpio.write 20 1, then a sealed-looking one.
    for (let q = 1; q <= 4; q++) dc.send(forged({ jsonrpc: '2.0', id: `x${q}`, method: 'gpio.write', params: { pin: 20, value: 1 } }, q));
    await waitFor(() => p.seen.d.security.includes('direct-malformed'), 5_000, 'direct-malformed on the device');
    await sleep(300);
    assert.deepEqual(p.seen.d.messages, [], 'nothing reached the device handler');
    assert.ok(!p.seen.d.paths.includes('direct'), `the device never sent on the rogue channel as a path (paths: ${p.seen.d.paths})`);
    // The first bad frame tears the channel down, so later ones are not even opened.
    assert.deepEqual(p.seen.d.security, ['direct-malformed']);
    // The controller hears of it over the sealed relay.
    await waitFor(() => p.seen.c.security.includes('peer-direct-malformed'), 5_000, 'the controller to hear the alarm');
    // The relay still carries the real controller's commands.
    p.controller.send({ jsonrpc: '2.0', id: 'real', method: 'gpio.read', params: { pin: 20 } });
    await waitFor(() => p.seen.d.messages.length === 1, 5_000, 'the genuine command over the relay');
    assert.deepEqual(p.seen.d.messages, [{ jsonrpc: '2.0', id: 'real', method: 'gpio.read', params: { pin: 20 } }]);
  } finally {
    await rogue.close().catch(() => undefined);
    await p.controller.close();
    await p.device.close();
  }
});

test('a fake device on the data channel cannot feed the controller false readings', { timeout: T }, async () => {
  const p = await securedPair();
  const rogue = roguePeer(p.dCert.keys); // the device's real certificate and key
  try {
    const fromController: SignalPayload[] = [];
    inside(p.controller).sendSignal = (s) => void fromController.push(s);
    inside(p.device).sendSignal = () => undefined;
    const channel = new Promise<RTCDataChannel>((r) => rogue.onDataChannel.subscribe((dc) => r(dc)));
    p.device.attachSignal(p.relayTo(p.controller));
    p.controller.attachSignal(p.relayTo(p.device));
    p.controller.startDirect();
    await waitFor(() => p.controller.isSecured, 5_000, 'controller secured');

    const offer = await waitFor(() => fromController.find((s) => s.kind === 'offer'), 10_000, "the controller's offer");
    await waitFor(() => fromController.some((s) => s.kind === 'end-of-candidates'), 5_000, "the controller's candidates");
    await rogue.setRemoteDescription({ type: 'offer', sdp: (offer as { sdp: string }).sdp });
    await rogue.setLocalDescription(await rogue.createAnswer());
    for (const s of signalsOf(rogue, 'answer')) inside(p.controller).onSignal(s);
    // The controller times `go` with pings; the rogue answers them, then takes its candidates.
    let seenUpTo = 0;
    await waitFor(
      () => {
        for (; seenUpTo < fromController.length; seenUpTo++) {
          const s = fromController[seenUpTo]!;
          if (s.kind === 'ping') inside(p.controller).onSignal({ kind: 'pong', n: s.n });
          if (s.kind === 'go') return true;
        }
        return undefined;
      },
      10_000,
      'go',
    );
    await addCandidates(rogue, fromController);
    const dc = await channel;
    await whenOpen(dc, 10_000);

    // A reading and a pin change the controller would have believed.
    dc.send(forged({ jsonrpc: '2.0', id: 'r1', result: { value: 1 } }, 1));
    dc.send(forged({ jsonrpc: '2.0', method: 'gpio.change', params: { pin: 20, value: 1, previous: 0, ts: 1 } }, 2));
    await waitFor(() => p.seen.c.security.includes('direct-malformed'), 5_000, 'direct-malformed on the controller');
    await sleep(300);
    assert.deepEqual(p.seen.c.messages, [], 'nothing reached the controller API');
    assert.ok(!p.seen.c.paths.includes('direct'));
    await waitFor(() => p.seen.d.security.includes('peer-direct-malformed'), 5_000, 'the device to hear the alarm');
  } finally {
    await rogue.close().catch(() => undefined);
    await p.controller.close();
    await p.device.close();
  }
});

test('a sealed-looking frame on the data channel is dropped as direct-bad-mac', { timeout: T }, async () => {
  const p = await securedPair();
  const rogue = roguePeer(p.cCert.keys);
  try {
    const dc = await rogueToDevice(p, rogue);
    dc.send(sealedLooking(1, 0));
    await waitFor(() => p.seen.d.security.includes('direct-bad-mac'), 5_000, 'direct-bad-mac');
    assert.deepEqual(p.seen.d.messages, []);
  } finally {
    await rogue.close().catch(() => undefined);
    await p.controller.close();
    await p.device.close();
  }
});
