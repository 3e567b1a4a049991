/**
 * Command handling: one JSON-RPC request in, one response out, on the
 * device's shared Board (./board.ts). No sockets here; the agent feeds it
 * from a link, one handler per controller session.
 *
 * Rights: the controller's rights (protocol/rpc.ts Rights) are read at every
 * command, so a change made while the device runs applies at the next one.
 *
 * At-most-once: given a RecentResults and the controller's
 * identity, a request whose (controller, id) was seen before is answered
 * with the stored response and not run again.
 */

import type { PinInfo, Rights } from '../protocol/index.js';
import {
  type ChangeNotification,
  FULL_RIGHTS,
  isErrorCode,
  isPinholeError,
  PROTOCOL_VERSION,
  parseRequest,
  type RpcRequest,
  type RpcResponse,
  rpcError,
} from '../protocol/index.js';
import type { Board } from './board.js';
import type { RecentResults } from './recent.js';

/** Options of a CommandHandler. */
export interface HandlerOptions {
  /** The device's board, shared by all its sessions. */
  board: Board;
  /** Pins a controller may touch; undefined allows every pin of the backend. */
  allowedPins?: ReadonlySet<number>;
  /** Device name reported by device.info. */
  name: string;
  /** pinhole version reported by device.info. */
  version: string;
  /** The controller's name in the device's trust list: the `by` of the edges its commands cause. */
  who: string;
  /** The controller's rights, read at every command (default: FULL_RIGHTS). */
  rights?: () => Readonly<Rights>;
  /** Controller sessions connected to the device now, this one included, for device.info (default: 1). */
  controllers?: () => number;
  /** Sleep used by blink, in ms (default: a real timer). */
  sleep?: (ms: number) => Promise<void>;
  /**
   * Memory of recent responses, shared by the sessions of one device so
   * that a retry in a new session is still recognised. With `peer`, enables
   * at-most-once execution; without either, every request runs (default).
   */
  recent?: RecentResults;
  /** The controller's identity (e.g. its key fingerprint): the namespace of its request ids in `recent`. */
  peer?: string;
}

const realSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Methods a read-only controller may not run. */
const CHANGES_THE_BOARD: ReadonlySet<string> = new Set(['gpio.write', 'gpio.mode', 'gpio.blink']);

