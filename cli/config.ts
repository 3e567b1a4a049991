/**
 * CLI configuration: one interface per command with documented defaults, and
 * one resolver that turns parsed flags plus environment into it. Nothing here
 * reads process.argv or process.env; main() passes them in.
 */
import { hostname } from 'node:os';
import { PinholeError, parseCode, parseIceServer, MAX_PIN, type IceServer } from '../link/index.js';
import { DEFAULT_TIMEOUT_MS, DEFAULT_DOCTOR_TIMEOUT_MS } from '../controller/index.js';
import { DEFAULT_SIGNAL_HOST, DEFAULT_SIGNAL_PORT, DEFAULT_STUN_PORT } from '../signaling/index.js';

/** Flags as node:util parseArgs returns them. */
export type Flags = Record<string, string | boolean | string[] | undefined>;
/** Environment variables the CLI honours. */
export interface Env {
  /** Default for --server. */
  PINHOLE_SERVER?: string;
  /** Path to libmraa.so for --gpio mraa. */
  PINHOLE_LIBMRAA?: string;
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
  server: string;
  /** Fixed code; undefined = generate one. */
  code: string | undefined;
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
}

/** `pinhole control` settings. */
export interface ControlCliConfig {
  server: string;
  code: string;
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
  for (const part of list.split(',').map((s) => s.trim()).filter(Boolean)) {
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

export function resolveDevice(f: Flags, env: Env): DeviceCliConfig {
  const gpio = str(f, 'gpio') ?? 'sim';
  if (gpio !== 'sim' && gpio !== 'mraa') throw usage(`--gpio must be sim or mraa, not ${gpio}`);
  const code = str(f, 'code');
  if (code !== undefined) {
    const p = parseCode(code);
    if (!p.ok) throw usage(`--code: ${p.reason}`);
  }
  const pins = str(f, 'pins');
  return {
    server: serverUrl(f, env),
    code,
    gpio,
    name: str(f, 'name') ?? hostname(),
    pins: pins === undefined ? undefined : parsePins(pins),
    json: f.json === true,
    direct: f['no-direct'] !== true,
    libmraa: env.PINHOLE_LIBMRAA,
    iceServers: parseIceServers(f),
  };
}

export function resolveControl(f: Flags, env: Env): ControlCliConfig {
  const code = str(f, 'code');
  if (!code) throw usage('--code CODE is required: the pairing code the device printed');
  return {
    server: serverUrl(f, env),
    code,
    json: f.json === true,
    timeoutMs: intFlag(f, 'timeout', DEFAULT_TIMEOUT_MS, 1, 3_600_000),
    direct: f['no-direct'] !== true,
    iceServers: parseIceServers(f),
  };
}
