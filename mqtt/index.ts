/**
 * `pinhole mqtt`: paired devices on an MQTT broker, with Home Assistant
 * discovery (docs/mqtt.md). One MQTT connection per device, so that each has
 * its own last will on its own availability topic.
 */
import { createHash } from 'node:crypto';
import { type IClientOptions, type MqttClient, connect as mqttConnect } from 'mqtt';
import { connect, type Device } from '../controller/index.js';
import { KnownDevices, loadOrCreateIdentity } from '../platform/node/index.js';
import { PinholeError } from '../protocol/index.js';
import { type BridgeEvent, DeviceBridge } from './bridge.js';
import { deviceTopics, OFFLINE, topicSegment } from './topics.js';

export { type BridgeEvent, type BridgePhase, DeviceBridge, type DeviceBridgeOptions, type IgnoredReason } from './bridge.js';
export * from './topics.js';

/** Wait between MQTT reconnect attempts, in ms: a restarted broker is found within this. */
export const MQTT_RECONNECT_MS = 1_000;
/** MQTT connect timeout, in ms: a broker that accepts TCP but never answers CONNECT is retried after this. */
export const MQTT_CONNECT_TIMEOUT_MS = 10_000;
/** MQTT keepalive, in s: a dead broker connection is noticed within about one and a half of these. */
export const MQTT_KEEPALIVE_S = 30;
/** Longest wait at stop for the `offline` messages to be acknowledged, in ms: a broker that is away must not hold up the exit. */
export const STOP_TIMEOUT_MS = 3_000;

