/**
 * The controller's commands (write, read, blink, watch, info), shared by the
 * one-shot `pinhole control ... COMMAND` and the interactive `shell`.
 */
import { parseArgs } from 'node:util';
import type { Change, Device } from '../controller/index.js';
import {
  BY_INPUT,
  DEFAULT_BLINK_INTERVAL_MS,
  DEFAULT_BLINK_TIMES,
  MAX_BLINK_INTERVAL_MS,
  MAX_BLINK_TIMES,
  MAX_PIN,
  MIN_BLINK_INTERVAL_MS,
  PinholeError,
  type Pull,
} from '../protocol/index.js';
import { type Flags, intFlag } from './config.js';
import { sanitizeForTerminal as safe } from './sanitize.js';

/** A parsed controller command. */
export type Command =
  | { cmd: 'write'; pin: number; value: 0 | 1 }
  | { cmd: 'read'; pin: number }
  | { cmd: 'mode'; pin: number; mode: 'in' | 'out'; pull: Pull | undefined }
  | { cmd: 'blink'; pin: number; times: number; intervalMs: number }
  | { cmd: 'watch'; pin: number; count: number | undefined }
  | { cmd: 'info' }
  | { cmd: 'shell' };

/** Options that belong to commands, not to `control` itself. */
export const COMMAND_OPTIONS = {
  times: { type: 'string' },
  interval: { type: 'string' },
  count: { type: 'string' },
  pull: { type: 'string' },
} as const;

const usage = (m: string): PinholeError => new PinholeError('usage', m);

function pinArg(s: string | undefined, cmd: string): number {
  if (s === undefined) throw usage(`${cmd} needs a PIN`);
  if (!/^\d+$/.test(s) || Number(s) > MAX_PIN) throw usage(`PIN must be a whole number from 0 to ${MAX_PIN}, not "${s}"`);
  return Number(s);
}

/** Builds a command from positionals (`write 20 1`) and command flags (`--times 4`). */
export function buildCommand(pos: string[], f: Flags): Command {
  const [cmd, a, b] = pos;
  const extra = (n: number): void => {
    if (pos.length > n) throw usage(`${cmd}: unexpected argument "${pos[n]}"`);
  };
  const only = (...allowed: string[]): void => {
    for (const k of Object.keys(COMMAND_OPTIONS)) if (f[k] !== undefined && !allowed.includes(k)) throw usage(`--${k} does not apply to ${cmd}`);
  };
  switch (cmd) {
    case 'write': {
      only();
      extra(3);
      const pin = pinArg(a, 'write');
      if (b !== '0' && b !== '1') throw usage('write needs a value: 0 or 1');
      return { cmd, pin, value: b === '1' ? 1 : 0 };
    }
    case 'read':
      only();
      extra(2);
      return { cmd, pin: pinArg(a, 'read') };
    case 'mode': {
      only('pull');
      extra(3);
      const pin = pinArg(a, 'mode');
      if (b !== 'in' && b !== 'out') throw usage('mode needs a direction: in or out');
      const pull = f.pull;
      if (pull !== undefined && pull !== 'up' && pull !== 'down' && pull !== 'disabled') throw usage('--pull must be up, down or disabled');
      return { cmd, pin, mode: b, pull };
    }
    case 'blink':
      only('times', 'interval');
      extra(2);
      return {
        cmd,
        pin: pinArg(a, 'blink'),
        times: intFlag(f, 'times', DEFAULT_BLINK_TIMES, 1, MAX_BLINK_TIMES),
        intervalMs: intFlag(f, 'interval', DEFAULT_BLINK_INTERVAL_MS, MIN_BLINK_INTERVAL_MS, MAX_BLINK_INTERVAL_MS),
      };
    case 'watch':
      only('count');
      extra(2);
      return { cmd, pin: pinArg(a, 'watch'), count: f.count === undefined ? undefined : intFlag(f, 'count', 0, 1) };
    case 'info':
      only();
      extra(1);
      return { cmd };
    case 'shell':
      only();
      extra(1);
      return { cmd };
    case undefined:
      throw usage('missing COMMAND: write, read, mode, blink, watch, info or shell');
    default:
      throw usage(`unknown command "${cmd}": use write, read, mode, blink, watch, info or shell`);
  }
}

