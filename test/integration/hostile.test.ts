// Issues 4 and 9: a hostile signaling server cannot read, forge or replay commands, nor sit in
// the middle of the direct path. A real device agent (SimGpio) and the real controller API talk
// through a man-in-the-middle proxy (./hostile-server.ts) in front of a real server.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RTCPeerConnection } from 'werift';
import { connect, type Device } from '../../controller/index.js';
import { DeviceAgent, type DeviceEvent, SimGpio } from '../../device/index.js';
import { DC_LABEL, generateDtlsKeys } from '../../platform/node/rtc.js';
import { loadOrCreateIdentity } from '../../platform/node/state-files.js';
import { parsePairingCode } from '../../protocol/code.js';
import { splitCandidates } from '../../protocol/sdp.js';
import { VERSION } from '../../protocol/version.js';
import { stateDir, waitFor } from './helpers.js';
import { type HostileConn, type HostileServer, parseFrameText, relayText, startHostileServer } from './hostile-server.js';

const BOARD = 'test-board';
const TIMEOUT_MS = 8_000;
/** Per test: a regression must fail, not hang the file. */
const T = 20_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let hs: HostileServer;
before(async () => {
  hs = await startHostileServer();
});
after(async () => {
  await hs.close();
});

/** The code a promise rejects with ('resolved' if it does not). */
const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (e: { code?: string }) => e?.code ?? `no code: ${String(e)}`,
  );

interface Rig {
  gpio: SimGpio;
  agent: DeviceAgent;
  events: DeviceEvent[];
  ctlDir: string;
  /** The pairing code it was paired with. */
  code: string;
  direct: boolean;
  /** Everything to close at the end. */
  devs: Device[];
}

/**
 * A device agent on a sim board, paired with a fresh controller through the proxy with
 * tampering off. Attack sessions then connect by name (`open`).
 */
async function pairedRig(direct: boolean): Promise<Rig> {
  hs.reset();
  const gpio = new SimGpio();
  const events: DeviceEvent[] = [];
  const agent = await DeviceAgent.start({
    server: hs.url,
    name: BOARD,
    stateDir: stateDir('hostile'),
    gpio,
    version: VERSION,
    direct,
    onEvent: (e) => events.push(e),
  });
  const code = agent.pairingCode!;
  const ctlDir = stateDir('hostile');
  const rig: Rig = { gpio, agent, events, ctlDir, code, direct, devs: [] };
  try {
    const dev = await connect({ server: hs.url, code, stateDir: ctlDir, name: 'laptop', direct, timeoutMs: TIMEOUT_MS });
    assert.equal(dev.pairedAs?.name, BOARD);
    await dev.close();
  } catch (e) {
    await closeRig(rig);
    throw e;
  }
  return rig;
}

/** Connects to the paired device by name. */
async function open(rig: Rig, opts: { timeoutMs?: number } = {}): Promise<Device> {
  const dev = await connect({ device: BOARD, stateDir: rig.ctlDir, name: 'laptop', direct: rig.direct, timeoutMs: opts.timeoutMs ?? TIMEOUT_MS });
  rig.devs.push(dev);
  return dev;
}

async function closeRig(rig: Rig): Promise<void> {
  hs.reset();
  for (const d of rig.devs) await d.close().catch(() => undefined);
  await rig.agent.stop();
  rig.gpio.close();
}

/** What the board shows of a pin: mode, trace length, write count. Must not move under attack. */
const pinState = (gpio: SimGpio, pin: number) => ({ mode: gpio.mode(pin), changes: gpio.trace(pin).length, writes: gpio.counters(pin).writes });

/** The controller's open connection (its latest) and the device connection serving the same session. */
function sessionConns(): { ctl: HostileConn; device: HostileConn; session: string } {
  const ctl = hs.latest('controller');
  assert.ok(ctl?.session, 'controller connection with a session');
  const device = hs.conns.find((c) => c.open && c.role === 'device' && c.session === ctl.session);
  assert.ok(device, 'device connection serving that session');
  return { ctl, device, session: ctl.session };
}

