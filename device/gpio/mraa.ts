/**
 * The libmraa backend: real GPIO through libmraa's C API, called with koffi
 * (FFI). koffi and libmraa are loaded only when this backend is opened, so
 * the sim works on machines that have neither.
 */
import { performance } from 'node:perf_hooks';
import type { Level, PinMode } from '../../protocol/index.js';
import { PinholeError } from '../../protocol/index.js';
import type { Bias, Gpio, PinChange, PinSettings } from './gpio.js';

type Koffi = typeof import('koffi').default;
type KoffiFunction = ReturnType<ReturnType<Koffi['load']>['func']>;
type KoffiType = ReturnType<Koffi['opaque']>;
/** libmraa's `mraa_gpio_context` as koffi hands it over (an opaque pointer value). */
type Ctx = unknown;

/**
 * Period of the polling fallback in ms, used when libmraa cannot deliver
 * edge interrupts for a pin (e.g. its MOCK platform, or a pin without edge
 * support): fast enough for buttons and switches, one read per watched pin.
 */
export const MRAA_POLL_INTERVAL_MS = 20;

/** Library names tried, in order, when no explicit path is given. */
export const MRAA_LIBRARY_NAMES: readonly string[] = ['libmraa.so.2', 'libmraa.so', 'libmraa.so.1'];

/** Options of {@link openMraa}. */
export interface MraaOptions {
  /**
   * Explicit path of libmraa.so (the CLI fills it from env PINHOLE_LIBMRAA).
   * When set, only this path is tried; otherwise {@link MRAA_LIBRARY_NAMES}
   * are looked up through the system's library search path.
   */
  libPath?: string;
  /** Clock in ms for `PinChange.ts`. Default `performance.now()` (monotonic, from process start). */
  now?: () => number;
  /** Polling period in ms when a pin has no edge interrupt. Default {@link MRAA_POLL_INTERVAL_MS}. */
  pollIntervalMs?: number;
}

/** How a watched pin's edges are detected: libmraa's ISR thread, or polling. */
export type EdgeSource = 'isr' | 'poll';

// libmraa enums (api/mraa/types.h, api/mraa/gpio.h).
const MRAA_SUCCESS = 0;
const MRAA_PIN_GPIO = 1;
const MRAA_GPIO_OUT = 0;
const MRAA_GPIO_IN = 1;
const MRAA_GPIO_EDGE_BOTH = 1;
/** mraa_gpio_mode_t: the bias of a pin (STRONG is a drive mode, not used). */
const MRAA_GPIO_MODE: Record<Bias, number> = { up: 1, down: 2, disabled: 3 };

const MRAA_RESULT_NAMES: Record<number, string> = {
  1: 'FEATURE_NOT_IMPLEMENTED',
  2: 'FEATURE_NOT_SUPPORTED',
  3: 'INVALID_VERBOSITY_LEVEL',
  4: 'INVALID_PARAMETER',
  5: 'INVALID_HANDLE',
  6: 'NO_RESOURCES',
  7: 'INVALID_RESOURCE',
  8: 'INVALID_QUEUE_TYPE',
  9: 'NO_DATA_AVAILABLE',
  10: 'INVALID_PLATFORM',
  11: 'PLATFORM_NOT_INITIALISED',
  99: 'UNSPECIFIED',
};

function resultName(rc: number): string {
  return `MRAA_ERROR_${MRAA_RESULT_NAMES[rc] ?? 'UNKNOWN'} (${rc})`;
}

const FIX = "Install libmraa (e.g. the board image's libmraa package), or point PINHOLE_LIBMRAA at libmraa.so, " + 'or use --gpio sim to run without hardware.';

interface MraaApi {
  koffi: Koffi;
  init: () => number;
  platformName: () => string | null;
  pinCount: () => number;
  pinModeTest: (pin: number, mode: number) => number;
  gpioInit: (pin: number) => Ctx;
  gpioDir: (ctx: Ctx, dir: number) => number;
  gpioWrite: (ctx: Ctx, value: number) => number;
  gpioRead: (ctx: Ctx) => number;
  /** mraa_gpio_mode (pull-up/down/hiz); undefined in a libmraa without it. */
  gpioMode: ((ctx: Ctx, mode: number) => number) | undefined;
  gpioIsr: (ctx: Ctx, edge: number, cb: unknown, args: null) => number;
  /** Joins libmraa's ISR thread; only ever called with `.async` (see MraaGpio.stopIsr). */
  gpioIsrExit: KoffiFunction;
  /** Also stops an ISR; called with `.async` when one is running. */
  gpioClose: KoffiFunction;
  isrCallbackType: KoffiType;
}

