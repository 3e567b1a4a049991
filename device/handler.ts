/**
 * Command handling: one JSON-RPC request in, one response out, with the GPIO
 * backend injected. No sockets here; the agent feeds it from a link.
 *
 * At-most-once: given a RecentResults and the controller's
 * identity, a request whose (controller, id) was seen before is answered
 * with the stored response and not run again.
 */

import type { Level } from '../protocol/index.js';
import {
  BY_INPUT,
  type ChangeNotification,
  isErrorCode,
  isPinholeError,
  PinholeError,
  PROTOCOL_VERSION,
  parseRequest,
  type RpcRequest,
  type RpcResponse,
  rpcError,
} from '../protocol/index.js';
import type { Gpio } from './gpio/gpio.js';
import type { RecentResults } from './recent.js';

/** Options of a CommandHandler. */
export interface HandlerOptions {
  /** The GPIO backend. */
  gpio: Gpio;
  /** Pins a controller may touch; undefined allows every pin of the backend. */
  allowedPins?: ReadonlySet<number>;
  /** Device name reported by device.info. */
  name: string;
  /** pinhole version reported by device.info. */
  version: string;
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

/** Handles the requests of one controller session; dispose() drops its watches and stops its blinks. */
export class CommandHandler {
  private readonly watches = new Map<number, () => void>();
  private readonly blinking = new Set<number>();
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
        this.checkPin(req.params.pin);
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
      if (isPinholeError(e) && isErrorCode(e.code, 'gpio')) {
        const code = e.code === 'pin-mode' || e.code === 'no-such-pin' ? e.code : 'hardware';
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

  private async run(req: RpcRequest): Promise<unknown> {
    const { gpio } = this.opts;
    if (req.method === 'device.info') {
      return {
        name: this.opts.name,
        backend: gpio.backend,
        board: gpio.board,
        pins: this.allowedList(),
        protocol: PROTOCOL_VERSION,
        version: this.opts.version,
      };
    }
    const pin = req.params.pin;
    this.checkPin(pin);
    switch (req.method) {
      case 'gpio.write':
        if (this.blinking.has(pin)) throw new Refusal('not-allowed', `pin ${pin} is blinking`);
        gpio.write(pin, req.params.value);
        return { pin, value: req.params.value };
      case 'gpio.read':
        return { pin, value: gpio.read(pin) };
      case 'gpio.mode':
        if (this.blinking.has(pin)) throw new Refusal('not-allowed', `pin ${pin} is blinking`);
        gpio.setMode(pin, req.params.mode);
        return { pin, mode: req.params.mode };
      case 'gpio.blink':
        return this.blink(pin, req.params.times, req.params.intervalMs);
      case 'gpio.watch':
        this.subscribe(pin);
        return { pin, value: gpio.read(pin) };
      case 'gpio.unwatch':
        this.watches.get(pin)?.();
        this.watches.delete(pin);
        return { pin };
    }
  }

  /** Subscribes this session to a pin's edges, replacing any earlier subscription of it to that pin. */
  private subscribe(pin: number): void {
    this.watches.get(pin)?.();
    const off = this.opts.gpio.watch(pin, (c) =>
      this.notify({ jsonrpc: '2.0', method: 'gpio.change', params: { pin: c.pin, value: c.value, edge: c.edge, ts: c.ts, by: BY_INPUT } }),
    );
    this.watches.set(pin, off);
  }

  /** The original script's loop: toggle `times` times, `intervalMs` apart, on the device's own clock. */
  private async blink(pin: number, times: number, intervalMs: number): Promise<{ pin: number; toggles: number; value: Level }> {
    if (this.blinking.has(pin)) throw new Refusal('not-allowed', `pin ${pin} is already blinking`);
    const { gpio } = this.opts;
    if (gpio.mode(pin) === 'in') throw new PinholeError('pin-mode', `pin ${pin} is an input`);
    this.blinking.add(pin);
    let toggles = 0;
    try {
      let value: Level = gpio.mode(pin) === 'out' ? gpio.read(pin) : 0;
      for (; toggles < times && !this.disposed; toggles++) {
        value = value === 1 ? 0 : 1;
        gpio.write(pin, value);
        if (toggles < times - 1) await this.sleep(intervalMs);
      }
      return { pin, toggles, value };
    } finally {
      this.blinking.delete(pin);
    }
  }

  private checkPin(pin: number): void {
    const allowed = this.opts.allowedPins;
    if (allowed && !allowed.has(pin)) throw new Refusal('pin-not-allowed', `pin ${pin} is not allowed on this device`);
  }

  private allowedList(): number[] {
    const all = this.opts.gpio.pins();
    const allowed = this.opts.allowedPins;
    return allowed ? all.filter((p) => allowed.has(p)) : all;
  }
}

class Refusal extends Error {
  constructor(
    readonly code: 'pin-not-allowed' | 'not-allowed' | 'preempted',
    message: string,
  ) {
    super(message);
  }
}
