/**
 * One pinhole device on an MQTT broker: its pins as Home Assistant entities
 * (discovery), its levels on retained state topics, `set` and `blink` commands
 * run through the controller API, and an availability topic that reads
 * `online` only while the device's session is up. The Device and the MQTT
 * client are given; nothing here reads files, flags or the environment.
 *
 * Exactly once: the broker redelivers a QoS 1 command whose PUBACK it did not
 * get (same packet id, DUP set); such a copy is recognised here and dropped,
 * and the one write it stands for goes out under one request id, which the
 * device runs at most once however often the Device resends it.
 */
import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt';
import { type Change, type Device, type DeviceInfo, RECONNECT_BASE_MS, RECONNECT_MAX_MS } from '../controller/index.js';
import { type Level, PinholeError, type PinMode } from '../protocol/index.js';
import { Backoff } from '../session/index.js';
import type { Path } from '../transport/index.js';
import {
  type DeviceTopics,
  type DiscoveryDevice,
  deviceTopics,
  discoveryConfigs,
  levelPayload,
  OFF,
  OFFLINE,
  ON,
  ONLINE,
  PRESS,
  parseCommandTopic,
} from './topics.js';

/** Longest payload kept to recognise a redelivered copy; no valid command is longer. */
const MAX_DEDUP_PAYLOAD_BYTES = 64;
/** Longest piece of a junk payload or topic put in a log event, in characters. */
const MAX_LOGGED_CHARS = 40;
/** Part of each retry delay drawn at random, so bridges that lost one server do not return in step. */
const RETRY_JITTER = 0.5;

/** What the bridge reports: one event per line of the log (cli/mqtt.ts prints them). */
export type BridgeEvent =
  /** The MQTT connection came up (`sessionPresent`: the broker kept our session) or went down. */
  | { event: 'broker'; device: string; state: 'connected'; broker: string; sessionPresent: boolean }
  | { event: 'broker'; device: string; state: 'disconnected'; broker: string }
  /** The MQTT client reported an error (it reconnects by itself). */
  | { event: 'broker-error'; device: string; broker: string; message: string; code: number | string | undefined }
  /** The device's session is up; its entities are published. */
  | { event: 'online'; device: string; path: Path; fingerprint: string; outputs: number[]; inputs: number[]; reconnected: boolean }
  /** The device's session is down; `error`: why. The bridge (or the Device) keeps trying. */
  | { event: 'offline'; device: string; error: string }
  /** A connection attempt failed; the next one starts in `retryMs`. */
  | { event: 'connect-failed'; device: string; error: string; message: string; retryMs: number }
  /** Discovery configs, states and availability were published again (`why`: the broker came back or Home Assistant restarted). */
  | { event: 'republished'; device: string; why: 'broker' | 'birth'; configs: number }
  /** A watched pin after a reconnect: its level now and the last one known. */
  | { event: 'resync'; device: string; pin: number; value: Level; previous: Level }
  /** A command from MQTT, done or failed (`error`: the device's code). */
  | { event: 'command'; device: string; pin: number; action: 'set' | 'blink'; payload: string; ok: true; path: Path; ms: number }
  | { event: 'command'; device: string; pin: number; action: 'set' | 'blink'; payload: string; ok: false; error: string; message: string }
  /** A message acted on not at all. `payload` and `topic` are cut to a few dozen characters. */
  | { event: 'ignored'; device: string; reason: IgnoredReason; topic: string; payload: string }
  /** A pin of --outputs or --inputs left out: the device does not allow it, or setting it up failed. */
  | { event: 'pin-skipped'; device: string; pin: number; error: string; message: string };

/** Why a message was not acted on. */
export type IgnoredReason =
  /** Not ON/OFF on `set`, not PRESS on `blink`, or a topic under ours that is neither. */
  | 'malformed'
  /** A redelivered copy of a QoS 1 command already acted on. */
  | 'duplicate'
  /** `set` or `blink` on a pin that is not one of the outputs. */
  | 'not-an-output'
  /** No session to the device yet (its first connection has not succeeded). */
  | 'offline';

