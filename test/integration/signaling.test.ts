/**
 * The real signaling server on loopback: HTTP, WebSocket routing, junk
 * resistance, keepalive, slow consumers and STUN.
 */

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import stun from 'stun';
import { classes, Message, methods, StunProtocol } from 'werift';
import { MAX_LINK_FRAME_BYTES, MAX_SIGNAL_BYTES, PROTOCOL_VERSION, type ServerMessage } from '../../protocol/signaling.js';
import { MAX_CONTROLLERS_PER_ROOM, type SignalServer, startSignalServer, WS_MAX_PAYLOAD_BYTES } from '../../signaling/index.js';
import { MAX_INVALID_PER_CONN } from '../../signaling/router.js';
import { RawClient, waitFor } from './helpers.js';

const HOST = '127.0.0.1';

/** A fresh room name, like a paired device's (no collisions between tests). */
const uniqueRoom = (): string => 'T' + randomBytes(6).toString('hex').toUpperCase();

/** Registers a device and joins a controller on a fresh room; checks the handshake. */
async function pair(url: string): Promise<{ device: RawClient; controller: RawClient; session: string }> {
  const room = uniqueRoom();
  const device = await RawClient.open(url);
  const controller = await RawClient.open(url);
  device.send({ type: 'register', v: PROTOCOL_VERSION, room: room.toLowerCase() });
  const reg = await device.expect('registered');
  assert.equal(reg.room, room);
  controller.send({ type: 'join', v: PROTOCOL_VERSION, room });
  const joined = await controller.expect('joined');
  assert.equal(joined.waiting, false);
  const peer = await device.expect('peer');
  assert.equal(peer.session, joined.session);
  return { device, controller, session: joined.session };
}

/** A relay each way: the device hears it tagged with the controller's session, and names that session in its own. */
async function relayBothWays(device: RawClient, controller: RawClient, session: string): Promise<void> {
  controller.send({ type: 'relay', data: 'to-device' });
  assert.deepEqual(await device.next(), { type: 'relay', session, data: 'to-device' });
  device.send({ type: 'relay', session, data: 'to-controller' });
  assert.deepEqual(await controller.next(), { type: 'relay', data: 'to-controller' });
}

