// PeerSession's security shell: handshake, sealed relay, fingerprint check, phases and the
// direct path's redials, with in-memory signaling, a fake dialer and manual timers. No sockets, no werift.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import type { ClientMessage, ServerMessage } from '../../protocol/signaling.js';
import { ATTEMPT_BASE_MS, type Dialer, type DirectAttempt, type DirectAttemptEvents, REDIAL_BASE_MS } from '../../session/direct.js';
import { PeerSession, type RelaySocket } from '../../session/session.js';
import { Emitter } from '../../transport/emitter.js';
import type { Transport } from '../../transport/reliable.js';
import { ManualTimers } from './timers.js';

const FP_C = Array.from({ length: 32 }, (_, i) => (i + 16).toString(16).toUpperCase().padStart(2, '0')).join(':');
const FP_D = Array.from({ length: 32 }, (_, i) => (i + 100).toString(16).toUpperCase().padStart(2, '0')).join(':');
const OTHER_FP = Array.from({ length: 32 }, () => 'AB').join(':');

function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
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
        if (t?.type !== 'relay') return;
        queueMicrotask(() => to.handleServerMessage(t as ServerMessage));
      },
    }) satisfies RelaySocket;
  const toD = side('c', d);
  const toC = side('d', c);
  return { log, tamper, toD, toC, deliverToDevice: (m: ServerMessage) => d.handleServerMessage(m) };
}

const settle = () => new Promise((r) => setImmediate(r));