/** What one device's bridge is told. */
export interface DeviceBridgeOptions {
  /** The name the device was saved under; also its topic level (topicSegment). */
  name: string;
  /** Output pins (switches and blink buttons) and input pins (binary sensors), as asked; those the device does not allow are left out. */
  outputs: readonly number[];
  inputs: readonly number[];
  prefix: string;
  discoveryPrefix: string;
  /** The button's blink: undefined fields take the device's defaults. */
  blink: { times?: number; intervalMs?: number };
  /** This bridge's pinhole version, for the configs' `origin`. */
  version: string;
  /** The MQTT client of this device (its last will is this device's availability `offline`). */
  mqtt: MqttClient;
  /** The broker as logs may show it: no credentials. */
  brokerLabel: string;
  /** Opens a session to the device (connect() by name). Called again whenever a Device closes. */
  open: () => Promise<Device>;
  log: (e: BridgeEvent) => void;
}

/** A device's bridge: where its session is. Transitions in DeviceBridge.to(). */
export type BridgePhase =
  /** Constructed; start() not called yet. */
  | { phase: 'idle' }
  /** open() and the set-up (info, modes, watches) are under way. */
  | { phase: 'connecting'; attempt: number }
  /** The last attempt failed or the Device closed; the next starts when `timer` fires. */
  | { phase: 'waiting'; timer: ReturnType<typeof setTimeout>; reason: PinholeError }
  /** The session is up: availability `online`. */
  | { phase: 'up'; dev: Device; unhook: () => void }
  /** The Device lost its session and reconnects by itself; commands wait in it. */
  | { phase: 'down'; dev: Device; unhook: () => void; reason: PinholeError }
  /** stop() was called. */
  | { phase: 'stopped' };

/** The pins in use, once the device's allowed pins are known. */
interface Entities {
  device: DiscoveryDevice;
  outputs: number[];
  inputs: number[];
}

const asPinholeError = (e: unknown): PinholeError => (e instanceof PinholeError ? e : new PinholeError('link-closed', String((e as Error)?.message ?? e)));

/** Bridges one device to the broker. */
export class DeviceBridge {
  private phase: BridgePhase = { phase: 'idle' };
  readonly topics: DeviceTopics;
  private entities: Entities | undefined;
  /** The last level known of each pin in use. */
  private readonly levels = new Map<number, Level>();
  /** Per broker packet id, the topic and payload last received with it: a DUP copy of the same is a redelivery. */
  private readonly seen = new Map<number, string>();
  private readonly backoff = new Backoff({ baseMs: RECONNECT_BASE_MS, maxMs: RECONNECT_MAX_MS, jitter: RETRY_JITTER });
  /** The code of the last connect-failed logged: a device that stays away is logged once per reason. */
  private lastFailure: string | undefined;
  private readonly onConnect = (p: IConnackPacket): void => this.brokerUp(p);
  private readonly onClose = (): void => {
    // MQTT.js says close after every failed reconnect too: one line per outage.
    if (!this.brokerConnected) return;
    this.brokerConnected = false;
    this.log({ event: 'broker', device: this.o.name, state: 'disconnected', broker: this.o.brokerLabel });
  };
  private readonly onMessage = (topic: string, payload: Buffer, packet: IPublishPacket): void => this.message(topic, payload, packet);
  private readonly onError = (e: Error & { code?: number | string }): void =>
    this.log({ event: 'broker-error', device: this.o.name, broker: this.o.brokerLabel, message: e.message, code: e.code });
  /** Whether the broker connection is up now (its 'close' can come more than once per outage). */
  private brokerConnected = false;
  private everConnected = false;

  constructor(private readonly o: DeviceBridgeOptions) {
    this.topics = deviceTopics(o.prefix, o.discoveryPrefix, o.name);
  }

  /** Where the device's session is. */
  get state(): BridgePhase['phase'] {
    return this.phase.phase;
  }

  /** The Device while there is one (up or reconnecting). */
  get device(): Device | undefined {
    return this.phase.phase === 'up' || this.phase.phase === 'down' ? this.phase.dev : undefined;
  }

  /** Hooks up the MQTT client and starts connecting to the device. */
  start(): void {
    if (this.phase.phase !== 'idle') return;
    const m = this.o.mqtt;
    m.on('connect', this.onConnect);
    m.on('close', this.onClose);
    m.on('message', this.onMessage);
    m.on('error', this.onError);
    if (m.connected) this.brokerUp({ cmd: 'connack', sessionPresent: false, returnCode: 0 });
    void this.attempt(1);
  }

