/**
 * The MQTT topic layout of `pinhole mqtt` and its Home Assistant discovery
 * payloads. The layout is documented in docs/mqtt.md and kept stable: Home
 * Assistant, Node-RED and openHAB flows are written against it.
 *
 *   PREFIX/DEVICE/availability   online | offline      retained; the last will
 *   PREFIX/DEVICE/PIN/state      ON | OFF              retained; after every edge
 *   PREFIX/DEVICE/PIN/set        ON | OFF              outputs; subscribed at QoS 1
 *   PREFIX/DEVICE/PIN/blink      PRESS                 outputs; subscribed at QoS 1
 *   DISCOVERY/status             online                Home Assistant's birth message
 *   DISCOVERY/COMPONENT/OBJECT_ID/config               retained discovery configs
 */
import type { Level } from '../protocol/index.js';

/** Default topic prefix (`--prefix`). */
export const DEFAULT_PREFIX = 'pinhole';
/** Home Assistant's default discovery prefix (`--discovery-prefix`). */
export const DEFAULT_DISCOVERY_PREFIX = 'homeassistant';
/** The availability payloads. */
export const ONLINE = 'online';
export const OFFLINE = 'offline';
/** State and `set` payloads: Home Assistant's defaults for a switch and a binary sensor. */
export const ON = 'ON';
export const OFF = 'OFF';
/** A button's payload: Home Assistant's default `payload_press`. */
export const PRESS = 'PRESS';
/** Model in the Home Assistant device block. */
export const MODEL = 'pinhole';
/** Longest string taken from the device (version, board) into a discovery payload. */
const MAX_DEVICE_FIELD_CHARS = 64;

/** The level as a state payload. */
export const levelPayload = (v: Level): string => (v === 1 ? ON : OFF);

/**
 * A device name as one topic level: letters, digits, `.`, `_` and `-` stay,
 * anything else (`/`, `+`, `#`, spaces, other scripts) becomes `_`, so a name
 * never adds a level or a wildcard.
 */
