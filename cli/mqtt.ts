/**
 * `pinhole mqtt --broker URL DEVICE...`: paired devices on an MQTT broker
 * with Home Assistant discovery (mqtt/, docs/mqtt.md). MQTT.js loads only
 * when this command runs.
 */
import { readFileSync } from 'node:fs';
import type { BridgeEvent } from '../mqtt/bridge.js';
import { PinholeError, VERSION } from '../protocol/index.js';
import { compactPins } from './commands.js';
import type { Env, Flags, MqttCliConfig } from './config.js';
import { resolveMqtt } from './config.js';
import { EXIT } from './exit.js';
import { sanitizeForTerminal as safe, toJsonLine } from './sanitize.js';

/** Flags of `pinhole mqtt`, for parseArgs. */
export const MQTT_OPTIONS = {
  broker: { type: 'string' },
  username: { type: 'string' },
  'password-file': { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  outputs: { type: 'string' },
  inputs: { type: 'string' },
  prefix: { type: 'string' },
  'discovery-prefix': { type: 'string' },
  'blink-times': { type: 'string' },
  'blink-interval': { type: 'string' },
  'state-dir': { type: 'string' },
  name: { type: 'string' },
  timeout: { type: 'string' },
  'no-direct': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

interface MqttIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Env;
  stopSignal: () => Promise<void>;
}

/** A file named by a flag; a failure names the flag and the reason, never the content. */
function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new PinholeError('usage', `cannot read --${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** The password, read from its file if it is in one (one trailing line break dropped). */
function passwordOf(c: MqttCliConfig): string | undefined {
  const p = c.password;
  if (p === undefined) return undefined;
  if (p.from !== 'file') return p.value;
  return readFlagFile('password-file', p.path)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Runs the bridge until SIGINT/SIGTERM (exit 0) or a refusal of the broker (exit 3). */
export async function mqttCmd(values: Flags, positionals: string[], io: MqttIo): Promise<number> {
  const c = resolveMqtt(values, io.env, positionals);
  const password = passwordOf(c);
  const ca = c.ca !== undefined ? readFlagFile('ca', c.ca) : undefined;
  const cert = c.cert !== undefined ? readFlagFile('cert', c.cert) : undefined;
  const key = c.key !== undefined ? readFlagFile('key', c.key) : undefined;
  if (c.passwordInArgv && !c.json)
    io.stderr('pinhole: note: a password in --broker can be read by other users of this machine (ps); prefer PINHOLE_MQTT_PASSWORD or --password-file');
  const { startMqttBridge } = await import('../mqtt/index.js');
  const print = mqttEventPrinter(io, c.json);
  const bridge = await startMqttBridge({
    broker: {
      url: c.broker,
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
    },
    devices: c.devices,
    outputs: c.outputs,
    inputs: c.inputs,
    prefix: c.prefix,
    discoveryPrefix: c.discoveryPrefix,
    blink: c.blink,
    stateDir: c.stateDir,
    name: c.name,
    timeoutMs: c.timeoutMs,
    direct: c.direct,
    version: VERSION,
    log: print,
  });
  try {
    await Promise.race([io.stopSignal(), bridge.refused]);
  } finally {
    await bridge.stop();
  }
  return EXIT.ok;
}

/**
 * Prints the bridge's events: with --json each as it is, else one line each.
 * Topics, payloads, messages and device fields may come from the network.
 */
export function mqttEventPrinter(io: Pick<MqttIo, 'stdout' | 'stderr'>, json: boolean): (e: BridgeEvent) => void {
  return (e) => {
    if (json) return io.stdout(toJsonLine(e));
    const d = `"${safe(e.device)}"`;
    switch (e.event) {
      case 'broker':
        return e.state === 'connected'
          ? io.stdout(`${d}: connected to the broker ${safe(e.broker)}${e.sessionPresent ? ' (session resumed)' : ''}`)
          : io.stderr(`pinhole: ${d}: lost the broker ${safe(e.broker)}; reconnecting`);
      case 'broker-error':
        return io.stderr(`pinhole: ${d}: broker ${safe(e.broker)}: ${safe(e.message)}`);
      case 'online': {
        const list = (pins: number[]): string => (pins.length ? compactPins(pins) : 'none');
        return io.stdout(
          `${d} online (${safe(e.fingerprint)}) on ${e.path}${e.reconnected ? ', reconnected' : ''}: switches and blink buttons ${list(e.outputs)}, binary sensors ${list(e.inputs)}`,
        );
      }
      case 'offline':
        return io.stdout(`${d} offline (${safe(e.error)}); availability offline until it is back`);
      case 'connect-failed':
        return io.stderr(`pinhole: ${d}: cannot connect (${safe(e.error)}: ${safe(e.message)}); retrying`);
      case 'republished':
        return io.stdout(
          `${d}: published ${e.configs} discovery configs, the states and availability again (${e.why === 'birth' ? 'Home Assistant started' : 'the broker is back'})`,
        );
      case 'resync':
        return io.stdout(`${d}: pin ${e.pin} is ${e.value} after the reconnect${e.value !== e.previous ? ` (was ${e.previous})` : ''}`);
      case 'command':
        return e.ok
          ? io.stdout(`${d}: pin ${e.pin} ${e.action === 'set' ? `<- ${safe(e.payload)}` : 'blinked'} from MQTT   (${e.path}, ${e.ms} ms)`)
          : io.stderr(`pinhole: ${d}: pin ${e.pin} ${e.action} ${safe(e.payload)} from MQTT failed: ${safe(e.error)}: ${safe(e.message)}`);
      case 'ignored':
        return io.stderr(`pinhole: ${d}: ignored ${IGNORED_TEXT[e.reason]} on ${safe(e.topic)}: ${JSON.stringify(safe(e.payload))}`);
      case 'pin-skipped':
        return io.stderr(`pinhole: ${d}: pin ${e.pin} left out (${safe(e.error)}: ${safe(e.message)})`);
    }
  };
}

const IGNORED_TEXT: Record<Extract<BridgeEvent, { event: 'ignored' }>['reason'], string> = {
  malformed: 'a malformed message',
  duplicate: 'a redelivered copy of a command already run',
  'not-an-output': 'a command for a pin that is not an output',
  offline: 'a command while the device has not been reached yet',
};