  /**
   * Publishes `offline`, closes the Device, unhooks the client (which stays
   * open: its owner ends it after this resolves, so the offline goes out first).
   */
  async stop(): Promise<void> {
    const p = this.phase;
    if (p.phase === 'stopped') return;
    this.to({ phase: 'stopped' }, 'stop()');
    const m = this.o.mqtt;
    m.off('connect', this.onConnect);
    m.off('close', this.onClose);
    m.off('message', this.onMessage);
    m.off('error', this.onError);
    const offline = this.publish(this.topics.availability, OFFLINE, true);
    if (p.phase === 'up' || p.phase === 'down') await p.dev.close();
    await offline;
  }

  /** The one place the phase changes. Availability follows: `online` exactly while `up`. */
  private to(next: BridgePhase, why: string): void {
    const prev = this.phase;
    if (prev.phase === 'stopped') return;
    this.phase = next;
    if (prev.phase === 'waiting') clearTimeout(prev.timer);
    if ((prev.phase === 'up' || prev.phase === 'down') && next.phase !== 'up' && next.phase !== 'down') prev.unhook();
    const wasUp = prev.phase === 'up';
    const isUp = next.phase === 'up';
    if (wasUp !== isUp && next.phase !== 'stopped') void this.publish(this.topics.availability, isUp ? ONLINE : OFFLINE, true);
    if (wasUp && !isUp && next.phase !== 'stopped') this.log({ event: 'offline', device: this.o.name, error: reasonOf(next) ?? why });
  }

  /** Opens a session and sets the pins up; on failure, tries again after a backoff delay. */
  private async attempt(attempt: number): Promise<void> {
    if (this.phase.phase === 'stopped') return;
    this.to({ phase: 'connecting', attempt }, 'attempt');
    let dev: Device | undefined;
    try {
      dev = await this.o.open();
      if (this.phase.phase !== 'connecting') return void (await dev.close());
      const info = await dev.info();
      if (this.phase.phase !== 'connecting') return void (await dev.close());
      this.entities = this.entitiesFor(info, dev);
      await this.setUp(dev, false);
      if (this.phase.phase !== 'connecting') return void (await dev.close());
    } catch (e) {
      await dev?.close();
      if (this.phase.phase !== 'connecting') return;
      return this.retry(asPinholeError(e), attempt);
    }
    this.backoff.reset();
    this.lastFailure = undefined;
    const unhook = this.hook(dev);
    this.to({ phase: 'up', dev, unhook }, 'session up');
    this.announce(dev, false);
  }

  private retry(reason: PinholeError, attempt: number): void {
    const retryMs = this.backoff.next();
    const timer = setTimeout(() => void this.attempt(attempt + 1), retryMs);
    this.to({ phase: 'waiting', timer, reason }, reason.code);
    if (this.lastFailure !== reason.code) this.log({ event: 'connect-failed', device: this.o.name, error: reason.code, message: reason.message, retryMs });
    this.lastFailure = reason.code;
  }

  /** The pins in use: those asked for that the device allows (each one left out is logged). */
  private entitiesFor(info: DeviceInfo, dev: Device): Entities {
    const allowed = new Set(Array.isArray(info.pins) ? info.pins : []);
    const keep = (pins: readonly number[]): number[] =>
      pins.filter((pin) => {
        if (allowed.has(pin)) return true;
        this.log({ event: 'pin-skipped', device: this.o.name, pin, error: 'pin-not-allowed', message: `the device does not allow pin ${pin} (see its info)` });
        return false;
      });
    return {
      device: { name: this.o.name, fingerprint: dev.fingerprint ?? '', version: String(info.version), board: String(info.board) },
      outputs: keep(this.o.outputs),
      inputs: keep(this.o.inputs),
    };
  }

