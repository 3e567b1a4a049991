// The simulated chip the VM's init made (test/setup/gpio-vm-init.sh): 8 lines
// named GPIO17..GPIO24 on a chip labelled pinhole-sim, line 7 hogged by the
// kernel. Inputs are driven and outputs seen through gpio-sim's sysfs files.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** True inside the GPIO tier's VM. */
export const IN_VM = process.env.PINHOLE_GPIO_VM === '1';
/** The simulated chip's label. */
export const CHIP_LABEL = process.env.PINHOLE_GPIO_VM_CHIP ?? 'pinhole-sim';
/** A user with no access to the chips, and the gpio group (made by the VM's init). */
export const NOGPIO_UID = Number(process.env.PINHOLE_GPIO_VM_NOGPIO_UID ?? 4242);
export const GPIO_GID = Number(process.env.PINHOLE_GPIO_VM_GPIO_GID ?? 4243);
/** The line the kernel hogs, and its consumer name. */
export const HOGGED_LINE = 7;
export const HOG_CONSUMER = 'kernel-hog';
/** Line names, by offset. */
export const LINE_NAMES = ['GPIO17', 'GPIO18', 'GPIO19', 'GPIO20', 'GPIO21', 'GPIO22', 'GPIO23', 'GPIO24'];

/** Fails the test at once outside the VM: this tier runs only through test/setup/gpio-vm.sh. */
export function requireVm(): void {
  assert.ok(IN_VM, 'the GPIO tier runs inside its VM: npm run test:gpio (bash test/setup/gpio-vm.sh)');
}

const CONFIGFS = process.env.PINHOLE_GPIO_VM_SIMDEV ?? '/sys/kernel/config/gpio-sim/pinhole';

/** The chip's device node, /dev/gpiochipN. */
export function chipPath(): string {
  return `/dev/${readFileSync(join(CONFIGFS, 'gpio-bank0', 'chip_name'), 'utf8').trim()}`;
}

/** The chip's sysfs directory, where sim_gpioK/{value,pull} live. */
function simDir(): string {
  const dev = readFileSync(join(CONFIGFS, 'dev_name'), 'utf8').trim();
  const chip = readFileSync(join(CONFIGFS, 'gpio-bank0', 'chip_name'), 'utf8').trim();
  const dir = join('/sys/devices/platform', dev, chip);
  assert.ok(readdirSync(dir).includes('sim_gpio0'), `no sim_gpio0 in ${dir}`);
  return dir;
}

/** Drives an input from outside the chip: pull-up reads 1, pull-down 0. */
export function drive(offset: number, level: 0 | 1): void {
  writeFileSync(join(simDir(), `sim_gpio${offset}`, 'pull'), level ? 'pull-up' : 'pull-down');
}

/** The simulated pull on a line: what an input reads, changed by drive() and by the consumer's bias. */
export function simPull(offset: number): 'pull-up' | 'pull-down' {
  return readFileSync(join(simDir(), `sim_gpio${offset}`, 'pull'), 'utf8').trim() as 'pull-up' | 'pull-down';
}

/** The level the line is at: an output's driven value, or an input's pull. */
export function simValue(offset: number): 0 | 1 {
  return readFileSync(join(simDir(), `sim_gpio${offset}`, 'value'), 'utf8').trim() === '1' ? 1 : 0;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond` holds, polling. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
