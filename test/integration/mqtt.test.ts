// `pinhole mqtt` against a real mosquitto on loopback: a real signaling server, a device agent on
// the simulated board, paired controller state, the bridge as a CLI process, and an MQTT client
// watching every topic as Home Assistant would.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { objectId } from '../../mqtt/topics.js';
import { VERSION } from '../../protocol/version.js';
import type { SignalServer } from '../../signaling/index.js';
import { exited, pair, runCli, type Spawned, spawnUntil, startDevice, startServer, stateDir, type TestDevice, waitFor } from './helpers.js';
import { findMosquitto, type Mosquitto, type MqttProxy, startMosquitto, startMqttProxy } from './mosquitto.js';

const MOSQUITTO = findMosquitto();
const MISSING = 'mosquitto is not installed (apt-get install mosquitto; .ci/run does)';
// Under CI a missing broker fails the file; elsewhere it is skipped, saying why.
const skip = MOSQUITTO === undefined && process.env.CI !== 'true' ? MISSING : false;
if (skip) console.log(`# mqtt.test: skipped: ${skip}`);
const mtest = (name: string, fn: () => Promise<void>): void => void test(name, { skip }, fn);

/** Pins: outputs 20, 21 (22 is asked for but the device does not allow it), input 5. */
const OUT = 20;
const OUT2 = 21;
const IN = 5;
const DEVICE_PINS = [IN, 6, OUT, OUT2];
/** Long enough for the bridge to have acted on something it should not act on. */
const SETTLE_MS = 300;
const WAIT_MS = 15_000;

interface Msg {
  topic: string;
  payload: string;
  retain: boolean;
  seq: number;
}

/** An MQTT client that records every message on every topic. */
class Observer {
  readonly msgs: Msg[] = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) =>
      this.msgs.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, seq: this.msgs.length }),
    );
  }
  static async open(url: string): Promise<Observer> {
    const c = await connectAsync(url, { reconnectPeriod: 200, clean: true });
    const o = new Observer(c);
    await c.subscribeAsync('#', { qos: 1 });
    return o;
  }
  get mark(): number {
    return this.msgs.length;
  }
  /** The first message on `topic` (with `payload`, if given) from `since` on. */
  wait(topic: string, payload?: string, since = 0, ms = WAIT_MS): Promise<Msg> {
    return waitFor(
      () => this.msgs.slice(since).find((m) => m.topic === topic && (payload === undefined || m.payload === payload)),
      ms,
      `${topic} = ${payload ?? 'any'}`,
    );
  }
  last(topic: string): Msg | undefined {
    return this.msgs.filter((m) => m.topic === topic).at(-1);
  }
  async publish(topic: string, payload: string | Buffer): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 });
  }
  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}

