/**
 * The GPIO character device backend (`--gpio chardev`): /dev/gpiochipN
 * through the kernel's uAPI v2, with the ioctls made directly through koffi
 * (no libgpiod, whose v1 and v2 APIs differ, and no native build). Struct
 * layouts and ioctl numbers are in ./uapi.ts. koffi is loaded only when this
 * backend is opened.
 *
 * Each pin is its own line request, made at first use with consumer
 * `pinhole`, so one busy line does not block the others and each is
 * released on its own; every request is released by close() (and by the
 * kernel when the process ends).
 */
import { closeSync, constants, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Level, PinMode } from '../../protocol/index.js';
import { PinholeError } from '../../protocol/index.js';
import type { Bias, Gpio, PinChange, PinDescription, PinSettings } from './gpio.js';
import {
  CHIP_INFO,
  type ChipInfo,
  decodeChipInfo,
  decodeLineEvents,
  decodeLineInfo,
  encodeLineConfig,
  encodeLineRequest,
  encodeLineValues,
  IOCTL,
  LINE_EVENT,
  LINE_FLAG,
  type LineConfig,
  type LineInfo,
  lineInfoQuery,
  lineValue,
  requestFd,
} from './uapi.js';

type Koffi = typeof import('koffi').default;
type KoffiFunction = ReturnType<ReturnType<Koffi['load']>['func']>;

/** Consumer label of every line pinhole requests (line info shows it to other programs). */
export const CHARDEV_CONSUMER = 'pinhole';
/** Where the chips are. */
export const GPIO_DEV_DIR = '/dev';
/** The group that owns the chips on a set-up board (Raspberry Pi OS ships it; elsewhere the udev rule makes it). */
export const GPIO_GROUP = 'gpio';
/** The udev rule that gives the chips to GPIO_GROUP, printed in full by the permission error. */
export const GPIO_UDEV_RULE = 'SUBSYSTEM=="gpio", GROUP="gpio", MODE="0660"';
/** Longest debounce period accepted, µs (one second: past it a switch is not bouncing). */
export const MAX_DEBOUNCE_US = 1_000_000;

/** Events read from a request fd at once. */
const EVENTS_PER_READ = 16;

/** Options of {@link openChardev}. */
export interface ChardevOptions {
  /** The chip: its label (e.g. pinctrl-rp1), kernel name (gpiochip0) or path (/dev/gpiochip0). Default: the only chip. */
  chip?: string;
  /** Pins (offsets or line names) read as active-low: 1 means the line is low. */
  activeLow?: Iterable<number | string>;
  /** Debounce period per pin (offset or line name), µs; applies while the pin is an input. */
  debounceUs?: Iterable<[number | string, number]>;
  /** Directory of the chip devices (default /dev; tests only). */
  devDir?: string;
}

interface LibC {
  koffi: Koffi;
  ioctl: (fd: number, req: number, arg: Buffer) => number;
  /** poll(2) on a pollfd array; only called with `.async`. */
  poll: KoffiFunction;
  eventfd: (initval: number, flags: number) => number;
}

let libc: LibC | undefined;

async function loadLibc(): Promise<LibC> {
  if (libc) return libc;
  let koffi: Koffi;
  try {
    koffi = (await import('koffi')).default;
  } catch (err) {
    throw new PinholeError('backend-unavailable', `the GPIO character device backend needs the FFI module koffi, which is not usable here (${errText(err)})`);
  }
  const lib = koffi.load('libc.so.6');
  libc = {
    koffi,
    // ioctl is variadic in C; its third argument is passed as a pointer either way on Linux's ABIs.
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  };
  return libc;
}

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const POLLFD_SIZE = 8;