/** Parses one line typed in the shell. */
export function parseShellLine(line: string): Command {
  const { values, positionals } = parseArgs({ args: line.trim().split(/\s+/).filter(Boolean), options: COMMAND_OPTIONS, allowPositionals: true, strict: true });
  return buildCommand(positionals, values);
}

/** Where results go: JSON lines or human text. */
export interface Output {
  readonly json: boolean;
  /** Prints one result or event: the object with --json, else the text. */
  line(obj: Record<string, unknown>, text: string): void;
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

/**
 * Runs one command on a connected device, printing its result lines. The last
 * line carries the path the command ended on. `stop` ends a watch early (Ctrl-C).
 * Throws PinholeError on failure. Results are the device's to choose, so
 * every one of them goes through sanitizeForTerminal in the human text.
 */
export async function runCommand(dev: Device, c: Command, out: Output, stop?: Promise<void>): Promise<void> {
  const t0 = performance.now();
  const rtt = (): number => round(performance.now() - t0);
  switch (c.cmd) {
    case 'write':
      await dev.write(c.pin, c.value);
      out.line({ ok: true, cmd: 'write', pin: c.pin, value: c.value, path: dev.path, rttMs: rtt() }, `pin ${c.pin} <- ${c.value}   (${dev.path}, ${rtt()} ms)`);
      return;
    case 'read': {
      const value = await dev.read(c.pin);
      out.line({ ok: true, cmd: 'read', pin: c.pin, value, path: dev.path, rttMs: rtt() }, `pin ${c.pin} = ${safe(value)}   (${dev.path}, ${rtt()} ms)`);
      return;
    }
    case 'mode': {
      await dev.call('gpio.mode', { pin: c.pin, mode: c.mode, ...(c.pull !== undefined ? { pull: c.pull } : {}) });
      const pull = c.pull !== undefined ? `, pull ${c.pull}` : '';
      out.line(
        { ok: true, cmd: 'mode', pin: c.pin, mode: c.mode, ...(c.pull !== undefined ? { pull: c.pull } : {}), path: dev.path, rttMs: rtt() },
        `pin ${c.pin} is ${c.mode === 'in' ? 'an input' : 'an output'}${pull}   (${dev.path}, ${rtt()} ms)`,
      );
      return;
    }
    case 'blink': {
      const r = await dev.blink(c.pin, { times: c.times, intervalMs: c.intervalMs });
      out.line(
        { ok: true, cmd: 'blink', pin: c.pin, toggles: r.toggles, value: r.value, path: dev.path, ms: rtt() },
        `pin ${c.pin} toggled ${safe(r.toggles)} times, now ${safe(r.value)}   (${dev.path}, ${rtt()} ms)`,
      );
      return;
    }
    case 'watch': {
      let edges = 0;
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      const onChange = (ch: Change): void => {
        if (ch.pin !== c.pin || (c.count !== undefined && edges >= c.count)) return;
        edges++;
        out.line(
          { event: 'change', pin: ch.pin, value: ch.value, edge: ch.edge, ts: ch.ts, by: ch.by, path: dev.path },
          `pin ${ch.pin} ${ch.edge} -> ${ch.value} by ${byText(ch.by)}   (${dev.path})`,
        );
        if (c.count !== undefined && edges >= c.count) finish();
      };
      dev.on('change', onChange);
      const onClose = (): void => finish();
      dev.once('close', onClose);
      // Through an outage: say so, and re-sync the level when the session is back.
      const onLost = (e: PinholeError): void =>
        out.line({ event: 'disconnected', error: e.code, path: 'none' }, `connection lost (${safe(e.code)}); reconnecting...`);
      const onResync = (r: { pin: number; value: 0 | 1; previous: 0 | 1 }): void => {
        if (r.pin !== c.pin) return;
        out.line(
          { event: 'resync', pin: r.pin, value: r.value, previous: r.previous, path: dev.path },
          `reconnected: pin ${r.pin} is ${safe(r.value)}${r.value !== r.previous ? ` (was ${r.previous})` : ''}; edges during the outage were not seen   (${dev.path})`,
        );
      };
      dev.on('disconnected', onLost);
      dev.on('resync', onResync);
      try {
        const value = await dev.watch(c.pin);
        out.line({ event: 'watching', pin: c.pin, value, path: dev.path }, `watching pin ${c.pin} (now ${safe(value)}); Ctrl-C to stop`);
        await Promise.race([done, stop ?? new Promise<never>(() => undefined)]);
      } finally {
        dev.off('change', onChange);
        dev.off('close', onClose);
        dev.off('disconnected', onLost);
        dev.off('resync', onResync);
      }
      if (c.count !== undefined && edges < c.count && dev.path === 'none')
        throw new PinholeError('link-closed', `connection lost after ${edges} of ${c.count} edges`);
      out.line({ ok: true, cmd: 'watch', pin: c.pin, edges, path: dev.path }, `${edges} edge(s) seen on pin ${c.pin}   (${dev.path})`);
      return;
    }
    case 'info': {
      const i = await dev.info();
      const pins: unknown = i.pins;
      out.line(
        // The device's fields cannot overwrite ours.
        Object.assign({ ok: true, cmd: 'info' }, i, { ok: true, cmd: 'info', path: dev.path, rttMs: rtt() }),
        `${safe(i.name)}: ${safe(i.backend)} backend on ${safe(i.board)}, pinhole ${safe(i.version)}\n` +
          `pins: ${pinsText(pins)}\n${linesText((i as { lines?: unknown }).lines)}controllers: ${safe(i.controllers)} connected (this one included)\nyour rights: ${rightsText(i.rights)}\npath: ${dev.path}`,
      );
      return;
    }
    case 'shell':
      throw usage('shell cannot be nested');
  }
}

/**
 * The per-pin lines of `info` (line name, direction, bias, active-low,
 * debounce), one per pin, each ending in a newline; '' when the device sent
 * none. Every field came from the device.
 */
export function linesText(lines: unknown): string {
  if (!Array.isArray(lines)) return '';
  return lines
    .map((l: Record<string, unknown>) => {
      if (typeof l !== 'object' || l === null) return `  ${safe(l)}\n`;
      const parts = [`  pin ${safe(l.pin)}`];
      if (l.name) parts.push(safe(l.name));
      if (l.mode) parts.push(safe(l.mode));
      if (l.pull) parts.push(`pull ${safe(l.pull)}`);
      if (l.activeLow === true) parts.push('active-low');
      if (typeof l.debounceUs === 'number' && l.debounceUs > 0) parts.push(`debounce ${safe(l.debounceUs)} us`);
      return `${parts.join('  ')}\n`;
    })
    .join('');
}

/** Who caused an edge: a controller's name, quoted (it came from the device), or `input`. */
function byText(by: string): string {
  return by === BY_INPUT ? BY_INPUT : `"${safe(by)}"`;
}

/** A pin list from the network: compact if it is one, else shown safely as it came. */
function pinsText(pins: unknown): string {
  return Array.isArray(pins) && pins.every((p) => Number.isSafeInteger(p)) ? compactPins(pins) : safe(pins);
}

/**
 * Rights for people: `full access, all pins`, `read-only, pins 13,20-23`.
 * Takes unknown: `info` carries the device's word for them.
 */
export function rightsText(r: unknown): string {
  if (typeof r !== 'object' || r === null) return safe(r);
  const { access, pins } = r as Record<string, unknown>;
  const a = access === 'full' ? 'full access' : access === 'read-only' ? 'read-only' : safe(access);
  return `${a}, ${pins === null ? 'all pins' : `pins ${pinsText(pins)}`}`;
}

/** `[1,2,3,7]` -> `1-3,7`. */
export function compactPins(pins: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < pins.length; ) {
    let j = i;
    while (j + 1 < pins.length && pins[j + 1] === pins[j]! + 1) j++;
    out.push(j > i ? `${pins[i]}-${pins[j]}` : `${pins[i]}`);
    i = j + 1;
  }
  return out.join(',');
}
