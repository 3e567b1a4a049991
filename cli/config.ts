/**
 * CLI configuration: one interface per command with documented defaults, and
 * one resolver that turns parsed flags plus environment into it. Nothing here
 * reads process.argv or process.env; main() passes them in.
 */
import { hostname } from 'node:os';
import { DEFAULT_DOCTOR_TIMEOUT_MS, DEFAULT_TIMEOUT_MS } from '../controller/index.js';
import { DEFAULT_MAX_CONTROLLERS, DEFAULT_SAFE_AFTER_MS, MIN_SAFE_AFTER_MS, parseSafeState } from '../device/index.js';
import type { MqttBridgeOptions } from '../mqtt/index.js';
import { DEFAULT_DISCOVERY_PREFIX, DEFAULT_PREFIX, prefixProblem } from '../mqtt/topics.js';
import { type IceServer, resolveStateDir } from '../platform/node/index.js';
import {
  FULL_RIGHTS,
  isValidPeerName,
  MAX_BLINK_INTERVAL_MS,
  MAX_BLINK_TIMES,
  MAX_CONTROLLERS_LIMIT,
  MAX_PIN,
  MIN_BLINK_INTERVAL_MS,
  type PairingCode,
  PinholeError,
  parsePairingCode,
  type Rights,
} from '../protocol/index.js';
import { parseIceServer, serverListProblem, splitServers } from '../session/index.js';
import { type AllowedOrigins, DEFAULT_SIGNAL_HOST, DEFAULT_SIGNAL_PORT, DEFAULT_STUN_PORT, parseOriginFlag } from '../signaling/index.js';
import { resolvePageUrl } from './page-url.js';

/** Flags as node:util parseArgs returns them. */
export type Flags = Record<string, string | boolean | string[] | undefined>;
/** Environment variables the CLI honours. */
export interface Env {
  /** Default for --server. */
  PINHOLE_SERVER?: string;
  /** Path to libmraa.so for --gpio mraa. */
  PINHOLE_LIBMRAA?: string;
  /** Default for --state-dir: $XDG_CONFIG_HOME/pinhole. */
  XDG_CONFIG_HOME?: string;
  /** Default for --state-dir: $HOME/.config/pinhole. */
  HOME?: string;
  /** `pinhole mqtt`: the broker user name (below --username, above the URL's). */
  PINHOLE_MQTT_USERNAME?: string;
  /** `pinhole mqtt`: the broker password (below --password-file, above the URL's). */
  PINHOLE_MQTT_PASSWORD?: string;
}

/** `pinhole signal` settings. */
export interface SignalCliConfig {
  /** Address to bind (default 0.0.0.0: a server is meant to be reached). */
  host: string;
  /** WebSocket/HTTP port (default 8080; 0 = any free port). */
  port: number;
  /** STUN UDP port (default 3478; 0 = any free port). */
  stunPort: number;
  /** Second IP address for RFC 5780 (--stun-alt-host); null = none (default). */
  stunAltHost: string | null;
  /** --stun-host: address STUN binds; null (default) = --host. */
  stunHost: string | null;
  /** Web origins whose pages may connect (--allow-origin, normalised); default '*': any. Clients sending no Origin always may. */
  allowedOrigins: AllowedOrigins;
  /** --trust-proxy: reverse proxies whose X-Forwarded-For names the client; default none. */
  trustedProxies: string[];
  /** Serve the controller page at / (default true; --no-page: off). */
  page: boolean;
  /** --redis redis://HOST:PORT[/DB]: join that cluster; null (default) = a single node. */
  redis: string | null;
  /** --metrics-host/--metrics-port: GET /metrics on a listener of its own; null (default) = on --port. */
  metrics: { host: string; port: number } | null;
}

/** `pinhole page` settings: write the built page to a directory, or serve it. */
export type PageCliConfig =
  | { action: 'out'; dir: string }
  /** Serve on loopback by default: a copy the user trusts, on their own machine. */
  | { action: 'serve'; host: string; port: number };

