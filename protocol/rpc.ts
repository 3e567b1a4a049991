/**
 * GPIO commands: JSON-RPC 2.0 carried as the payload of link frames.
 *
 *   controller                                   device
 *     |-- {"jsonrpc":"2.0","id":7,"method":"gpio.write","params":{"pin":20,"value":1}} -->|
 *     |<-- {"jsonrpc":"2.0","id":7,"result":{"pin":20,"value":1}} -------------------------|
 *     |<-- {"jsonrpc":"2.0","method":"gpio.change","params":{"pin":21,"value":1,...}} -----|  (after gpio.watch)
 *
 * This file is the one place RPC messages are validated. Errors use the
 * standard JSON-RPC numbers plus our own in -32000..-32099; every error
 * object carries a stable string code in `data.code`.
 */
import { toErrorCode } from './errors.js';

/** Largest pin number accepted on the wire. */
export const MAX_PIN = 1023;
/** Most toggles one gpio.blink may ask for. */
export const MAX_BLINK_TIMES = 10_000;
/** Shortest blink interval, in ms: below this a sim or board timer is not honest. */
export const MIN_BLINK_INTERVAL_MS = 10;
/** Longest blink interval, in ms. */
export const MAX_BLINK_INTERVAL_MS = 60_000;
/** Defaults of the original script: 20 toggles, 300 ms apart. */
export const DEFAULT_BLINK_TIMES = 20;
export const DEFAULT_BLINK_INTERVAL_MS = 300;

/** Stable string codes in `error.data.code`. Listed in docs/protocol.md. */
export type RpcErrorCode =
  | 'parse-error'
  | 'invalid-request'
  | 'method-not-found'
  | 'invalid-params'
  | 'internal-error'
  | 'pin-not-allowed'
  | 'pin-mode'
  | 'no-such-pin'
  | 'hardware'
  | 'not-allowed'
  | 'preempted'
  | 'pin-busy';

/** JSON-RPC numeric code for each string code. */
export const RPC_ERROR_NUMBERS: Readonly<Record<RpcErrorCode, number>> = {
  'parse-error': -32700,
  'invalid-request': -32600,
  'method-not-found': -32601,
  'invalid-params': -32602,
  'internal-error': -32603,
  'pin-not-allowed': -32001,
  'pin-mode': -32002,
  'no-such-pin': -32003,
  hardware: -32004,
  'not-allowed': -32006,
  preempted: -32007,
  'pin-busy': -32008,
};

/** Longest `by` in a change notification: a controller's name (1..64 chars) or BY_INPUT. */
export const MAX_BY_CHARS = 64;
/** `by` of an edge no controller caused (an external signal on an input). */
export const BY_INPUT = 'input';

/**
 * What one controller may do on a device, stored with the trust list.
 * `access`: 'full' runs every method; 'read-only' only gpio.read, gpio.watch,
 * gpio.unwatch and device.info. `pins`: the pins it may touch (within the
 * device's own allowed pins); null = every pin the device allows.
 */
export interface Rights {
  access: 'full' | 'read-only';
  pins: number[] | null;
}

/** Rights of a controller paired with no restriction. */
export const FULL_RIGHTS: Readonly<Rights> = Object.freeze({ access: 'full', pins: null });

export type Level = 0 | 1;
export type PinMode = 'in' | 'out';
/** A pin's bias: pull-up, pull-down, or neither. */
export type Pull = 'up' | 'down' | 'disabled';
const PULLS: readonly unknown[] = ['up', 'down', 'disabled'];

/** One pin as device.info describes it, on a backend that knows more than numbers (the chardev's line names). */
export interface PinInfo {
  pin: number;
  name?: string;
  mode?: PinMode;
  pull?: Pull;
  activeLow?: boolean;
  debounceUs?: number;
}

/** Params and results of each method. */
export interface Methods {
  'gpio.write': { params: { pin: number; value: Level }; result: { pin: number; value: Level } };
  'gpio.read': { params: { pin: number }; result: { pin: number; value: Level } };
  /** `pull` absent: the bias stays as it is. */
  'gpio.mode': { params: { pin: number; mode: PinMode; pull?: Pull }; result: { pin: number; mode: PinMode; pull?: Pull } };
  'gpio.blink': {
    params: { pin: number; times: number; intervalMs: number };
    result: { pin: number; toggles: number; value: Level };
  };
  'gpio.watch': { params: { pin: number }; result: { pin: number; value: Level } };
  'gpio.unwatch': { params: { pin: number }; result: { pin: number } };
  'device.info': {
    params: Record<string, never>;
    /** `controllers`: sessions connected now, the caller's included; `rights`: the caller's own. */
    /** `lines`: per-pin details of the allowed pins, where the backend has them (chardev). */
    result: {
      name: string;
      backend: string;
      board: string;
      pins: number[];
      protocol: number;
      version: string;
      controllers: number;
      rights: Rights;
      lines?: PinInfo[];
    };
  };
}
export type Method = keyof Methods;

/** A request for one method. */
export type RpcRequest = {
  [M in Method]: { jsonrpc: '2.0'; id: number | string; method: M; params: Methods[M]['params'] };
}[Method];

/**
 * The one notification: an edge on a watched pin. `ts` is the device's clock
 * in ms; `by` who caused it: the name (in the device's trust list) of the
 * controller whose write it was, or BY_INPUT for an external edge.
 */
export interface ChangeNotification {
  jsonrpc: '2.0';
  method: 'gpio.change';
  params: { pin: number; value: Level; edge: 'rising' | 'falling'; ts: number; by: string };
}

export interface RpcErrorObject {
  code: number;
  message: string;
  data: { code: RpcErrorCode };
}