// koffi type names are process-global: declare them once.
let types: { ctx: KoffiType; isr: KoffiType } | undefined;

async function loadKoffi(): Promise<Koffi> {
  try {
    return (await import('koffi')).default;
  } catch (err) {
    throw new PinholeError('backend-unavailable', `libmraa could not be loaded: the FFI module koffi is not usable here (${errText(err)}). ${FIX}`);
  }
}

function bind(koffi: Koffi, path: string): MraaApi {
  const lib = koffi.load(path);
  types ??= {
    ctx: koffi.pointer('pinhole_mraa_gpio_context', koffi.opaque()),
    isr: koffi.proto('void pinhole_mraa_isr(void *args)'),
  };
  const ctx = types.ctx;
  const fn = (name: string, ret: string | KoffiType, args: (string | KoffiType)[]): KoffiFunction => lib.func(name, ret, args);
  return {
    koffi,
    init: fn('mraa_init', 'int', []),
    platformName: fn('mraa_get_platform_name', 'const char *', []),
    pinCount: fn('mraa_get_pin_count', 'unsigned int', []),
    pinModeTest: fn('mraa_pin_mode_test', 'unsigned int', ['int', 'int']),
    gpioInit: fn('mraa_gpio_init', ctx, ['int']),
    gpioDir: fn('mraa_gpio_dir', 'int', [ctx, 'int']),
    gpioWrite: fn('mraa_gpio_write', 'int', [ctx, 'int']),
    gpioRead: fn('mraa_gpio_read', 'int', [ctx]),
    gpioMode: optional(() => fn('mraa_gpio_mode', 'int', [ctx, 'int'])),
    gpioIsr: fn('mraa_gpio_isr', 'int', [ctx, 'int', koffi.pointer(types.isr), 'void *']),
    gpioIsrExit: fn('mraa_gpio_isr_exit', 'int', [ctx]),
    gpioClose: fn('mraa_gpio_close', 'int', [ctx]),
    isrCallbackType: koffi.pointer(types.isr),
  };
}

/**
 * Opens the libmraa backend. Loads koffi and libmraa lazily, calls
 * `mraa_init`, and checks that the platform has pins.
 *
 * Throws PinholeError('backend-unavailable') when koffi or libmraa cannot be
 * loaded, lacks a needed symbol, or finds no board; the message names the fix.
 */
export async function openMraa(opts: MraaOptions = {}): Promise<MraaGpio> {
  const koffi = await loadKoffi();
  const candidates = opts.libPath ? [opts.libPath] : [...MRAA_LIBRARY_NAMES];
  const failures: string[] = [];
  let api: MraaApi | undefined;
  for (const path of candidates) {
    try {
      api = bind(koffi, path);
      break;
    } catch (err) {
      failures.push(`${path}: ${errText(err)}`);
    }
  }
  if (!api) {
    throw new PinholeError('backend-unavailable', `libmraa could not be loaded (tried ${failures.join('; ')}). ${FIX}`);
  }
  const rc = api.init();
  if (rc !== MRAA_SUCCESS) {
    throw new PinholeError('backend-unavailable', `libmraa was loaded but mraa_init failed: ${resultName(rc)}. ${FIX}`);
  }
  const board = api.platformName() ?? 'unknown';
  const count = api.pinCount();
  const pins: number[] = [];
  for (let p = 0; p < count; p++) if (api.pinModeTest(p, MRAA_PIN_GPIO)) pins.push(p);
  if (pins.length === 0) {
    throw new PinholeError(
      'backend-unavailable',
      `libmraa was loaded but found no GPIO pins on platform '${board}' (${count} pins): this machine is not a board libmraa supports. ${FIX}`,
    );
  }
  return new MraaGpio(api, board, pins, opts.now ?? (() => performance.now()), opts.pollIntervalMs ?? MRAA_POLL_INTERVAL_MS);
}

