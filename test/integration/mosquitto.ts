// A real mosquitto on a free loopback port, with a generated config, for the MQTT tests and
// the bench (bench/mqtt.ts). Also a TCP proxy in front of it that reads the MQTT packets in
// both directions (mqtt-packet's parser), to lose an acknowledgement or repeat a packet.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import mqttPacket from 'mqtt-packet';

/** How long mosquitto gets to accept connections after it starts, in ms. */
const MOSQUITTO_START_MS = 5_000;

/** A program on PATH, or in the sbin dirs where Debian puts mosquitto (not on a user's PATH). */
function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  return dirs.map((d) => join(d, name)).find((p) => p.startsWith('/') && existsSync(p));
}

/** The mosquitto binary, or undefined when it is not installed. */
export function findMosquitto(): string | undefined {
  return findBinary('mosquitto');
}

/** A free TCP port on 127.0.0.1 (closed again: a small race, fine on a test machine). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP on the port; rejects after `ms`. */
async function whenListening(port: number, ms: number, proc: ChildProcess, log: () => string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mosquitto exited ${proc.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => (c.destroy(), r(true)));
      c.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`mosquitto did not listen on ${port} within ${ms} ms: ${log()}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

export interface Mosquitto {
  readonly port: number;
  /** mqtt://127.0.0.1:PORT (or mqtts:// with TLS). */
  readonly url: string;
  /** Its log so far. */
  log(): string;
  /** Stops it (SIGTERM) and starts it again on the same port: retained messages and sessions are gone (no persistence). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface MosquittoOptions {
  /** user:password lines become a password file (mosquitto_passwd -b); anonymous clients are then refused. */
  users?: Record<string, string>;
  /** TLS listener: PEM file paths; `requireCertificate`: clients must show one signed by `ca`. */
  tls?: { ca: string; cert: string; key: string; requireCertificate?: boolean };
}

/** Starts mosquitto with a generated config in a temp dir; stop() removes it. */
export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const bin = findMosquitto();
  if (!bin) throw new Error('mosquitto is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'pinhole-mosquitto-'));
  const port = await freePort();
  const lines = [
    `listener ${port} 127.0.0.1`,
    'persistence false',
    // As root, mosquitto would drop to the user "mosquitto", who cannot read this 0700 dir.
    `user ${userInfo().username}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'connection_messages true',
    // Small packets at once, as a latency-minded broker is set up (docs/mqtt.md).
    'set_tcp_nodelay true',
  ];
  if (opts.users) {
    const pw = join(dir, 'passwords');
    writeFileSync(pw, '', { mode: 0o600 });
    for (const [u, p] of Object.entries(opts.users)) {
      await new Promise<void>((resolve, reject) => {
        const c = spawn(findBinary('mosquitto_passwd') ?? 'mosquitto_passwd', ['-b', pw, u, p], { stdio: 'ignore' });
        c.once('error', reject);
        c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_passwd exited ${code}`))));
      });
    }
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else lines.push('allow_anonymous true');
  if (opts.tls) {
    lines.push(
      `cafile ${opts.tls.ca}`,
      `certfile ${opts.tls.cert}`,
      `keyfile ${opts.tls.key}`,
      `require_certificate ${opts.tls.requireCertificate ? 'true' : 'false'}`,
    );
  }
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `${lines.join('\n')}\n`);
  let log = '';
  let proc: ChildProcess;
  const launch = async (): Promise<void> => {
    proc = spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d) => (log += d));
    proc.stderr!.on('data', (d) => (log += d));
    await whenListening(port, MOSQUITTO_START_MS, proc, () => log);
  };
  const halt = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await gone;
  };
  await launch();
  return {
    port,
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    log: () => log,
    restart: async () => {
      await halt();
      await launch();
    },
    stop: async () => {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A parsed MQTT packet as mqtt-packet gives it. */
export type ParsedPacket = mqttPacket.Packet;

/**
 * A TCP proxy on a free loopback port in front of a broker. Each direction of
 * each connection goes through mqtt-packet's parser; hooks may see packets,
 * and may add generated ones (mqtt-packet's generate).
 */
export interface MqttProxy {
  readonly port: number;
  readonly url: string;
  /** The next PUBACK a client sends is not passed on, and that connection is cut: the broker must redeliver. */
  losePubackOnce(): Promise<ParsedPacket>;
  /** The next PUBLISH on `topic` from the broker reaches the client twice: as sent, then a copy with DUP set. */
  repeatPublishOnce(topic: string): Promise<ParsedPacket>;
  close(): Promise<void>;
}

export async function startMqttProxy(target: () => number): Promise<MqttProxy> {
  const sockets = new Set<net.Socket>();
  let losePuback: ((p: ParsedPacket) => void) | undefined;
  let repeat: { topic: string; done: (p: ParsedPacket) => void } | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect(target(), '127.0.0.1');
    sockets.add(client).add(upstream);
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', cut).on('error', cut);
    upstream.on('close', cut).on('error', cut);
    // Client to broker: held back chunk by chunk while parsed, so a PUBACK can be kept from the broker.
    const fromClient = mqttPacket.parser({ protocolVersion: 4 });
    let dropChunk = false;
    fromClient.on('packet', (p: ParsedPacket) => {
      if (p.cmd === 'puback' && losePuback) {
        const done = losePuback;
        losePuback = undefined;
        dropChunk = true;
        done(p);
      }
    });
    client.on('data', (chunk: Buffer) => {
      fromClient.parse(chunk);
      if (dropChunk) return cut();
      upstream.write(chunk);
    });
    const fromBroker = mqttPacket.parser({ protocolVersion: 4 });
    let extra: Buffer[] = [];
    fromBroker.on('packet', (p: ParsedPacket) => {
      if (p.cmd === 'publish' && repeat && p.topic === repeat.topic) {
        const r = repeat;
        repeat = undefined;
        extra.push(mqttPacket.generate({ ...p, dup: true }));
        r.done(p);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      fromBroker.parse(chunk);
      client.write(chunk);
      for (const b of extra) client.write(b);
      extra = [];
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    losePubackOnce: () => new Promise((r) => (losePuback = r)),
    repeatPublishOnce: (topic) => new Promise((r) => (repeat = { topic, done: r })),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