export function topicSegment(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * Why a prefix cannot be used, or undefined when it can: one or more levels,
 * none empty, no wildcard, no NUL (MQTT 3.1.1 section 4.7).
 */
export function prefixProblem(prefix: string): string | undefined {
  if (prefix === '') return 'is empty';
  if (/[+#\0]/.test(prefix)) return 'must not contain +, # or NUL';
  if (prefix.split('/').some((l) => l === '')) return 'must not start or end with / or have an empty level';
  return undefined;
}

/** The topics of one device. */
export interface DeviceTopics {
  /** PREFIX/DEVICE */
  base: string;
  availability: string;
  state(pin: number): string;
  set(pin: number): string;
  blink(pin: number): string;
  /** What the bridge subscribes to for this device: every pin's set and blink. */
  commands: string[];
  /** Home Assistant's birth message topic. */
  haStatus: string;
  /** Discovery config topic of a component for a pin of the device with this fingerprint. */
  config(component: Component, fingerprint: string, pin: number): string;
}

/** The Home Assistant components a pin becomes. */
export type Component = 'switch' | 'binary_sensor' | 'button';

/** A command topic read back: the pin and the action, or undefined for a topic that is not one. */
export type CommandTopic = { pin: number; action: 'set' | 'blink' };

/** Discovery object ids: `pinhole_<fingerprint>_<pin>` (plus `_blink` for the button), [a-z0-9_] only. */
export function objectId(fingerprint: string, pin: number, component: Component): string {
  return `pinhole_${compactFingerprint(fingerprint)}_${pin}${component === 'button' ? '_blink' : ''}`;
}

/** `ABCD-EFGH-...` -> `abcdefgh...`. */
function compactFingerprint(fp: string): string {
  return fp.replace(/[^A-Za-z0-9]/g, '').toLowerCase();
}

/** The topics of the device saved as `deviceName`. */
export function deviceTopics(prefix: string, discoveryPrefix: string, deviceName: string): DeviceTopics {
  const base = `${prefix}/${topicSegment(deviceName)}`;
  return {
    base,
    availability: `${base}/availability`,
    state: (pin) => `${base}/${pin}/state`,
    set: (pin) => `${base}/${pin}/set`,
    blink: (pin) => `${base}/${pin}/blink`,
    commands: [`${base}/+/set`, `${base}/+/blink`],
    haStatus: `${discoveryPrefix}/status`,
    config: (component, fingerprint, pin) => `${discoveryPrefix}/${component}/${objectId(fingerprint, pin, component)}/config`,
  };
}

/** Reads `BASE/PIN/set` or `BASE/PIN/blink`; anything else is undefined. */
export function parseCommandTopic(base: string, topic: string): CommandTopic | undefined {
  if (!topic.startsWith(`${base}/`)) return undefined;
  const m = /^(0|[1-9]\d{0,5})\/(set|blink)$/.exec(topic.slice(base.length + 1));
  if (!m) return undefined;
  return { pin: Number(m[1]), action: m[2] as 'set' | 'blink' };
}

/** What the discovery payloads say about the device. */
export interface DiscoveryDevice {
  /** The name the device was saved under (what `pinhole control NAME` takes). */
  name: string;
  /** The device's identity fingerprint, proved by its handshake. */
  fingerprint: string;
  /** The device's pinhole version (from `info`). */
  version: string;
  /** The device's board (from `info`). */
  board: string;
}

/** The `device` block every entity of one device shares: one Home Assistant device per pinhole device. */
export function deviceBlock(d: DiscoveryDevice): Record<string, unknown> {
  return {
    identifiers: [`pinhole-${d.fingerprint}`],
    name: d.name,
    manufacturer: 'pinhole',
    model: MODEL,
    sw_version: clip(d.version),
    hw_version: clip(d.board),
  };
}

/** Who published the config (Home Assistant's `origin`). */
function origin(bridgeVersion: string): Record<string, unknown> {
  return { name: 'pinhole mqtt', sw_version: bridgeVersion };
}

/** Fields every entity has: unique id, availability, device, origin, QoS. */
function common(t: DeviceTopics, d: DiscoveryDevice, pin: number, component: Component, name: string, bridgeVersion: string): Record<string, unknown> {
  return {
    name,
    unique_id: objectId(d.fingerprint, pin, component),
    availability_topic: t.availability,
    payload_available: ONLINE,
    payload_not_available: OFFLINE,
    qos: 1,
    device: deviceBlock(d),
    origin: origin(bridgeVersion),
  };
}

/** An output pin as a Home Assistant MQTT switch: ON/OFF on `set`, the level on `state`. */
export function switchConfig(t: DeviceTopics, d: DiscoveryDevice, pin: number, bridgeVersion: string): Record<string, unknown> {
  return {
    ...common(t, d, pin, 'switch', `Pin ${pin}`, bridgeVersion),
    command_topic: t.set(pin),
    state_topic: t.state(pin),
    payload_on: ON,
    payload_off: OFF,
    state_on: ON,
    state_off: OFF,
    optimistic: false,
    retain: false,
  };
}

/** An input pin as a Home Assistant MQTT binary sensor. */
export function binarySensorConfig(t: DeviceTopics, d: DiscoveryDevice, pin: number, bridgeVersion: string): Record<string, unknown> {
  return {
    ...common(t, d, pin, 'binary_sensor', `Pin ${pin}`, bridgeVersion),
    state_topic: t.state(pin),
    payload_on: ON,
    payload_off: OFF,
  };
}

/** An output's blink as a Home Assistant MQTT button. */
export function buttonConfig(t: DeviceTopics, d: DiscoveryDevice, pin: number, bridgeVersion: string): Record<string, unknown> {
  return {
    ...common(t, d, pin, 'button', `Pin ${pin} blink`, bridgeVersion),
    command_topic: t.blink(pin),
    payload_press: PRESS,
    retain: false,
  };
}

/** Every discovery config of a device: topic and payload, outputs first. */
export function discoveryConfigs(
  t: DeviceTopics,
  d: DiscoveryDevice,
  outputs: readonly number[],
  inputs: readonly number[],
  bridgeVersion: string,
): { topic: string; payload: Record<string, unknown> }[] {
  return [
    ...outputs.flatMap((pin) => [
      { topic: t.config('switch', d.fingerprint, pin), payload: switchConfig(t, d, pin, bridgeVersion) },
      { topic: t.config('button', d.fingerprint, pin), payload: buttonConfig(t, d, pin, bridgeVersion) },
    ]),
    ...inputs.map((pin) => ({ topic: t.config('binary_sensor', d.fingerprint, pin), payload: binarySensorConfig(t, d, pin, bridgeVersion) })),
  ];
}

/** A string from the device, cut to a length fit for a discovery field. */
function clip(s: string): string {
  return [...String(s)].slice(0, MAX_DEVICE_FIELD_CHARS).join('');
}