interface Watch {
  watchers: Set<(c: PinChange) => void>;
  last: Level;
  source: EdgeSource;
  timer?: NodeJS.Timeout;
  /** koffi registered-callback handle, while an ISR is attached. */
  isrHandle?: bigint;
}

/**
 * GPIO through libmraa. Same semantics as the sim: read on an unconfigured
 * pin makes it an input, write makes it an output, write on an input throws
 * 'pin-mode', pins the platform lacks (or that are not GPIO-capable) throw
 * 'no-such-pin', and libmraa failures throw 'hardware'.
 *
 * Edges: `watch` attaches libmraa's ISR (both edges); where libmraa refuses
 * it, the pin is polled every `pollIntervalMs`. Either way the level is read
 * on the event loop and a PinChange is emitted only when it differs from the
 * last one seen, so pulses shorter than the event loop's latency can be
 * missed. This process's own writes emit their change at once.
 */
export class MraaGpio implements Gpio {
  readonly backend = 'mraa';
  private readonly ctxs = new Map<number, Ctx>();
  private readonly modes = new Map<number, PinMode>();
  private readonly watches = new Map<number, Watch>();
  private readonly pinSet: Set<number>;
  private closed = false;

  /** Use {@link openMraa}. */
  constructor(
    private readonly api: MraaApi,
    readonly board: string,
    pins: number[],
    private readonly now: () => number,
    private readonly pollIntervalMs: number,
  ) {
    this.pinSet = new Set(pins);
  }

  pins(): number[] {
    return [...this.pinSet];
  }

  mode(pin: number): PinMode | undefined {
    this.checkPin(pin);
    return this.modes.get(pin);
  }

  setMode(pin: number, mode: PinMode, settings: PinSettings = {}): void {
    if (mode !== 'in' && mode !== 'out') throw new RangeError(`mode must be 'in' or 'out', got ${String(mode)}`);
    const ctx = this.ctx(pin);
    if (settings.pull !== undefined) {
      const m = MRAA_GPIO_MODE[settings.pull];
      if (m === undefined) throw new RangeError(`pull must be up, down or disabled, got ${String(settings.pull)}`);
      // Before the direction: a refused bias leaves the pin as it was.
      if (!this.api.gpioMode) throw new PinholeError('hardware', 'this libmraa has no mraa_gpio_mode: it cannot set a bias');
      check(this.api.gpioMode(ctx, m), `mraa_gpio_mode(${pin}, pull ${settings.pull})`);
    }
    check(this.api.gpioDir(ctx, mode === 'in' ? MRAA_GPIO_IN : MRAA_GPIO_OUT), `mraa_gpio_dir(${pin}, ${mode})`);
    this.modes.set(pin, mode);
    this.refresh(pin); // switching direction can expose another level
  }

  write(pin: number, value: Level): void {
    if (value !== 0 && value !== 1) throw new RangeError(`level must be 0 or 1, got ${String(value)}`);
    const mode = this.mode(pin);
    if (mode === 'in') throw new PinholeError('pin-mode', `pin ${pin} is an input; set it to 'out' before writing`);
    if (mode === undefined) this.setMode(pin, 'out');
    check(this.api.gpioWrite(this.ctx(pin), value), `mraa_gpio_write(${pin}, ${value})`);
    const w = this.watches.get(pin);
    if (w) this.emit(pin, w, value);
  }

  read(pin: number): Level {
    if (this.mode(pin) === undefined) this.setMode(pin, 'in');
    return this.readLevel(pin);
  }

  watch(pin: number, onChange: (c: PinChange) => void): () => void {
    const ctx = this.ctx(pin);
    let w = this.watches.get(pin);
    if (!w) {
      w = { watchers: new Set(), last: 0, source: 'poll' };
      this.watches.set(pin, w);
    }
    if (w.watchers.size === 0) {
      w.last = this.readLevel(pin);
      if (w.isrHandle === undefined) this.startEdges(pin, ctx, w);
    }
    const entry = (c: PinChange): void => onChange(c);
    w.watchers.add(entry);
    const watch = w;
    return () => {
      if (!watch.watchers.delete(entry) || watch.watchers.size > 0) return;
      // An ISR stays attached until close(): detaching it is asynchronous
      // (see stopIsr), and a quick re-watch would race with it.
      if (watch.timer) clearInterval(watch.timer);
      watch.timer = undefined;
    };
  }

