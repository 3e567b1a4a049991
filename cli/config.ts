/**
 * CLI configuration: one interface per command with documented defaults, and
 * one resolver that turns parsed flags plus environment into it. Nothing here
 * reads process.argv or process.env; main() passes them in.
 */
import { hostname } from 'node:os';
import { DEFAULT_DOCTOR_TIMEOUT_MS, DEFAULT_TIMEOUT_MS } from '../controller/index.js';
import { DEFAULT_SAFE_AFTER_MS, MIN_SAFE_AFTER_MS, parseSafeState } from '../device/index.js';
import { type IceServer, resolveStateDir } from '../platform/node/index.js';
import { isValidPeerName, MAX_PIN, type PairingCode, PinholeError, parsePairingCode } from '../protocol/index.js';
import { parseIceServer } from '../session/index.js';
import { DEFAULT_SIGNAL_HOST, DEFAULT_SIGNAL_PORT, DEFAULT_STUN_PORT } from '../signaling/index.js';

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
}

/** `pinhole doctor` settings. */
export interface DoctorCliConfig {
  server: string;
  json: boolean;
  /** Timeout of the /healthz request and of each STUN test, ms (default DEFAULT_DOCTOR_TIMEOUT_MS). */
  timeoutMs: number;
}

/** `pinhole device` settings. */
export interface DeviceCliConfig {
  /** What to do: serve (default), list trusted controllers (--controllers), or remove one (--revoke). */
  action: { kind: 'run' } | { kind: 'list' } | { kind: 'revoke'; who: string };
  /** Server URL; '' for list/revoke, which need none. */
  server: string;
  /** First pairing code, parsed; undefined = generate one. */
  code: PairingCode | undefined;
  /** Offer a pairing code (default true; --no-pairing turns it off). */
  pairing: boolean;
  /** Identity, DTLS certificate and trusted controllers (default $XDG_CONFIG_HOME/pinhole or ~/.config/pinhole). */
  stateDir: string;
  /** GPIO backend (default 'sim'). */
  gpio: 'sim' | 'mraa';
  /** Name shown by `info` (default: this host's name). */
  name: string;
  /** Allowed pins; undefined = all. */
  pins: Set<number> | undefined;
  json: boolean;
  /** Try the direct path (default true). */
  direct: boolean;
  /** libmraa path for --gpio mraa (env PINHOLE_LIBMRAA). */
  libmraa: string | undefined;
  /** Extra ICE servers from --ice-server (default none). */
  iceServers: IceServer[];
  /** --safe-state 20=0,13=1 with --safe-after SECONDS (default 30): off (undefined) by default. */
  safeState: { pins: Map<number, 0 | 1>; afterMs: number } | undefined;
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

function serverUrl(f: Flags, env: Env): string {
  const s = str(f, 'server') ?? env.PINHOLE_SERVER;
  if (!s) throw usage('--server URL is required (or set PINHOLE_SERVER), e.g. --server ws://my-server:8080');
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw usage(`--server ${s} is not a URL; use ws://host:port`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw usage(`--server must be ws:// or wss://, not ${u.protocol}`);
  return s;
}

/** Parses `--pins 13,20-23`. */
export function parsePins(list: string): Set<number> {
  const pins = new Set<number>();
  for (const part of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw usage(`--pins: cannot read "${part}"; use a list like 13,20-23`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b > MAX_PIN) throw usage(`--pins: bad range "${part}"`);
    for (let p = a; p <= b; p++) pins.add(p);
  }
  if (pins.size === 0) throw usage('--pins is empty');
  return pins;
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
  };
}

export function resolveDoctor(f: Flags, env: Env): DoctorCliConfig {
  return {
    server: serverUrl(f, env),
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
  if (gpio !== 'sim' && gpio !== 'mraa') throw usage(`--gpio must be sim or mraa, not ${gpio}`);
  const code = codeFlag(f);
  const revoke = str(f, 'revoke');
  if (revoke !== undefined && f.controllers === true) throw usage('--controllers and --revoke do not go together');
  const action: DeviceCliConfig['action'] =
    revoke !== undefined ? { kind: 'revoke', who: revoke } : f.controllers === true ? { kind: 'list' } : { kind: 'run' };
  const pins = str(f, 'pins');
  const safeSpec = str(f, 'safe-state');
  let safeState: DeviceCliConfig['safeState'];
  if (safeSpec !== undefined) {
    const parsed = parseSafeState(safeSpec);
    if (typeof parsed === 'string') throw usage(`--safe-state: ${parsed}`);
    safeState = { pins: parsed, afterMs: intFlag(f, 'safe-after', DEFAULT_SAFE_AFTER_MS / 1000, MIN_SAFE_AFTER_MS / 1000, 86_400) * 1000 };
  } else if (str(f, 'safe-after') !== undefined) throw usage('--safe-after needs --safe-state');
  return {
    action,
    safeState,
    server: action.kind === 'run' ? serverUrl(f, env) : '',
    code,
    pairing: f['no-pairing'] !== true,
    stateDir: stateDirOf(f, env),
    gpio,
    name: peerName(f),
    pins: pins === undefined ? undefined : parsePins(pins),
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