  /**
   * Sets each pin's direction and watches it. On a reconnect the Device renews
   * the watches itself (and emits resync); the directions are set again in
   * case the device restarted.
   */
  private async setUp(dev: Device, again: boolean): Promise<void> {
    const e = this.entities!;
    const pins: [number, PinMode][] = [...e.outputs.map((p): [number, PinMode] => [p, 'out']), ...e.inputs.map((p): [number, PinMode] => [p, 'in'])];
    const failed = new Set<number>();
    await Promise.all(
      pins.map(async ([pin, mode]) => {
        try {
          await dev.mode(pin, mode).catch((err: unknown) => {
            // A read-only controller may not set a direction, but may watch an input.
            if (mode === 'out' || !(err instanceof PinholeError && err.code === 'not-allowed')) throw err;
          });
          if (!again) this.levels.set(pin, await dev.watch(pin));
        } catch (err) {
          const pe = asPinholeError(err);
          // Lost on the way: the whole attempt fails and starts again.
          if (pe.code === 'timeout' || pe.code === 'link-closed') throw pe;
          failed.add(pin);
          if (!again) this.log({ event: 'pin-skipped', device: this.o.name, pin, error: pe.code, message: pe.message });
        }
      }),
    );
    if (!again && failed.size) {
      e.outputs = e.outputs.filter((p) => !failed.has(p));
      e.inputs = e.inputs.filter((p) => !failed.has(p));
    }
  }

  /** Listens to a Device; returns the function that stops listening. */
  private hook(dev: Device): () => void {
    const onChange = (c: Change): void => {
      if (!this.inUse(c.pin)) return;
      this.levels.set(c.pin, c.value);
      void this.publishState(c.pin);
    };
    const onDisconnected = (reason: PinholeError): void => {
      const p = this.phase;
      if (p.phase === 'up' && p.dev === dev) this.to({ phase: 'down', dev, unhook: p.unhook, reason }, reason.code);
    };
    const onReconnected = (): void => {
      const p = this.phase;
      if (p.phase !== 'down' || p.dev !== dev) return;
      // Sent before the Device renews its watches (this runs inside its emit), so they see the directions.
      this.setUp(dev, true).catch(() => undefined);
      this.to({ phase: 'up', dev, unhook: p.unhook }, 'reconnected');
      this.announce(dev, true);
    };
    const onResync = (r: { pin: number; value: Level; previous: Level }): void => {
      if (!this.inUse(r.pin)) return;
      this.levels.set(r.pin, r.value);
      void this.publishState(r.pin);
      this.log({ event: 'resync', device: this.o.name, ...r });
    };
    const onClose = (reason: PinholeError | undefined): void => {
      const p = this.phase;
      if ((p.phase === 'up' || p.phase === 'down') && p.dev === dev) this.retry(reason ?? new PinholeError('link-closed', 'the device connection closed'), 0);
    };
    dev.on('change', onChange);
    dev.on('disconnected', onDisconnected);
    dev.on('reconnected', onReconnected);
    dev.on('resync', onResync);
    dev.on('close', onClose);
    return () => {
      dev.off('change', onChange);
      dev.off('disconnected', onDisconnected);
      dev.off('reconnected', onReconnected);
      dev.off('resync', onResync);
      dev.off('close', onClose);
    };
  }

  private inUse(pin: number): boolean {
    const e = this.entities;
    return e !== undefined && (e.outputs.includes(pin) || e.inputs.includes(pin));
  }

  /** The session is up: discovery and states go out, then `online` (from to()). */
  private announce(dev: Device, reconnected: boolean): void {
    const e = this.entities!;
    this.publishEntities();
    this.log({ event: 'online', device: this.o.name, path: dev.path, fingerprint: e.device.fingerprint, outputs: e.outputs, inputs: e.inputs, reconnected });
  }

  /** The broker connection is up (first time or again): subscribe, and publish everything, retained. */
  private brokerUp(connack: IConnackPacket): void {
    const first = !this.everConnected;
    this.everConnected = true;
    this.brokerConnected = true;
    // A new session on the broker: its packet ids start over, and it redelivers nothing of the old one.
    if (!connack.sessionPresent) this.seen.clear();
    this.log({ event: 'broker', device: this.o.name, state: 'connected', broker: this.o.brokerLabel, sessionPresent: connack.sessionPresent === true });
    this.o.mqtt.subscribe([...this.topics.commands, this.topics.haStatus], { qos: 1 }, () => undefined);
    const configs = this.publishAll();
    if (!first || configs > 0) this.log({ event: 'republished', device: this.o.name, why: 'broker', configs });
  }

  /** Discovery configs and states (when the device was seen), and availability. Returns the configs published. */
  private publishAll(): number {
    const n = this.publishEntities();
    void this.publish(this.topics.availability, this.phase.phase === 'up' ? ONLINE : OFFLINE, true);
    return n;
  }