/** The message the broker keeps retained on `topic` (with `payload`, if given), as a client that subscribes now gets it. */
async function retained(topic: string, payload?: string): Promise<string> {
  const c = await connectAsync(broker.url, { reconnectPeriod: 0, clean: true });
  try {
    const got = new Promise<string>((resolve) =>
      c.on('message', (t, p, packet) => {
        if (t === topic && packet.retain && (payload === undefined || p.toString('utf8') === payload)) resolve(p.toString('utf8'));
      }),
    );
    await c.subscribeAsync(topic, { qos: 1 });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing retained on ${topic} = ${payload ?? 'any'}`)), 2_000)));
    return await Promise.race([got, late]).finally(() => clearTimeout(timer));
  } finally {
    await c.endAsync(true);
  }
}

let server: SignalServer;
let dev: TestDevice;
let laptop: Awaited<ReturnType<typeof pair>>;
let other: Awaited<ReturnType<typeof pair>>;
let broker: Mosquitto;
let proxy: MqttProxy;
let obs: Observer;
let bridge: Spawned;

const T = (pin: number | string, leaf: string): string => `pinhole/test-board/${pin}/${leaf}`;
const AVAIL = 'pinhole/test-board/availability';
const events = (s: Spawned = bridge): Record<string, unknown>[] =>
  s
    .out()
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
const waitEvent = (pred: (e: Record<string, unknown>) => boolean, since: number, what: string, s: Spawned = bridge) =>
  waitFor(() => events(s).slice(since).find(pred), WAIT_MS, what);

function bridgeArgs(url: string, extra: string[] = []): string[] {
  return [
    'mqtt',
    '--broker',
    url,
    '--outputs',
    `${OUT},${OUT2},22`,
    '--inputs',
    String(IN),
    '--blink-times',
    '2',
    '--blink-interval',
    '20',
    '--state-dir',
    laptop.stateDir,
    '--name',
    'mqtt-bridge',
    '--json',
    ...extra,
    laptop.device,
  ];
}

before(async () => {
  if (skip) return;
  assert.ok(MOSQUITTO, `${MISSING}; CI=true requires it`);
  server = await startServer();
  dev = await startDevice(server, { pins: DEVICE_PINS });
  laptop = await pair(server, dev, { name: 'mqtt-bridge' });
  other = await pair(server, dev, { name: 'other-laptop' });
  broker = await startMosquitto();
  proxy = await startMqttProxy(() => broker.port);
  obs = await Observer.open(broker.url);
  bridge = await spawnUntil(bridgeArgs(proxy.url), /"event":"online"/, WAIT_MS);
});
after(async () => {
  if (skip) return;
  if (bridge?.proc.exitCode === null) bridge.proc.kill('SIGKILL');
  await obs?.close();
  await proxy?.close();
  await broker?.stop();
  await dev?.agent.stop();
  await server?.close();
});

/** The fingerprint the device's handshake proves. */
const fp = (): string => dev.agent.fingerprint;
const configTopic = (component: 'switch' | 'binary_sensor' | 'button', pin: number) => `homeassistant/${component}/${objectId(fp(), pin, component)}/config`;

mtest('issue 16: discovery configs carry what the switch, binary_sensor and button platforms need', async () => {
  const device = { identifiers: [`pinhole-${fp()}`], name: 'test-board', manufacturer: 'pinhole', model: 'pinhole', sw_version: VERSION, hw_version: 'sim' };
  const availability = { availability_topic: AVAIL, payload_available: 'online', payload_not_available: 'offline' };
  const origin = { name: 'pinhole mqtt', sw_version: VERSION };
  const got = async (topic: string): Promise<Record<string, unknown>> => {
    await obs.wait(topic);
    const m = { payload: await retained(topic) };
    // HA: <discovery_prefix>/<component>/<object_id>/config, object_id in [a-zA-Z0-9_-].
    assert.match(topic, /^homeassistant\/(switch|binary_sensor|button)\/[a-zA-Z0-9_-]+\/config$/);
    return JSON.parse(m.payload) as Record<string, unknown>;
  };
  for (const pin of [OUT, OUT2]) {
    assert.deepEqual(await got(configTopic('switch', pin)), {
      name: `Pin ${pin}`,
      unique_id: objectId(fp(), pin, 'switch'),
      ...availability,
      qos: 1,
      device,
      origin,
      command_topic: T(pin, 'set'),
      state_topic: T(pin, 'state'),
      payload_on: 'ON',
      payload_off: 'OFF',
      state_on: 'ON',
      state_off: 'OFF',
      optimistic: false,
      retain: false,
    });
    assert.deepEqual(await got(configTopic('button', pin)), {
      name: `Pin ${pin} blink`,
      unique_id: objectId(fp(), pin, 'button'),
      ...availability,
      qos: 1,
      device,
      origin,
      command_topic: T(pin, 'blink'),
      payload_press: 'PRESS',
      retain: false,
    });
  }
  assert.deepEqual(await got(configTopic('binary_sensor', IN)), {
    name: `Pin ${IN}`,
    unique_id: objectId(fp(), IN, 'binary_sensor'),
    ...availability,
    qos: 1,
    device,
    origin,
    state_topic: T(IN, 'state'),
    payload_on: 'ON',
    payload_off: 'OFF',
  });
  // Unique ids are unique; pin 22 is not allowed by the device: no entity, one log line.
  const configs = obs.msgs.filter((m) => m.topic.endsWith('/config')).map((m) => JSON.parse(m.payload).unique_id as string);
  assert.equal(new Set(configs).size, 5);
  assert.equal(
    obs.msgs.some((m) => m.topic.includes('_22')),
    false,
  );
  assert.equal(events().filter((e) => e.event === 'pin-skipped' && e.pin === 22 && e.error === 'pin-not-allowed').length, 1);
  // Availability and the states, retained.
  await retained(AVAIL, 'online');
  for (const pin of [OUT, OUT2, IN]) await retained(T(pin, 'state'), 'OFF');
});

mtest('issue 16: ON on the set topic makes the sim pin high, OFF low, and the state follows', async () => {
  let since = obs.mark;
  await obs.publish(T(OUT, 'set'), 'ON');
  await waitFor(() => dev.gpio.read(OUT) === 1, WAIT_MS, 'pin 20 high');
  await obs.wait(T(OUT, 'state'), 'ON', since);
  await retained(T(OUT, 'state'), 'ON');
  since = obs.mark;
  await obs.publish(T(OUT, 'set'), 'OFF');
  await waitFor(() => dev.gpio.read(OUT) === 0, WAIT_MS, 'pin 20 low');
  await obs.wait(T(OUT, 'state'), 'OFF', since);
});

mtest('issue 16: an input edge driven on the sim appears on the state topic', async () => {
  let since = obs.mark;
  dev.gpio.drive(IN, 1);
  await obs.wait(T(IN, 'state'), 'ON', since);
  await retained(T(IN, 'state'), 'ON');
  since = obs.mark;
  dev.gpio.drive(IN, 0);
  await obs.wait(T(IN, 'state'), 'OFF', since);
});

mtest('issue 16: a write from another controller appears on the state topic', async () => {
  const since = obs.mark;
  const r = await runCli(['control', other.device, '--state-dir', other.stateDir, '--json', 'write', String(OUT2), '1']);
  assert.equal(r.code, 0, r.stderr);
  await obs.wait(T(OUT2, 'state'), 'ON', since);
  const r2 = await runCli(['control', other.device, '--state-dir', other.stateDir, '--json', 'write', String(OUT2), '0']);
  assert.equal(r2.code, 0, r2.stderr);
  await obs.wait(T(OUT2, 'state'), 'OFF', since);
});

mtest('issue 16: the blink button blinks with --blink-times and --blink-interval', async () => {
  const before = dev.gpio.trace(OUT2).length;
  const since = events().length;
  await obs.publish(T(OUT2, 'blink'), 'PRESS');
  await waitEvent((e) => e.event === 'command' && e.action === 'blink' && e.ok === true, since, 'the blink done');
  assert.equal(dev.gpio.trace(OUT2).length - before, 2);
});

mtest('issue 16: junk on the command topics is ignored with one log line each, and nothing is done to the pin', async () => {
  const writes = dev.gpio.counters(OUT).writes;
  const since = events().length;
  const junk: [string, string | Buffer][] = [
    [T(OUT, 'set'), 'on'],
    [T(OUT, 'set'), 'TOGGLE'],
    [T(OUT, 'set'), ''],
    [T(OUT, 'set'), ' ON'],
    [T(OUT, 'set'), '\x1b]0;owned\x07\x1b[2J'],
    [T(OUT, 'set'), Buffer.alloc(4096, 0xff)],
    [T(OUT, 'set'), 'PRESS'],
    [T(OUT, 'blink'), 'ON'],
    [T(IN, 'set'), 'ON'],
    [T('abc', 'set'), 'ON'],
    [T('99999999', 'set'), 'ON'],
  ];
  for (const [topic, payload] of junk) await obs.publish(topic, payload);
  // Then one good command: once it has run, the junk before it has been looked at.
  await obs.publish(T(OUT, 'set'), 'ON');
  await waitFor(() => dev.gpio.read(OUT) === 1, WAIT_MS, 'the good command');
  await waitEvent((e) => e.event === 'command' && e.pin === OUT && e.ok === true, since, 'the good command logged');
  const ignored = events()
    .slice(since)
    .filter((e) => e.event === 'ignored');
  assert.equal(ignored.length, junk.length);
  assert.deepEqual(
    ignored.map((e) => e.reason),
    ['malformed', 'malformed', 'malformed', 'malformed', 'malformed', 'malformed', 'malformed', 'malformed', 'not-an-output', 'malformed', 'malformed'],
  );
  assert.equal(dev.gpio.counters(OUT).writes, writes + 1);
  // No raw escape reached the log (JSON spells it \u001b).
  assert.equal(bridge.out().includes('\x1b'), false);
  assert.equal(bridge.err().includes('\x1b'), false);
  await obs.publish(T(OUT, 'set'), 'OFF');
  await waitFor(() => dev.gpio.read(OUT) === 0, WAIT_MS, 'pin 20 low again');
});

mtest('issue 16: a QoS 1 command the broker redelivers (its PUBACK lost: same packet id, DUP) runs once', async () => {
  await waitFor(() => dev.gpio.read(OUT) === 0, WAIT_MS, 'pin 20 low');
  const writes = dev.gpio.counters(OUT).writes;
  const since = events().length;
  const lost = proxy.losePubackOnce();
  await obs.publish(T(OUT, 'set'), 'ON');
  const puback = await lost;
  // mosquitto sends it again on the bridge's next connection, same packet id, DUP set; the bridge drops that copy.
  const dup = await waitEvent((e) => e.event === 'ignored' && e.reason === 'duplicate', since, 'the redelivered copy');
  assert.equal(dup.topic, T(OUT, 'set'));
  assert.equal((puback as { messageId?: number }).messageId !== undefined, true);
  await waitFor(() => dev.gpio.read(OUT) === 1, WAIT_MS, 'pin 20 high');
  await waitEvent((e) => e.event === 'broker' && e.state === 'connected' && e.sessionPresent === true, since, 'the session resumed');
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  assert.equal(dev.gpio.counters(OUT).writes, writes + 1);
  assert.equal(
    events()
      .slice(since)
      .filter((e) => e.event === 'command' && e.pin === OUT).length,
    1,
  );
  // The cut left the bridge's last will; its new connection says online again.
  await waitFor(() => obs.last(AVAIL)?.payload === 'online', WAIT_MS, 'online again');
});

mtest('issue 16: the same QoS 1 PUBLISH twice (same packet id, the copy with DUP) runs once', async () => {
  await obs.publish(T(OUT, 'set'), 'OFF');
  await waitFor(() => dev.gpio.read(OUT) === 0, WAIT_MS, 'pin 20 low');
  const blinks = dev.gpio.trace(OUT2).length;
  const since = events().length;
  // The proxy writes the packet mosquitto sent, then the same packet (mqtt-packet's generate) with DUP set.
  const repeated = proxy.repeatPublishOnce(T(OUT2, 'blink'));
  await obs.publish(T(OUT2, 'blink'), 'PRESS');
  const p = await repeated;
  assert.equal((p as { qos?: number }).qos, 1);
  await waitEvent((e) => e.event === 'ignored' && e.reason === 'duplicate', since, 'the copy dropped');
  await waitEvent((e) => e.event === 'command' && e.action === 'blink', since, 'the blink');
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  assert.equal(dev.gpio.trace(OUT2).length - blinks, 2, 'one blink of 2 toggles');
  assert.equal(
    events()
      .slice(since)
      .filter((e) => e.event === 'command').length,
    1,
  );
});

mtest("issue 16: Home Assistant's birth message gets the discovery configs published again", async () => {
  const since = obs.mark;
  await obs.publish('homeassistant/status', 'online');
  await obs.wait(configTopic('switch', OUT), undefined, since);
  await obs.wait(configTopic('binary_sensor', IN), undefined, since);
  await obs.wait(AVAIL, 'online', since);
  await waitEvent((e) => e.event === 'republished' && e.why === 'birth', 0, 'the republished line');
});

mtest('issue 16: the device stops: offline; it restarts: online, with a resync of the states', async () => {
  await obs.publish(T(OUT, 'set'), 'ON');
  await waitFor(() => dev.gpio.read(OUT) === 1, WAIT_MS, 'pin 20 high');
  let since = obs.mark;
  const ev = events().length;
  await dev.agent.stop();
  await obs.wait(AVAIL, 'offline', since);
  await retained(AVAIL, 'offline');
  await waitEvent((e) => e.event === 'offline', ev, 'the offline line');
  // A command while it is away is not run by anyone now.
  since = obs.mark;
  dev = await startDevice(server, { stateDir: dev.stateDir, pins: DEVICE_PINS });
  await obs.wait(AVAIL, 'online', since);
  await waitEvent((e) => e.event === 'online' && e.reconnected === true, ev, 'online again');
  // The new board starts low: the resync says so, and the state topic follows.
  const r = await waitEvent((e) => e.event === 'resync' && e.pin === OUT, ev, 'the resync of pin 20');
  assert.deepEqual([r.value, r.previous], [0, 1]);
  await obs.wait(T(OUT, 'state'), 'OFF', since);
  // And the bridge drives the new board.
  await obs.publish(T(OUT, 'set'), 'ON');
  await waitFor(() => dev.gpio.read(OUT) === 1, WAIT_MS, 'pin 20 high on the restarted device');
});

mtest('issue 16: mosquitto restarts: configs, states and availability are published again, retained', async () => {
  const ev = events().length;
  await broker.restart();
  await waitEvent((e) => e.event === 'republished' && e.why === 'broker', ev, 'the republish after the restart');
  // A client that connects now gets everything from the broker's retained store.
  const fresh = await Observer.open(broker.url);
  try {
    for (const t of [
      configTopic('switch', OUT),
      configTopic('switch', OUT2),
      configTopic('button', OUT),
      configTopic('button', OUT2),
      configTopic('binary_sensor', IN),
    ])
      assert.equal((await fresh.wait(t)).retain, true, t);
    assert.equal((await fresh.wait(AVAIL, 'online')).retain, true);
    assert.equal((await fresh.wait(T(OUT, 'state'), 'ON')).retain, true);
    assert.equal((await fresh.wait(T(OUT2, 'state'), 'OFF')).retain, true);
    assert.equal((await fresh.wait(T(IN, 'state'), 'OFF')).retain, true);
    // Commands work again.
    await fresh.publish(T(OUT, 'set'), 'OFF');
    await waitFor(() => dev.gpio.read(OUT) === 0, WAIT_MS, 'pin 20 low after the restart');
  } finally {
    await fresh.close();
  }
});

mtest('issue 16: SIGTERM publishes offline and exits 0; a killed bridge leaves its last will, offline', async () => {
  const watch = await Observer.open(broker.url);
  try {
    await watch.wait(AVAIL, 'online');
    let since = watch.mark;
    bridge.proc.kill('SIGTERM');
    assert.equal(await exited(bridge.proc), 0);
    await watch.wait(AVAIL, 'offline', since);
    await retained(AVAIL, 'offline');
    // Once more, killed: the broker publishes the will.
    since = watch.mark;
    const again = await spawnUntil(bridgeArgs(broker.url), /"event":"online"/, WAIT_MS);
    await watch.wait(AVAIL, 'online', since);
    since = watch.mark;
    again.proc.kill('SIGKILL');
    await exited(again.proc);
    await watch.wait(AVAIL, 'offline', since);
    await retained(AVAIL, 'offline');
  } finally {
    await watch.close();
  }
});

mtest('issue 16: credentials from the environment or a file, never in the logs; a wrong password exits 3', async () => {
  const secret = 'pw-Zq8v3-not-for-logs';
  const auth = await startMosquitto({ users: { ha: secret } });
  try {
    const file = join(stateDir('mqtt-secret'), 'password');
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    const base = (extra: string[]) => bridgeArgs(auth.url, extra);
    // From the environment.
    const viaEnv = await spawnUntil(base([]), /"event":"online"/, WAIT_MS, { PINHOLE_MQTT_USERNAME: 'ha', PINHOLE_MQTT_PASSWORD: secret });
    viaEnv.proc.kill('SIGTERM');
    assert.equal(await exited(viaEnv.proc), 0);
    // From a file, the user in the URL.
    const viaFile = await spawnUntil(
      base(['--password-file', file]).map((a) => (a === auth.url ? auth.url.replace('mqtt://', 'mqtt://ha@') : a)),
      /"event":"online"/,
      WAIT_MS,
    );
    viaFile.proc.kill('SIGTERM');
    assert.equal(await exited(viaFile.proc), 0);
    // In the URL (works, with a note), and wrong: exit 3, broker-refused.
    const inUrl = await spawnUntil(
      base([])
        .map((a) => (a === auth.url ? auth.url.replace('mqtt://', `mqtt://ha:${secret}@`) : a))
        .filter((a) => a !== '--json'),
      / online \(/,
      WAIT_MS,
    );
    inUrl.proc.kill('SIGTERM');
    assert.equal(await exited(inUrl.proc), 0);
    assert.match(inUrl.err(), /note: a password in --broker/);
    const wrong = await runCli(base([]), { env: { PINHOLE_MQTT_USERNAME: 'ha', PINHOLE_MQTT_PASSWORD: `${secret}-wrong` } });
    assert.equal(wrong.code, 3, wrong.stderr);
    assert.equal(wrong.json.at(-1)?.error, 'broker-refused');
    for (const out of [viaEnv.out(), viaEnv.err(), viaFile.out(), viaFile.err(), inUrl.out(), inUrl.err(), wrong.stdout, wrong.stderr])
      assert.equal(out.includes(secret), false, 'a password in the log');
  } finally {
    await auth.stop();
  }
});

