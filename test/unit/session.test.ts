// PeerSession's security shell: handshake, sealed relay, offer gate and fingerprint
// check, with in-memory signaling and manual timers. No sockets, no werift.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { PeerSession, OFFER_GATE_MS } from '../../link/session.js';
import type { Timers } from '../../link/link.js';
import type { ClientMessage, ServerMessage } from '../../link/protocol.js';
import type { SignalClient } from '../../link/signal-client.js';

const FP_C = Array.from({ length: 32 }, (_, i) => (i + 16).toString(16).toUpperCase().padStart(2, '0')).join(':');
const FP_D = Array.from({ length: 32 }, (_, i) => (i + 100).toString(16).toUpperCase().padStart(2, '0')).join(':');
const OTHER_FP = Array.from({ length: 32 }, () => 'AB').join(':');

function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
}

/** Timers the test fires by hand; `fire(ms)` runs those due within ms of "now". */
function manualTimers(): Timers & { fire(ms: number): void } {
  let now = 0;
  let q: { at: number; fn: () => void; id: number }[] = [];
  let n = 0;
  return {
    setTimeout: (fn, ms) => (q.push({ at: now + ms, fn, id: ++n }), n),
    clearTimeout: (h) => void (q = q.filter((t) => t.id !== h)),
    fire(ms) {
      now += ms;
      const due = q.filter((t) => t.at <= now);
      q = q.filter((t) => t.at > now);
      for (const t of due) t.fn();
    },
  };
}

/**
 * A fake server between two sessions: `relay` and `signal` go to the other side
 * (after optional tampering) on the next microtask; everything is recorded.
 */
function wire(c: PeerSession, d: PeerSession) {
  const log: { from: 'c' | 'd'; m: ClientMessage }[] = [];
  const tamper: { fn: (from: 'c' | 'd', m: ClientMessage) => ClientMessage | null } = { fn: (_f, m) => m };
  const side = (from: 'c' | 'd', to: PeerSession) =>
    ({
      send(m: ClientMessage) {
        log.push({ from, m });
        const t = tamper.fn(from, m);
        if (!t || t.type !== 'relay') return;
        queueMicrotask(() => to.handleServerMessage(t as ServerMessage));
      },
    }) as unknown as SignalClient;
  const toD = side('c', d);
  const toC = side('d', c);
  return { log, tamper, toD, toC, deliverToDevice: (m: ServerMessage) => d.handleServerMessage(m) };
}

const settle = () => new Promise((r) => setImmediate(r));

function pair(opts: { controllerDirect?: boolean; trusted?: boolean; secret?: string; spentAlready?: boolean } = {}) {
  const timers = manualTimers();
  const ci = identity();
  const di = identity();
  const spent: string[] = [];
  const controller = new PeerSession({
    role: 'controller',
    sid: 'S1',
    direct: opts.controllerDirect ?? false,
    rtc: { iceServers: [] },
    timers,
    security: {
      role: 'controller',
      identity: ci,
      name: 'laptop',
      certFp: FP_C,
      ...(opts.trusted ? { expectDevice: di.publicKey } : { pairingSecret: opts.secret ?? 'X3PD9H' }),
    },
  });
  let deviceSecret: string | undefined = opts.spentAlready ? undefined : 'X3PD9H';
  const device = new PeerSession({
    role: 'device',
    sid: 'S1',
    direct: true,
    rtc: { iceServers: [] },
    timers,
    security: {
      role: 'device',
      identity: di,
      name: 'board',
      certFp: FP_D,
      isTrusted: (k) => opts.trusted === true && Buffer.from(k).equals(Buffer.from(ci.publicKey)),
      ...(opts.trusted
        ? {}
        : {
            pairingSecret: () => deviceSecret,
            onPairingAttempt: () => {
              spent.push('spent');
              deviceSecret = undefined;
            },
          }),
    },
  });
  const w = wire(controller, device);
  const events = { c: [] as string[], d: [] as string[], dMessages: [] as unknown[], cMessages: [] as unknown[] };
  for (const [k, s] of [['c', controller], ['d', device]] as const) {
    s.on('secured', (r) => events[k].push(`secured paired=${r.paired}`));
    s.on('refused', (code, _m, remote) => events[k].push(`refused ${code}${remote ? ' remote' : ''}`));
    s.on('security', (code) => events[k].push(`security ${code}`));
  }
  device.on('message', (m) => events.dMessages.push(m));
  controller.on('message', (m) => events.cMessages.push(m));
  return { controller, device, w, events, timers, spent, ci, di };
}

