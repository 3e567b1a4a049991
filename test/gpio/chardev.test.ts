// The chardev backend against the real kernel GPIO uAPI v2 and gpio-sim,
// inside the GPIO tier's VM (npm run test:gpio).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, statSync } from 'node:fs';
import { afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CHARDEV_CONSUMER, type ChardevGpio, GPIO_UDEV_RULE, inspectChips, monotonicMs, openChardev } from '../../device/gpio/chardev.js';
import type { PinChange } from '../../device/gpio/gpio.js';
import { LINE_FLAG } from '../../device/gpio/uapi.js';
import { PinholeError } from '../../protocol/errors.js';
import {
  CHIP_LABEL,
  chipPath,
  drive,
  GPIO_GID,
  HOG_CONSUMER,
  HOGGED_LINE,
  LINE_NAMES,
  NOGPIO_UID,
  requireVm,
  simPull,
  simValue,
  sleep,
  until,
} from './sim-chip.js';

const CHARDEV_JS = fileURLToPath(new URL('../../device/gpio/chardev.js', import.meta.url));

function code(c: string): (e: unknown) => boolean {
  return (e) => e instanceof PinholeError && e.code === c;
}

const opened: ChardevGpio[] = [];
async function open(opts: Parameters<typeof openChardev>[0] = {}): Promise<ChardevGpio> {
  const g = await openChardev({ chip: CHIP_LABEL, ...opts });
  opened.push(g);
  return g;
}
before(requireVm);
// Each test starts with every line free.
afterEach(() => {
  for (const g of opened.splice(0)) g.close();
});

/** Runs a snippet in a child node (ESM) with `m` = the chardev module; resolves with its stdout's last JSON line and exit code. */
function child(
  snippet: string,
  opts: { uid?: number; gid?: number } = {},
): Promise<{ code: number | null; out: Record<string, unknown> | undefined; stderr: string }> {
  const src = `const m = await import(${JSON.stringify(CHARDEV_JS)});\n${snippet}`;
  const p = spawn(process.execPath, ['--input-type=module', '-e', src], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) =>
    p.on('exit', (c) => {
      const last = out.trim().split('\n').at(-1);
      resolve({ code: c, out: last ? JSON.parse(last) : undefined, stderr: err });
    }),
  );
}

describe('chip and pin names', () => {
  test('the chip by label, by kernel name, by path, and as the only chip', async () => {
    const path = chipPath();
    for (const chip of [CHIP_LABEL, path, path.slice('/dev/'.length), undefined]) {
      const g = await openChardev(chip === undefined ? {} : { chip });
      try {
        assert.equal(g.backend, 'chardev');
        assert.equal(g.path, path);
        assert.equal(g.chip.label, CHIP_LABEL);
        assert.deepEqual(g.pins(), [0, 1, 2, 3, 4, 5, 6, 7]);
      } finally {
        g.close();
      }
    }
    await assert.rejects(openChardev({ chip: 'no-such-label' }), code('backend-unavailable'));
    await assert.rejects(openChardev({ chip: '/dev/no-such-chip' }), code('backend-unavailable'));
  });

  test('pins by line name; describe() shows each line name', async () => {
    const g = await open();
    assert.equal(g.resolvePin('GPIO18'), 1);
    assert.equal(g.resolvePin('3'), 3);
    assert.equal(g.lineName(4), 'GPIO21');
    assert.throws(() => g.resolvePin('GPIO99'), code('no-such-pin'));
    assert.throws(() => g.resolvePin(8), code('no-such-pin'));
    assert.deepEqual(
      g.describe().map((d) => d.name),
      LINE_NAMES,
    );
  });
});