mtest('issue 16: usage errors exit 2 and never echo a password given in --broker', async () => {
  const cases: string[][] = [
    ['mqtt', '--broker', 'mqtt://u:hunter2-secret@127.0.0.1:1/x', '--outputs', '20', 'dev'],
    ['mqtt', '--broker', 'http://u:hunter2-secret@127.0.0.1', '--outputs', '20', 'dev'],
    ['mqtt', '--broker', 'mqtt://127.0.0.1', 'dev'],
    ['mqtt', '--broker', 'mqtt://127.0.0.1', '--outputs', '20', '--inputs', '20', 'dev'],
    ['mqtt', '--broker', 'mqtt://127.0.0.1', '--outputs', '20', '--prefix', 'a/+/b', 'dev'],
    ['mqtt', '--broker', 'mqtt://127.0.0.1', '--outputs', '20', '--ca', 'x.pem', 'dev'],
    ['mqtt', '--broker', 'mqtt://127.0.0.1', '--outputs', '20'],
  ];
  for (const args of cases) {
    const r = await runCli([...args, '--state-dir', laptop.stateDir]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.includes('hunter2'), false);
  }
  const unknown = await runCli(['mqtt', '--broker', broker.url, '--outputs', '20', '--state-dir', laptop.stateDir, '--json', 'no-such-board']);
  assert.equal(unknown.code, 3);
  assert.equal(unknown.json.at(-1)?.error, 'unknown-device');
});

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl in `dir`. */
function makeCerts(dir: string): { ca: string; cert: string; key: string; clientCert: string; clientKey: string } {
  const f = (n: string): string => join(dir, n);
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=pinhole test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    writeFileSync(f(`${name}.ext`), `${ext}\n`);
    ssl(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f(`${name}.ext`),
      '-out',
      f(`${name}.pem`),
    );
  }
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

mtest('issue 16: mqtts:// with --ca, and a client certificate with --cert and --key', async () => {
  const c = makeCerts(stateDir('mqtt-tls'));
  const tls = await startMosquitto({ tls: { ca: c.ca, cert: c.cert, key: c.key, requireCertificate: true } });
  try {
    const ok = await spawnUntil(bridgeArgs(tls.url, ['--ca', c.ca, '--cert', c.clientCert, '--key', c.clientKey]), /"event":"online"/, WAIT_MS);
    ok.proc.kill('SIGTERM');
    assert.equal(await exited(ok.proc), 0);
    // Without the CA the broker's certificate does not verify: no session, errors logged, no online.
    const untrusted = await spawnUntil(bridgeArgs(tls.url, ['--cert', c.clientCert, '--key', c.clientKey]), /"event":"broker-error"/, WAIT_MS);
    assert.equal(/"event":"broker","device":"[^"]*","state":"connected"/.test(untrusted.out()), false);
    untrusted.proc.kill('SIGTERM');
    assert.equal(await exited(untrusted.proc), 0);
  } finally {
    await tls.stop();
  }
});
