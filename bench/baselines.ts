/**
 * Baselines: the cheapest echo each transport allows, on loopback, in this
 * process. Each echoes ECHO_PAYLOAD, a string the size of one pinhole command
 * frame, and is timed by the same loop as pinhole's commands.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { type RTCDataChannel, RTCPeerConnection } from 'werift';
import WebSocket, { WebSocketServer } from 'ws';
import { type Runner, type Summary, summarize, withTimeout } from './stats.js';

/** What the baselines echo: the bytes of a gpio.write data frame on the link. */
export const ECHO_PAYLOAD = '{"t":"d","q":1000,"a":999,"m":{"jsonrpc":"2.0","id":1000,"method":"gpio.write","params":{"pin":20,"value":1}}}';
/** Loopback only. */
export const LOOPBACK = '127.0.0.1';
/** Longest wait for a baseline's connection to open, in ms. */
const SETUP_TIMEOUT_MS = 10_000;
/** STUN gather timeout handed to werift, in s (as platform/node/rtc.ts). */
const STUN_GATHER_TIMEOUT_S = 2;
/** Data-channel label of the werift baseline. */
const DC_LABEL = 'bench';

/** One request/response pair: send, then resolve on the echo. */
class Echo {
  private waiting: (() => void) | undefined;
  constructor(private readonly sendFn: (s: string) => void) {}
  /** Call with every message the sender receives. */
  received(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }
  roundTrip(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.sendFn(ECHO_PAYLOAD);
    });
  }
}

const listening = (wss: WebSocketServer): Promise<number> =>
  new Promise((resolve, reject) => {
    wss.once('listening', () => resolve((wss.address() as AddressInfo).port));
    wss.once('error', reject);
  });

const opened = (ws: WebSocket): Promise<void> =>
  new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });

const closeWss = (wss: WebSocketServer): Promise<void> =>
  new Promise((resolve) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => resolve());
  });

/** Client ↔ ws server that echoes. */
export async function openWsEcho(): Promise<Runner> {
  const wss = new WebSocketServer({ host: LOOPBACK, port: 0 });
  const port = await listening(wss);
  wss.on('connection', (s) => s.on('message', (d, bin) => s.send(d, { binary: bin })));
  const ws = new WebSocket(`ws://${LOOPBACK}:${port}`);
  const close = async (): Promise<void> => {
    ws.terminate();
    await closeWss(wss);
  };
  try {
    await withTimeout(opened(ws), SETUP_TIMEOUT_MS, 'ws echo');
  } catch (e) {
    await close();
    throw e;
  }
  const echo = new Echo((s) => ws.send(s));
  ws.on('message', () => echo.received());
  return { roundTrip: () => echo.roundTrip(), close };
}

/** Client A → ws relay server → client B, which echoes back the same way: the shape of pinhole's relay. */
export async function openWsRelayEcho(): Promise<Runner> {
  const wss = new WebSocketServer({ host: LOOPBACK, port: 0 });
  const port = await listening(wss);
  const peers: WebSocket[] = [];
  wss.on('connection', (s) => {
    peers.push(s);
    s.on('message', (d, bin) => peers.find((p) => p !== s)?.send(d, { binary: bin }));
  });
  const a = new WebSocket(`ws://${LOOPBACK}:${port}`);
  const b = new WebSocket(`ws://${LOOPBACK}:${port}`);
  const close = async (): Promise<void> => {
    a.terminate();
    b.terminate();
    await closeWss(wss);
  };
  try {
    await withTimeout(Promise.all([opened(a), opened(b)]), SETUP_TIMEOUT_MS, 'ws relay');
    while (peers.length < 2) await new Promise((r) => setImmediate(r));
  } catch (e) {
    await close();
    throw e;
  }
  b.on('message', (d, bin) => b.send(d, { binary: bin }));
  const echo = new Echo((s) => a.send(s));
  a.on('message', () => echo.received());
  return { roundTrip: () => echo.roundTrip(), close };
}