/** The broker: where, who, and TLS material (file contents, already read). */
export interface BrokerOptions {
  /** mqtt://host:port or mqtts://host:port, with no credentials in it. */
  url: string;
  username?: string;
  password?: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** What startMqttBridge() is told. */
export interface MqttBridgeOptions {
  broker: BrokerOptions;
  /** Devices paired before (in `stateDir`), by the names they were saved under. */
  devices: string[];
  /** Pins bridged as switches and blink buttons, and as binary sensors. */
  outputs: number[];
  inputs: number[];
  /** Topic prefix, and Home Assistant's discovery prefix. */
  prefix: string;
  discoveryPrefix: string;
  /** The buttons' blink; a field left out: the device's default. */
  blink: { times?: number; intervalMs?: number };
  /** The controller's state dir, as `pinhole control` uses it. */
  stateDir: string;
  /** The name the devices list this controller under. */
  name: string;
  /** Timeout for connecting and for each command, ms. */
  timeoutMs: number;
  /** Whether to try a direct path besides the relay. */
  direct: boolean;
  /** This pinhole's version (the configs' `origin`). */
  version: string;
  log: (e: BridgeEvent) => void;
  /** Opens a device; default connect() by name from `stateDir`. */
  open?: (device: string) => Promise<Device>;
}

/** A running bridge. */
export interface MqttBridge {
  readonly bridges: ReadonlyMap<string, DeviceBridge>;
  readonly clients: ReadonlyMap<string, MqttClient>;
  /** Rejects with `broker-refused` if the broker turns the first connection down (credentials, authorisation). */
  readonly refused: Promise<never>;
  /** Publishes `offline` for every device, closes the sessions and the MQTT connections. */
  stop(): Promise<void>;
}

/** The broker as a log may show it: scheme, host and port, never credentials. */
export function brokerLabel(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

/**
 * A client id per controller identity, prefix and device: stable across runs,
 * so the broker keeps the session (subscriptions, unacknowledged commands)
 * while the bridge restarts. 23 characters at most, as MQTT 3.1.1 guarantees.
 */
export function clientIdFor(controllerFingerprint: string, prefix: string, device: string): string {
  const h = createHash('sha256').update(`${controllerFingerprint}\0${prefix}\0${device}`).digest('hex');
  return `pinhole-${h.slice(0, 15)}`;
}

/** Checks the devices and the topics, then connects every device's MQTT client and session. */
export async function startMqttBridge(o: MqttBridgeOptions): Promise<MqttBridge> {
  if (o.devices.length === 0) throw new PinholeError('usage', 'name at least one paired device');
  const known = KnownDevices.load(o.stateDir);
  const segments = new Map<string, string>();
  for (const d of o.devices) {
    if (!known.get(d)) throw new PinholeError('unknown-device', `no paired device named "${d}"; pair first with pinhole control --server URL --code CODE info`);
    const seg = topicSegment(d);
    const other = segments.get(seg.toLowerCase());
    if (other !== undefined) throw new PinholeError('usage', `devices "${other}" and "${d}" would share the topic level "${seg}"`);
    segments.set(seg.toLowerCase(), d);
  }
  const me = loadOrCreateIdentity(o.stateDir);
  const label = brokerLabel(o.broker.url);
  const open =
    o.open ?? ((device: string) => connect({ device, stateDir: o.stateDir, name: o.name, timeoutMs: o.timeoutMs, direct: o.direct, reconnect: true }));
  const bridges = new Map<string, DeviceBridge>();
  const clients = new Map<string, MqttClient>();
  let refuse!: (e: PinholeError) => void;
  const refused = new Promise<never>((_, reject) => (refuse = reject));
  refused.catch(() => undefined);
  for (const device of o.devices) {
    const topics = deviceTopics(o.prefix, o.discoveryPrefix, device);
    const opts: IClientOptions = {
      clientId: clientIdFor(me.fingerprint, o.prefix, device),
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: MQTT_RECONNECT_MS,
      connectTimeout: MQTT_CONNECT_TIMEOUT_MS,
      keepalive: MQTT_KEEPALIVE_S,
      resubscribe: false,
      will: { topic: topics.availability, payload: Buffer.from(OFFLINE), qos: 1, retain: true },
      ...(o.broker.username !== undefined ? { username: o.broker.username } : {}),
      ...(o.broker.password !== undefined ? { password: o.broker.password } : {}),
      ...(o.broker.ca ? { ca: o.broker.ca } : {}),
      ...(o.broker.cert ? { cert: o.broker.cert } : {}),
      ...(o.broker.key ? { key: o.broker.key } : {}),
      rejectUnauthorized: true,
    };
    const client = mqttConnect(o.broker.url, opts);
    let everConnected = false;
    client.on('connect', () => {
      everConnected = true;
      // Commands and states are small and each one waits for nothing else: Nagle would only hold them back.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    });
    client.on('error', (e: Error & { code?: number | string }) => {
      // CONNACK 4 (bad user name or password) or 5 (not authorised) before the first session: the setup is wrong, not the network.
      if (!everConnected && (e.code === 4 || e.code === 5))
        refuse(
          new PinholeError('broker-refused', `the broker ${label} refused the connection: ${e.code === 4 ? 'bad user name or password' : 'not authorised'}`),
        );
    });
    clients.set(device, client);
    const bridge = new DeviceBridge({
      name: device,
      outputs: o.outputs,
      inputs: o.inputs,
      prefix: o.prefix,
      discoveryPrefix: o.discoveryPrefix,
      blink: o.blink,
      version: o.version,
      mqtt: client,
      brokerLabel: label,
      open: () => open(device),
      log: o.log,
    });
    bridges.set(device, bridge);
    bridge.start();
  }
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.all(
        [...bridges].map(async ([device, b]) => {
          const c = clients.get(device)!;
          await bounded(b.stop(), STOP_TIMEOUT_MS);
          // Not forced: the offline still in flight is sent first.
          await bounded(c.endAsync(), STOP_TIMEOUT_MS);
          if (!c.disconnected) c.end(true);
        }),
      );
    })());
  return { bridges, clients, refused, stop };
}

/** `p`, or nothing after `ms`; never rejects. */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
  ]).finally(() => clearTimeout(timer));
}