/** Address `pinhole page --serve` binds by default: only this machine can load it. */
export const DEFAULT_PAGE_HOST = '127.0.0.1';
/** Port `pinhole page --serve` listens on by default. */
export const DEFAULT_PAGE_PORT = 8081;

/** `pinhole doctor` settings. */
export interface DoctorCliConfig {
  server: string;
  json: boolean;
  /** Timeout of the /healthz request and of each STUN test, ms (default DEFAULT_DOCTOR_TIMEOUT_MS). */
  timeoutMs: number;
}

/**
 * What `pinhole device` does besides serving: work on the trust list, no server needed.
 * `who` is a controller's name or fingerprint.
 */
export type TrustAction =
  /** --controllers: list the trusted controllers and their rights. */
  | { kind: 'list' }
  /** --revoke NAME: remove one. */
  | { kind: 'revoke'; who: string }
  /** --allow NAME [--pins LIST]: full access on those pins (null: every pin the device allows). */
  | { kind: 'allow'; who: string; pins: number[] | null }
  /** --read-only NAME [--pins LIST]: read-only; `pins` undefined keeps the pins it has. */
  | { kind: 'read-only'; who: string; pins: number[] | undefined };

/** `pinhole device` settings. */
export interface DeviceCliConfig {
  /** What to do: serve (default), or one of the trust-list actions. */
  action: { kind: 'run' } | TrustAction;
  /** Server URL; '' for the trust-list actions, which need none. */
  server: string;
  /** First pairing code, parsed; undefined = generate one. */
  code: PairingCode | undefined;
  /** Offer a pairing code (default true; --no-pairing turns it off). */
  pairing: boolean;
  /** Identity, DTLS certificate and trusted controllers (default $XDG_CONFIG_HOME/pinhole or ~/.config/pinhole). */
  stateDir: string;
  /** GPIO backend (default 'sim'). */
  gpio: 'sim' | 'mraa' | 'chardev';
  /** GPIO settings of the chardev backend, resolved against the chip once it is open: pins may be line names. */
  chardev: ChardevCliConfig | undefined;
  /** Name shown by `info` (default: this host's name). */
  name: string;
  /** Allowed pins; undefined = all (with --allow/--read-only, --pins is the controller's and this stays undefined). */
  pins: Set<number> | undefined;
  /** Controllers served at once (--max-controllers, default DEFAULT_MAX_CONTROLLERS, 1..MAX_CONTROLLERS_LIMIT). */
  maxControllers: number;
  /** Rights the pairing codes give (--pair-rights, --pair-pins; default FULL_RIGHTS). */
  pairRights: Rights;
  json: boolean;
  /** Try the direct path (default true). */
  direct: boolean;
  /** libmraa path for --gpio mraa (env PINHOLE_LIBMRAA). */
  libmraa: string | undefined;
  /** Extra ICE servers from --ice-server (default none). */
  iceServers: IceServer[];
  /** --safe-state 20=0,13=1 with --safe-after SECONDS (default 30): off (undefined) by default. */
  safeState: { pins: Map<number, 0 | 1>; afterMs: number } | undefined;
  /** The controller page the pairing link opens (--page-url; default: the one the server serves, from --server); '' for the trust-list actions. */
  pageUrl: string;
  /** Print the pairing link as a QR code too (default true; --no-qr turns it off). */
  qr: boolean;
}

/** `--gpio chardev` settings (--chip, --pins, --active-low, --debounce); pins are offsets or line names. */
export interface ChardevCliConfig {
  /** --chip LABEL|PATH; undefined = the only chip. */
  chip: string | undefined;
  /** --pins with line names (GPIO17,GPIO27) or offsets; undefined = all lines (or the numeric --pins in `pins`). */
  pins: string[] | undefined;
  /** --active-low LIST. */
  activeLow: string[];
  /** --debounce PIN=US,...: debounce periods in µs. */
  debounceUs: [string, number][];
}

/** Longest debounce accepted by --debounce, µs (device/gpio/chardev.ts MAX_DEBOUNCE_US). */
const MAX_DEBOUNCE_FLAG_US = 1_000_000;