/** Raw UDP datagrams between two sockets. */
export async function openUdpEcho(): Promise<Runner> {
  const bind = (s: dgram.Socket): Promise<number> => new Promise((r) => s.bind(0, LOOPBACK, () => r(s.address().port)));
  const server = dgram.createSocket('udp4');
  const client = dgram.createSocket('udp4');
  const serverPort = await bind(server);
  const clientPort = await bind(client);
  server.on('message', (m) => server.send(m, clientPort, LOOPBACK));
  const echo = new Echo((s) => client.send(s, serverPort, LOOPBACK));
  client.on('message', () => echo.received());
  return {
    roundTrip: () => echo.roundTrip(),
    close: async () => {
      server.close();
      client.close();
    },
  };
}

/** Peer-connection options as platform/node/rtc.ts sets them for a loopback server: our STUN, host candidates on 127.0.0.1 only. */
export function loopbackPcConfig(stunPort: number): ConstructorParameters<typeof RTCPeerConnection>[0] {
  const allowed = [LOOPBACK];
  return {
    iceServers: [{ urls: `stun:${LOOPBACK}:${stunPort}` }],
    iceUseIpv6: false,
    iceStunGatherTimeout: STUN_GATHER_TIMEOUT_S,
    iceAdditionalHostAddresses: allowed,
    iceInterfaceAddresses: { udp4: LOOPBACK },
    iceFilterCandidatePair: (pair) => allowed.includes(pair.remoteCandidate.host) && allowed.includes(pair.protocol.localCandidate?.host ?? ''),
  };
}

const dcOpen = (dc: RTCDataChannel): Promise<void> =>
  new Promise((resolve) => {
    if (dc.readyState === 'open') return resolve();
    dc.stateChanged.subscribe((s) => {
      if (s === 'open') resolve();
    });
  });

/** Two werift peer connections in this process, SDP handed over directly, one ordered data channel open; the answerer echoes. */
async function openWeriftPair(stunPort: number): Promise<{ dc: RTCDataChannel; close: () => Promise<void> }> {
  const a = new RTCPeerConnection(loopbackPcConfig(stunPort));
  const b = new RTCPeerConnection(loopbackPcConfig(stunPort));
  const close = async (): Promise<void> => {
    await Promise.all([a.close(), b.close()]).catch(() => undefined);
  };
  try {
    const dc = a.createDataChannel(DC_LABEL, { ordered: true });
    b.onDataChannel.subscribe((ch) => ch.onMessage.subscribe((m) => ch.send(m)));
    const setup = async (): Promise<void> => {
      // werift gathers before setLocalDescription resolves, so each SDP carries its candidates.
      await a.setLocalDescription(await a.createOffer());
      await b.setRemoteDescription(a.localDescription!);
      await b.setLocalDescription(await b.createAnswer());
      await a.setRemoteDescription(b.localDescription!);
      await dcOpen(dc);
    };
    await withTimeout(setup(), SETUP_TIMEOUT_MS, 'werift data channel');
    return { dc, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Round trips of a small string over a bare werift data channel. */
export async function openWeriftEcho(stunPort: number): Promise<Runner> {
  const { dc, close } = await openWeriftPair(stunPort);
  const echo = new Echo((s) => dc.send(s));
  dc.onMessage.subscribe(() => echo.received());
  return { roundTrip: () => echo.roundTrip(), close };
}

/** Times `n` fresh werift pairs (after `warmup` untimed) from createOffer to an open data channel. */
export async function weriftSetupTimes(stunPort: number, n: number, warmup: number): Promise<Summary> {
  const samples: number[] = [];
  for (let i = 0; i < warmup + n; i++) {
    const t0 = performance.now();
    const { close } = await openWeriftPair(stunPort);
    if (i >= warmup) samples.push(performance.now() - t0);
    await close();
  }
  return summarize(samples);
}