describe('signaling server', { timeout: 60_000 }, () => {
  let server: SignalServer;
  const lines: string[] = [];

  before(async () => {
    // Every test here joins from 127.0.0.1: a deeper join bucket keeps them independent of the join limit (tested below).
    server = await startSignalServer({ host: HOST, port: 0, stunPort: 0, log: (l) => lines.push(l), limits: { joinBurst: 1000, registerBurst: 1000 } });
  });
  after(async () => {
    await server?.close();
  });

  test('the first log line names the real bound addresses', () => {
    assert.ok(server.port > 0 && server.stunPort !== null && server.stunPort > 0);
    const first = JSON.parse(lines[0]!);
    assert.deepEqual(first, {
      event: 'listening',
      ws: `ws://${HOST}:${server.port}`,
      http: `http://${HOST}:${server.port}/healthz`,
      metrics: `http://${HOST}:${server.port}/metrics`,
      stun: `udp://${HOST}:${server.stunPort}`,
    });
    assert.equal(server.url, first.ws);
  });

  test('GET /healthz is 200 JSON with ok:true; other paths 404; POST 405', async () => {
    const r = await fetch(`http://${HOST}:${server.port}/healthz`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.equal((await r.json()).ok, true);
    // `/` is the controller page now (page.test.ts); any other path is still 404.
    assert.equal((await fetch(`http://${HOST}:${server.port}/nope`)).status, 404);
    assert.equal((await fetch(`http://${HOST}:${server.port}/healthz/x`)).status, 404);
    assert.equal((await fetch(`http://${HOST}:${server.port}/healthz`, { method: 'POST' })).status, 405);
  });

  test('issue 2: a device and a controller pair by room and relay both ways', async () => {
    const { device, controller, session } = await pair(server.url);
    await relayBothWays(device, controller, session);
    // a full-size link frame goes through
    const big = 'x'.repeat(MAX_LINK_FRAME_BYTES);
    device.send({ type: 'relay', session, data: big });
    assert.deepEqual(await controller.next(), { type: 'relay', data: big });
    controller.close();
    assert.deepEqual(await device.next(), { type: 'peer-left', session });
    device.close();
  });

  test('issue 12: one device room serves several controllers: per-session relay, device-busy past the cap, peer-left per session', async () => {
    const device = await RawClient.open(server.url);
    const room = await device.registerHome(3);
    const controllers: RawClient[] = [];
    const sessions: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await RawClient.open(server.url);
      c.send({ type: 'join', v: PROTOCOL_VERSION, room });
      const joined = await c.expect('joined');
      assert.deepEqual(await device.next(), { type: 'peer', session: joined.session });
      controllers.push(c);
      sessions.push(joined.session);
    }
    assert.equal(new Set(sessions).size, 3, 'a session each');
    const busy = await RawClient.open(server.url);
    busy.send({ type: 'join', v: PROTOCOL_VERSION, room });
    await busy.expectError('device-busy');
    const health = (await (await fetch(`http://${HOST}:${server.port}/healthz`)).json()) as { controllers: number };
    assert.ok(health.controllers >= 3);
    // Each controller's frame reaches the device with its own session, even one that names another.
    for (let i = 0; i < 3; i++) {
      controllers[i]!.send({ type: 'relay', session: sessions[(i + 1) % 3], data: `from-${i}` });
      assert.deepEqual(await device.next(), { type: 'relay', session: sessions[i], data: `from-${i}` });
    }
    // The device's frames reach only the session they name, in order.
    for (const i of [2, 0, 1, 2]) device.send({ type: 'relay', session: sessions[i], data: `to-${i}` });
    assert.deepEqual(await controllers[2]!.next(), { type: 'relay', data: 'to-2' });
    assert.deepEqual(await controllers[0]!.next(), { type: 'relay', data: 'to-0' });
    assert.deepEqual(await controllers[1]!.next(), { type: 'relay', data: 'to-1' });
    assert.deepEqual(await controllers[2]!.next(), { type: 'relay', data: 'to-2' });
    device.send({ type: 'relay', data: 'to-nobody' });
    await device.expectError('bad-message');
    // One leaves: the device hears of that session only, and its place is free.
    controllers[1]!.close();
    assert.deepEqual(await device.next(), { type: 'peer-left', session: sessions[1] });
    busy.send({ type: 'join', v: PROTOCOL_VERSION, room });
    const late = await busy.expect('joined');
    assert.deepEqual(await device.next(), { type: 'peer', session: late.session });
    // The device goes: every controller hears peer-left with its own session.
    device.close();
    for (const [c, s] of [
      [controllers[0]!, sessions[0]],
      [controllers[2]!, sessions[2]],
      [busy, late.session],
    ] as const)
      assert.deepEqual(await c.next(), { type: 'peer-left', session: s });
    for (const c of controllers) c.close();
    busy.close();
    await waitFor(() => server.stats().controllers === 0, 3000, 'every controller gone');
  });

  test('issue 12: the server holds a device room to MAX_CONTROLLERS_PER_ROOM however many its device asks for', async () => {
    const device = await RawClient.open(server.url);
    const room = await device.registerHome(64);
    const all: RawClient[] = [device];
    for (let i = 0; i <= MAX_CONTROLLERS_PER_ROOM; i++) {
      const c = await RawClient.open(server.url);
      all.push(c);
      c.send({ type: 'join', v: PROTOCOL_VERSION, room });
      if (i < MAX_CONTROLLERS_PER_ROOM) assert.equal((await c.expect('joined')).waiting, false, `controller ${i + 1}`);
      else await c.expectError('device-busy');
    }
    for (const c of all) c.close();
  });

  test('issue 9: the server greets every socket with hello; a `signal` frame is bad-message and is not forwarded', async () => {
    const a = await RawClient.open(server.url);
    const b = await RawClient.open(server.url);
    assert.notEqual(a.nonce, b.nonce, 'a fresh nonce per connection');
    a.close();
    b.close();
    const { device, controller, session } = await pair(server.url);
    controller.send({ type: 'signal', payload: { kind: 'offer', sdp: 'v=0\r\n' } });
    const e = await controller.expect('error');
    assert.deepEqual([e.code, e.message], ['bad-message', 'unknown message type']);
    await relayBothWays(device, controller, session);
    assert.equal(device.queue.length, 0, 'the device got nothing else');
    device.close();
    controller.close();
  });

  test('issue 9: a device room needs its proof: a squatter without one gets bad-proof', async () => {
    const owner = await RawClient.open(server.url);
    const room = await owner.registerHome();
    owner.close(); // away: the room waits for its device
    const squatter = await RawClient.open(server.url);
    squatter.send({ type: 'register', v: PROTOCOL_VERSION, room });
    await squatter.expectError('bad-proof');
    squatter.close();
  });

  test('issue 2: a wrong room is refused with unknown-room', async () => {
    const c = await RawClient.open(server.url);
    c.send({ type: 'join', v: PROTOCOL_VERSION, room: uniqueRoom() });
    await c.expectError('unknown-room');
    c.close();
  });

  test("issue 4: a pairing code's room (4 symbols) pairs; the old `code` field is refused as bad-message", async () => {
    const room = 'W' + randomBytes(3).toString('hex').slice(0, 3).toUpperCase();
    const device = await RawClient.open(server.url);
    device.send({ type: 'register', v: PROTOCOL_VERSION, code: room });
    await device.expectError('bad-message');
    device.send({ type: 'register', v: PROTOCOL_VERSION, room: 'ABC' });
    await device.expectError('bad-room');
    device.send({ type: 'register', v: PROTOCOL_VERSION, room });
    assert.equal((await device.expect('registered')).room, room);
    const controller = await RawClient.open(server.url);
    controller.send({ type: 'join', v: PROTOCOL_VERSION, room: room.toLowerCase() });
    assert.equal((await controller.expect('joined')).waiting, false);
    await device.expect('peer');
    device.close();
    controller.close();
  });

  test('logs never contain the room or relay data', async () => {
    const room = uniqueRoom();
    const device = await RawClient.open(server.url);
    device.send({ type: 'register', v: PROTOCOL_VERSION, room });
    await device.expect('registered');
    const controller = await RawClient.open(server.url);
    controller.send({ type: 'join', v: PROTOCOL_VERSION, room });
    await controller.expect('joined');
    controller.send({ type: 'relay', data: 'SECRET-RELAY-DATA' });
    await device.expect('peer');
    await device.expect('relay');
    device.close();
    await controller.expect('peer-left');
    controller.close();
    const text = lines.join('\n');
    assert.ok(text.includes('"event":"register"') && text.includes('"event":"join"'), 'register/join are logged');
    assert.ok(!text.includes(room) && !text.includes('SECRET-RELAY-DATA'));
    for (const l of lines) JSON.parse(l); // every line is one JSON object
  });

  describe('junk frames', () => {
    test('binary garbage, non-JSON text and deep nesting get bad-message; the socket stays usable', async () => {
      const c = await RawClient.open(server.url);
      c.ws.send(randomBytes(300), { binary: true });
      await c.expectError('bad-message');
      c.send('not json at all');
      await c.expectError('bad-message');
      c.send('['.repeat(10_000));
      await c.expectError('bad-message');
      c.send(Buffer.from(JSON.stringify({ type: 'relay', data: 1 })));
      await c.expectError('bad-message');
      c.send({ type: 'register', v: PROTOCOL_VERSION + 1, room: 'ABCDEFGH' });
      await c.expectError('version');
      // the same socket can still register
      c.send({ type: 'register', v: PROTOCOL_VERSION, room: uniqueRoom() });
      await c.expect('registered');
      c.close();
    });

    test('a frame just over MAX_SIGNAL_BYTES gets too-large; the socket stays open', async () => {
      const c = await RawClient.open(server.url);
      c.send('x'.repeat(MAX_SIGNAL_BYTES + 1));
      await c.expectError('too-large');
      c.send({ type: 'relay', data: 'x' });
      await c.expectError('not-joined');
      c.close();
    });

    test('a frame over the WebSocket limit is closed with 1009', async () => {
      const c = await RawClient.open(server.url);
      c.ws.send(Buffer.alloc(WS_MAX_PAYLOAD_BYTES + 1, 0x61));
      assert.equal((await c.closed).code, 1009);
    });

    test('invalid UTF-8 in a text frame is closed with 1007', async () => {
      const c = await RawClient.open(server.url);
      c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
      assert.equal((await c.closed).code, 1007);
    });

    test('1000 random frames over 50 sockets each get an error reply', async () => {
      const perSocket = MAX_INVALID_PER_CONN;
      const sockets = 1000 / perSocket;
      for (let batch = 0; batch < sockets; batch += 10) {
        await Promise.all(
          Array.from({ length: 10 }, async (_, k) => {
            const c = await RawClient.open(server.url);
            for (let i = 0; i < perSocket; i++) c.ws.send(...randomFrame((batch + k) * 1000 + i));
            for (let i = 0; i < perSocket; i++) {
              const m = await c.expect('error');
              assert.ok(['bad-message', 'too-large', 'version'].includes(m.code), m.code);
            }
            c.close();
          }),
        );
      }
    });

    test('a socket flooding junk is closed with 1008 after MAX_INVALID_PER_CONN error replies', async () => {
      const c = await RawClient.open(server.url);
      for (let i = 0; i < 1000; i++) c.ws.send(...randomFrame(i));
      assert.equal((await c.closed).code, 1008);
      assert.equal(c.queue.length, MAX_INVALID_PER_CONN + 1);
      assert.ok(c.queue.every((m) => m.type === 'error'));
    });

    test('issue 2: after all that junk the server still serves a fresh pair', async () => {
      const { device, controller, session } = await pair(server.url);
      await relayBothWays(device, controller, session);
      device.close();
      controller.close();
      assert.equal((await fetch(`http://${HOST}:${server.port}/healthz`)).status, 200);
    });
  });

  test('a slow consumer is cut off instead of buffered without limit', async () => {
    const { device, controller, session } = await pair(server.url);
    // The controller stops reading: its TCP socket is paused.
    (controller.ws as unknown as { _socket: net.Socket })._socket.pause();
    const data = 'y'.repeat(MAX_LINK_FRAME_BYTES);
    for (let i = 0; i < 1500; i++) device.send({ type: 'relay', session, data });
    let m: ServerMessage;
    do m = await device.next(10_000);
    while (m.type !== 'peer-left');
    assert.ok(lines.some((l) => JSON.parse(l).event === 'slow-consumer'));
    device.close();
    controller.close();
  });

  describe('STUN', () => {
    test('the stun package client gets XOR-MAPPED-ADDRESS = 127.0.0.1 and its own port, with its transaction id', async () => {
      await withUdpSocket(async (socket) => {
        const req = stun.createMessage(stun.constants.STUN_BINDING_REQUEST);
        req.addFingerprint();
        const res = await stun.request(`stun://${HOST}:${server.stunPort}`, { socket, message: req, retries: 2, timeout: 300 });
        assert.equal(res.type, stun.constants.STUN_BINDING_RESPONSE);
        assert.deepEqual(res.transactionId, req.transactionId);
        const xor = res.getXorAddress();
        assert.equal(xor?.address, HOST);
        assert.equal(xor?.port, socket.address().port);
        assert.ok(res.hasAttribute(stun.constants.STUN_ATTR_FINGERPRINT), 'FINGERPRINT echoed when the request had one');
      });
    });

    test('a raw RFC 5389 binding request decoded by hand (independent of the stun package)', async () => {
      await withUdpSocket(async (socket) => {
        const tid = randomBytes(12);
        const req = Buffer.alloc(20);
        req.writeUInt16BE(0x0001, 0); // Binding request
        req.writeUInt16BE(0, 2);
        req.writeUInt32BE(0x2112a442, 4);
        tid.copy(req, 8);
        const res = await udpRoundTrip(socket, req, server.stunPort!);
        assert.equal(res.readUInt16BE(0), 0x0101, 'Binding success response');
        assert.equal(res.readUInt32BE(4), 0x2112a442, 'magic cookie');
        assert.deepEqual(res.subarray(8, 20), tid, 'transaction id echoed');
        assert.equal(res.readUInt16BE(2), res.length - 20, 'length field');
        const attrs = readAttrs(res);
        const xma = attrs.get(0x0020);
        assert.ok(xma, 'XOR-MAPPED-ADDRESS present');
        assert.equal(xma[1], 0x01, 'IPv4');
        assert.equal(xma.readUInt16BE(2) ^ 0x2112, socket.address().port);
        const ip = [0, 1, 2, 3].map((i) => xma[4 + i]! ^ [0x21, 0x12, 0xa4, 0x42][i]!).join('.');
        assert.equal(ip, HOST);
        assert.equal(attrs.has(0x8028), false, 'no FINGERPRINT when the request had none');
      });
    });

    test('a FINGERPRINT in the response is a valid CRC-32', async () => {
      await withUdpSocket(async (socket) => {
        const req = stun.createMessage(stun.constants.STUN_BINDING_REQUEST);
        req.addFingerprint();
        const res = await udpRoundTrip(socket, req.toBuffer(), server.stunPort!);
        const fp = readAttrs(res).get(0x8028);
        assert.ok(fp);
        const crc = (zlib.crc32(res.subarray(0, res.length - 8)) ^ 0x5354554e) >>> 0;
        assert.equal(fp.readUInt32BE(0), crc);
      });
    });

    test("werift's own STUN client (as used for srflx candidates) gets its mapped address", async () => {
      const p = new StunProtocol();
      await p.connectionMade(true, undefined, { udp4: HOST });
      try {
        const [res] = await p.request(new Message(methods.BINDING, classes.REQUEST), [HOST, server.stunPort!]);
        assert.deepEqual(res.getAttributeValue('XOR-MAPPED-ADDRESS'), p.getExtraInfo());
      } finally {
        await p.close();
      }
    });

    test('CHANGE-REQUEST (RFC 5780) gets 420 until it is implemented', async () => {
      await withUdpSocket(async (socket) => {
        const req = stun.createMessage(stun.constants.STUN_BINDING_REQUEST);
        req.addAttribute(stun.constants.STUN_ATTR_CHANGE_REQUEST, 0x06);
        const raw = await udpRoundTrip(socket, req.toBuffer(), server.stunPort!);
        assert.equal(raw.readUInt16BE(0), 0x0111, 'Binding error response');
        assert.deepEqual(raw.subarray(8, 20), req.transactionId);
        // ERROR-CODE decoded by hand: the stun package's decoder misreads the class/number split.
        const ec = readAttrs(raw).get(0x0009);
        assert.ok(ec);
        assert.equal(ec[2]! * 100 + ec[3]!, 420);
        const unknown = readAttrs(raw).get(0x000a);
        assert.ok(unknown);
        assert.equal(unknown.readUInt16BE(0), 0x0003, 'UNKNOWN-ATTRIBUTES names CHANGE-REQUEST');
      });
    });

    test('junk datagrams are ignored and the server keeps answering', async () => {
      await withUdpSocket(async (socket) => {
        const junk = [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0x00, 0x01, 0xff, 0xff]), Buffer.alloc(20, 0), Buffer.alloc(1000, 0x01)];
        for (let i = 0; i < 200; i++) junk.push(randomBytes(1 + (i % 100)));
        for (let i = 0; i < 50; i++) {
          // valid header, garbage attributes
          const b = Buffer.concat([Buffer.alloc(20), randomBytes(40)]);
          b.writeUInt16BE(0x0001, 0);
          b.writeUInt16BE(40, 2);
          b.writeUInt32BE(0x2112a442, 4);
          junk.push(b);
        }
        const seen = (): number => {
          const st = server.stats().stun!;
          return st.dropped + st.answered + st.refused;
        };
        const seen0 = seen();
        for (const j of junk) socket.send(j, server.stunPort!, HOST);
        // 55 of them pass the first-byte STUN check and reach the decoder; wait for most of them.
        const deadline = Date.now() + 3000;
        while (seen() - seen0 < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.ok(seen() - seen0 >= 40, 'junk reached the STUN decoder');
        const req = stun.createMessage(stun.constants.STUN_BINDING_REQUEST);
        const res = stun.decode(await udpRoundTrip(socket, req.toBuffer(), server.stunPort!, req.transactionId));
        assert.equal(res.getXorAddress()?.port, socket.address().port);
      });
    });
  });
});