  /** Discovery configs and the known states; returns the configs published. */
  private publishEntities(): number {
    const e = this.entities;
    if (!e) return 0;
    const configs = discoveryConfigs(this.topics, e.device, e.outputs, e.inputs, this.o.version);
    for (const c of configs) void this.publish(c.topic, JSON.stringify(c.payload), true);
    for (const pin of [...e.outputs, ...e.inputs]) void this.publishState(pin);
    return configs.length;
  }

  private publishState(pin: number): Promise<void> {
    const v = this.levels.get(pin);
    return v === undefined ? Promise.resolve() : this.publish(this.topics.state(pin), levelPayload(v), true);
  }

  /**
   * Publishes at QoS 1 while the broker is connected; resolves once it is
   * acknowledged or failed. Nothing is queued while it is away: everything is
   * published again when it comes back, and a queued stale state must not
   * land after a fresh one.
   */
  private publish(topic: string, payload: string, retain: boolean): Promise<void> {
    const m = this.o.mqtt;
    if (!m.connected) return Promise.resolve();
    return new Promise((resolve) => m.publish(topic, payload, { qos: 1, retain }, () => resolve()));
  }

  /** A message on a subscribed topic. */
  private message(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (packet.qos > 0 && packet.messageId !== undefined) {
      const key = payload.length <= MAX_DEDUP_PAYLOAD_BYTES ? `${topic}\0${payload.toString('latin1')}` : undefined;
      if (packet.dup && key !== undefined && this.seen.get(packet.messageId) === key) return this.ignore('duplicate', topic, payload);
      if (key === undefined) this.seen.delete(packet.messageId);
      else this.seen.set(packet.messageId, key);
    }
    if (topic === this.topics.haStatus) {
      if (payload.toString('utf8') !== ONLINE) return;
      const configs = this.publishAll();
      this.log({ event: 'republished', device: this.o.name, why: 'birth', configs });
      return;
    }
    const cmd = parseCommandTopic(this.topics.base, topic);
    if (!cmd) return this.ignore('malformed', topic, payload);
    const text = payload.toString('utf8');
    const want = cmd.action === 'set' ? [ON, OFF] : [PRESS];
    if (!want.includes(text)) return this.ignore('malformed', topic, payload);
    const p = this.phase;
    if (p.phase !== 'up' && p.phase !== 'down') return this.ignore('offline', topic, payload);
    if (!this.entities!.outputs.includes(cmd.pin)) return this.ignore('not-an-output', topic, payload);
    void this.run(p.dev, cmd.pin, cmd.action, text);
  }

  /** Runs one command on the device and logs its outcome. */
  private async run(dev: Device, pin: number, action: 'set' | 'blink', payload: string): Promise<void> {
    const t0 = performance.now();
    try {
      if (action === 'set') {
        const value: Level = payload === ON ? 1 : 0;
        await dev.write(pin, value);
        // A write of the level already there makes no edge: the state is right already, say it again anyway.
        if (this.levels.get(pin) !== value) {
          this.levels.set(pin, value);
          void this.publishState(pin);
        }
      } else {
        const r = await dev.blink(pin, this.o.blink);
        this.levels.set(pin, r.value);
      }
      const ms = Math.round((performance.now() - t0) * 100) / 100;
      this.log({ event: 'command', device: this.o.name, pin, action, payload, ok: true, path: dev.path, ms });
    } catch (e) {
      const pe = asPinholeError(e);
      this.log({ event: 'command', device: this.o.name, pin, action, payload, ok: false, error: pe.code, message: pe.message });
    }
  }

  private ignore(reason: IgnoredReason, topic: string, payload: Buffer): void {
    this.log({
      event: 'ignored',
      device: this.o.name,
      reason,
      topic: clipText(topic),
      payload: clipText(payload.subarray(0, MAX_LOGGED_CHARS * 4).toString('utf8')),
    });
  }

  private log(e: BridgeEvent): void {
    try {
      this.o.log(e);
    } catch {
      /* a failing logger must not stop the bridge */
    }
  }
}

/** Why a phase is not up, for the offline event. */
function reasonOf(p: BridgePhase): string | undefined {
  return p.phase === 'down' || p.phase === 'waiting' ? p.reason.code : undefined;
}

function clipText(s: string): string {
  const chars = [...s];
  return chars.length <= MAX_LOGGED_CHARS ? s : `${chars.slice(0, MAX_LOGGED_CHARS - 1).join('')}…`;
}