const securityCodes = (rig: Rig, session: string): string[] => rig.events.flatMap((e) => (e.event === 'security' && e.session === session ? [e.code] : []));
const refusal = (rig: Rig): (DeviceEvent & { event: 'refused' }) | undefined =>
  rig.events.find((e): e is DeviceEvent & { event: 'refused' } => e.event === 'refused');

/** Marks of WebRTC signaling in a frame: SDP, ICE credentials, candidates, the coordinated start. */
const SIGNALING_MARKS = ['a=fingerprint', 'ice-ufrag', 'ice-pwd', 'candidate:', 'm=application', '"go"', '"kind"'];

/** A werift peer of the attacker's on loopback, presenting a certificate it does not hold the key of. */
function stolenCertPeer(certPem: string, keyPem: string): RTCPeerConnection {
  return new RTCPeerConnection({
    iceServers: [],
    iceUseIpv6: false,
    iceAdditionalHostAddresses: ['127.0.0.1'],
    iceInterfaceAddresses: { udp4: '127.0.0.1' },
    dtls: { keys: { certPem, keyPem, signatureHash: { hash: 4, signature: 3 } } as never },
  });
}

/** A state dir's DTLS certificate, as the attacker saw it in clear in an earlier DTLS handshake. */
const certOf = (dir: string): string => (JSON.parse(readFileSync(join(dir, 'dtls.json'), 'utf8')) as { certPem: string }).certPem;

/** Plain `signal` frames for a description: what the protocol carried before signaling was sealed. */
function plainSignals(pc: RTCPeerConnection, kind: 'offer' | 'answer'): string[] {
  const { sdp, candidates, mid } = splitCandidates(pc.localDescription!.sdp);
  return [
    { kind, sdp },
    ...candidates.map((c) => ({ kind: 'candidate', candidate: c, sdpMid: mid, sdpMLineIndex: 0 })),
    { kind: 'end-of-candidates' },
    { kind: 'go' },
  ].map((payload) => JSON.stringify({ type: 'signal', payload }));
}

/** A relay frame's bytes, one bit flipped at `index` (negative: from the end). */
function flipByte(data: string, index: number, mask = 0x01): string {
  const b = Buffer.from(data, 'base64url');
  b[index < 0 ? b.length + index : index]! ^= mask;
  return b.toString('base64url');
}

// 1. The direct path ---------------------------------------------------------------------------

test('issue 9: the server sees no SDP, candidates or go, and the session still goes direct', { timeout: T }, async () => {
  const rig = await pairedRig(true);
  try {
    const mark = hs.frames.length;
    const dev = await open(rig);
    assert.ok(await dev.whenDirect(10_000), 'direct');
    await dev.write(20, 1);
    assert.equal(rig.gpio.read(20), 1);
    const frames = hs.frames.slice(mark);
    for (const f of frames)
      for (const bad of SIGNALING_MARKS) assert.ok(!f.text.includes(bad), `a ${f.dir} frame of the ${f.conn.role} shows "${bad}": ${f.text.slice(0, 120)}`);
    for (const f of frames) assert.notEqual(parseFrameText(f.text)?.type, 'signal');
  } finally {
    await closeRig(rig);
  }
});