describe('signaling server: join limit', { timeout: 30_000 }, () => {
  let server: SignalServer;
  const lines: string[] = [];
  before(async () => {
    server = await startSignalServer({ host: HOST, port: 0, stunPort: null, log: (l) => lines.push(l), limits: { joinBurst: 3 } });
  });
  after(async () => {
    await server?.close();
  });

  test('issue 4: joins from one address share a bucket across sockets; beyond it join-limited, counted in /healthz', async () => {
    const device = await RawClient.open(server.url);
    const room = await device.registerHome(); // a device room: costs no guess
    // ...which a join does not either: spend the three guesses on pairing rooms.
    const sockets: RawClient[] = [];
    const pairingRoom = uniqueRoom();
    for (let i = 0; i < 3; i++) {
      const c = await RawClient.open(server.url);
      sockets.push(c);
      c.send({ type: 'join', v: PROTOCOL_VERSION, room: i === 0 ? pairingRoom : uniqueRoom() });
      await c.expectError('unknown-room');
    }
    // a fresh socket from the same address, asking for a pairing room: refused without a lookup
    const late = await RawClient.open(server.url);
    sockets.push(late);
    late.send({ type: 'join', v: PROTOCOL_VERSION, room: pairingRoom });
    await late.expectError('join-limited');
    assert.equal(late.isClosed, false, 'the socket stays open');
    // ...while the device room (not guessable) can still be joined
    late.send({ type: 'join', v: PROTOCOL_VERSION, room });
    await late.expect('joined');
    await device.expect('peer');
    // registering a device room is not join-limited either
    const other = await RawClient.open(server.url);
    sockets.push(other);
    await other.registerHome();
    const h = (await (await fetch(`http://${HOST}:${server.port}/healthz`)).json()) as Record<string, unknown>;
    assert.equal(h.joinLimited, 1);
    assert.equal(server.stats().joinLimited, 1);
    const refuse = lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'refuse' && l.reason === 'join-limited');
    assert.equal(refuse.length, 1);
    assert.ok(!refuse.some((l) => JSON.stringify(l).includes(HOST)), 'the address is not logged');
    for (const c of [device, ...sockets]) c.close();
  });
});

