// The controller's Device: its phases (open, reconnecting, connecting, closed), one log line per
// change, and how a refusal code from the network becomes an ErrorCode. Real PeerSessions with
// real identities and the real handshake, wired in memory (no server, no sockets, relay only).

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { Device, type Opened, RECONNECT_BASE_MS, refusalError } from '../../controller/client.js';
import type { SignalClient } from '../../platform/node/signal-client.js';
import { type ErrorCode, PinholeError } from '../../protocol/errors.js';
import type { ClientMessage, ServerMessage } from '../../protocol/signaling.js';
import { PeerSession } from '../../session/session.js';

function identity() {
  const sk = ed25519.utils.randomSecretKey();
  return { publicKey: ed25519.getPublicKey(sk), sign: (m: Uint8Array) => ed25519.sign(m, sk) };
}

/** One side's socket to a server that only relays: what it sends comes out of `other` as a `message`. */
class MemorySignal extends EventEmitter {
  other: MemorySignal | undefined;
  closed = false;
  send(m: ClientMessage): void {
    if (this.closed || m.type !== 'relay') return;
    const to = this.other;
    queueMicrotask(() => to?.emit('message', { type: 'relay', data: m.data } satisfies ServerMessage));
  }
  close(): void {
    this.closed = true;
  }
}

const ctlId = identity();
const devId = identity();
let sid = 0;

/** A controller session secured with a device session; the device answers every request with `answer`. */
async function securedPair(answer: (method: string) => unknown = () => ({})) {
  const s = `S${++sid}`;
  const controller = new PeerSession({
    role: 'controller',
    sid: s,
    direct: false,
    rtc: { iceServers: [] },
    security: { role: 'controller', identity: ctlId, name: 'laptop', certFp: null, expectDevice: devId.publicKey },
  });
  const device = new PeerSession({
    role: 'device',
    sid: s,
    direct: false,
    rtc: { iceServers: [] },
    security: { role: 'device', identity: devId, name: 'board', certFp: null, isTrusted: () => true },
  });
  const toDevice = new MemorySignal();
  const toController = new MemorySignal();
  toDevice.other = toController;
  toController.other = toDevice;
  // The device side has no Device: its socket feeds its session directly.
  toController.on('message', (m: ServerMessage) => device.handleServerMessage(m));
  const requests: string[] = [];
  device.on('message', (m) => {
    const r = m as { id: string; method: string };
    requests.push(r.method);
    device.send({ jsonrpc: '2.0', id: r.id, result: answer(r.method) });
  });
  // Until a Device takes over, route the handshake by hand (connect() does the same).
  const route = (m: ServerMessage): void => controller.handleServerMessage(m);
  toDevice.on('message', route);
  const secured = new Promise<void>((resolve, reject) => {
    controller.once('secured', () => resolve());
    controller.once('refused', (code) => reject(new Error(`refused: ${code}`)));
  });
  device.attachSignal(toController as unknown as SignalClient);
  controller.attachSignal(toDevice as unknown as SignalClient);
  await secured;
  const opened: Opened = { signal: toDevice as unknown as SignalClient, session: controller, unroute: () => toDevice.off('message', route) };
  return { opened, controller, device, toDevice, toController, requests };
}

const closeReason = (dev: Device): Promise<PinholeError | undefined> => new Promise((r) => dev.once('close', r));

test('a refusal code this build knows is kept; any other becomes bad-handshake', () => {
  for (const code of ['wrong-code', 'code-spent', 'not-paired', 'device-changed', 'bad-handshake', 'fingerprint-mismatch'] as const) {
    const e = refusalError(code, 'm');
    assert.equal(e.code, code);
    assert.equal(e.message, 'm');
  }
  // Codes that exist but are no refusal (overflow, usage, timeout) are as unreadable as made-up ones.
  for (const code of ['from-the-future', 'overflow', 'usage', 'timeout', 'toString', '__proto__', 'constructor', '', 'x'.repeat(10_000)]) {
    const e = refusalError(code, 'm');
    assert.ok(e instanceof PinholeError);
    assert.equal(e.code, 'bad-handshake', JSON.stringify(code.slice(0, 20)));
    assert.ok(e.message.length < 200);
  }
});