test('issue 9: steal-and-replay: a peer with the stolen controller certificate and a random key gets no channel and drives nothing', {
  timeout: 30_000,
}, async () => {
  const rig = await pairedRig(true);
  const rogues: RTCPeerConnection[] = [];
  try {
    const dev = await open(rig);
    const ctlCodes: string[] = [];
    dev.on('security', (c) => ctlCodes.push(c));
    assert.ok(await dev.whenDirect(10_000), 'the genuine session is direct');
    await dev.write(20, 0);
    const base = pinState(rig.gpio, 20);
    const { ctl, device, session } = sessionConns();

    // The review's attack: the server's own werift peer presents the controller's certificate
    // (and another the device's) with random P-256 keys, and offers it to the device mid-session.
    const randomKey = async (): Promise<string> => (await generateDtlsKeys()).keyPem;
    const asController = stolenCertPeer(certOf(rig.ctlDir), await randomKey());
    const asDevice = stolenCertPeer(certOf(rig.agent.cfg.stateDir), await randomKey());
    rogues.push(asController, asDevice);
    const dc = asController.createDataChannel(DC_LABEL, { ordered: true });
    await asController.setLocalDescription(await asController.createOffer());
    await asDevice.setRemoteDescription(asController.localDescription!);
    await asDevice.setLocalDescription(await asDevice.createAnswer());
    for (const text of plainSignals(asController, 'offer')) hs.inject(device, text);
    for (const text of plainSignals(asDevice, 'answer')) hs.inject(ctl, text);
    // And the link frames it would then have sent, as relay frames and plain text.
    const write = JSON.stringify({ t: 'd', q: 1, a: 0, m: { jsonrpc: '2.0', id: 'x', method: 'gpio.write', params: { pin: 20, value: 1 } } });
    hs.inject(device, relayText(write));

    const deviceCodes = (): string[] => securityCodes(rig, session);
    // A plain `signal` names no session: the device reports it as its socket's, not a session's.
    await waitFor(() => securityCodes(rig, '').includes('server-invalid'), 6_000, 'the device to log the injected signaling');
    await waitFor(() => ctlCodes.includes('server-invalid'), 6_000, 'the controller to log the injected signaling');
    await sleep(3_000); // ample time for ICE and DTLS on loopback
    assert.notEqual(dc.readyState, 'open', 'the stolen certificate got a data channel');
    assert.deepEqual(pinState(rig.gpio, 20), base, 'pin 20 never moved');
    assert.ok(deviceCodes().includes('relay-unsealed'));
    // The controller shows the board's real value, still over the genuine direct path.
    assert.equal(await dev.read(20), 0);
    assert.equal(dev.path, 'direct');
    assert.ok(!rig.events.some((e) => e.event === 'refused'));
  } finally {
    for (const r of rogues) await r.close().catch(() => undefined);
    await closeRig(rig);
  }
});

// 2. Forged frames ------------------------------------------------------------------------------