describe('signaling server: keepalive and shutdown', { timeout: 30_000 }, () => {
  let server: SignalServer;
  const lines: string[] = [];
  before(async () => {
    server = await startSignalServer({ host: HOST, port: 0, stunPort: null, keepaliveIntervalMs: 100, log: (l) => lines.push(l) });
  });
  after(async () => {
    await server?.close();
  });

  test('stunPort null runs no STUN and announces stunPort 0', async () => {
    assert.equal(server.stunPort, null);
    assert.equal(JSON.parse(lines[0]!).stun, null);
    const c = await RawClient.open(server.url);
    c.send({ type: 'register', v: PROTOCOL_VERSION, room: uniqueRoom() });
    assert.equal((await c.expect('registered')).stunPort, 0);
    c.close();
  });

  test('a peer that never answers pings is terminated; one that does stays', async () => {
    const good = await RawClient.open(server.url);
    const dead = await rawUpgrade(server.port);
    const deadClosed = new Promise<number>((resolve, reject) => {
      const t0 = Date.now();
      const t = setTimeout(() => reject(new Error('the silent peer was not terminated within 3 s')), 3000);
      dead.on('close', () => {
        clearTimeout(t);
        resolve(Date.now() - t0);
      });
    });
    let ms: number;
    try {
      ms = await deadClosed;
    } finally {
      dead.destroy();
    }
    assert.ok(ms < 2000, `terminated after ${ms} ms`);
    assert.ok(lines.some((l) => JSON.parse(l).event === 'keepalive-timeout'));
    assert.equal(good.isClosed, false);
    good.send({ type: 'relay', data: 'x' });
    await good.expectError('not-joined');
    good.close();
  });

  test('close() ends every socket and resolves; the port stops answering', async () => {
    const a = await RawClient.open(server.url);
    const b = await RawClient.open(server.url);
    await server.close();
    await Promise.all([a.closed, b.closed]);
    await assert.rejects(fetch(`http://${HOST}:${server.port}/healthz`));
    await server.close(); // twice is fine
  });
});