/** Makes one ioctl; returns 0 or the errno it failed with. */
function ioctl(c: LibC, fd: number, req: number, arg: Buffer): number {
  return c.ioctl(fd, req, arg) < 0 ? c.koffi.errno() || 5 : 0;
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  5: 'EIO',
  9: 'EBADF',
  13: 'EACCES',
  16: 'EBUSY',
  19: 'ENODEV',
  22: 'EINVAL',
  25: 'ENOTTY',
  95: 'EOPNOTSUPP',
  524: 'ENOTSUPP',
};
const errnoName = (e: number): string => ERRNO_NAMES[e] ?? `errno ${e}`;

/** The chip devices in `devDir`, in number order. */
export function chipPaths(devDir = GPIO_DEV_DIR): string[] {
  let names: string[];
  try {
    names = readdirSync(devDir).filter((n) => /^gpiochip\d+$/.test(n));
  } catch {
    return [];
  }
  return names.sort((a, b) => Number(a.slice(8)) - Number(b.slice(8))).map((n) => join(devDir, n));
}

/** The one-line permission error for a chip this user may not open. */
export function permissionMessage(path: string): string {
  let owner = '';
  try {
    const st = statSync(path);
    owner = ` (uid ${st.uid}, gid ${st.gid}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`;
  } catch {
    // the stat is only a hint
  }
  return (
    `permission denied opening ${path}${owner}: add this user to the '${GPIO_GROUP}' group (usermod -aG ${GPIO_GROUP} USER, then log in again) ` +
    `and give the chips to that group with a udev rule, e.g. in /etc/udev/rules.d/60-gpio.rules: ${GPIO_UDEV_RULE}`
  );
}

/** Opens a chip fd read-write; permission and absence become PinholeErrors. */
function openChip(path: string): number {
  try {
    return openSync(path, constants.O_RDWR); // libuv adds O_CLOEXEC;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new PinholeError('gpio-permission', permissionMessage(path));
    throw new PinholeError('backend-unavailable', `cannot open ${path}: ${errText(err)}`);
  }
}

function chipInfo(c: LibC, fd: number, path: string): ChipInfo {
  const b = Buffer.alloc(CHIP_INFO.size);
  const e = ioctl(c, fd, IOCTL.GET_CHIPINFO, b);
  if (e) throw new PinholeError('backend-unavailable', `${path} is not a GPIO chip (GPIO_GET_CHIPINFO_IOCTL: ${errnoName(e)})`);
  return decodeChipInfo(b);
}

function lineInfo(c: LibC, fd: number, offset: number): LineInfo {
  const b = lineInfoQuery(offset);
  const e = ioctl(c, fd, IOCTL.V2_GET_LINEINFO, b);
  if (e === 22 || e === 25)
    throw new PinholeError(
      'backend-unavailable',
      `the kernel refused GPIO_V2_GET_LINEINFO_IOCTL (${errnoName(e)}): it needs the GPIO uAPI v2 (Linux 5.10 or later)`,
    );
  if (e) throw new PinholeError('hardware', `GPIO_V2_GET_LINEINFO_IOCTL(${offset}) failed: ${errnoName(e)}`);
  return decodeLineInfo(b);
}

/** A chip as `pinhole doctor --gpio` lists it. */
export interface ChipReport {
  path: string;
  /** 'ok', or why it could not be read (permission: the one-line fix). */
  status: { ok: true } | { ok: false; code: 'gpio-permission' | 'backend-unavailable' | 'hardware'; message: string };
  info?: ChipInfo;
  lines?: LineReport[];
}

/** One line of a chip, for the doctor. */
export interface LineReport {
  offset: number;
  name: string;
  used: boolean;
  consumer: string;
  direction: 'in' | 'out';
  activeLow: boolean;
  bias: Bias | undefined;
  debounceUs: number;
}

function biasOf(flags: number): Bias | undefined {
  if (flags & LINE_FLAG.BIAS_PULL_UP) return 'up';
  if (flags & LINE_FLAG.BIAS_PULL_DOWN) return 'down';
  if (flags & LINE_FLAG.BIAS_DISABLED) return 'disabled';
  return undefined;
}

