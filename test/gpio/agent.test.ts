// A full pinhole device agent on --gpio chardev, driven by a controller, on
// loopback inside the GPIO tier's VM (a signaling server in the same VM).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Change, connect, type Device } from '../../controller/index.js';
import { type ChardevGpio, openChardev } from '../../device/gpio/chardev.js';
import { LINE_FLAG } from '../../device/gpio/uapi.js';
import { DeviceAgent, type DeviceEvent } from '../../device/index.js';
import { VERSION } from '../../protocol/index.js';
import type { SignalServer } from '../../signaling/index.js';
import { pair, runCli, spawnDevice, startServer, stateDir, waitFor } from '../integration/helpers.js';
import { CHIP_LABEL, drive, LINE_NAMES, requireVm, simPull, simValue, until } from './sim-chip.js';

/** Under TCG werift's DTLS and ICE are slow: the direct path may take many seconds. */
const DIRECT_WAIT_MS = 60_000;

let server: SignalServer;
before(async () => {
  requireVm();
  server = await startServer();
});
after(async () => {
  await server?.close();
});

test('a device agent on chardev: write, read, mode with pull, watch with kernel edges, info with line names, over the direct path', async () => {
  const gpio: ChardevGpio = await openChardev({ chip: CHIP_LABEL, debounceUs: [['GPIO22', 1000]] });
  const events: DeviceEvent[] = [];
  const agent = await DeviceAgent.start({
    server: server.url,
    name: 'vm-board',
    stateDir: stateDir('vm-device'),
    gpio,
    allowedPins: new Set([0, 2, 5]),
    version: VERSION,
    onEvent: (e) => events.push(e),
  });
  let dev: Device | undefined;
  try {
    const code = await waitFor(() => events.find((e) => e.event === 'code')?.code, 5000, 'a pairing code');
    dev = await connect({ server: server.url, code, stateDir: stateDir('vm-controller'), name: 'vm-laptop', timeoutMs: 30_000 });
    assert.ok(await dev.whenDirect(DIRECT_WAIT_MS), 'the direct path came up');
    await dev.write(0, 1);
    assert.equal(simValue(0), 1);
    assert.equal(await dev.read(0), 1);
    await dev.call('gpio.mode', { pin: 2, mode: 'in', pull: 'up' });
    assert.equal(simPull(2), 'pull-up');
    assert.equal(await dev.read(2), 1);
    assert.ok(gpio.lineInfo(2).flags & LINE_FLAG.BIAS_PULL_UP);
    const info = await dev.info();
    assert.equal(info.backend, 'chardev');
    assert.deepEqual(info.pins, [0, 2, 5]);
    assert.deepEqual(
      info.lines?.map((l) => [l.pin, l.name]),
      [
        [0, LINE_NAMES[0]],
        [2, LINE_NAMES[2]],
        [5, LINE_NAMES[5]],
      ],
    );
    const changes: Change[] = [];
    dev.on('change', (c) => changes.push(c));
    drive(5, 0);
    assert.equal(await dev.watch(5), 0);
    drive(5, 1);
    await until(() => changes.length >= 1, 10_000, 'the rising edge at the controller');
    assert.deepEqual([changes[0]!.pin, changes[0]!.value, changes[0]!.edge, changes[0]!.by], [5, 1, 'rising', 'input']);
    assert.equal(dev.path, 'direct');
    await assert.rejects(dev.read(1), (e: unknown) => (e as { code?: string }).code === 'pin-not-allowed');
  } finally {
    await dev?.close();
    await agent.stop();
    gpio.close();
  }
});

test('pinhole device --gpio chardev --pins by line name: serves them, refuses a busy line with pin-busy, releases its lines on SIGTERM', async () => {
  const probe = await openChardev({ chip: CHIP_LABEL });
  try {
    probe.write(4, 1); // held by this process: the device gets pin-busy for it
    const d = await spawnDevice(server, { args: ['--gpio', 'chardev', '--chip', CHIP_LABEL, '--pins', 'GPIO17,GPIO18,GPIO21', '--no-direct'] });
    const c = await pair(server, d);
    assert.deepEqual(c.info.pins, [0, 1, 4]);
    const w = await runCli(['control', c.device, '--state-dir', c.stateDir, '--json', 'write', '1', '1']);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(simValue(1), 1);
    assert.equal(probe.lineInfo(1).consumer, 'pinhole');
    const busy = await runCli(['control', c.device, '--state-dir', c.stateDir, '--json', 'write', '4', '0']);
    assert.equal(busy.code, 5);
    assert.equal(busy.json.at(-1)?.error, 'pin-busy');
    const m = await runCli(['control', c.device, '--state-dir', c.stateDir, '--json', 'mode', '0', 'in', '--pull', 'down']);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(simPull(0), 'pull-down');
    assert.equal(await d.stop(), 0);
    for (const pin of [0, 1]) assert.equal(probe.lineInfo(pin).flags & LINE_FLAG.USED, 0, `line ${pin} released`);
  } finally {
    probe.close();
  }
});

test('pinhole doctor --gpio lists the chip, its label, its line names and who holds them', async () => {
  const r = await runCli(['doctor', '--gpio']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`'${CHIP_LABEL}', 8 lines`));
  assert.match(r.stdout, /GPIO24\s+out\s+used by 'kernel-hog'/);
  assert.match(r.stdout, /GPIO17\s+in\s+free/);
  const j = await runCli(['doctor', '--gpio', '--json']);
  const chip = (j.json.at(-1)!.chips as { info?: { label: string }; lines?: { name: string }[] }[]).find((c) => c.info?.label === CHIP_LABEL);
  assert.deepEqual(
    chip?.lines?.map((l) => l.name),
    LINE_NAMES,
  );
});