test('issue 4: injected plain, random and tampered frames are dropped; the session carries on', { timeout: T }, async () => {
  const rig = await pairedRig(false);
  try {
    const dev = await open(rig);
    const ctlCodes: string[] = [];
    dev.on('security', (c) => ctlCodes.push(c));
    await dev.write(20, 0);
    await sleep(100); // let the acks of that exchange go by
    const { ctl, device, session } = sessionConns();
    const base = pinState(rig.gpio, 20);
    const codes = (): string[] => securityCodes(rig, session);

    // (a) A plain-text link frame carrying gpio.write 20 1, for every plausible sequence number.
    for (let q = 1; q <= 8; q++) {
      const frame = JSON.stringify({ t: 'd', q, a: 0, m: { jsonrpc: '2.0', id: 900 + q, method: 'gpio.write', params: { pin: 20, value: 1 } } });
      hs.inject(device, relayText(frame));
    }
    await waitFor(() => codes().filter((c) => c === 'relay-unsealed').length === 8, 6_000, '8 relay-unsealed');
    // The same, not starting with '{' so it reaches the opener: not a sealed frame either.
    hs.inject(device, relayText(` {"t":"d","q":2,"a":0,"m":{"jsonrpc":"2.0","id":1,"method":"gpio.write","params":{"pin":20,"value":1}}}`));
    await waitFor(() => codes().includes('relay-malformed'), 6_000, 'relay-malformed (plain text)');
    // A plain `fail` after the handshake must not end the controller's session.
    hs.inject(ctl, relayText(JSON.stringify({ hs: 'fail', code: 'not-paired' })));
    await waitFor(() => ctlCodes.includes('relay-unsealed'), 6_000, 'controller relay-unsealed');

    // (b) Random base64url of a sealed frame's length. Not starting with 'A', so its first
    // byte is not the seal version 0x01 and the outcome is deterministic.
    const genuineLen = hs.relays({ role: 'controller', dir: 'up' }).at(-1)!.data.length;
    let junk: string;
    do junk = randomBytes(genuineLen).toString('base64url').slice(0, genuineLen);
    while (junk.startsWith('A'));
    const malformedBefore = codes().filter((c) => c === 'relay-malformed').length;
    hs.inject(device, relayText(junk));
    await waitFor(() => codes().filter((c) => c === 'relay-malformed').length === malformedBefore + 1, 6_000, 'relay-malformed (random)');

    // (c) A genuine sealed frame, tampered in flight: the proxy holds the next one the
    // controller sends and delivers bit-flipped copies first.
    let held: string | undefined;
    hs.onUp = (conn, text) => {
      if (held !== undefined || conn !== ctl || parseFrameText(text)?.type !== 'relay') return text;
      held = (parseFrameText(text) as { data: string }).data;
      return null;
    };
    const read = dev.read(21);
    await waitFor(() => held, 6_000, 'the held frame');
    hs.reset();
    hs.inject(device, relayText(flipByte(held!, -1))); // last tag byte
    hs.inject(device, relayText(flipByte(held!, 12))); // a ciphertext byte
    hs.inject(device, relayText(flipByte(held!, 2, 0x80))); // counter + 2^63: would skip every later frame if it counted
    await waitFor(() => codes().filter((c) => c === 'relay-bad-mac').length === 3, 6_000, '3 relay-bad-mac');
    hs.inject(device, relayText(held!)); // the genuine one, late: still accepted, nothing advanced the counter
    assert.equal(await read, 0);
    assert.ok(!codes().includes('relay-replay'), `the genuine frame was accepted (codes: ${codes()})`);

    // The session still works, and nothing touched pin 20.
    assert.equal(await dev.read(20), 0);
    assert.deepEqual(pinState(rig.gpio, 20), base);
    assert.ok(!rig.events.some((e) => e.event === 'refused'));
    assert.equal(dev.path, 'relay');
  } finally {
    await closeRig(rig);
  }
});

// 3. Replay ------------------------------------------------------------------------------------

test('issue 4: a recorded "write 20 1" replayed in its session or a later one does nothing', { timeout: T }, async () => {
  const rig = await pairedRig(false);
  try {
    const dev = await open(rig);
    await dev.read(21); // the session is up on both sides
    await sleep(100);
    const { device, session } = sessionConns();
    const mark = hs.relays({ role: 'controller', dir: 'up' }).length;
    await dev.write(20, 1);
    const sent = hs.relays({ role: 'controller', dir: 'up' }).slice(mark);
    assert.equal(sent.length, 1, 'one frame carried the write');
    const recorded = sent[0]!;
    assert.ok(!recorded.data.startsWith('{'), 'sealed');
    await dev.write(20, 0);
    const base = pinState(rig.gpio, 20);

    hs.inject(device, recorded.text);
    hs.inject(device, recorded.text);
    await waitFor(() => securityCodes(rig, session).filter((c) => c === 'relay-replay').length === 2, 6_000, '2 relay-replay');
    assert.equal(await dev.read(20), 0);
    assert.deepEqual(pinState(rig.gpio, 20), base);
    await dev.close();
    // (the server must see the controller leave before the room takes another)
    await waitFor(() => rig.events.some((e) => e.event === 'controller-left' && e.session === session), 6_000, 'controller-left');

    // A new session: once during its handshake (no keys yet), once after (other keys).
    hs.onUp = (conn, text) => {
      if (conn === device && (parseFrameText(text)?.data as string | undefined)?.startsWith('{"hs":"d1"')) hs.inject(device, recorded.text);
      return text;
    };
    const dev2 = await open(rig);
    hs.reset();
    await dev2.read(21);
    const s2 = sessionConns().session;
    assert.notEqual(s2, session);
    hs.inject(device, recorded.text);
    await waitFor(() => securityCodes(rig, s2).includes('relay-bad-mac'), 6_000, 'relay-bad-mac in the new session');
    assert.deepEqual(securityCodes(rig, s2), ['relay-unsealed', 'relay-bad-mac']);
    assert.equal(await dev2.read(20), 0);
    assert.deepEqual(pinState(rig.gpio, 20), base);
  } finally {
    await closeRig(rig);
  }
});