/** Reads every chip in `devDir` with its lines: what `pinhole doctor --gpio` prints. Loads koffi. */
export async function inspectChips(devDir = GPIO_DEV_DIR): Promise<ChipReport[]> {
  const paths = chipPaths(devDir);
  if (paths.length === 0) return [];
  const c = await loadLibc();
  return paths.map((path): ChipReport => {
    let fd: number;
    try {
      fd = openChip(path);
    } catch (err) {
      const e = err as PinholeError;
      return { path, status: { ok: false, code: e.code === 'gpio-permission' ? 'gpio-permission' : 'backend-unavailable', message: e.message } };
    }
    try {
      const info = chipInfo(c, fd, path);
      const lines: LineReport[] = [];
      for (let o = 0; o < info.lines; o++) {
        const l = lineInfo(c, fd, o);
        lines.push({
          offset: o,
          name: l.name,
          used: (l.flags & LINE_FLAG.USED) !== 0,
          consumer: l.consumer,
          direction: l.flags & LINE_FLAG.OUTPUT ? 'out' : 'in',
          activeLow: (l.flags & LINE_FLAG.ACTIVE_LOW) !== 0,
          bias: biasOf(l.flags),
          debounceUs: l.debounceUs,
        });
      }
      return { path, status: { ok: true }, info, lines };
    } catch (err) {
      const e = err instanceof PinholeError ? err : new PinholeError('hardware', errText(err));
      return { path, status: { ok: false, code: e.code === 'backend-unavailable' ? 'backend-unavailable' : 'hardware', message: e.message } };
    } finally {
      closeSync(fd);
    }
  });
}

