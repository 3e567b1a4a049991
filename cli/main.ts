/**
 * `pinhole` command line. runProcess() is the only place that reads
 * process.argv and process.env; main() and everything below get them
 * passed in, then resolved config objects.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { connect, type Device, type Path } from '../controller/index.js';
import { DeviceAgent, type DeviceEvent, type Gpio, openMraa, SimGpio } from '../device/index.js';
import { loadOrCreateIdentity, TrustedControllers } from '../platform/node/index.js';
import { PinholeError, type Rights, VERSION } from '../protocol/index.js';
import { buildCommand, COMMAND_OPTIONS, type Command, type Output, rightsText, runCommand } from './commands.js';
import {
  type DeviceCliConfig,
  type Env,
  type Flags,
  resolveControl,
  resolveDevice,
  resolveDoctor,
  resolvePage,
  resolveSignal,
  type TrustAction,
} from './config.js';
import { doctor, gpioDoctor } from './doctor.js';
import { EXIT, exitCodeFor } from './exit.js';
import { HELP } from './help.js';
import { MQTT_OPTIONS, mqttCmd } from './mqtt.js';
import { insecurePageProblem, loadQrRenderer, pairingLink, type QrRenderer } from './page-url.js';
import { sanitizeForTerminal as safe, toJsonLine } from './sanitize.js';
import { runShell } from './shell.js';

/** Process I/O, injectable so tests can run main() in-process. */
export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Env;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  stopSignal: () => Promise<void>;
  /** stdout is a terminal: a QR code may be painted with escape sequences (default false: plain characters). */
  stdoutIsTTY?: boolean;
}

/** Human text must already have every network-originated field through sanitizeForTerminal. */
function makeOutput(io: Io, json: boolean): Output {
  return { json, line: (obj, text) => io.stdout(json ? toJsonLine(obj) : text) };
}

/** One line for a dropped frame (a session `security` code, docs/errors.md), naming who did not send it. */
export function securityText(code: string, peer: 'device' | 'controller'): string {
  const c = safe(code);
  if (code === 'server-invalid') return `${c}: the signaling server sent a frame the protocol does not allow; ignored`;
  if (code.startsWith('peer-direct-')) return `${c}: the ${peer} closed the direct path over a frame that did not come from us; the relay carries on`;
  if (code.startsWith('direct-'))
    return `${c}: dropped a data-channel frame that did not come from the ${peer} and closed the direct path; the relay carries on`;
  return `${c}: dropped a relay frame that did not come from the ${peer}`;
}

function fail(io: Io, e: unknown, json: boolean, extra: Record<string, unknown> = {}): number {
  const code = exitCodeFor(e);
  const err = e instanceof PinholeError ? e : undefined;
  const msg = err ? err.message : `internal error: ${(e as Error)?.stack ?? String(e)}`;
  if (json) io.stdout(toJsonLine({ ok: false, error: err?.code ?? 'internal-error', message: msg, ...extra }));
  // A message may carry what a server or device said: one clean line.
  io.stderr(`pinhole: ${safe(err ? msg : msg.split('\n')[0])}${code === EXIT.usage ? " (see 'pinhole --help')" : ''}`);
  return code;
}

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Flags; positionals: string[] } {
  try {
    const r = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: r.values as Flags, positionals: r.positionals };
  } catch (e) {
    throw new PinholeError('usage', (e as Error).message);
  }
}

/** Runs the CLI on this process's arguments, environment and standard streams; resolves with the exit code. */
export function runProcess(): Promise<number> {
  const stop = new Promise<void>((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => resolve());
    // Whoever read our output has gone (`pinhole signal | head -1`): stop as on SIGTERM, with no stack trace.
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') resolve();
    });
  });
  return main(process.argv.slice(2), {
    stdout: (s) => process.stdout.write(s + '\n'),
    stderr: (s) => process.stderr.write(s + '\n'),
    env: {
      PINHOLE_SERVER: process.env.PINHOLE_SERVER,
      PINHOLE_LIBMRAA: process.env.PINHOLE_LIBMRAA,
      XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME,
      HOME: process.env.HOME,
      PINHOLE_MQTT_USERNAME: process.env.PINHOLE_MQTT_USERNAME,
      PINHOLE_MQTT_PASSWORD: process.env.PINHOLE_MQTT_PASSWORD,
    },
    stopSignal: () => stop,
    stdoutIsTTY: process.stdout.isTTY === true,
  });
}