test('a device that refuses the session with an unknown code closes the Device with bad-handshake', async () => {
  const p = await securedPair();
  const lines: string[] = [];
  const dev = new Device(p.opened.signal, p.opened.session, 2_000, undefined, p.opened.unroute, (l) => lines.push(l));
  const closed = closeReason(dev);
  const pending = dev.read(20).catch((e: PinholeError) => e);
  // A newer (or hostile) device's code: sealed, so it passes every check but the code's.
  p.device.refuse('from-the-future' as ErrorCode as 'bad-handshake', 'go away');
  const reason = await closed;
  assert.equal(reason?.code, 'bad-handshake');
  // What a refusal code may become is documented: bad-handshake is a known ErrorCode, and fatal.
  assert.equal(((await pending) as PinholeError).code, 'bad-handshake');
  assert.equal(dev.path, 'none');
  assert.deepEqual(lines, ['Device phase open -> closed: bad-handshake (reconnect off)']);
});

test('a lost session goes open -> reconnecting -> connecting -> open, resends what was pending, and logs each change', async () => {
  const first = await securedPair();
  let second: Awaited<ReturnType<typeof securedPair>> | undefined;
  let reopens = 0;
  const reopen = async (): Promise<Opened> => {
    reopens++;
    if (reopens === 1) throw new PinholeError('device-offline', 'not back yet');
    second = await securedPair((m) => (m === 'gpio.read' ? { pin: 20, value: 1 } : {}));
    return second.opened;
  };
  const lines: string[] = [];
  const dev = new Device(first.opened.signal, first.opened.session, 10_000, reopen, first.opened.unroute, (l) => lines.push(l));
  const disconnected = new Promise<PinholeError>((r) => dev.once('disconnected', r));
  const reconnected = new Promise<void>((r) => dev.once('reconnected', () => r()));
  // The device leaves the server, and with it the only path.
  first.toDevice.emit('message', { type: 'peer-left', session: 'S' } satisfies ServerMessage);
  assert.equal((await disconnected).code, 'peer-left');
  assert.equal(dev.path, 'none');
  assert.equal(first.toDevice.closed, true, 'the lost session lets its socket go at once');
  const t0 = performance.now();
  const read = dev.read(20); // waits for the new session
  await reconnected;
  assert.ok(performance.now() - t0 >= RECONNECT_BASE_MS / 2 - 5, 'the first retry waits its backoff');
  assert.equal(await read, 1);
  assert.equal(dev.path, 'relay');
  assert.deepEqual(second!.requests, ['gpio.read']);
  assert.equal(first.requests.length, 0);
  await dev.close();
  assert.equal(second!.toDevice.closed, true);
  const phases = lines.map((l) => /^Device phase (\w+) -> (\w+)/.exec(l)!.slice(1).join('->'));
  assert.deepEqual(phases, [
    'open->reconnecting',
    'reconnecting->connecting',
    'connecting->reconnecting',
    'reconnecting->connecting',
    'connecting->open',
    'open->closed',
  ]);
  assert.match(lines[0]!, /\(peer-left; next attempt in \d+ ms\)$/);
  assert.match(lines[2]!, /\(device-offline; next attempt in \d+ ms\)$/);
  // Once closed, nothing more happens and calls fail at once.
  await assert.rejects(dev.read(20), (e: PinholeError) => e.code === 'link-closed');
  assert.equal(lines.length, 6);
});

test('close() while waiting to reconnect stops the retries', async () => {
  const p = await securedPair();
  let reopens = 0;
  const dev = new Device(
    p.opened.signal,
    p.opened.session,
    10_000,
    async () => {
      reopens++;
      throw new PinholeError('device-offline', 'x');
    },
    p.opened.unroute,
  );
  const disconnected = new Promise<void>((r) => dev.once('disconnected', () => r()));
  p.toDevice.emit('close', 1006, '');
  await disconnected;
  const pending = dev.write(20, 1).catch((e: PinholeError) => e.code);
  await dev.close();
  assert.equal(await pending, 'link-closed');
  await new Promise((r) => setTimeout(r, RECONNECT_BASE_MS * 2));
  assert.equal(reopens, 0);
});