describe('every backend operation', () => {
  test('write makes an output; the line follows; read returns the latch', async () => {
    const g = await open();
    assert.equal(g.mode(0), undefined);
    g.write(0, 1);
    assert.equal(g.mode(0), 'out');
    assert.equal(simValue(0), 1);
    assert.equal(g.read(0), 1);
    g.write(0, 0);
    assert.equal(simValue(0), 0);
    assert.equal(g.read(0), 0);
    const info = g.lineInfo(0);
    assert.ok(info.flags & LINE_FLAG.USED && info.flags & LINE_FLAG.OUTPUT);
    assert.equal(info.consumer, CHARDEV_CONSUMER);
  });

  test('read makes an input that reads what drives it; write on it is pin-mode', async () => {
    const g = await open();
    drive(1, 1);
    assert.equal(g.read(1), 1);
    assert.equal(g.mode(1), 'in');
    drive(1, 0);
    assert.equal(g.read(1), 0);
    assert.throws(() => g.write(1, 1), code('pin-mode'));
    g.setMode(1, 'out');
    g.write(1, 1);
    assert.equal(simValue(1), 1);
    g.setMode(1, 'in');
    assert.equal(g.mode(1), 'in');
    assert.ok(g.lineInfo(1).flags & LINE_FLAG.INPUT);
  });

  test('absent pins are no-such-pin; bad levels and modes are RangeErrors', async () => {
    const g = await open();
    for (const pin of [8, 99, -1, 1.5]) {
      assert.throws(() => g.read(pin), code('no-such-pin'));
      assert.throws(() => g.write(pin, 1), code('no-such-pin'));
      assert.throws(() => g.watch(pin, () => {}), code('no-such-pin'));
    }
    assert.throws(() => g.write(2, 2 as 0), RangeError);
    assert.throws(() => g.setMode(2, 'sideways' as 'in'), RangeError);
    assert.throws(() => g.setMode(2, 'in', { pull: 'sideways' as 'up' }), RangeError);
  });

  test('bias: pull-up, pull-down and disabled reach the line', async () => {
    const g = await open();
    g.setMode(2, 'in', { pull: 'up' });
    assert.equal(simPull(2), 'pull-up');
    assert.equal(g.read(2), 1);
    assert.ok(g.lineInfo(2).flags & LINE_FLAG.BIAS_PULL_UP);
    g.setMode(2, 'in', { pull: 'down' });
    assert.equal(simPull(2), 'pull-down');
    assert.equal(g.read(2), 0);
    assert.ok(g.lineInfo(2).flags & LINE_FLAG.BIAS_PULL_DOWN);
    g.setMode(2, 'in', { pull: 'disabled' });
    assert.ok(g.lineInfo(2).flags & LINE_FLAG.BIAS_DISABLED);
    g.setMode(2, 'in'); // no pull given: the bias stays
    assert.ok(g.lineInfo(2).flags & LINE_FLAG.BIAS_DISABLED);
    assert.equal(g.describe()[2]!.pull, 'disabled');
  });

  test('active-low: 1 drives the line low and a low input reads 1', async () => {
    const g = await open({ activeLow: ['GPIO20', 4] });
    g.write(3, 1);
    assert.equal(simValue(3), 0);
    g.write(3, 0);
    assert.equal(simValue(3), 1);
    drive(4, 0);
    assert.equal(g.read(4), 1);
    drive(4, 1);
    assert.equal(g.read(4), 0);
    assert.ok(g.lineInfo(4).flags & LINE_FLAG.ACTIVE_LOW);
    assert.equal(g.describe()[3]!.activeLow, true);
    assert.equal(g.describe()[5]!.activeLow, false);
  });
});

describe('edges', () => {
  test('kernel edge events, with the kernel timestamps', async () => {
    const g = await open();
    drive(5, 0);
    const seen: PinChange[] = [];
    const off = g.watch(5, (c) => seen.push(c));
    assert.equal(g.mode(5), 'in'); // watching an unconfigured pin makes it an input
    const t0 = monotonicMs();
    drive(5, 1);
    await until(() => seen.length >= 1, 2000, 'a rising edge');
    const t1 = monotonicMs();
    drive(5, 0);
    await until(() => seen.length >= 2, 2000, 'a falling edge');
    assert.deepEqual(
      seen.map((c) => [c.pin, c.value, c.edge]),
      [
        [5, 1, 'rising'],
        [5, 0, 'falling'],
      ],
    );
    // The kernel stamped the edge when the line changed: after t0, before we saw it.
    const ts = seen[0]!.ts;
    assert.ok(ts >= t0 && ts <= t1, `edge ts ${ts} within [${t0}, ${t1}]`);
    assert.ok(seen[1]!.ts > ts);
    assert.ok(g.lineInfo(5).flags & LINE_FLAG.EDGE_RISING);
    off();
    assert.equal(g.lineInfo(5).flags & LINE_FLAG.EDGE_RISING, 0); // edge detection off with the last watcher
    drive(5, 1);
    await sleep(100);
    assert.equal(seen.length, 2);
  });

  test('an output reports its own writes, once per change', async () => {
    const g = await open();
    const seen: PinChange[] = [];
    g.write(6, 0);
    g.watch(6, (c) => seen.push(c));
    g.write(6, 1);
    g.write(6, 1);
    g.write(6, 0);
    assert.deepEqual(
      seen.map((c) => c.value),
      [1, 0],
    );
  });

  test('debounce: a burst shorter than the period is one edge; line info shows the period', async () => {
    const g = await open();
    drive(0, 0);
    g.setMode(0, 'in');
    g.setDebounce(0, 50_000);
    const seen: PinChange[] = [];
    g.watch(0, (c) => seen.push(c));
    assert.equal(g.lineInfo(0).debounceUs, 50_000);
    assert.equal(g.describe()[0]!.debounceUs, 50_000);
    for (let i = 0; i < 5; i++) {
      drive(0, 1);
      drive(0, 0);
    }
    drive(0, 1);
    await sleep(300);
    assert.deepEqual(
      seen.map((c) => c.edge),
      ['rising'],
    );
    // Without debounce every change is an edge.
    g.setDebounce(0, 0);
    seen.length = 0;
    drive(0, 0);
    drive(0, 1);
    drive(0, 0);
    await until(() => seen.length >= 3, 2000, 'three edges');
    assert.deepEqual(
      seen.map((c) => c.edge),
      ['falling', 'rising', 'falling'],
    );
  });
});