test("issue 12: a frame moved into another controller's session does not open there; both sessions carry on", { timeout: T }, async () => {
  const rig = await pairedRig(false);
  try {
    const a = await open(rig);
    const b = await open(rig);
    await a.read(21);
    await b.read(21);
    await sleep(100);
    const [ca, cb] = hs.conns.filter((c) => c.open && c.role === 'controller');
    assert.ok(ca?.session && cb?.session && ca.session !== cb.session, 'two controller sessions');
    const device = hs.conns.find((c) => c.open && c.role === 'device' && c.room === ca.room);
    assert.ok(device, 'the device connection of their room');
    // The frame carrying a's `write 20 1`, as the server handed it to the device.
    const mark = hs.relays({ role: 'device', dir: 'down' }).length;
    await a.write(20, 1);
    const carried = hs
      .relays({ role: 'device', dir: 'down' })
      .slice(mark)
      .filter((r) => parseFrameText(r.text)?.session === ca.session);
    assert.equal(carried.length, 1, "one frame carried a's write");
    await a.write(20, 0);
    const base = pinState(rig.gpio, 20);

    hs.inject(device, JSON.stringify({ type: 'relay', session: cb.session, data: carried[0]!.data }));
    await waitFor(() => securityCodes(rig, cb.session!).includes('relay-bad-mac'), 6_000, "relay-bad-mac in b's session");
    assert.deepEqual(pinState(rig.gpio, 20), base);
    assert.equal(await b.read(20), 0);
    assert.equal(await a.read(20), 0);
    assert.deepEqual(securityCodes(rig, ca.session), []);
    const ended = rig.events.filter((e) => (e.event === 'refused' || e.event === 'controller-left') && (e.session === ca.session || e.session === cb.session));
    assert.deepEqual(ended, []);
  } finally {
    await closeRig(rig);
  }
});

// 4. Handshake tampering -----------------------------------------------------------------------

test('issue 4: a flipped byte in the device identity box fails the handshake (bad-handshake)', { timeout: T }, async () => {
  const rig = await pairedRig(false);
  try {
    const base = pinState(rig.gpio, 20);
    let hits = 0;
    hs.onUp = (conn, text) => {
      const m = parseFrameText(text);
      if (conn.role !== 'device' || m?.type !== 'relay' || !(m.data as string).startsWith('{"hs":"d1"')) return text;
      const d1 = JSON.parse(m.data as string) as { box: string };
      hits++;
      return relayText(JSON.stringify({ ...d1, box: flipByte(d1.box, 5) }));
    };
    assert.equal(await outcome(open(rig)), 'bad-handshake');
    assert.equal(hits, 1);
    const refused = await waitFor(() => refusal(rig), 6_000, 'the device to hear the refusal');
    assert.equal(refused.code, 'bad-handshake');
    assert.deepEqual(pinState(rig.gpio, 20), base);
    // The server can refuse service, not break anything: untouched, the next session works.
    hs.reset();
    const dev = await open(rig);
    await dev.write(20, 1);
    assert.equal(rig.gpio.read(20), 1);
  } finally {
    await closeRig(rig);
  }
});

