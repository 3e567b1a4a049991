// MraaGpio against real libmraa built for its MOCK platform by
// test/setup/build-libmraa-mock.sh. The mock board has 10 pins of which only
// pin 0 is a GPIO; its GPIO has no ISR, so edges come from the polling
// fallback and from this process's own writes.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { PinChange } from '../../device/gpio/gpio.js';
import { type MraaGpio, openMraa } from '../../device/gpio/mraa.js';
import { PinholeError } from '../../protocol/errors.js';
import { pair, runCli, spawnDevice, startServer } from './helpers.js';

// dist/test/integration/ -> repo root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MOCK_LIB = `${ROOT}.build/libmraa-mock/lib/libmraa.so`;
/** Longer than several poll periods, so a poll-driven edge would have shown. */
const SETTLE_MS = 100;

function code(c: string): (e: unknown) => boolean {
  return (e) => e instanceof PinholeError && e.code === c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const opened: MraaGpio[] = [];
async function open(): Promise<MraaGpio> {
  assert.ok(existsSync(MOCK_LIB), `mock libmraa not built at ${MOCK_LIB}: run bash test/setup/build-libmraa-mock.sh first`);
  const g = await openMraa({ libPath: MOCK_LIB });
  opened.push(g);
  return g;
}
after(() => {
  for (const g of opened) g.close();
});

test('mock board: backend, board name and GPIO pins', async () => {
  const g = await open();
  assert.equal(g.backend, 'mraa');
  assert.equal(g.board, 'MRAA mock platform');
  assert.deepEqual(g.pins(), [0]); // pins 1..9 are ADC/I2C/SPI/UART on the mock
});

test('write on an unconfigured pin makes it an output; read returns the latch', async () => {
  const g = await open();
  assert.equal(g.mode(0), undefined);
  g.write(0, 1);
  assert.equal(g.mode(0), 'out');
  assert.equal(g.read(0), 1);
  g.write(0, 0);
  assert.equal(g.read(0), 0);
});

test('read on an unconfigured pin makes it an input', async () => {
  const g = await open();
  assert.equal(g.read(0), 0); // the mock starts its GPIO as input, low
  assert.equal(g.mode(0), 'in');
});

test('write on an input throws pin-mode; setMode out then allows it', async () => {
  const g = await open();
  g.setMode(0, 'in');
  assert.equal(g.mode(0), 'in');
  assert.throws(() => g.write(0, 1), code('pin-mode'));
  g.setMode(0, 'out');
  g.write(0, 1);
  assert.equal(g.read(0), 1);
});

test('non-GPIO and absent pins throw no-such-pin', async () => {
  const g = await open();
  for (const pin of [1, 9, 10, 99, -1]) {
    assert.throws(() => g.read(pin), code('no-such-pin'), `read(${pin})`);
    assert.throws(() => g.write(pin, 1), code('no-such-pin'), `write(${pin})`);
    assert.throws(() => g.watch(pin, () => {}), code('no-such-pin'), `watch(${pin})`);
  }
});

test('watch: falls back to polling on the mock and reports write edges once', async () => {
  const g = await open();
  g.setMode(0, 'out');
  const seen: PinChange[] = [];
  const off = g.watch(0, (c) => seen.push(c));
  assert.equal(g.edgeSource(0), 'poll'); // mock: mraa_gpio_isr is not implemented
  g.write(0, 1);
  g.write(0, 1); // same value: no edge
  await sleep(SETTLE_MS); // the poller must not report the same change again
  g.write(0, 0);
  await sleep(SETTLE_MS);
  assert.deepEqual(
    seen.map((c) => [c.pin, c.value, c.edge]),
    [
      [0, 1, 'rising'],
      [0, 0, 'falling'],
    ],
  );
  assert.ok(seen[0]!.ts <= seen[1]!.ts);
  off();
  assert.equal(g.edgeSource(0), undefined);
  g.write(0, 1);
  await sleep(SETTLE_MS);
  assert.equal(seen.length, 2);
});

test('close releases the pins; later calls fail', async () => {
  const g = await open();
  g.watch(0, () => {});
  g.write(0, 1);
  g.close();
  g.close(); // idempotent
  assert.throws(() => g.read(0), PinholeError);
});

test('a bad library path gives backend-unavailable with the fix in the message', async () => {
  await assert.rejects(openMraa({ libPath: '/nonexistent/libmraa.so' }), (e: unknown) => {
    assert.ok(e instanceof PinholeError);
    assert.equal(e.code, 'backend-unavailable');
    assert.match(e.message, /PINHOLE_LIBMRAA/);
    return true;
  });
});

test('a library that is not libmraa gives backend-unavailable', async () => {
  // libc loads fine but has no mraa_* symbols.
  await assert.rejects(openMraa({ libPath: 'libc.so.6' }), code('backend-unavailable'));
});

test('issue 4: `pinhole device --gpio mraa` on the mock board serves a paired controller by name', async () => {
  assert.ok(existsSync(MOCK_LIB), `mock libmraa not built at ${MOCK_LIB}: run bash test/setup/build-libmraa-mock.sh first`);
  const server = await startServer();
  const dev = await spawnDevice(server, { name: 'mock-board', args: ['--gpio', 'mraa'], env: { PINHOLE_LIBMRAA: MOCK_LIB } });
  try {
    const laptop = await pair(server, dev); // once; every command below goes by name
    assert.deepEqual([laptop.info.backend, laptop.info.board], ['mraa', 'MRAA mock platform']);
    const ctl = (...args: string[]) => runCli(['control', 'mock-board', '--state-dir', laptop.stateDir, '--json', ...args]);
    const w = await ctl('write', '0', '1');
    assert.equal(w.code, 0, w.stderr);
    const r = await ctl('read', '0');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.at(-1)!.value, 1);
    const bad = await ctl('write', '1', '1'); // an ADC pin on the mock
    assert.equal(bad.code, 5, bad.stderr);
    assert.equal(bad.json.at(-1)!.error, 'no-such-pin');
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  } finally {
    assert.equal(await dev.stop(), 0);
    await server.close();
  }
});