describe('one owner per line', () => {
  test('a line the kernel holds: pin-busy naming its consumer', async () => {
    const g = await open();
    assert.throws(
      () => g.read(HOGGED_LINE),
      (e) => code('pin-busy')(e) && (e as Error).message.includes(HOG_CONSUMER),
    );
  });

  test('a second request of the same line, in this process and from another: pin-busy naming pinhole', async () => {
    const a = await open();
    const b = await open();
    a.write(1, 1);
    assert.throws(
      () => b.read(1),
      (e) => code('pin-busy')(e) && (e as Error).message.includes(`'${CHARDEV_CONSUMER}'`),
    );
    b.read(2); // other lines are free
    const r = await child(`const g = await m.openChardev({ chip: ${JSON.stringify(CHIP_LABEL)} });
try { g.read(1); console.log(JSON.stringify({ ok: true })); } catch (e) { console.log(JSON.stringify({ code: e.code })); }`);
    assert.deepEqual(r.out, { code: 'pin-busy' }, r.stderr);
  });
});

describe('permissions', () => {
  test('a user who may not open the chip: gpio-permission, one line naming the gpio group and the udev rule', async () => {
    const path = chipPath();
    const st = statSync(path);
    try {
      chownSync(path, 0, 0);
      chmodSync(path, 0o600);
      const snippet = `try { const g = await m.openChardev({ chip: ${JSON.stringify(CHIP_LABEL)} }); console.log(JSON.stringify({ ok: true, pins: g.pins().length })); g.close(); }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
      const denied = await child(snippet, { uid: NOGPIO_UID, gid: NOGPIO_UID });
      assert.equal(denied.out?.code, 'gpio-permission', denied.stderr);
      const msg = String(denied.out?.message);
      assert.ok(!msg.includes('\n'));
      assert.ok(msg.includes("'gpio' group") && msg.includes(GPIO_UDEV_RULE), msg);
      // The fix: the chip in the gpio group, 0660, and the user in that group.
      chownSync(path, 0, GPIO_GID);
      chmodSync(path, 0o660);
      const allowed = await child(snippet, { uid: NOGPIO_UID, gid: GPIO_GID });
      assert.deepEqual(allowed.out, { ok: true, pins: 8 }, allowed.stderr);
    } finally {
      chownSync(path, st.uid, st.gid);
      chmodSync(path, st.mode & 0o777);
    }
  });
});

describe('release', () => {
  test('close() releases every line', async () => {
    const g = await openChardev({ chip: CHIP_LABEL });
    g.write(0, 1);
    g.read(1);
    g.watch(2, () => {});
    g.close();
    const probe = await open();
    for (const pin of [0, 1, 2]) assert.equal(probe.lineInfo(pin).flags & LINE_FLAG.USED, 0, `line ${pin} released`);
    assert.throws(() => g.read(0), code('hardware'));
  });

  test('a process that ends (even killed) holds no line', async () => {
    const probe = await open();
    const r = await child(`const g = await m.openChardev({ chip: ${JSON.stringify(CHIP_LABEL)} });
g.write(3, 1); g.read(4); console.log(JSON.stringify({ held: true })); process.kill(process.pid, 'SIGKILL');`);
    assert.equal(r.code, null);
    assert.deepEqual(r.out, { held: true });
    for (const pin of [3, 4]) assert.equal(probe.lineInfo(pin).flags & LINE_FLAG.USED, 0, `line ${pin} released`);
  });
});

describe('pinhole doctor --gpio data', () => {
  test('inspectChips lists the chip, its label and lines, and who holds them', async () => {
    const g = await open();
    g.write(0, 1);
    const chips = await inspectChips();
    const c = chips.find((x) => x.info?.label === CHIP_LABEL);
    assert.ok(c?.status.ok);
    assert.equal(c.path, chipPath());
    assert.deepEqual(
      c.lines!.map((l) => l.name),
      LINE_NAMES,
    );
    assert.deepEqual([c.lines![0]!.used, c.lines![0]!.consumer, c.lines![0]!.direction], [true, CHARDEV_CONSUMER, 'out']);
    assert.deepEqual([c.lines![HOGGED_LINE]!.used, c.lines![HOGGED_LINE]!.consumer], [true, HOG_CONSUMER]);
  });
});