describe('signaling server: half-open HTTP upgrades', { timeout: 30_000 }, () => {
  const CAP = 4;
  const TIMEOUT_MS = 1000;
  let server: SignalServer;
  before(async () => {
    server = await startSignalServer({
      host: HOST,
      port: 0,
      stunPort: null,
      log: () => undefined,
      maxPendingUpgradesPerAddr: CAP,
      upgradeTimeoutMs: TIMEOUT_MS,
    });
  });
  after(async () => {
    await server?.close();
  });

  /** A raw TCP socket from `localAddress` that sends `text` and then nothing; `closedAt` is set when the server closes it. */
  const halfOpen = (text: string, localAddress = HOST) =>
    new Promise<{ s: net.Socket; openedAt: number; closed: Promise<number> }>((resolve, reject) => {
      const s = net.connect({ port: server.port, host: HOST, localAddress }, () => {
        const openedAt = performance.now();
        if (text) s.write(text);
        resolve({ s, openedAt, closed });
      });
      const closed = new Promise<number>((r) => s.on('close', () => r(performance.now())));
      s.on('error', () => undefined);
      s.once('error', reject);
      s.resume();
    });
  const partial = `GET / HTTP/1.1\r\nHost: ${HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`; // no blank line: never finished
  const isOpen = async (c: { closed: Promise<number> }, ms: number): Promise<boolean> =>
    Promise.race([c.closed.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), ms))]);

  test('issue 9: past MAX_PENDING_UPGRADES_PER_ADDR the excess is closed at once; the unfinished ones after the upgrade timeout; others still connect', async () => {
    const held = [];
    for (let i = 0; i < CAP - 1; i++) held.push(await halfOpen(partial));
    held.push(await halfOpen('')); // one that sends nothing at all
    const excess = [];
    for (let i = 0; i < 3; i++) excess.push(await halfOpen(partial));
    for (const e of excess) assert.equal(await isOpen(e, 500), false, 'an excess half-open upgrade is closed at once');
    for (const e of excess) assert.ok((await e.closed) - e.openedAt < 500);
    assert.equal(server.stats().pendingRefused, excess.length);
    for (const h of held) assert.equal(await isOpen(h, 0), true, 'the first CAP are kept for now');

    // Meanwhile a client from another address connects and registers.
    const other = await RawClient.open(server.url, { localAddress: '127.0.0.2' });
    other.send({ type: 'register', v: PROTOCOL_VERSION, room: uniqueRoom() });
    await other.expect('registered');

    // The unfinished ones are closed after the timeout, not before.
    for (const h of held) {
      const lived = (await h.closed) - h.openedAt;
      assert.ok(lived >= TIMEOUT_MS - 100 && lived < TIMEOUT_MS + 1500, `closed after ${Math.round(lived)} ms`);
    }
    await waitFor(() => server.stats().pendingUpgrades === 0, 2000, 'no pending upgrades');
    // Their slots are free again: a normal client from the same address connects.
    const again = await RawClient.open(server.url);
    again.send({ type: 'relay', data: 'x' });
    await again.expectError('not-joined');
    again.close();
    other.close();
  });

  test('issue 9: a completed upgrade no longer counts as pending', async () => {
    const clients = [];
    for (let i = 0; i < CAP + 2; i++) clients.push(await RawClient.open(server.url));
    assert.equal(server.stats().pendingUpgrades, 0);
    const h = await halfOpen(partial);
    assert.equal(await isOpen(h, 300), true, 'still room for a pending one');
    h.s.destroy();
    for (const c of clients) c.close();
  });
});