/** Pin names of a chardev list flag: offsets or line names, split on commas. */
function nameList(v: string, flag: string): string[] {
  const parts = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) throw usage(`--${flag} is empty`);
  for (const p of parts) if (!/^[A-Za-z0-9_.:+-]{1,31}$/.test(p)) throw usage(`--${flag}: cannot read "${p}"; use offsets or line names like GPIO17,GPIO27`);
  return parts;
}

/** The chardev flags; with another backend, each of them is a usage error. */
function chardevFlags(f: Flags, gpio: string, pinList: string | undefined): ChardevCliConfig | undefined {
  const own = ['chip', 'active-low', 'debounce'].filter((k) => f[k] !== undefined);
  if (gpio !== 'chardev') {
    if (own.length) throw usage(`--${own[0]} goes with --gpio chardev`);
    return undefined;
  }
  const deb = str(f, 'debounce');
  const debounceUs: [string, number][] = deb
    ? deb.split(',').map((part) => {
        const m = /^\s*([A-Za-z0-9_.:+-]{1,31})=(\d+)\s*$/.exec(part);
        if (!m || Number(m[2]) > MAX_DEBOUNCE_FLAG_US)
          throw usage(`--debounce: cannot read "${part}"; use PIN=MICROSECONDS (0 to ${MAX_DEBOUNCE_FLAG_US}), e.g. GPIO17=5000`);
        return [m[1]!, Number(m[2])];
      })
    : [];
  const names = pinList !== undefined && !/^[\d,\s-]+$/.test(pinList) ? nameList(pinList, 'pins') : undefined;
  const low = str(f, 'active-low');
  return { chip: str(f, 'chip'), pins: names, activeLow: low === undefined ? [] : nameList(low, 'active-low'), debounceUs };
}

/** `pinhole control` settings. */
export interface ControlCliConfig {
  /** Server URL; undefined with a paired NAME (the one saved at pairing is used). */
  server: string | undefined;
  /** First pairing: the code, parsed; else undefined. */
  code: PairingCode | undefined;
  /** Later sessions: the paired device's NAME (first positional); else undefined. */
  device: string | undefined;
  /** Identity and paired devices (default as for the device). */
  stateDir: string;
  /** Name the device shows for us (default: this host's name). */
  name: string;
  /** Pairing: save the device under this name (--as) instead of its own; undefined = its own. */
  as: string | undefined;
  /** Pairing: replace another device saved under that name (--replace; default false: refuse with name-taken). */
  replace: boolean;
  json: boolean;
  /** Timeout for connecting and for each command, ms (default DEFAULT_TIMEOUT_MS). */
  timeoutMs: number;
  direct: boolean;
  /** Extra ICE servers from --ice-server (default none). */
  iceServers: IceServer[];
}

const usage = (m: string): PinholeError => new PinholeError('usage', m);

function str(f: Flags, k: string): string | undefined {
  const v = f[k];
  return typeof v === 'string' ? v : undefined;
}

/** --code, parsed: the one place the CLI reads a pairing code. */
function codeFlag(f: Flags): PairingCode | undefined {
  const typed = str(f, 'code');
  if (typed === undefined) return undefined;
  const p = parsePairingCode(typed);
  if (!p.ok) throw usage(`--code: ${p.reason}`);
  return { room: p.room, secret: p.secret };
}

/** Parses a non-negative integer flag, or throws usage. */
export function intFlag(f: Flags, k: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = str(f, k);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw usage(`--${k} must be a whole number from ${min} to ${max}`);
  return Number(v);
}

/** --server: one URL, or several of one deployment, comma-separated (ws://a:8080,ws://b:8080). */
function serverUrl(f: Flags, env: Env): string {
  const s = str(f, 'server') ?? env.PINHOLE_SERVER;
  if (!s) throw usage('--server URL is required (or set PINHOLE_SERVER), e.g. --server ws://my-server:8080');
  const why = serverListProblem(s);
  if (why) throw usage(`--server ${why}`);
  return splitServers(s).join(',');
}