/** Handles the requests of one controller session; dispose() drops its watches and stops its blinks. */
export class CommandHandler {
  private readonly watches = new Map<number, () => void>();
  private disposed = false;
  private dups = 0;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly opts: HandlerOptions,
    private readonly notify: (n: ChangeNotification) => void,
  ) {
    this.sleep = opts.sleep ?? realSleep;
  }

  /** Retried requests this handler answered from `recent` without running them. */
  get duplicatesAnswered(): number {
    return this.dups;
  }

  /**
   * Validates and runs one request; always resolves with a response.
   *
   * With `recent` and `peer`: a valid request whose id this controller used
   * before is answered with the stored response (waiting for it if the first
   * run is still going) and not run again; otherwise it runs and its
   * response is stored. Invalid requests are answered and never stored.
   *
   * A retried `gpio.watch` is not run again either (no second read, no
   * double subscription), but if it reaches a session other than the one
   * that ran it (the controller reconnected), this session has no
   * subscription for the pin yet, so one is made here: the controller gets
   * the edges it asked for. A retried watch therefore re-subscribes if this
   * session holds no watch on the pin, even if an unwatch came in between.
   */
  async handle(raw: unknown): Promise<RpcResponse> {
    const parsed = parseRequest(raw);
    if (!parsed.ok) return parsed.reply;
    const req = parsed.req;
    const { recent, peer } = this.opts;
    if (!recent || peer === undefined) return this.execute(req);
    const run = recent.run(peer, req.id, () => this.execute(req));
    if (!run.duplicate) return run.response;
    this.dups++;
    const response = await run.response;
    if (req.method === 'gpio.watch' && 'result' in response && !this.watches.has(req.params.pin) && !this.disposed) {
      try {
        this.check(req, this.rights());
        this.subscribe(req.params.pin);
      } catch {
        // the pin was allowed and present when the watch first ran; if it no longer is, there is nothing to attach
      }
    }
    return response;
  }

  /** Runs one valid request, mapping failures to error responses. Never rejects. */
  private async execute(req: RpcRequest): Promise<RpcResponse> {
    try {
      return { jsonrpc: '2.0', id: req.id, result: await this.run(req) };
    } catch (e) {
      if (e instanceof Refusal) return rpcError(req.id, e.code, e.message);
      if (isPinholeError(e, 'preempted')) return rpcError(req.id, 'preempted', e.message);
      if (isPinholeError(e) && isErrorCode(e.code, 'gpio')) {
        const code = e.code === 'pin-mode' || e.code === 'no-such-pin' || e.code === 'pin-busy' ? e.code : 'hardware';
        return rpcError(req.id, code, e.message);
      }
      return rpcError(req.id, 'internal-error', 'internal error');
    }
  }

  /** Drops watches and stops blinks of this session. */
  dispose(): void {
    this.disposed = true;
    for (const off of this.watches.values()) off();
    this.watches.clear();
  }

  /** Runs a request synchronously up to its first wait, so commands reach the board in the order they came. */
  private async run(req: RpcRequest): Promise<unknown> {
    const { board, who } = this.opts;
    const rights = this.rights();
    this.dropWatchesOutside(rights);
    if (req.method === 'device.info') {
      return {
        name: this.opts.name,
        backend: board.backend,
        board: board.name,
        pins: this.allowedList(),
        protocol: PROTOCOL_VERSION,
        version: this.opts.version,
        controllers: this.opts.controllers?.() ?? 1,
        rights: { access: rights.access, pins: rights.pins === null ? null : [...rights.pins] },
        ...this.lines(),
      };
    }
    this.check(req, rights);
    const pin = req.params.pin;
    switch (req.method) {
      case 'gpio.write':
        board.write(pin, req.params.value, who);
        return { pin, value: req.params.value };
      case 'gpio.read':
        return { pin, value: board.read(pin) };
      case 'gpio.mode': {
        const { mode, pull } = req.params;
        board.setMode(pin, mode, who, pull === undefined ? {} : { pull });
        return pull === undefined ? { pin, mode } : { pin, mode, pull };
      }
      case 'gpio.blink':
        return board.blink(pin, req.params.times, req.params.intervalMs, who, this.sleep, () => this.disposed);
      case 'gpio.watch':
        this.subscribe(pin);
        return { pin, value: board.read(pin) };
      case 'gpio.unwatch':
        this.watches.get(pin)?.();
        this.watches.delete(pin);
        return { pin };
    }
  }

  private rights(): Readonly<Rights> {
    return this.opts.rights?.() ?? FULL_RIGHTS;
  }

  /**
   * Refuses a pin request outside the device's pins (pin-not-allowed, checked
   * first) or outside this controller's rights (not-allowed): a change by a
   * read-only controller, or a pin not in its rights.pins.
   */
  private check(req: Exclude<RpcRequest, { method: 'device.info' }>, rights: Readonly<Rights>): void {
    const pin = req.params.pin;
    const allowed = this.opts.allowedPins;
    if (allowed && !allowed.has(pin)) throw new Refusal('pin-not-allowed', `pin ${pin} is not allowed on this device`);
    if (rights.access === 'read-only' && CHANGES_THE_BOARD.has(req.method))
      throw new Refusal('not-allowed', `controller ${this.opts.who} is read-only on this device: it may read, watch and ask for info`);
    if (rights.pins !== null && !rights.pins.includes(pin))
      throw new Refusal('not-allowed', `pin ${pin} is outside the pins controller ${this.opts.who} may use (${rights.pins.join(', ') || 'none'})`);
  }

  /** A watch on a pin the controller's rights no longer cover ends (rights are read per command, so at the next one). */
  private dropWatchesOutside(rights: Readonly<Rights>): void {
    const pins = rights.pins;
    if (pins === null) return;
    for (const [pin, off] of this.watches) {
      if (pins.includes(pin)) continue;
      off();
      this.watches.delete(pin);
    }
  }

  /** Subscribes this session to a pin's edges, replacing any earlier subscription of it to that pin. */
  private subscribe(pin: number): void {
    this.watches.get(pin)?.();
    const off = this.opts.board.watch(pin, (c) =>
      this.notify({ jsonrpc: '2.0', method: 'gpio.change', params: { pin: c.pin, value: c.value, edge: c.edge, ts: c.ts, by: c.by } }),
    );
    this.watches.set(pin, off);
  }

  /** Per-pin details of the allowed pins, where the backend has them. */
  private lines(): { lines?: PinInfo[] } {
    const all = this.opts.board.describe();
    if (!all) return {};
    const allowed = this.opts.allowedPins;
    return { lines: allowed ? all.filter((d) => allowed.has(d.pin)) : all };
  }

  private allowedList(): number[] {
    const all = this.opts.board.pins();
    const allowed = this.opts.allowedPins;
    return allowed ? all.filter((p) => allowed.has(p)) : all;
  }
}

class Refusal extends Error {
  constructor(
    readonly code: 'pin-not-allowed' | 'not-allowed',
    message: string,
  ) {
    super(message);
  }
}