export type RpcResponse = { jsonrpc: '2.0'; id: number | string; result: unknown } | { jsonrpc: '2.0'; id: number | string | null; error: RpcErrorObject };

/** Builds an error response. */
export function rpcError(id: number | string | null, code: RpcErrorCode, message: string): RpcResponse {
  return { jsonrpc: '2.0', id, error: { code: RPC_ERROR_NUMBERS[code], message, data: { code } } };
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const isPin = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= MAX_PIN;
const isId = (x: unknown): x is number | string => (typeof x === 'string' && x.length <= 64) || (Number.isSafeInteger(x) && (x as number) >= 0);

/** Validates `params` for one method; returns an error string or the normalised params. */
function checkParams(method: Method, p: Obj): string | RpcRequest['params'] {
  const pinErr = `pin must be an integer 0..${MAX_PIN}`;
  switch (method) {
    case 'gpio.write':
      if (!isPin(p.pin)) return pinErr;
      if (p.value !== 0 && p.value !== 1) return 'value must be 0 or 1';
      return { pin: p.pin, value: p.value };
    case 'gpio.read':
    case 'gpio.watch':
    case 'gpio.unwatch':
      return isPin(p.pin) ? { pin: p.pin } : pinErr;
    case 'gpio.mode':
      if (!isPin(p.pin)) return pinErr;
      if (p.mode !== 'in' && p.mode !== 'out') return "mode must be 'in' or 'out'";
      if (p.pull === undefined) return { pin: p.pin, mode: p.mode };
      if (!PULLS.includes(p.pull)) return "pull must be 'up', 'down' or 'disabled'";
      return { pin: p.pin, mode: p.mode, pull: p.pull as Pull };
    case 'gpio.blink': {
      if (!isPin(p.pin)) return pinErr;
      const times = p.times ?? DEFAULT_BLINK_TIMES;
      const iv = p.intervalMs ?? DEFAULT_BLINK_INTERVAL_MS;
      if (!Number.isInteger(times) || (times as number) < 1 || (times as number) > MAX_BLINK_TIMES) return `times must be an integer 1..${MAX_BLINK_TIMES}`;
      if (!Number.isInteger(iv) || (iv as number) < MIN_BLINK_INTERVAL_MS || (iv as number) > MAX_BLINK_INTERVAL_MS)
        return `intervalMs must be an integer ${MIN_BLINK_INTERVAL_MS}..${MAX_BLINK_INTERVAL_MS}`;
      return { pin: p.pin, times: times as number, intervalMs: iv as number };
    }
    case 'device.info':
      return {};
  }
}

const METHODS: ReadonlySet<string> = new Set<Method>(['gpio.write', 'gpio.read', 'gpio.mode', 'gpio.blink', 'gpio.watch', 'gpio.unwatch', 'device.info']);

/** Result of validating an incoming request: the request, or the error response to send back. */
export type ParsedRequest = { ok: true; req: RpcRequest } | { ok: false; reply: RpcResponse };

/** Validates a JSON value as a JSON-RPC request (device side). */
export function parseRequest(m: unknown): ParsedRequest {
  if (!isObj(m) || m.jsonrpc !== '2.0') return { ok: false, reply: rpcError(null, 'invalid-request', 'not a JSON-RPC 2.0 object') };
  if (!isId(m.id)) return { ok: false, reply: rpcError(null, 'invalid-request', 'id must be a string or a non-negative integer') };
  if (typeof m.method !== 'string' || !METHODS.has(m.method)) {
    return { ok: false, reply: rpcError(m.id, 'method-not-found', `no method ${typeof m.method === 'string' ? m.method.slice(0, 40) : ''}`) };
  }
  const params = m.params ?? {};
  if (!isObj(params)) return { ok: false, reply: rpcError(m.id, 'invalid-params', 'params must be an object') };
  const checked = checkParams(m.method as Method, params);
  if (typeof checked === 'string') return { ok: false, reply: rpcError(m.id, 'invalid-params', checked) };
  return { ok: true, req: { jsonrpc: '2.0', id: m.id, method: m.method, params: checked } as RpcRequest };
}

/** What a controller can receive: a response to one of its ids, or a change notification. */
export type Incoming =
  | { kind: 'response'; id: number | string; result?: unknown; error?: RpcErrorObject }
  | { kind: 'change'; change: ChangeNotification['params'] };

/** Validates a JSON value a device sent to a controller. Returns undefined for anything invalid. */
export function parseIncoming(m: unknown): Incoming | undefined {
  if (!isObj(m) || m.jsonrpc !== '2.0') return undefined;
  if (m.method === 'gpio.change') {
    const p = m.params;
    if (!isObj(p) || !isPin(p.pin) || (p.value !== 0 && p.value !== 1)) return undefined;
    if ((p.edge !== 'rising' && p.edge !== 'falling') || typeof p.ts !== 'number') return undefined;
    if (typeof p.by !== 'string' || p.by.length === 0 || p.by.length > MAX_BY_CHARS) return undefined;
    return { kind: 'change', change: { pin: p.pin, value: p.value, edge: p.edge, ts: p.ts, by: p.by } };
  }
  if (!isId(m.id)) return undefined;
  if ('error' in m) {
    const e = m.error;
    if (!isObj(e) || typeof e.code !== 'number' || typeof e.message !== 'string') return undefined;
    const dc = isObj(e.data) ? toErrorCode(e.data.code, 'internal-error', 'rpc') : 'internal-error';
    return { kind: 'response', id: m.id, error: { code: e.code, message: e.message.slice(0, 500), data: { code: dc } } };
  }
  if (!('result' in m)) return undefined;
  return { kind: 'response', id: m.id, result: m.result };
}