/** Parses `--pins 13,20-23` (or another pin-list flag, named in errors). */
export function parsePins(list: string, flag = 'pins'): Set<number> {
  const pins = new Set<number>();
  for (const part of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw usage(`--${flag}: cannot read "${part}"; use a list like 13,20-23`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b > MAX_PIN) throw usage(`--${flag}: bad range "${part}"`);
    for (let p = a; p <= b; p++) pins.add(p);
  }
  if (pins.size === 0) throw usage(`--${flag} is empty`);
  return pins;
}

/** A pin set as Rights keeps it: sorted. */
const sortedPins = (pins: Set<number>): number[] => [...pins].sort((a, b) => a - b);

/** Trust-list flags; at most one per run. */
const TRUST_FLAGS = ['controllers', 'revoke', 'allow', 'read-only'] as const;
/** Flags that only mean something to a running device. */
const RUN_ONLY_FLAGS = ['max-controllers', 'pair-rights', 'pair-pins', 'page-url', 'no-qr'] as const;

/** The trust-list action the flags ask for, or undefined to serve. */
function trustAction(f: Flags): TrustAction | undefined {
  const given = TRUST_FLAGS.filter((k) => f[k] !== undefined);
  if (given.length > 1) throw usage(`--${given[0]} and --${given[1]} do not go together`);
  const ignored = RUN_ONLY_FLAGS.find((k) => f[k] !== undefined);
  if (given.length === 1 && ignored) throw usage(`--${ignored} applies to a running device, not to --${given[0]}`);
  const pins = str(f, 'pins');
  const allow = str(f, 'allow');
  if (allow !== undefined) return { kind: 'allow', who: allow, pins: pins === undefined ? null : sortedPins(parsePins(pins)) };
  const readOnly = str(f, 'read-only');
  if (readOnly !== undefined) return { kind: 'read-only', who: readOnly, pins: pins === undefined ? undefined : sortedPins(parsePins(pins)) };
  const revoke = str(f, 'revoke');
  if (revoke !== undefined) return { kind: 'revoke', who: revoke };
  return f.controllers === true ? { kind: 'list' } : undefined;
}

/** --pair-rights and --pair-pins: what the pairing codes give; pair pins must lie within the device's --pins. */
function pairRights(f: Flags, devicePins: Set<number> | undefined): Rights {
  const access = str(f, 'pair-rights') ?? 'full';
  if (access !== 'full' && access !== 'read-only') throw usage(`--pair-rights must be read-only or full, not ${access}`);
  const list = str(f, 'pair-pins');
  if (list === undefined) return access === 'full' ? FULL_RIGHTS : { access, pins: null };
  const pins = parsePins(list, 'pair-pins');
  const outside = devicePins && [...pins].find((p) => !devicePins.has(p));
  if (outside !== undefined) throw usage(`--pair-pins: pin ${outside} is not in --pins`);
  return { access, pins: sortedPins(pins) };
}

/** Parses repeated `--ice-server` values. */
export function parseIceServers(f: Flags): IceServer[] {
  const v = f['ice-server'];
  const list = v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
  return list.map((s) => {
    const r = parseIceServer(s);
    if (typeof r === 'string') throw usage(`--ice-server: ${r}`);
    return r;
  });
}

export function resolveSignal(f: Flags): SignalCliConfig {
  return {
    host: str(f, 'host') ?? DEFAULT_SIGNAL_HOST,
    port: intFlag(f, 'port', DEFAULT_SIGNAL_PORT, 0, 65535),
    stunPort: intFlag(f, 'stun-port', DEFAULT_STUN_PORT, 0, 65535),
    stunAltHost: str(f, 'stun-alt-host') ?? null,
    stunHost: str(f, 'stun-host') ?? null,
    allowedOrigins: allowOriginFlag(f),
    trustedProxies: listFlag(f, 'trust-proxy'),
    page: f['no-page'] !== true,
    ...clusterFlags(f),
  };
}