/** The signaling server, loaded only by the commands that run or serve it: it pulls in prom-client, which every other command would pay for at start-up. */
const loadSignaling = () => import('../signaling/index.js');

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  const json = rest.includes('--json');
  try {
    switch (cmd) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout(HELP.main);
        return cmd === undefined ? EXIT.usage : EXIT.ok;
      case '--version':
      case 'version':
        io.stdout(VERSION);
        io.stdout(`page ${(await loadSignaling()).pageHash() ?? 'not built'} (sha256 of the page's bundle)`);
        return EXIT.ok;
      case 'page':
        return await pageCmd(rest, io);
      case 'signal':
        return await signalCmd(rest, io);
      case 'device':
        return await deviceCmd(rest, io);
      case 'control':
        return await controlCmd(rest, io);
      case 'demo':
        return await demoCmd(rest, io);
      case 'doctor':
        return await doctorCmd(rest, io);
      case 'mqtt': {
        const { values, positionals } = parse(rest, MQTT_OPTIONS);
        if (values.help) return (io.stdout(HELP.mqtt), EXIT.ok);
        return await mqttCmd(values, positionals, io);
      }
      default:
        throw new PinholeError('usage', `unknown command "${cmd}": use signal, device, control, page, mqtt, doctor or demo`);
    }
  } catch (e) {
    return fail(io, e, json);
  }
}

async function pageCmd(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    out: { type: 'string' },
    serve: { type: 'boolean' },
    host: { type: 'string' },
    port: { type: 'string' },
  });
  if (values.help) return (io.stdout(HELP.page), EXIT.ok);
  if (positionals.length) throw new PinholeError('usage', `page takes no arguments, got "${positionals[0]}"`);
  const c = resolvePage(values);
  const { loadPage, PAGE_DIR, servePage } = await loadSignaling();
  const page = loadPage();
  if (!page) throw new PinholeError('usage', `the page is not built (no ${PAGE_DIR}manifest.json): run npm run build`);
  if (c.action === 'out') {
    mkdirSync(c.dir, { recursive: true });
    for (const f of page.manifest.files) copyFileSync(join(PAGE_DIR, f), join(c.dir, f));
    copyFileSync(join(PAGE_DIR, 'manifest.json'), join(c.dir, 'manifest.json'));
    io.stdout(`wrote the page to ${c.dir}: ${page.manifest.files.join(', ')} (bundle sha256 ${page.manifest.hash})`);
    return EXIT.ok;
  }
  const server = createServer((req, res) => {
    if (!servePage(page, req, res)) res.writeHead(404, { 'Content-Length': 0 }).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new PinholeError('usage', `cannot listen on ${c.host}:${c.port}: ${e.code ?? e.message}`)));
    server.listen(c.port, c.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = c.host.includes(':') ? `[${c.host}]` : c.host;
  io.stdout(`serving the page at http://${host}:${port}/ (bundle sha256 ${page.manifest.hash}); give it the server with #server=wss://HOST`);
  await io.stopSignal();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  return EXIT.ok;
}

async function signalCmd(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    host: { type: 'string' },
    port: { type: 'string' },
    'stun-port': { type: 'string' },
    'stun-alt-host': { type: 'string' },
    'stun-host': { type: 'string' },
    'allow-origin': { type: 'string', multiple: true },
    'trust-proxy': { type: 'string', multiple: true },
    'no-page': { type: 'boolean' },
    redis: { type: 'string' },
    'metrics-host': { type: 'string' },
    'metrics-port': { type: 'string' },
  });
  if (values.help) return (io.stdout(HELP.signal), EXIT.ok);
  if (positionals.length) throw new PinholeError('usage', `signal takes no arguments, got "${positionals[0]}"`);
  const c = resolveSignal(values);
  const { startSignalServer } = await loadSignaling();
  const server = await startSignalServer({
    host: c.host,
    port: c.port,
    stunPort: c.stunPort,
    stunAltHost: c.stunAltHost,
    stunHost: c.stunHost,
    allowedOrigins: c.allowedOrigins,
    trustedProxies: c.trustedProxies,
    page: c.page,
    log: io.stdout,
    redis: c.redis,
    metrics: c.metrics,
  });
  await io.stopSignal();
  // goaway to every client, rooms given up in the cluster, then closed: a rolling restart drops nothing.
  await server.drain();
  return EXIT.ok;
}