/** A TCP client that completes the WebSocket handshake and then never reads or answers. */
function rawUpgrade(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64');
    const s = net.connect(port, HOST, () => {
      s.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    s.on('error', () => {});
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      const accept = createHash('sha1')
        .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
        .digest('base64');
      if (!head.startsWith('HTTP/1.1 101') || !head.includes(accept)) reject(new Error('upgrade failed'));
      else resolve(s);
      s.resume(); // keep draining pings, never answer them
    };
    s.on('data', onData);
  });
}

/** Runs `fn` with a UDP socket bound to loopback, closed afterwards. */
async function withUdpSocket(fn: (socket: dgram.Socket) => Promise<void>): Promise<void> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, HOST, () => r()));
  try {
    await fn(socket);
  } finally {
    socket.close();
  }
}

/** Sends a STUN message (resent every 250 ms, as UDP may drop it) and resolves with the first reply (matching `tid` if given). */
function udpRoundTrip(socket: dgram.Socket, msg: Buffer, port: number, tid?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const send = (): void => socket.send(msg, port, HOST);
    const resend = setInterval(send, 250);
    const t = setTimeout(() => {
      done();
      reject(new Error('no STUN reply'));
    }, 2000);
    const done = (): void => {
      clearTimeout(t);
      clearInterval(resend);
      socket.off('message', onMsg);
    };
    const onMsg = (m: Buffer): void => {
      if (tid && !m.subarray(8, 20).equals(tid)) return;
      done();
      resolve(m);
    };
    socket.on('message', onMsg);
    send();
  });
}