export function resolvePage(f: Flags): PageCliConfig {
  const out = str(f, 'out');
  const serve = f.serve === true;
  if ((out === undefined) === !serve) throw usage('give --out DIR (write the page) or --serve (serve it on this machine)');
  if (out !== undefined) {
    if (str(f, 'host') !== undefined || str(f, 'port') !== undefined) throw usage('--host and --port go with --serve');
    return { action: 'out', dir: out };
  }
  return { action: 'serve', host: str(f, 'host') ?? DEFAULT_PAGE_HOST, port: intFlag(f, 'port', DEFAULT_PAGE_PORT, 0, 65535) };
}

/** A repeatable flag of comma-separated values, in order. */
function listFlag(f: Flags, name: string): string[] {
  const v = f[name];
  const all = v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
  return all
    .flatMap((x) => String(x).split(','))
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
}

/** --allow-origin, repeatable, each `*` or ORIGIN[,ORIGIN...]; default '*'. */
function allowOriginFlag(f: Flags): AllowedOrigins {
  const v = f['allow-origin'];
  if (v === undefined) return '*';
  const r = parseOriginFlag(Array.isArray(v) ? v : [String(v)]);
  if (!r.ok) throw usage(`--allow-origin: ${r.reason}`);
  return r.value;
}

/** --redis, --metrics-host and --metrics-port of `pinhole signal`. */
function clusterFlags(f: Flags): Pick<SignalCliConfig, 'redis' | 'metrics'> {
  const redis = str(f, 'redis') ?? null;
  if (redis !== null && !/^rediss?:\/\/[^\s/]+(\/\d{1,2})?$/.test(redis)) throw usage(`--redis must be redis://HOST:PORT[/DB], not ${redis}`);
  const mh = str(f, 'metrics-host');
  const mp = str(f, 'metrics-port');
  if ((mh === undefined) !== (mp === undefined)) throw usage('--metrics-host and --metrics-port go together');
  return { redis, metrics: mh === undefined ? null : { host: mh, port: intFlag(f, 'metrics-port', 0, 0, 65535) } };
}

export function resolveDoctor(f: Flags, env: Env): DoctorCliConfig {
  return {
    // A list's first server: doctor tests one server's network path.
    server: serverUrl(f, env).split(',')[0]!,
    json: f.json === true,
    timeoutMs: intFlag(f, 'timeout', DEFAULT_DOCTOR_TIMEOUT_MS, 1, 60_000),
  };
}

/** The state dir from --state-dir or the environment. */
export function stateDirOf(f: Flags, env: Env): string {
  try {
    return resolveStateDir(env, str(f, 'state-dir'));
  } catch (e) {
    throw usage((e as PinholeError).message);
  }
}

function peerName(f: Flags, flag = 'name'): string {
  const name = str(f, flag) ?? hostname().slice(0, 64);
  if (!isValidPeerName(name)) throw usage(`--${flag} must be 1-64 printable characters with no leading or trailing space`);
  return name;
}

export function resolveDevice(f: Flags, env: Env): DeviceCliConfig {
  const gpio = str(f, 'gpio') ?? 'sim';
  if (gpio !== 'sim' && gpio !== 'mraa' && gpio !== 'chardev') throw usage(`--gpio must be sim, mraa or chardev, not ${gpio}`);
  const code = codeFlag(f);
  const action: DeviceCliConfig['action'] = trustAction(f) ?? { kind: 'run' };
  // With --allow or --read-only, --pins names the controller's pins (read by trustAction), not the device's.
  const pinList = action.kind === 'allow' || action.kind === 'read-only' ? undefined : str(f, 'pins');
  const chardev = chardevFlags(f, gpio, pinList);
  // Line names are resolved once the chip is open.
  const pins = pinList === undefined || chardev?.pins ? undefined : parsePins(pinList);
  const safeSpec = str(f, 'safe-state');
  let safeState: DeviceCliConfig['safeState'];
  if (safeSpec !== undefined) {
    const parsed = parseSafeState(safeSpec);
    if (typeof parsed === 'string') throw usage(`--safe-state: ${parsed}`);
    safeState = { pins: parsed, afterMs: intFlag(f, 'safe-after', DEFAULT_SAFE_AFTER_MS / 1000, MIN_SAFE_AFTER_MS / 1000, 86_400) * 1000 };
  } else if (str(f, 'safe-after') !== undefined) throw usage('--safe-after needs --safe-state');
  const server = action.kind === 'run' ? serverUrl(f, env) : '';
  return {
    action,
    safeState,
    server,
    pageUrl: action.kind === 'run' ? resolvePageUrl(str(f, 'page-url'), server) : '',
    qr: f['no-qr'] !== true,
    code,
    pairing: f['no-pairing'] !== true,
    stateDir: stateDirOf(f, env),
    gpio,
    chardev,
    name: peerName(f),
    pins,
    maxControllers: intFlag(f, 'max-controllers', DEFAULT_MAX_CONTROLLERS, 1, MAX_CONTROLLERS_LIMIT),
    pairRights: pairRights(f, pins),
    json: f.json === true,
    direct: f['no-direct'] !== true,
    libmraa: env.PINHOLE_LIBMRAA,
    iceServers: parseIceServers(f),
  };
}