/** Opens the backend; for chardev also resolves --pins line names into the allowed pins. */
async function openGpio(c: DeviceCliConfig): Promise<{ gpio: Gpio; pins: Set<number> | undefined }> {
  if (c.gpio === 'chardev' && c.chardev) {
    // Loaded only for this backend, like koffi inside it.
    const { openChardev } = await import('../device/gpio/chardev.js');
    const k = c.chardev;
    const gpio = await openChardev({ ...(k.chip !== undefined ? { chip: k.chip } : {}), activeLow: k.activeLow, debounceUs: k.debounceUs });
    try {
      return { gpio, pins: k.pins ? new Set(k.pins.map((p) => gpio.resolvePin(p))) : c.pins };
    } catch (e) {
      gpio.close();
      throw new PinholeError('usage', `--pins: ${(e as Error).message}`);
    }
  }
  return { gpio: await openLegacyGpio(c.gpio === 'mraa' ? 'mraa' : 'sim', c.libmraa), pins: c.pins };
}

async function openLegacyGpio(kind: 'sim' | 'mraa', libmraa: string | undefined): Promise<Gpio> {
  if (kind === 'sim') return new SimGpio();
  try {
    return await openMraa(libmraa ? { libPath: libmraa } : {});
  } catch (e) {
    throw new PinholeError('usage', (e as Error).message);
  }
}

async function deviceCmd(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    server: { type: 'string' },
    code: { type: 'string' },
    'state-dir': { type: 'string' },
    controllers: { type: 'boolean' },
    revoke: { type: 'string' },
    allow: { type: 'string' },
    'read-only': { type: 'string' },
    'max-controllers': { type: 'string' },
    'pair-rights': { type: 'string' },
    'pair-pins': { type: 'string' },
    'no-pairing': { type: 'boolean' },
    'safe-state': { type: 'string' },
    'safe-after': { type: 'string' },
    gpio: { type: 'string' },
    chip: { type: 'string' },
    'active-low': { type: 'string' },
    debounce: { type: 'string' },
    name: { type: 'string' },
    pins: { type: 'string' },
    json: { type: 'boolean' },
    'no-direct': { type: 'boolean' },
    'ice-server': { type: 'string', multiple: true },
    'page-url': { type: 'string' },
    'no-qr': { type: 'boolean' },
  });
  if (values.help) return (io.stdout(HELP.device), EXIT.ok);
  if (positionals.length) throw new PinholeError('usage', `device takes no arguments, got "${positionals[0]}"`);
  const c = resolveDevice(values, io.env);
  if (c.action.kind !== 'run') return trustCmd(c.action, c.stateDir, c.json, io);
  const { gpio, pins } = await openGpio(c);
  const qr = c.qr && c.pairing && !c.json ? await loadQrRenderer() : undefined;
  if (c.pairing && !c.json) {
    const problem = insecurePageProblem(c.pageUrl);
    if (problem) io.stderr(`pinhole: note: ${problem}`);
  }
  const print = deviceEventPrinter(io, { ...c, qr, ansi: io.stdoutIsTTY === true });
  // Listen before start() resolves so the first `code` line is not missed.
  const agent = await DeviceAgent.start({
    server: c.server,
    code: c.code,
    pairing: c.pairing,
    stateDir: c.stateDir,
    ...(c.safeState ? { safeState: c.safeState } : {}),
    name: c.name,
    gpio,
    allowedPins: pins,
    maxControllers: c.maxControllers,
    pairRights: c.pairRights,
    direct: c.direct,
    iceServers: c.iceServers,
    version: VERSION,
    onEvent: print,
  });
  if (!c.json) io.stdout(`device "${c.name}" (${agent.fingerprint}) is online; paired controllers connect with: pinhole control ${c.name} COMMAND`);
  await io.stopSignal();
  await agent.stop();
  gpio.close();
  return EXIT.ok;
}

/**
 * Prints a running device's events: with --json each event as it is, else one
 * line each. Names, codes and messages may come from a controller or the server.
 */
