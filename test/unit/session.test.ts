// PeerSession's security shell: handshake, sealed relay, offer gate and fingerprint
// check, with in-memory signaling and manual timers. No sockets, no werift.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { EventEmitter } from 'node:events';
import { PeerSession, OFFER_GATE_MS, ATTEMPT_BASE_MS, REDIAL_BASE_MS, type Dialer, type DirectAttempt } from '../../session/session.js';
import type { Transport } from '../../transport/link.js';
import type { Timers } from '../../transport/link.js';
import type { ClientMessage, ServerMessage } from '../../protocol/signaling.js';
import type { SignalClient } from '../../platform/node/signal-client.js';

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

function pair(opts: { controllerDirect?: boolean; trusted?: boolean; secret?: string; spentAlready?: boolean; dialer?: Dialer } = {}) {
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
    ...(opts.dialer ? { dialer: opts.dialer } : {}),
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
    ...(opts.dialer ? { dialer: opts.dialer } : {}),
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

/** A direct attempt the test drives: it opens, fails or carries frames when told to. */
class FakeAttempt extends EventEmitter implements DirectAttempt {
  closed = false;
  readonly sent: string[] = [];
  constructor(
    readonly role: 'offerer' | 'answerer',
    readonly onFrame: (data: string | Buffer) => void,
  ) {
    super();
  }
  async start(): Promise<void> {}
  async handleSignal(): Promise<void> {}
  async close(): Promise<void> {
    this.closed = true;
  }
  /** Opens the channel: a transport that records what the session sends on it. */
  open(): void {
    const t: Transport = { path: 'direct', send: (f) => void this.sent.push(f) };
    this.emit('up', t);
  }
}

function fakeDialer() {
  const attempts: FakeAttempt[] = [];
  const dialer: Dialer = async (role, _cfg, _send, onFrame) => {
    const a = new FakeAttempt(role, onFrame);
    attempts.push(a);
    return a;
  };
  return { attempts, dialer };
}

test('issue 10: a failed direct attempt is retried soon, with growing delays, each failure reported once with its cause', async () => {
  const f = fakeDialer();
  const p = pair({ trusted: true, controllerDirect: true, dialer: f.dialer });
  const failures: unknown[] = [];
  p.controller.on('direct-failed', (i) => failures.push(i));
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.equal(f.attempts.length, 1, 'the first attempt starts with the handshake');
  // ICE stuck in `checking` (werift never says failed): the attempt's deadline ends it.
  p.timers.fire(ATTEMPT_BASE_MS - 1);
  assert.deepEqual(failures, []);
  p.timers.fire(1);
  assert.deepEqual(failures, [{ attempt: 0, cause: 'timeout', retryMs: REDIAL_BASE_MS }]);
  assert.ok(f.attempts[0]!.closed);
  p.timers.fire(REDIAL_BASE_MS);
  await settle();
  assert.equal(f.attempts.length, 2, 'a new attempt after REDIAL_BASE_MS');
  // A DTLS failure is reported at once, and the next wait doubles.
  f.attempts[1]!.emit('failed', 'dtls');
  f.attempts[1]!.emit('failed', 'dtls'); // werift may say it twice: one report
  assert.deepEqual(failures.at(-1), { attempt: 1, cause: 'dtls', retryMs: 2 * REDIAL_BASE_MS });
  assert.equal(failures.length, 2);
  p.timers.fire(2 * REDIAL_BASE_MS - 1);
  await settle();
  assert.equal(f.attempts.length, 2);
  p.timers.fire(1);
  await settle();
  assert.equal(f.attempts.length, 3);
  // The third attempt's deadline is four times the first's.
  p.timers.fire(4 * ATTEMPT_BASE_MS - 1);
  assert.equal(failures.length, 2);
  p.timers.fire(1);
  assert.deepEqual(failures.at(-1), { attempt: 2, cause: 'timeout', retryMs: 4 * REDIAL_BASE_MS });
  await p.controller.close();
  await p.device.close();
});

test('issue 9: an opened channel carries only sealed frames; one that does not open tears it down and alarms the peer', async () => {
  const f = fakeDialer();
  const p = pair({ trusted: true, controllerDirect: true, dialer: f.dialer });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  const a = f.attempts[0]!;
  a.open();
  assert.ok(a.sent.length > 0, 'the link probes the new channel');
  for (const frame of a.sent) {
    assert.match(frame, /^[A-Za-z0-9_-]+$/, 'sealed, base64url');
    assert.ok(!frame.includes('"t"'));
  }
  // A relay frame of this session does not open on the direct path: keys of its own.
  p.device.send({ n: 1 });
  await settle();
  const relayFrame = p.w.log.filter((e) => e.from === 'd' && e.m.type === 'relay' && !(e.m.data as string).startsWith('{')).at(-1)!.m as { data: string };
  a.onFrame(relayFrame.data);
  await settle();
  assert.deepEqual(p.events.c, ['secured paired=false', 'security direct-bad-mac']);
  assert.ok(a.closed, 'torn down');
  assert.equal(p.controller.path, 'relay');
  assert.deepEqual(p.events.d, ['secured paired=false', 'security peer-direct-bad-mac']);
  assert.deepEqual(p.events.cMessages, [{ n: 1 }], 'only what came over the relay');
  await p.controller.close();
  await p.device.close();
});