/**
 * Resolves `pinhole control`. With --code the positionals are the command;
 * without, the first one names a paired device. Returns the config and the
 * command's positionals.
 */
export function resolveControl(f: Flags, env: Env, positionals: string[]): { config: ControlCliConfig; command: string[] } {
  const code = codeFlag(f);
  let device: string | undefined;
  let command = positionals;
  if (code === undefined) {
    device = positionals[0];
    if (device === undefined) throw usage('name a paired device (pinhole control NAME COMMAND), or pair first with --code CODE --server URL');
    command = positionals.slice(1);
  }
  // Checked before connecting: a bad --as must not spend the code.
  if (code === undefined && (str(f, 'as') !== undefined || f.replace === true))
    throw usage('--as and --replace go with --code: they say where a newly paired device is saved');
  const explicitServer = str(f, 'server') ?? env.PINHOLE_SERVER;
  return {
    config: {
      server: code !== undefined || explicitServer !== undefined ? serverUrl(f, env) : undefined,
      code,
      device,
      stateDir: stateDirOf(f, env),
      name: peerName(f),
      as: str(f, 'as') === undefined ? undefined : peerName(f, 'as'),
      replace: f.replace === true,
      json: f.json === true,
      timeoutMs: intFlag(f, 'timeout', DEFAULT_TIMEOUT_MS, 1, 3_600_000),
      direct: f['no-direct'] !== true,
      iceServers: parseIceServers(f),
    },
    command,
  };
}

/** Where the broker password comes from; a file is read by the command, not here. */
export type MqttPassword = { from: 'file'; path: string } | { from: 'env' | 'url'; value: string };

/**
 * `pinhole mqtt` settings: startMqttBridge()'s options as the flags set them
 * (the devices are the positionals; --outputs and --inputs sorted, at least
 * one of them, no pin in both; --prefix and --discovery-prefix default to
 * DEFAULT_PREFIX and DEFAULT_DISCOVERY_PREFIX; --blink-times and
 * --blink-interval, else the device's defaults; --state-dir as for `pinhole
 * control`; --name defaults to this host's name, --timeout to
 * DEFAULT_TIMEOUT_MS; --no-direct), the broker as the command still has to
 * read it, and what only the command uses.
 */
export interface MqttCliConfig extends Omit<MqttBridgeOptions, 'broker' | 'version' | 'log' | 'open'> {
  /** The broker, with no credentials in it: mqtt://host:port or mqtts://host:port (default port 1883, 8883 for mqtts). */
  broker: string;
  /** --username, else env PINHOLE_MQTT_USERNAME, else the one in --broker; undefined = none. */
  username: string | undefined;
  /** --password-file, else env PINHOLE_MQTT_PASSWORD, else the one in --broker; undefined = none. */
  password: MqttPassword | undefined;
  /** TLS files (mqtts:// only): --ca, --cert and --key (cert and key together). */
  ca: string | undefined;
  cert: string | undefined;
  key: string | undefined;
  json: boolean;
  /** The password was in --broker, where other users of the machine can read it (ps). */
  passwordInArgv: boolean;
}