export function deviceEventPrinter(
  io: Pick<Io, 'stdout' | 'stderr'>,
  c: {
    json: boolean;
    maxControllers: number;
    pairRights: Rights;
    /** The signaling server and the controller page, for the pairing link (none: no link). */
    server?: string;
    pageUrl?: string;
    /** Renders the link's QR code; none: no QR. */
    qr?: QrRenderer | undefined;
    /** Paint the QR code with escape sequences (a terminal). */
    ansi?: boolean;
  },
): (e: DeviceEvent) => void {
  // Each connected controller's last live path, for its leave line.
  const paths = new Map<string, Path>();
  const count = (n: number): string => `${n} of ${c.maxControllers} connected`;
  const link = (code: string): string | undefined => (c.server && c.pageUrl ? pairingLink(c.pageUrl, c.server, code) : undefined);
  return (e) => {
    if (c.json) {
      const l = e.event === 'code' ? link(e.code) : undefined;
      return io.stdout(toJsonLine(l === undefined ? e : { ...e, link: l }));
    }
    switch (e.event) {
      case 'code': {
        io.stdout(`pairing code: ${e.code}`);
        const l = link(e.code);
        if (l === undefined) return;
        io.stdout(`pairing link: ${l}`);
        if (c.qr) io.stdout(c.qr(l, c.ansi === true));
        return;
      }
      case 'controller':
        paths.set(e.session, e.path);
        return io.stdout(
          e.paired
            ? `paired with controller "${safe(e.name)}" (${e.fingerprint}); it is now trusted with ${rightsText(c.pairRights)}; on ${e.path}, ${count(e.controllers)}`
            : `controller "${safe(e.name)}" connected (${e.fingerprint}) on ${e.path}; ${count(e.controllers)}`,
        );
      case 'controller-left': {
        const path = paths.get(e.session);
        paths.delete(e.session);
        return io.stdout(
          e.name === undefined
            ? `a controller left before its handshake finished; ${count(e.controllers)}`
            : `controller "${safe(e.name)}" left${path ? ` (was on ${path})` : ''}; ${count(e.controllers)}`,
        );
      }
      case 'path':
        // A session's path drops to none as it ends: its leave line still tells the path it had.
        if (paths.has(e.session) && e.path !== 'none') paths.set(e.session, e.path);
        return io.stdout(`${e.name ? `controller "${safe(e.name)}": ` : ''}path: ${e.previous} -> ${e.path}`);
      case 'busy':
        return io.stderr(`pinhole: refused a controller: device-busy: ${count(e.controllers)} already (--max-controllers)`);
      case 'refused':
        return io.stderr(`pinhole: refused a controller: ${safe(e.code)}: ${safe(e.message)}`);
      case 'security':
        return io.stderr(`pinhole: ${securityText(e.code, 'controller')}`);
      case 'safe-state':
        return io.stdout(
          `no controller for a while: safe state set (${Object.entries(e.pins)
            .map(([p, v]) => `${p}=${v}`)
            .join(', ')})`,
        );
      case 'disconnected':
        return io.stderr(`pinhole: lost the signaling server; retrying in ${e.retryMs} ms`);
      case 'error':
        return io.stderr(`pinhole: ${safe(e.code)}: ${safe(e.message)}`);
    }
  };
}

/** `pinhole device --controllers`, `--revoke`, `--allow` and `--read-only`: work on the trust list, no server needed. */
function trustCmd(action: TrustAction, stateDir: string, json: boolean, io: Io): number {
  const me = loadOrCreateIdentity(stateDir);
  const trusted = TrustedControllers.load(stateDir);
  switch (action.kind) {
    case 'list': {
      const list = trusted.list();
      if (json)
        io.stdout(
          toJsonLine({
            ok: true,
            device: me.fingerprint,
            controllers: list.map((e) => ({ name: e.name, fingerprint: e.fingerprint, addedAt: new Date(e.addedAt).toISOString(), rights: e.rights })),
          }),
        );
      else if (list.length === 0) io.stdout('no trusted controllers (pair one: run the device and give its pairing code to the controller)');
      // Names were chosen by the controllers.
      else for (const e of list) io.stdout(`${safe(e.name)}\t${e.fingerprint}\tpaired ${new Date(e.addedAt).toISOString()}\t${rightsText(e.rights)}`);
      return EXIT.ok;
    }
    case 'revoke': {
      const removed = trusted.revoke(action.who);
      if (removed.length === 0) throw new PinholeError('unknown-controller', `no trusted controller named "${action.who}" (see pinhole device --controllers)`);
      for (const e of removed)
        io.stdout(
          json
            ? toJsonLine({ ok: true, revoked: e.name, fingerprint: e.fingerprint })
            : `revoked "${safe(e.name)}" (${e.fingerprint}); its next connection is refused`,
        );
      return EXIT.ok;
    }
    case 'allow':
    case 'read-only': {
      // --read-only without --pins keeps the pins it had (an unknown NAME is setRights' to refuse).
      const pins = action.pins !== undefined ? action.pins : (trusted.findWho(action.who)?.rights.pins ?? null);
      const e = trusted.setRights(action.who, { access: action.kind === 'allow' ? 'full' : 'read-only', pins });
      io.stdout(
        json
          ? toJsonLine({ ok: true, controller: e.name, fingerprint: e.fingerprint, rights: e.rights })
          : `"${safe(e.name)}" (${e.fingerprint}): ${rightsText(e.rights)}; a running device applies it from the next command`,
      );
      return EXIT.ok;
    }
  }
}

