/**
 * `npm run bench:gpio`: the chardev backend against the kernel's gpio-sim,
 * inside the GPIO tier's VM (test/setup/gpio-vm.sh --bench). Side by side:
 *
 *   - write → line value: from a write (the backend's own, and a
 *     controller's over the direct path) until gpio-sim's sysfs shows the level;
 *   - edge → controller `change`: from the kernel's edge timestamp (and from
 *     the moment the input was driven) until the controller's `change` event;
 *   - the raw ioctl round trip from a Node loop (GPIO_V2_LINE_GET_VALUES and
 *     GPIO_V2_LINE_SET_VALUES through koffi).
 *
 * Under TCG (software emulation) every figure is several times what a real
 * board shows; compare them with each other, not with hardware.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Change, connect } from '../controller/index.js';
import { monotonicMs, openChardev } from '../device/gpio/chardev.js';
import { DeviceAgent, type DeviceEvent } from '../device/index.js';
import { VERSION } from '../protocol/index.js';
import { resolveSignalConfig, startSignalServer } from '../signaling/index.js';
import { type Summary, summarize } from './stats.js';

/** Timed iterations of each latency figure (each takes a few ms under TCG). */
const ITERATIONS = 200;
/** Iterations of the raw ioctl loop. */
const IOCTL_ITERATIONS = 20_000;
/** Under TCG werift's DTLS and ICE are slow: the direct path may take many seconds. */
const DIRECT_WAIT_MS = 60_000;
/** Longest wait for one level or edge before the bench gives up. */
const STEP_TIMEOUT_MS = 5_000;

const CONFIGFS = process.env.PINHOLE_GPIO_VM_SIMDEV ?? '/sys/kernel/config/gpio-sim/pinhole';
const CHIP = process.env.PINHOLE_GPIO_VM_CHIP ?? 'pinhole-sim';

function simDir(): string {
  const dev = readFileSync(join(CONFIGFS, 'dev_name'), 'utf8').trim();
  const chip = readFileSync(join(CONFIGFS, 'gpio-bank0', 'chip_name'), 'utf8').trim();
  return join('/sys/devices/platform', dev, chip);
}