test('issue 4: pairing over the relay secures both sessions; a message sent early arrives once after', async () => {
  const p = pair();
  p.device.attachSignal(p.w.toC);
  p.controller.send({ hello: 1 }); // queued: no transport until the handshake ends
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.c, ['secured paired=true']);
  assert.deepEqual(p.events.d, ['secured paired=true']);
  assert.deepEqual(p.events.dMessages, [{ hello: 1 }]);
  assert.deepEqual(p.spent, ['spent']);
  assert.equal(p.device.peer?.certFp, null, 'a controller that will not offer signs no fingerprint');
  assert.equal(p.device.peer?.direct, false);
  assert.equal(p.controller.peer?.certFp, FP_D);
  // After the handshake no relay frame carries the plaintext.
  const after = p.w.log.filter((e) => e.m.type === 'relay' && !(e.m.data as string).startsWith('{'));
  assert.ok(after.length > 0);
  for (const e of after) assert.ok(!(e.m as { data: string }).data.includes('hello'));
  await p.controller.close();
  await p.device.close();
});

test('issue 4: wrong secret refuses both sides with wrong-code and spends the code', async () => {
  const p = pair({ secret: 'AAAAAA' });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.c, ['refused wrong-code']);
  assert.deepEqual(p.events.d, ['refused wrong-code remote']);
  assert.deepEqual(p.spent, ['spent']);
});

test('issue 4: a spent code refuses the next attempt with code-spent', async () => {
  const p = pair({ spentAlready: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.c, ['refused code-spent remote']);
  assert.deepEqual(p.events.d, ['refused code-spent']);
});

test('issue 4: untrusted controller is refused not-paired; nothing reaches the device', async () => {
  const p = pair({ trusted: true });
  (p.device as unknown as { opts: { security: { isTrusted: () => boolean } } }).opts.security.isTrusted = () => false;
  p.device.attachSignal(p.w.toC);
  p.controller.send({ jsonrpc: '2.0', id: 1, method: 'gpio.write', params: { pin: 20, value: 1 } });
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.d, ['refused not-paired']);
  assert.deepEqual(p.events.c, ['secured paired=false', 'refused not-paired remote']);
  assert.deepEqual(p.events.dMessages, []);
});

test('issue 4: the device holds commands until the offer, and a rewritten fingerprint refuses the session having run nothing', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false']);
  p.controller.send({ jsonrpc: '2.0', id: 1, method: 'gpio.write', params: { pin: 20, value: 1 } });
  await settle();
  assert.deepEqual(p.events.dMessages, [], 'held behind the offer gate');
  // An offer whose fingerprint is not the one the controller signed (the server can no longer
  // inject one: signaling is sealed; this is the second line of defence).
  p.controller.send({ sig: { kind: 'offer', sdp: `v=0\r\na=fingerprint:sha-256 ${OTHER_FP}\r\n` } });
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false', 'refused fingerprint-mismatch']);
  assert.deepEqual(p.events.c, ['secured paired=false', 'refused fingerprint-mismatch remote']);
  assert.deepEqual(p.events.dMessages, [], 'nothing was executed');
});

test('issue 4: an offer with the genuine fingerprint plus an extra sha-512 one is refused', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  p.controller.send({ sig: { kind: 'offer', sdp: `v=0\r\na=fingerprint:sha-256 ${FP_C}\r\na=fingerprint:sha-512 ${OTHER_FP}:${OTHER_FP}\r\n` } });
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false', 'refused fingerprint-mismatch']);
});

test('issue 4: with no offer the gate opens after OFFER_GATE_MS', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  p.controller.send({ n: 1 });
  await settle();
  assert.deepEqual(p.events.dMessages, []);
  p.timers.fire(OFFER_GATE_MS - 1);
  assert.deepEqual(p.events.dMessages, []);
  p.timers.fire(1);
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  await p.controller.close();
  await p.device.close();
});

test('issue 4: a controller that will not offer is not gated', async () => {
  const p = pair({ trusted: true, controllerDirect: false });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  p.controller.send({ n: 2 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 2 }]);
  await p.controller.close();
  await p.device.close();
});

test('issue 4: after the handshake, plain text (even a fail) and replayed sealed frames are dropped with codes', async () => {
  const p = pair({ trusted: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  p.controller.send({ n: 1 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  const sealed = p.w.log.filter((e) => e.from === 'c' && e.m.type === 'relay' && !(e.m.data as string).startsWith('{'));
  const last = sealed.at(-1)!.m as { type: 'relay'; data: string };
  p.w.deliverToDevice({ type: 'relay', data: last.data });
  p.w.deliverToDevice({ type: 'relay', data: '{"t":"d","q":2,"a":0,"m":{"n":666}}' });
  p.w.deliverToDevice({ type: 'relay', data: '{"hs":"fail","code":"not-paired"}' }); // the device has seen sealed frames: a fail now is forged
  p.w.deliverToDevice({ type: 'relay', data: Buffer.from([1, 1, 0, 0, 0, 0, 0, 0, 0, 99, ...new Array(30).fill(7)]).toString('base64url') });
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false', 'security relay-replay', 'security relay-unsealed', 'security relay-unsealed', 'security relay-bad-mac']);
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  // The session still works.
  p.controller.send({ n: 3 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 1 }, { n: 3 }]);
  await p.controller.close();
  await p.device.close();
});