function pair(
  opts: { controllerDirect?: boolean; trusted?: boolean; secret?: string; spentAlready?: boolean; dialer?: Dialer; deviceDialer?: Dialer | null } = {},
) {
  const timers = new ManualTimers();
  const dialer = opts.dialer ?? fakeDialer().dialer;
  const deviceDialer = opts.deviceDialer === null ? undefined : (opts.deviceDialer ?? dialer);
  const log: string[] = [];
  const ci = identity();
  const di = identity();
  const spent: string[] = [];
  const controller = new PeerSession({
    role: 'controller',
    sid: 'S1',
    direct: opts.controllerDirect ?? false,
    rtc: { iceServers: [] },
    timers,
    dialer,
    log: (l) => void log.push(l),
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
    ...(deviceDialer ? { dialer: deviceDialer } : {}),
    log: (l) => void log.push(l),
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
  for (const [k, s] of [
    ['c', controller],
    ['d', device],
  ] as const) {
    s.on('secured', (r) => events[k].push(`secured paired=${r.paired}`));
    s.on('refused', (code, _m, remote) => events[k].push(`refused ${code}${remote ? ' remote' : ''}`));
    s.on('security', (code) => events[k].push(`security ${code}`));
  }
  device.on('message', (m) => events.dMessages.push(m));
  controller.on('message', (m) => events.cMessages.push(m));
  return { controller, device, w, events, timers, spent, ci, di, log };
}

test('pairing over the relay secures both sessions; a message sent early arrives once after', async () => {
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

test('wrong secret refuses both sides with wrong-code and spends the code', async () => {
  const p = pair({ secret: 'AAAAAA' });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.c, ['refused wrong-code']);
  assert.deepEqual(p.events.d, ['refused wrong-code remote']);
  assert.deepEqual(p.spent, ['spent']);
});

test('a spent code refuses the next attempt with code-spent', async () => {
  const p = pair({ spentAlready: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.c, ['refused code-spent remote']);
  assert.deepEqual(p.events.d, ['refused code-spent']);
});

test('untrusted controller is refused not-paired; nothing reaches the device', async () => {
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

test('a command reaches the device before any offer; an offer with a rewritten fingerprint still refuses the session', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false']);
  assert.equal(p.device.directPhase, 'idle', 'no offer has arrived');
  p.controller.send({ jsonrpc: '2.0', id: 1, method: 'gpio.write', params: { pin: 20, value: 1 } });
  await settle();
  assert.deepEqual(
    p.events.dMessages,
    [{ jsonrpc: '2.0', id: 1, method: 'gpio.write', params: { pin: 20, value: 1 } }],
    'delivered without waiting for the offer',
  );
  assert.equal(p.timers.now, 0, 'no timer had to fire');
  // An offer whose fingerprint is not the one the controller signed (the server can no longer
  // inject one: signaling is sealed; this is the second line of defence).
  p.controller.send({ sig: { kind: 'offer', sdp: `v=0\r\na=fingerprint:sha-256 ${OTHER_FP}\r\n` } });
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false', 'refused fingerprint-mismatch']);
  assert.deepEqual(p.events.c, ['secured paired=false', 'refused fingerprint-mismatch remote']);
  assert.equal(p.device.phaseName, 'closed');
  assert.equal(p.device.directPhase, 'off', 'no direct path on a refused offer');
  assert.throws(() => p.controller.send({ n: 2 }), 'the controller closed too');
  assert.equal(p.events.dMessages.length, 1, 'nothing after the refusal');
});

test('an answer whose fingerprint is not the one the device signed refuses the session on the controller', async () => {
  const f = fakeDialer();
  const p = pair({ trusted: true, controllerDirect: true, dialer: f.dialer });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.equal(p.controller.directPhase, 'connecting');
  p.device.send({ sig: { kind: 'answer', sdp: `v=0\r\na=fingerprint:sha-256 ${OTHER_FP}\r\n` } });
  await settle();
  assert.deepEqual(p.events.c, ['secured paired=false', 'refused fingerprint-mismatch']);
  assert.deepEqual(p.events.d, ['secured paired=false', 'refused fingerprint-mismatch remote']);
  assert.ok(f.attempts[0]!.closed, "the controller's attempt is closed");
  assert.deepEqual(f.attempts[0]!.signals, [], 'the answer never reached the peer connection');
});

test('an offer with the genuine fingerprint plus an extra sha-512 one is refused', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  p.controller.send({ sig: { kind: 'offer', sdp: `v=0\r\na=fingerprint:sha-256 ${FP_C}\r\na=fingerprint:sha-512 ${OTHER_FP}:${OTHER_FP}\r\n` } });
  await settle();
  assert.deepEqual(p.events.d, ['secured paired=false', 'refused fingerprint-mismatch']);
});

test('the first command rides right behind c2, in the same tick', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  const sameTick: number[] = [];
  p.w.tamper.fn = (_from, m) => {
    // When c2 leaves, note how far the log has got by the next microtask.
    if (m.type === 'relay' && m.data.startsWith('{"hs":"c2"')) queueMicrotask(() => void sameTick.push(p.w.log.length));
    return m;
  };
  p.controller.send({ n: 1 }); // queued: no transport until the handshake ends
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  const fromC = p.w.log.map((e, i) => ({ ...e, i })).filter((e) => e.from === 'c');
  const c2 = fromC.findIndex((e) => e.m.type === 'relay' && e.m.data.startsWith('{"hs":"c2"'));
  assert.ok(c2 > 0, 'c2 was sent');
  const next = fromC[c2 + 1]!;
  assert.ok(next.m.type === 'relay' && !next.m.data.startsWith('{'), 'the next message is sealed');
  assert.ok(next.i < sameTick[0]!, 'sent in the tick that sent c2');
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  assert.equal(p.timers.now, 0);
  await p.controller.close();
  await p.device.close();
});

test('a controller that offers holds nothing up: commands are delivered with no timer fired', async () => {
  const p = pair({ trusted: true, controllerDirect: true });
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  p.controller.send({ n: 1 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  assert.equal(p.timers.now, 0);
  assert.equal(p.device.directPhase, 'idle');
  await p.controller.close();
  await p.device.close();
});

test('a controller that will not offer: commands are delivered and the device takes no direct path', async () => {
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

test('after the handshake, plain text (even a fail) and replayed sealed frames are dropped with codes', async () => {
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
  assert.deepEqual(p.events.d, [
    'secured paired=false',
    'security relay-replay',
    'security relay-unsealed',
    'security relay-unsealed',
    'security relay-bad-mac',
  ]);
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  // The session still works.
  p.controller.send({ n: 3 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 1 }, { n: 3 }]);
  await p.controller.close();
  await p.device.close();
});

/** A direct attempt the test drives: it opens, fails or carries frames when told to. */
class FakeAttempt extends Emitter<DirectAttemptEvents> implements DirectAttempt {
  closed = false;
  readonly sent: string[] = [];
  readonly signals: unknown[] = [];
  constructor(
    readonly role: 'offerer' | 'answerer',
    readonly onFrame: (data: string | Uint8Array) => void,
  ) {
    super();
  }
  async start(): Promise<void> {}
  async handleSignal(p: unknown): Promise<void> {
    this.signals.push(p);
  }
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

test('a failed direct attempt is retried soon, with growing delays, each failure reported once with its cause', async () => {
  const f = fakeDialer();
  const p = pair({ trusted: true, controllerDirect: true, dialer: f.dialer });
  const failures: unknown[] = [];
  p.controller.on('direct-failed', (i) => failures.push(i));
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.equal(f.attempts.length, 1, 'the first attempt starts with the handshake');
  // ICE stuck in `checking` (werift never says failed): the attempt's deadline ends it.
  p.timers.advance(ATTEMPT_BASE_MS - 1);
  assert.deepEqual(failures, []);
  p.timers.advance(1);
  assert.deepEqual(failures, [{ attempt: 0, cause: 'timeout', retryMs: REDIAL_BASE_MS }]);
  assert.ok(f.attempts[0]!.closed);
  assert.equal(p.controller.directPhase, 'backoff');
  p.controller.startDirect(); // dials only from idle
  await settle();
  assert.equal(f.attempts.length, 1, 'no attempt during the backoff');
  p.timers.advance(REDIAL_BASE_MS);
  await settle();
  assert.equal(f.attempts.length, 2, 'a new attempt after REDIAL_BASE_MS');
  // A DTLS failure is reported at once, and the next wait doubles.
  f.attempts[1]!.emit('failed', 'dtls');
  f.attempts[1]!.emit('failed', 'dtls'); // werift may say it twice: one report
  assert.deepEqual(failures.at(-1), { attempt: 1, cause: 'dtls', retryMs: 2 * REDIAL_BASE_MS });
  assert.equal(failures.length, 2);
  p.timers.advance(2 * REDIAL_BASE_MS - 1);
  await settle();
  assert.equal(f.attempts.length, 2);
  p.timers.advance(1);
  await settle();
  assert.equal(f.attempts.length, 3);
  // The third attempt's deadline is four times the first's.
  p.timers.advance(4 * ATTEMPT_BASE_MS - 1);
  assert.equal(failures.length, 2);
  p.timers.advance(1);
  assert.deepEqual(failures.at(-1), { attempt: 2, cause: 'timeout', retryMs: 4 * REDIAL_BASE_MS });
  await p.controller.close();
  await p.device.close();
});

test('an opened channel carries only sealed frames; one that does not open tears it down and alarms the peer', async () => {
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

test('phases: one log line per transition, named as in code, both for the session and its direct path', async () => {
  const f = fakeDialer();
  const p = pair({ trusted: true, controllerDirect: true, dialer: f.dialer });
  assert.equal(p.controller.phaseName, 'waiting');
  assert.equal(p.device.phaseName, 'waiting');
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  assert.equal(p.controller.phaseName, 'handshaking');
  assert.equal(p.controller.directPhase, 'loading', 'the offer is prepared while the handshake runs');
  await settle();
  assert.equal(p.controller.phaseName, 'secured');
  assert.equal(p.device.phaseName, 'secured');
  f.attempts[0]!.open();
  assert.equal(p.controller.directPhase, 'up');
  await p.controller.close();
  await p.device.close();
  assert.equal(p.controller.phaseName, 'closed');
  assert.equal(p.controller.directPhase, 'off');
  assert.ok(p.controller.isSecured && p.controller.peer, 'who it was secured with outlives the session');
  const c = p.log.filter((l) => l.startsWith('controller '));
  assert.deepEqual(c, [
    'controller phase waiting -> handshaking',
    'controller direct idle -> loading',
    'controller phase handshaking -> secured',
    'controller direct loading -> connecting',
    'controller direct connecting -> up',
    'controller phase secured -> closed',
    'controller direct up -> off',
  ]);
  assert.deepEqual(
    p.log.filter((l) => l.startsWith('device ')),
    ['device phase waiting -> handshaking', 'device phase handshaking -> secured', 'device phase secured -> closed', 'device direct idle -> off'],
  );
});

test('without a dialer a session has no direct path and signs no fingerprint', async () => {
  const p = pair({ trusted: true, controllerDirect: true, deviceDialer: null });
  assert.equal(p.device.directPhase, 'off');
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.equal(p.controller.peer?.certFp, null);
  assert.equal(p.controller.directPhase, 'off', 'the controller drops its attempt: the device takes none');
  p.controller.send({ n: 1 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  await p.controller.close();
  await p.device.close();
});

test('a dialer that fails leaves the session on the relay with no direct path', async () => {
  const dialer: Dialer = async () => {
    throw new Error('cannot load');
  };
  const p = pair({ trusted: true, controllerDirect: true, dialer, deviceDialer: fakeDialer().dialer });
  const rtc: string[] = [];
  p.controller.on('rtc', (s) => rtc.push(s));
  p.device.attachSignal(p.w.toC);
  p.controller.attachSignal(p.w.toD);
  await settle();
  assert.equal(p.controller.directPhase, 'off');
  assert.ok(rtc.includes('dial-failed: cannot load'), rtc.join(', '));
  p.controller.send({ n: 1 });
  await settle();
  assert.deepEqual(p.events.dMessages, [{ n: 1 }]);
  await p.controller.close();
  await p.device.close();
});