function readAttrs(msg: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let pos = 20; pos + 4 <= msg.length; ) {
    const type = msg.readUInt16BE(pos);
    const len = msg.readUInt16BE(pos + 2);
    out.set(type, msg.subarray(pos + 4, pos + 4 + len));
    pos += 4 + len + ((4 - (len % 4)) % 4);
  }
  return out;
}

/** A deterministic invalid frame: binary garbage, bad JSON text, wrong shapes, nesting, oversize. */
function randomFrame(seed: number): [Buffer | string, { binary: boolean }] {
  const kind = seed % 7;
  const n = 1 + ((seed * 7919) % 2000);
  switch (kind) {
    case 0:
      return [randomBytes(n), { binary: true }];
    case 1:
      return [randomBytes(n).toString('base64'), { binary: false }];
    case 2:
      return [JSON.stringify({ type: randomBytes(4).toString('hex'), data: 'x' }), { binary: false }];
    case 3:
      return ['['.repeat(n + 9), { binary: false }];
    case 4:
      return [JSON.stringify({ type: 'relay', data: n }), { binary: seed % 2 === 0 }];
    case 5:
      return [JSON.stringify({ type: 'join', v: 99, room: 'ABCDEFGH' }), { binary: false }];
    default:
      return ['z'.repeat(MAX_SIGNAL_BYTES + n), { binary: seed % 2 === 0 }];
  }
}