async function main(): Promise<void> {
  if (process.env.PINHOLE_GPIO_VM !== '1') {
    console.error('bench:gpio runs inside the GPIO tier VM: npm run bench:gpio (bash test/setup/gpio-vm.sh --bench)');
    process.exit(1);
  }
  const dir = simDir();
  const value = (o: number): string => readFileSync(join(dir, `sim_gpio${o}`, 'value'), 'utf8').trim();
  const pull = (o: number, v: 0 | 1): void => writeFileSync(join(dir, `sim_gpio${o}`, 'pull'), v ? 'pull-up' : 'pull-down');
  const rows: [string, Summary][] = [];
  const gpio = await openChardev({ chip: CHIP });

  // Raw ioctls: one GET_VALUES per read of an input, one SET_VALUES per write of an output.
  gpio.read(3);
  let t = performance.now();
  for (let i = 0; i < IOCTL_ITERATIONS; i++) gpio.read(3);
  const getUs = ((performance.now() - t) * 1000) / IOCTL_ITERATIONS;
  gpio.write(4, 0);
  t = performance.now();
  for (let i = 0; i < IOCTL_ITERATIONS; i++) gpio.write(4, (i & 1) as 0 | 1);
  const setUs = ((performance.now() - t) * 1000) / IOCTL_ITERATIONS;

  // Backend write → line value (sysfs read included).
  const local: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const v = (i & 1) as 0 | 1;
    const t0 = performance.now();
    gpio.write(0, v);
    while (value(0) !== String(v)) if (performance.now() - t0 > STEP_TIMEOUT_MS) throw new Error('line 0 did not follow');
    local.push(performance.now() - t0);
  }
  rows.push(['write → line value, backend', summarize(local)]);

  const server = await startSignalServer(resolveSignalConfig({ host: '127.0.0.1', port: 0, stunPort: 0, log: () => undefined }));
  const events: DeviceEvent[] = [];
  const agent = await DeviceAgent.start({
    server: server.url,
    name: 'bench-board',
    stateDir: mkdtempSync(join(tmpdir(), 'pinhole-bench-dev-')),
    gpio,
    version: VERSION,
    onEvent: (e) => events.push(e),
  });
  const code = await until(() => events.find((e) => e.event === 'code')?.code);
  const dev = await connect({ server: server.url, code, stateDir: mkdtempSync(join(tmpdir(), 'pinhole-bench-ctl-')), name: 'bench', timeoutMs: 30_000 });
  const direct = await dev.whenDirect(DIRECT_WAIT_MS);

  // Controller write → line value: sysfs polled on the event loop while the write travels.
  const remote: number[] = [];
  const rtt: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const v = (i & 1) as 0 | 1;
    const t0 = performance.now();
    let seen = 0;
    let done = false;
    const watch = (): void => {
      if (done) return;
      if (value(1) === String(v)) seen = performance.now() - t0;
      else setImmediate(watch);
    };
    setImmediate(watch);
    await dev.write(1, v);
    rtt.push(performance.now() - t0);
    await until(() => seen > 0 || undefined);
    done = true;
    remote.push(seen);
  }
  rows.push([`write → line value, controller (${dev.path})`, summarize(remote)]);
  rows.push([`write round trip, controller (${dev.path})`, summarize(rtt)]);

  // Edge → controller change: from the kernel timestamp, and from the drive.
  pull(5, 0);
  await dev.watch(5);
  const fromKernel: number[] = [];
  const fromDrive: number[] = [];
  let last: Change | undefined;
  let at = 0;
  dev.on('change', (c) => {
    last = c;
    at = monotonicMs();
  });
  for (let i = 0; i < ITERATIONS; i++) {
    const v = ((i + 1) & 1) as 0 | 1;
    last = undefined;
    const t0 = monotonicMs();
    pull(5, v);
    const c = await until(() => (last?.value === v ? last : undefined));
    fromKernel.push(at - c.ts);
    fromDrive.push(at - t0);
  }
  rows.push([`edge → change, from kernel ts (${dev.path})`, summarize(fromKernel)]);
  rows.push([`edge → change, from drive (${dev.path})`, summarize(fromDrive)]);

  await dev.close();
  await agent.stop();
  gpio.close();
  await server.close();

  const f = (x: number): string => x.toFixed(3).padStart(9);
  console.log(`\nbench:gpio on ${gpio.board}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, direct path: ${direct ? 'yes' : 'no'}`);
  console.log(`${'figure (ms)'.padEnd(46)}${'p50'.padStart(9)}${'mean'.padStart(9)}${'p99'.padStart(9)}${'min'.padStart(9)}${'max'.padStart(9)}     n`);
  for (const [name, s] of rows) console.log(`${name.padEnd(46)}${f(s.p50)}${f(s.mean)}${f(s.p99)}${f(s.min)}${f(s.max)}  ${String(s.n).padStart(4)}`);
  console.log(`${'raw ioctl GET_VALUES, Node loop'.padEnd(46)}${f(getUs / 1000)}  (${getUs.toFixed(2)} µs per call, ${IOCTL_ITERATIONS} calls)`);
  console.log(`${'raw ioctl SET_VALUES, Node loop'.padEnd(46)}${f(setUs / 1000)}  (${setUs.toFixed(2)} µs per call, ${IOCTL_ITERATIONS} calls)`);
}

/** Waits for `get` to return a value, yielding to the event loop between tries. */
async function until<T>(get: () => T | undefined): Promise<T> {
  const end = performance.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (performance.now() > end) throw new Error('bench:gpio: timed out');
    await new Promise((r) => setImmediate(r));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