  /**
   * How edges of a watched pin are detected ('isr' or 'poll'), or undefined
   * when nobody watches it. For diagnostics.
   */
  edgeSource(pin: number): EdgeSource | undefined {
    this.checkPin(pin);
    const w = this.watches.get(pin);
    return w && w.watchers.size > 0 ? w.source : undefined;
  }

  /**
   * Drops all watchers and releases every pin context. Pins with an ISR
   * attached are released in the background (see stopIsr); others at once.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [pin, ctx] of this.ctxs) {
      const w = this.watches.get(pin);
      if (w) {
        w.watchers.clear();
        if (w.timer) clearInterval(w.timer);
      }
      if (w?.isrHandle !== undefined) this.stopIsr(ctx, w.isrHandle);
      else this.api.gpioClose(ctx); // result ignored: nothing left to do on failure
    }
    this.watches.clear();
    this.ctxs.clear();
    this.modes.clear();
  }

  private checkPin(pin: number): void {
    if (this.closed) throw new PinholeError('hardware', 'the mraa backend is closed');
    if (!this.pinSet.has(pin)) {
      throw new PinholeError('no-such-pin', `board '${this.board}' has no GPIO pin ${pin} (GPIO pins: ${this.pins().join(', ')})`);
    }
  }

  private ctx(pin: number): Ctx {
    this.checkPin(pin);
    let ctx = this.ctxs.get(pin);
    if (!ctx) {
      ctx = this.api.gpioInit(pin);
      if (!ctx) throw new PinholeError('hardware', `mraa_gpio_init(${pin}) failed (is the pin in use, or does this user lack GPIO access?)`);
      this.ctxs.set(pin, ctx);
    }
    return ctx;
  }

  private readLevel(pin: number): Level {
    const v = this.api.gpioRead(this.ctx(pin));
    if (v !== 0 && v !== 1) throw new PinholeError('hardware', `mraa_gpio_read(${pin}) failed (returned ${v})`);
    return v;
  }

  /** Reads a watched pin and emits if its level changed. */
  private refresh(pin: number): void {
    const w = this.watches.get(pin);
    if (!w) return;
    let v: Level;
    try {
      v = this.readLevel(pin);
    } catch {
      return; // a transient read failure: the next edge or poll retries
    }
    this.emit(pin, w, v);
  }

  private emit(pin: number, w: Watch, value: Level): void {
    if (value === w.last) return;
    w.last = value;
    const c: PinChange = { pin, value, edge: value === 1 ? 'rising' : 'falling', ts: this.now() };
    for (const fn of [...w.watchers]) {
      try {
        fn({ ...c });
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  private startEdges(pin: number, ctx: Ctx, w: Watch): void {
    const { koffi } = this.api;
    // The ISR runs on a libmraa thread; koffi relays the call to the event
    // loop (blocking that thread until it has run), so this body runs on the
    // main thread like any other callback.
    const handle = koffi.register(() => {
      if (!this.closed && w.watchers.size > 0) this.refresh(pin);
    }, this.api.isrCallbackType);
    let rc: number;
    try {
      rc = this.api.gpioIsr(ctx, MRAA_GPIO_EDGE_BOTH, handle, null);
    } catch {
      rc = -1;
    }
    if (rc === MRAA_SUCCESS) {
      w.source = 'isr';
      w.isrHandle = handle;
      return;
    }
    koffi.unregister(handle);
    w.source = 'poll';
    w.timer = setInterval(() => this.refresh(pin), this.pollIntervalMs);
    w.timer.unref(); // like an ISR, watching alone does not keep the process alive
  }

  /**
   * Detaches an ISR and closes its context. mraa_gpio_isr_exit joins the ISR
   * thread, which may be blocked waiting for the event loop to run our
   * callback, so calling it synchronously can deadlock: it runs with koffi's
   * `.async` (on a worker thread) while the event loop keeps going.
   */
  private stopIsr(ctx: Ctx, handle: bigint): void {
    const { koffi } = this.api;
    this.api.gpioIsrExit.async(ctx, () => {
      koffi.unregister(handle);
      this.api.gpioClose.async(ctx, () => {});
    });
  }
}

function optional<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

function check(rc: number, what: string): void {
  if (rc !== MRAA_SUCCESS) throw new PinholeError('hardware', `${what} failed: ${resultName(rc)}`);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