/** Commands that send one request and exit: they run on the relay alone. */
const ONE_SHOT: ReadonlySet<Command['cmd']> = new Set(['write', 'read', 'mode', 'info']);

async function controlCmd(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    server: { type: 'string' },
    code: { type: 'string' },
    'state-dir': { type: 'string' },
    name: { type: 'string' },
    as: { type: 'string' },
    replace: { type: 'boolean' },
    json: { type: 'boolean' },
    timeout: { type: 'string' },
    'no-direct': { type: 'boolean' },
    'ice-server': { type: 'string', multiple: true },
    ...COMMAND_OPTIONS,
  });
  if (values.help) return (io.stdout(HELP.control), EXIT.ok);
  const { config: c, command: cmdArgs } = resolveControl(values, io.env, positionals);
  const command = buildCommand(cmdArgs, values);
  const out = makeOutput(io, c.json);
  // One request and out: the relay answers at once, while the direct path would cost werift's load and an ICE attempt.
  const direct = c.direct && !ONE_SHOT.has(command.cmd);
  let dev: Device | undefined;
  try {
    dev = await connect({
      ...(c.server !== undefined ? { server: c.server } : {}),
      ...(c.code !== undefined ? { code: c.code } : { device: c.device! }),
      stateDir: c.stateDir,
      name: c.name,
      ...(c.as !== undefined ? { as: c.as } : {}),
      replace: c.replace,
      timeoutMs: c.timeoutMs,
      direct,
      iceServers: c.iceServers,
    });
    if (dev.pairedAs) {
      const name = safe(dev.pairedAs.name); // the device chose it, unless --as did
      io.stderr(
        `pinhole: paired with device "${name}" (${dev.fingerprint})${dev.pairedAs.replaced ? ', replacing the one saved under that name' : ''}; from now on: pinhole control ${name} COMMAND`,
      );
    }
    dev.on('security', (code) => (c.json ? out.line({ event: 'security', code }, '') : io.stderr(`pinhole: ${securityText(code, 'device')}`)));
    // Why a session stays on the relay: one line per failed direct attempt.
    dev.on('direct-failed', (f) =>
      c.json
        ? out.line({ event: 'direct-failed', ...f }, '')
        : io.stderr(
            `pinhole: direct attempt ${f.attempt + 1} failed (${f.cause})${f.retryMs !== undefined ? `; next in ${(f.retryMs / 1000).toFixed(0)} s` : ''}; commands go through the relay`,
          ),
    );
    if (command.cmd === 'shell') return await runShell(dev, out, io);
    await runCommand(dev, command, out, io.stopSignal());
    return EXIT.ok;
  } catch (e) {
    return fail(io, e, c.json, { cmd: command.cmd, path: dev?.path ?? 'none' });
  } finally {
    await dev?.close();
  }
}

async function doctorCmd(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    server: { type: 'string' },
    json: { type: 'boolean' },
    timeout: { type: 'string' },
    gpio: { type: 'boolean' },
  });
  if (values.help) return (io.stdout(HELP.doctor), EXIT.ok);
  if (positionals.length) throw new PinholeError('usage', `doctor takes no arguments, got "${positionals[0]}"`);
  if (values.gpio === true) return (await gpioDoctor(values.json === true, io.stdout), EXIT.ok);
  const c = resolveDoctor(values, io.env);
  await doctor(c, io.stdout);
  return EXIT.ok;
}

async function demoCmd(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, 'no-direct': { type: 'boolean' }, ...COMMAND_OPTIONS });
  if (values.help) return (io.stdout(HELP.demo), EXIT.ok);
  if (positionals.length) throw new PinholeError('usage', `demo takes no arguments, got "${positionals[0]}"`);
  const cmd = buildCommand(['blink', '20'], { times: values.times, interval: values.interval });
  if (cmd.cmd !== 'blink') throw new Error('unreachable');
  const { runDemo } = await import('./demo.js');
  return runDemo({ times: cmd.times, intervalMs: cmd.intervalMs, direct: values['no-direct'] !== true, out: makeOutput(io, values.json === true) });
}