test('issue 4: c2 dropped: the device runs nothing and refuses after its handshake timeout', { timeout: 25_000 }, async () => {
  const rig = await pairedRig(false);
  try {
    const base = pinState(rig.gpio, 20);
    hs.onUp = (conn, text) => (conn.role === 'controller' && (parseFrameText(text)?.data as string | undefined)?.startsWith('{"hs":"c2"') ? null : text);
    // The controller is secured once it has sent c2, so connect resolves; the device never is.
    const dev = await open(rig, { timeoutMs: 2_000 });
    const ctlCodes: string[] = [];
    dev.on('security', (c) => ctlCodes.push(c));
    const closed = new Promise<string | undefined>((r) => dev.once('close', (e) => r(e?.code)));
    const { session } = sessionConns();
    assert.equal(await outcome(dev.write(20, 1)), 'timeout');
    assert.ok(securityCodes(rig, session).includes('relay-unsealed'), 'sealed frames before c2 are dropped');
    const refused = await waitFor(() => refusal(rig), 12_000, 'the handshake timeout');
    assert.equal(refused.code, 'bad-handshake');
    assert.deepEqual(pinState(rig.gpio, 20), base);
    // The device never sealed a frame, so its plain `fail` is believed: the controller learns of the refusal.
    assert.equal(await closed, 'bad-handshake');
    assert.ok(!ctlCodes.includes('relay-unsealed'));
  } finally {
    await closeRig(rig);
  }
});

// 5. What the server sees ----------------------------------------------------------------------

test('issue 4: the server never sees a command, a name, an identity key or the code secret', { timeout: T }, async () => {
  const mark = hs.frames.length;
  const rig = await pairedRig(false);
  try {
    const dev = await open(rig);
    await dev.info();
    await dev.write(20, 1);
    await dev.mode(7, 'in');
    await dev.watch(7);
    rig.gpio.drive(7, 1);
    await dev.blink(21, { times: 2, intervalMs: 10 });
    assert.equal(await dev.read(20), 1);
    await dev.close();
    await sleep(100);

    const frames = hs.frames.slice(mark);
    const secret = parsePairingCode(rig.code);
    assert.ok(secret.ok);
    const [deviceKey, controllerKey] = [rig.agent.state.identity.publicKey, loadOrCreateIdentity(rig.ctlDir).publicKey].map((k) =>
      Buffer.from(k).toString('base64url'),
    );
    for (const f of frames) {
      // The device proves its home room with its public key (issue 9: self-certifying rooms); nothing else shows a key.
      const m = parseFrameText(f.text);
      const text = m?.type === 'register' && (m.proof as { key?: string } | undefined)?.key === deviceKey ? JSON.stringify({ ...m, proof: null }) : f.text;
      for (const bad of ['jsonrpc', 'gpio.', 'device.info', 'method', BOARD, 'laptop', secret.secret, deviceKey!, controllerKey!]) {
        assert.ok(!text.includes(bad), `a ${f.dir} frame of the ${f.conn.role} shows "${bad}": ${f.text.slice(0, 200)}`);
      }
    }
    // register/join carry the public room only.
    const rooms = frames.flatMap((f) => {
      const m = parseFrameText(f.text);
      return m?.type === 'register' || m?.type === 'join' ? [m] : [];
    });
    assert.ok(
      rooms.some((m) => m.type === 'join' && m.room === secret.room),
      'the pairing join names the code room',
    );
    for (const m of rooms)
      assert.deepEqual(
        Object.keys(m).sort(),
        m.type === 'join'
          ? ['room', 'type', 'v']
          : (m.room as string).length > 4
            ? ['maxControllers', 'proof', 'room', 'type', 'v']
            : ['maxControllers', 'room', 'type', 'v'],
      );
    // Relay data is c1, d1, c2 per session, then only base64url.
    const relays = hs.relays().filter((r) => frames.some((f) => f.text === r.text && f.conn === r.conn));
    const hsMsgs = relays.filter((r) => r.dir === 'up' && r.data.startsWith('{')).map((r) => (JSON.parse(r.data) as { hs: string }).hs);
    assert.deepEqual(hsMsgs, ['c1', 'd1', 'c2', 'c1', 'd1', 'c2']);
    const sealed = relays.filter((r) => !r.data.startsWith('{'));
    assert.ok(sealed.length >= 12, `commands went over the relay (${sealed.length} sealed frames)`);
    for (const r of sealed) assert.match(r.data, /^[A-Za-z0-9_-]+$/);
  } finally {
    await closeRig(rig);
  }
});