/** A topic prefix flag, checked. */
function prefixFlag(f: Flags, k: string, dflt: string): string {
  const v = str(f, k) ?? dflt;
  const problem = prefixProblem(v);
  if (problem) throw usage(`--${k} ${problem}`);
  return v;
}

/**
 * Resolves `pinhole mqtt`. Messages never repeat --broker: it may carry a
 * password.
 */
export function resolveMqtt(f: Flags, env: Env, positionals: string[]): MqttCliConfig {
  const raw = str(f, 'broker');
  if (!raw) throw usage('--broker mqtt://host:port is required');
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw usage('--broker is not a URL; use mqtt://[user:pass@]host[:port] or mqtts://...');
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') throw usage('--broker must be mqtt:// or mqtts://');
  if ((u.pathname !== '' && u.pathname !== '/') || u.search || u.hash) throw usage('--broker takes no path, query or fragment');
  if (!u.hostname) throw usage('--broker needs a host');
  const tls = u.protocol === 'mqtts:';
  const broker = `${u.protocol}//${u.hostname}:${u.port || (tls ? 8883 : 1883)}`;
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw usage('--broker: the user name or password is not valid percent-encoding');
    }
  };
  const urlUser = u.username ? decode(u.username) : undefined;
  const urlPassword = u.password ? decode(u.password) : undefined;
  const passwordFile = str(f, 'password-file');
  const password: MqttPassword | undefined =
    passwordFile !== undefined
      ? { from: 'file', path: passwordFile }
      : env.PINHOLE_MQTT_PASSWORD
        ? { from: 'env', value: env.PINHOLE_MQTT_PASSWORD }
        : urlPassword !== undefined
          ? { from: 'url', value: urlPassword }
          : undefined;
  const username = str(f, 'username') ?? (env.PINHOLE_MQTT_USERNAME || undefined) ?? urlUser;
  if (password !== undefined && username === undefined)
    throw usage('a broker password needs a user name (--username, PINHOLE_MQTT_USERNAME or user@ in --broker)');
  const [ca, cert, key] = [str(f, 'ca'), str(f, 'cert'), str(f, 'key')];
  if (!tls && (ca || cert || key)) throw usage('--ca, --cert and --key need an mqtts:// broker');
  if ((cert === undefined) !== (key === undefined)) throw usage('--cert and --key go together');
  if (positionals.length === 0) throw usage('name at least one paired device: pinhole mqtt --broker URL DEVICE...');
  const outList = str(f, 'outputs');
  const inList = str(f, 'inputs');
  if (outList === undefined && inList === undefined) throw usage('give --outputs LIST, --inputs LIST or both: the pins to bridge');
  const outputs = outList === undefined ? [] : sortedPins(parsePins(outList, 'outputs'));
  const inputs = inList === undefined ? [] : sortedPins(parsePins(inList, 'inputs'));
  const both = outputs.find((p) => inputs.includes(p));
  if (both !== undefined) throw usage(`pin ${both} is in both --outputs and --inputs`);
  const times = str(f, 'blink-times') === undefined ? undefined : intFlag(f, 'blink-times', 0, 1, MAX_BLINK_TIMES);
  const intervalMs = str(f, 'blink-interval') === undefined ? undefined : intFlag(f, 'blink-interval', 0, MIN_BLINK_INTERVAL_MS, MAX_BLINK_INTERVAL_MS);
  return {
    broker,
    username,
    password,
    ca,
    cert,
    key,
    devices: positionals,
    outputs,
    inputs,
    prefix: prefixFlag(f, 'prefix', DEFAULT_PREFIX),
    discoveryPrefix: prefixFlag(f, 'discovery-prefix', DEFAULT_DISCOVERY_PREFIX),
    blink: { ...(times !== undefined ? { times } : {}), ...(intervalMs !== undefined ? { intervalMs } : {}) },
    stateDir: stateDirOf(f, env),
    name: peerName(f),
    timeoutMs: intFlag(f, 'timeout', DEFAULT_TIMEOUT_MS, 1, 3_600_000),
    direct: f['no-direct'] !== true,
    json: f.json === true,
    passwordInArgv: urlPassword !== undefined,
  };
}