/** Picks the chip for `--chip`: a path, a kernel name or a label; by default the only chip. */
function findChip(c: LibC, spec: string | undefined, devDir: string): { path: string; fd: number; info: ChipInfo } {
  if (spec?.includes('/')) {
    const fd = openChip(spec);
    try {
      return { path: spec, fd, info: chipInfo(c, fd, spec) };
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }
  const paths = chipPaths(devDir);
  if (paths.length === 0)
    throw new PinholeError(
      'backend-unavailable',
      `no GPIO chip in ${devDir} (no /dev/gpiochipN: the kernel has no GPIO driver for this board, or it is older than 5.10)`,
    );
  const seen: string[] = [];
  let denied: PinholeError | undefined;
  for (const path of paths) {
    let fd: number;
    try {
      fd = openChip(path);
    } catch (err) {
      if (isGpioPermission(err)) denied ??= err as PinholeError;
      continue;
    }
    let info: ChipInfo;
    try {
      info = chipInfo(c, fd, path);
    } catch {
      closeSync(fd);
      continue;
    }
    if (spec === undefined ? paths.length === 1 : info.label === spec || info.name === spec) return { path, fd, info };
    seen.push(`${info.name} '${info.label}'`);
    closeSync(fd);
  }
  if (denied) throw denied;
  if (spec === undefined)
    throw new PinholeError(
      'backend-unavailable',
      `this machine has ${paths.length} GPIO chips (${seen.join(', ')}): pick one with --chip LABEL or --chip PATH`,
    );
  throw new PinholeError('backend-unavailable', `no GPIO chip labelled or named '${spec}' (chips: ${seen.join(', ') || 'none readable'})`);
}

function isGpioPermission(e: unknown): boolean {
  return e instanceof PinholeError && e.code === 'gpio-permission';
}

/**
 * Opens the chardev backend on one chip. Throws PinholeError
 * 'gpio-permission' (with the fix in one line) when the chip may not be
 * opened, 'backend-unavailable' when there is no such chip (or koffi), and
 * 'no-such-pin' for an active-low or debounce pin the chip lacks.
 */
export async function openChardev(opts: ChardevOptions = {}): Promise<ChardevGpio> {
  const c = await loadLibc();
  const { path, fd, info } = findChip(c, opts.chip, opts.devDir ?? GPIO_DEV_DIR);
  try {
    const lines: LineInfo[] = [];
    for (let o = 0; o < info.lines; o++) lines.push(lineInfo(c, fd, o));
    const g = new ChardevGpio(c, path, fd, info, lines);
    for (const p of opts.activeLow ?? []) g.setActiveLow(g.resolvePin(p), true);
    for (const [p, us] of opts.debounceUs ?? []) g.setDebounce(g.resolvePin(p), us);
    return g;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** One pin's state. `req` is the line request's fd once the pin is in use. */
interface Line {
  offset: number;
  name: string;
  mode: PinMode | undefined;
  pull: Bias | undefined;
  activeLow: boolean;
  debounceUs: number;
  req: number | undefined;
  watchers: Set<(c: PinChange) => void>;
  /** Last level reported to watchers. */
  last: Level;
}

/** The poller's lifecycle: idle (no poll in flight), polling, or closed. */
type PollPhase = { phase: 'idle' } | { phase: 'polling' } | { phase: 'closed' };

/**
 * GPIO on one chip through the character device. Same semantics as the sim
 * and mraa: a read of an unconfigured pin makes it an input, a write makes
 * it an output, a write to an input throws 'pin-mode', pins the chip lacks
 * throw 'no-such-pin'. A line another consumer holds throws 'pin-busy',
 * naming it.
 *
 * Edges of inputs come from the kernel's edge events (with its CLOCK_MONOTONIC
 * timestamps, in ms, as `ts`), read from the request fds by one poll(2)
 * running on a koffi worker thread while any input is watched; that poll
 * keeps the process alive until unwatch or close(). Watching an
 * unconfigured pin makes it an input. Writes of this process emit their
 * change at once, stamped from the same clock.
 */
export class ChardevGpio implements Gpio {
  readonly backend = 'chardev';
  readonly board: string;
  private readonly lines: Line[];
  private readonly byName = new Map<string, number>();
  private closed = false;
  private poll: PollPhase = { phase: 'idle' };
  private readonly wake: number;

  /** Use {@link openChardev}. */
  constructor(
    private readonly c: LibC,
    /** The chip's device path. */
    readonly path: string,
    private readonly chipFd: number,
    readonly chip: ChipInfo,
    infos: LineInfo[],
  ) {
    this.board = `${chip.label || chip.name} (${path})`;
    this.lines = infos.map((l) => ({
      offset: l.offset,
      name: l.name,
      mode: undefined,
      pull: undefined,
      activeLow: false,
      debounceUs: 0,
      req: undefined,
      watchers: new Set(),
      last: 0,
    }));
    for (const l of this.lines) if (l.name && !this.byName.has(l.name)) this.byName.set(l.name, l.offset);
    this.wake = c.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.wake < 0) throw new PinholeError('backend-unavailable', `eventfd failed: ${errnoName(c.koffi.errno())}`);
  }

  pins(): number[] {
    return this.lines.map((l) => l.offset);
  }

  /** A pin given as an offset (number or digits) or a line name, as its offset; throws 'no-such-pin'. */
  resolvePin(p: number | string): number {
    if (typeof p === 'number' || /^\d+$/.test(p)) {
      const n = Number(p);
      this.line(n);
      return n;
    }
    const o = this.byName.get(p);
    if (o === undefined) throw new PinholeError('no-such-pin', `chip '${this.chip.label}' has no line named '${p}'${this.namesHint()}`);
    return o;
  }

  /** The line name of a pin ('' when unnamed). */
  lineName(pin: number): string {
    return this.line(pin).name;
  }

  mode(pin: number): PinMode | undefined {
    return this.line(pin).mode;
  }

  setMode(pin: number, mode: PinMode, settings: PinSettings = {}): void {
    if (mode !== 'in' && mode !== 'out') throw new RangeError(`mode must be 'in' or 'out', got ${String(mode)}`);
    const l = this.line(pin);
    if (settings.pull !== undefined && settings.pull !== 'up' && settings.pull !== 'down' && settings.pull !== 'disabled')
      throw new RangeError(`pull must be up, down or disabled, got ${String(settings.pull)}`);
    const before = l.req !== undefined ? this.level(l) : undefined;
    const prev = { mode: l.mode, pull: l.pull };
    l.mode = mode;
    if (settings.pull !== undefined) l.pull = settings.pull;
    // An output keeps the level it had (0 when it was not an output).
    const output: Level | undefined = mode === 'out' ? (prev.mode === 'out' && before !== undefined ? before : 0) : undefined;
    try {
      this.configure(l, output);
    } catch (err) {
      l.mode = prev.mode;
      l.pull = prev.pull;
      throw err;
    }
    this.syncPoll();
    this.refresh(l);
  }

  write(pin: number, value: Level): void {
    if (value !== 0 && value !== 1) throw new RangeError(`level must be 0 or 1, got ${String(value)}`);
    const l = this.line(pin);
    if (l.mode === 'in') throw new PinholeError('pin-mode', `pin ${pin} is an input; set it to 'out' before writing`);
    if (l.mode === undefined) {
      l.mode = 'out';
      try {
        this.configure(l, value);
      } catch (err) {
        l.mode = undefined;
        throw err;
      }
    } else {
      const e = ioctl(this.c, l.req!, IOCTL.V2_LINE_SET_VALUES, encodeLineValues(value));
      if (e) throw new PinholeError('hardware', `GPIO_V2_LINE_SET_VALUES_IOCTL(${pin}, ${value}) failed: ${errnoName(e)}`);
    }
    this.emit(l, value, monotonicMs());
  }

  read(pin: number): Level {
    const l = this.line(pin);
    if (l.mode === undefined) this.setMode(pin, 'in');
    return this.level(l);
  }

  watch(pin: number, onChange: (c: PinChange) => void): () => void {
    const l = this.line(pin);
    if (l.mode === undefined) this.setMode(pin, 'in');
    const entry = (c: PinChange): void => onChange(c);
    const first = l.watchers.size === 0;
    l.watchers.add(entry);
    if (first) {
      try {
        if (l.mode === 'in') this.configure(l, undefined); // turns edge detection on
        l.last = this.level(l);
      } catch (err) {
        l.watchers.delete(entry);
        throw err;
      }
      this.syncPoll();
    }
    return () => {
      if (!l.watchers.delete(entry) || l.watchers.size > 0 || this.closed) return;
      if (l.mode === 'in' && l.req !== undefined) {
        try {
          this.configure(l, undefined); // edge detection off
        } catch {
          // the line stays with edges on; its events are read and dropped
        }
      }
      this.syncPoll();
    };
  }

  /** Sets a pin's debounce period (µs, 0 = none); applied now if it is an input, else when it becomes one. */
  setDebounce(pin: number, us: number): void {
    if (!Number.isInteger(us) || us < 0 || us > MAX_DEBOUNCE_US) throw new RangeError(`debounce must be an integer 0..${MAX_DEBOUNCE_US} µs, got ${us}`);
    const l = this.line(pin);
    const prev = l.debounceUs;
    l.debounceUs = us;
    if (l.mode !== 'in' || l.req === undefined) return;
    try {
      this.configure(l, undefined);
    } catch (err) {
      l.debounceUs = prev;
      throw err;
    }
  }

  /** Makes a pin active-low (1 reads and drives a low line) or not; applied now if the pin is in use. */
  setActiveLow(pin: number, on: boolean): void {
    const l = this.line(pin);
    if (l.activeLow === on) return;
    const level = l.req !== undefined ? this.level(l) : 0;
    l.activeLow = on;
    if (l.req === undefined) return;
    // The line keeps its physical level: an output's logical value flips.
    this.configure(l, l.mode === 'out' ? ((1 - level) as Level) : undefined);
    this.refresh(l);
  }

  /** The kernel's line info of a pin now (who holds it, flags, debounce). */
  lineInfo(pin: number): LineInfo {
    this.line(pin);
    return lineInfo(this.c, this.chipFd, pin);
  }

  describe(): PinDescription[] {
    return this.lines.map((l) => ({
      pin: l.offset,
      name: l.name,
      ...(l.mode !== undefined ? { mode: l.mode } : {}),
      ...(l.pull !== undefined ? { pull: l.pull } : {}),
      activeLow: l.activeLow,
      debounceUs: l.debounceUs,
    }));
  }

  /** Releases every line request and the chip. Calls after close() throw 'hardware'. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.lines) {
      l.watchers.clear();
      if (l.req !== undefined) closeSync(l.req);
      l.req = undefined;
      l.mode = undefined;
    }
    closeSync(this.chipFd);
    if (this.poll.phase === 'polling')
      this.signalWake(); // the poll's callback closes the eventfd
    else closeSync(this.wake);
    this.poll = { phase: 'closed' };
  }

  private line(pin: number): Line {
    if (this.closed) throw new PinholeError('hardware', 'the chardev backend is closed');
    const l = Number.isInteger(pin) ? this.lines[pin] : undefined;
    if (!l) throw new PinholeError('no-such-pin', `chip '${this.chip.label}' (${this.path}) has lines 0..${this.lines.length - 1}, not ${pin}`);
    return l;
  }

  private namesHint(): string {
    const names = this.lines.filter((l) => l.name).map((l) => l.name);
    return names.length ? ` (lines: ${names.slice(0, 12).join(', ')}${names.length > 12 ? ', ...' : ''})` : ' (its lines have no names)';
  }

  private flags(l: Line): number {
    let f = l.mode === 'out' ? LINE_FLAG.OUTPUT : LINE_FLAG.INPUT;
    if (l.mode === 'in' && l.watchers.size > 0) f |= LINE_FLAG.EDGE_RISING | LINE_FLAG.EDGE_FALLING;
    if (l.activeLow) f |= LINE_FLAG.ACTIVE_LOW;
    if (l.pull === 'up') f |= LINE_FLAG.BIAS_PULL_UP;
    else if (l.pull === 'down') f |= LINE_FLAG.BIAS_PULL_DOWN;
    else if (l.pull === 'disabled') f |= LINE_FLAG.BIAS_DISABLED;
    return f;
  }

  /** Requests the line, or reconfigures its request, to match `l`. */
  private configure(l: Line, output: Level | undefined): void {
    const cfg: LineConfig = { flags: this.flags(l) };
    if (l.mode === 'out') cfg.output = output ?? 0;
    if (l.mode === 'in' && l.debounceUs > 0) cfg.debounceUs = l.debounceUs;
    if (l.req === undefined) {
      const b = encodeLineRequest(l.offset, CHARDEV_CONSUMER, cfg);
      const e = ioctl(this.c, this.chipFd, IOCTL.V2_GET_LINE, b);
      if (e === 16) throw this.busy(l);
      if (e)
        throw new PinholeError(
          'hardware',
          `GPIO_V2_GET_LINE_IOCTL(${this.pinText(l)}) failed: ${errnoName(e)}${e === 22 ? ' (a setting the chip does not support?)' : ''}`,
        );
      l.req = requestFd(b);
      return;
    }
    const e = ioctl(this.c, l.req, IOCTL.V2_LINE_SET_CONFIG, encodeLineConfig(cfg));
    if (e)
      throw new PinholeError(
        'hardware',
        `GPIO_V2_LINE_SET_CONFIG_IOCTL(${this.pinText(l)}) failed: ${errnoName(e)}${e === 22 ? ' (a setting the chip does not support?)' : ''}`,
      );
  }

  private pinText(l: Line): string {
    return l.name ? `${l.offset} ${l.name}` : String(l.offset);
  }

  private busy(l: Line): PinholeError {
    let consumer = '';
    try {
      consumer = lineInfo(this.c, this.chipFd, l.offset).consumer;
    } catch {
      // the consumer is only a hint
    }
    return new PinholeError(
      'pin-busy',
      `pin ${this.pinText(l)} on ${this.path} is in use by ${consumer ? `'${consumer}'` : 'another consumer'}; stop that program (or free the line) first`,
    );
  }

  private level(l: Line): Level {
    const b = encodeLineValues();
    const e = ioctl(this.c, l.req!, IOCTL.V2_LINE_GET_VALUES, b);
    if (e) throw new PinholeError('hardware', `GPIO_V2_LINE_GET_VALUES_IOCTL(${this.pinText(l)}) failed: ${errnoName(e)}`);
    return lineValue(b);
  }

  /** Emits a watched pin's level if it changed (after a mode or active-low change). */
  private refresh(l: Line): void {
    if (l.watchers.size === 0 || l.req === undefined) return;
    let v: Level;
    try {
      v = this.level(l);
    } catch {
      return;
    }
    this.emit(l, v, monotonicMs());
  }

  private emit(l: Line, value: Level, ts: number): void {
    if (l.watchers.size === 0 || value === l.last) return;
    l.last = value;
    const c: PinChange = { pin: l.offset, value, edge: value === 1 ? 'rising' : 'falling', ts };
    for (const fn of [...l.watchers]) {
      try {
        fn({ ...c });
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /** Watched inputs: the request fds the poller waits on. */
  private polled(): Line[] {
    return this.lines.filter((l) => l.mode === 'in' && l.watchers.size > 0 && l.req !== undefined);
  }

  /** Starts the poll if inputs are watched, or wakes a running one so it picks up the new set (or stops). */
  private syncPoll(): void {
    if (this.poll.phase === 'polling') return this.signalWake();
    if (this.poll.phase === 'idle' && this.polled().length > 0) this.startPoll();
  }

  private signalWake(): void {
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(1n);
    try {
      writeSync(this.wake, one);
    } catch {
      // EAGAIN: already signalled
    }
  }

  private startPoll(): void {
    const lines = this.polled();
    const fds = Buffer.alloc(POLLFD_SIZE * (lines.length + 1));
    const put = (i: number, fd: number): void => {
      fds.writeInt32LE(fd, i * POLLFD_SIZE);
      fds.writeInt16LE(POLLIN, i * POLLFD_SIZE + 4);
    };
    put(0, this.wake);
    lines.forEach((l, i) => put(i + 1, l.req!));
    this.poll = { phase: 'polling' };
    this.c.poll.async(fds, lines.length + 1, -1, (err: unknown, n: number) => {
      if (this.closed) {
        closeSync(this.wake);
        return;
      }
      this.poll = { phase: 'idle' };
      if (err || n < 0) return this.syncPoll(); // EINTR: poll again
      if (fds.readInt16LE(6) & POLLIN) drain(this.wake);
      lines.forEach((l, i) => {
        const rev = fds.readInt16LE((i + 1) * POLLFD_SIZE + 6);
        if (rev & (POLLERR | POLLHUP | POLLNVAL)) return;
        if (rev & POLLIN && l.req !== undefined) this.readEvents(l);
      });
      this.syncPoll();
    });
  }

  private readEvents(l: Line): void {
    const buf = Buffer.alloc(LINE_EVENT.size * EVENTS_PER_READ);
    let n: number;
    try {
      n = readSync(l.req!, buf, 0, buf.length, null);
    } catch {
      return;
    }
    for (const ev of decodeLineEvents(buf, n)) {
      if (l.mode !== 'in' || l.watchers.size === 0) return;
      this.emit(l, ev.edge === 'rising' ? 1 : 0, Number(ev.timestampNs) / 1e6);
    }
  }
}

function drain(fd: number): void {
  try {
    readSync(fd, Buffer.alloc(8), 0, 8, null);
  } catch {
    // EAGAIN: nothing to drain
  }
}

/** CLOCK_MONOTONIC in ms: the clock of the kernel's edge timestamps (libuv's hrtime reads it too). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
