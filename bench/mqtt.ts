/**
 * `pinhole mqtt` latency: a real mosquitto on loopback, a device agent on the
 * simulated board, and the bridge in this process as a paired controller on
 * the direct path. Two one-way figures, each timed from where it starts to
 * where it lands:
 *
 * - MQTT set → pin: an MQTT client publishes ON/OFF (QoS 1) on the set topic;
 *   done when the device's board sees the pin change.
 * - edge → state: the board's input changes; done when the MQTT client gets
 *   the state message.
 *
 * run.ts times them beside the controller API's write round trip (openCommands,
 * direct) in the same run.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { connect } from '../controller/index.js';
import type { SimGpio } from '../device/index.js';
import { type MqttBridge, startMqttBridge } from '../mqtt/index.js';
import type { Level } from '../protocol/index.js';
import { VERSION } from '../protocol/version.js';
import { findMosquitto, type Mosquitto, startMosquitto } from '../test/integration/mosquitto.js';
import { BENCH_PIN, COMMAND_TIMEOUT_MS, controllerState, DIRECT_TIMEOUT_MS, startDevice } from './pinhole.js';
import { type Runner, withTimeout } from './stats.js';

/** The input pin whose edges the bench drives. */
export const BENCH_INPUT_PIN = 5;
/** Longest wait for one MQTT figure's sample, in ms: far above any loopback latency, so a lost message fails the run instead of hanging it. */
const SAMPLE_TIMEOUT_MS = 5_000;
/** Poll period while waiting for the device's end of the direct path, in ms. */
const POLL_MS = 20;

/** Why the MQTT group cannot run here, or undefined when it can. */
export function mqttUnavailable(): string | undefined {
  return findMosquitto() === undefined ? 'mosquitto is not installed (apt-get install mosquitto)' : undefined;
}

/** Everything the two figures share; `set` and `edge` make their runners. */
export interface MqttRig {
  set(): Runner;
  edge(): Runner;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(POLL_MS);
  }
}

/** Starts mosquitto, a device, a paired controller state and the bridge on the direct path. */
export async function openMqttRig(url: string): Promise<MqttRig> {
  const closers: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const broker: Mosquitto = await startMosquitto();
    closers.push(() => broker.stop());
    const { agent, sim } = await startDevice(url, true);
    closers.push(async () => {
      await agent.stop();
      sim.close();
    });
    const stateDir = await controllerState();
    const pairing = await connect({
      server: url,
      code: agent.pairingCode!,
      stateDir,
      name: 'bench-mqtt',
      replace: true,
      timeoutMs: COMMAND_TIMEOUT_MS,
      direct: false,
    });
    const name = pairing.pairedAs?.name;
    await pairing.close();
    if (!name) throw new Error('the bench controller did not pair');
    let online!: () => void;
    const isOnline = new Promise<void>((r) => (online = r));
    const bridge: MqttBridge = await startMqttBridge({
      broker: { url: broker.url },
      devices: [name],
      outputs: [BENCH_PIN],
      inputs: [BENCH_INPUT_PIN],
      prefix: 'pinhole',
      discoveryPrefix: 'homeassistant',
      blink: {},
      stateDir,
      name: 'bench-mqtt',
      timeoutMs: COMMAND_TIMEOUT_MS,
      direct: true,
      version: VERSION,
      log: (e) => {
        if (e.event === 'online') online();
      },
    });
    closers.push(() => bridge.stop());
    await isOnline;
    const dev = bridge.bridges.get(name)!.device!;
    if (!(await dev.whenDirect(DIRECT_TIMEOUT_MS))) throw new Error('the bridge did not get a direct path');
    await until(() => agent.path === 'direct', DIRECT_TIMEOUT_MS, 'the device on the direct path');
    const topics = bridge.bridges.get(name)!.topics;
    const client: MqttClient = await connectAsync(broker.url, { clean: true, reconnectPeriod: 0 });
    // A latency-minded client: no Nagle delay on its small publishes (the bridge does the same).
    (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    closers.push(() => client.endAsync(true));
    await client.subscribeAsync(topics.state(BENCH_INPUT_PIN), { qos: 1 });
    const verify = (): void => {
      const paths = `${dev.path}/${agent.path}`;
      if (paths !== 'direct/direct') throw new Error(`path changed during the run: bridge/device ${paths}, wanted direct`);
    };
    return {
      set: () => setRunner(client, topics.set(BENCH_PIN), sim, verify),
      edge: () => edgeRunner(client, topics.state(BENCH_INPUT_PIN), sim, verify),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Publishes ON/OFF in turn; each sample ends when the board's pin has the new level. */
function setRunner(client: MqttClient, topic: string, sim: SimGpio, verify: () => void): Runner {
  let value: Level = sim.read(BENCH_PIN);
  return {
    roundTrip: () => {
      value = value === 1 ? 0 : 1;
      const want = value;
      const landed = new Promise<void>((resolve) => {
        const off = sim.watch(BENCH_PIN, (c) => {
          if (c.value !== want) return;
          off();
          resolve();
        });
      });
      client.publish(topic, want === 1 ? 'ON' : 'OFF', { qos: 1 });
      return withTimeout(landed, SAMPLE_TIMEOUT_MS, 'MQTT set -> pin');
    },
    verify,
    close: async () => undefined,
  };
}

/** Drives the input up and down in turn; each sample ends when the state message says so. */
function edgeRunner(client: MqttClient, topic: string, sim: SimGpio, verify: () => void): Runner {
  let value: Level = sim.read(BENCH_INPUT_PIN);
  let waiting: { want: string; resolve: () => void } | undefined;
  client.on('message', (t, payload) => {
    if (t === topic && waiting && payload.toString('utf8') === waiting.want) {
      const w = waiting;
      waiting = undefined;
      w.resolve();
    }
  });
  return {
    roundTrip: () => {
      value = value === 1 ? 0 : 1;
      const published = new Promise<void>((resolve) => (waiting = { want: value === 1 ? 'ON' : 'OFF', resolve }));
      sim.drive(BENCH_INPUT_PIN, value);
      return withTimeout(published, SAMPLE_TIMEOUT_MS, 'edge -> state');
    },
    verify,
    close: async () => undefined,
  };
}
