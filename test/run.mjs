#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
// Runs the compiled test tiers with node's test runner.
// Usage: node test/run.mjs [unit|integration|natlab|browser ...]   (default: unit integration)
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

let tiers = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'integration'];

// The browser tier runs inside a loopback-only network namespace of its own (Chromium, werift
// and any server see only lo), so this script re-runs itself there for that tier.
const CHROMIUM = '/usr/bin/chromium';
/** Set in the re-run: we are inside the namespace. */
const IN_NETNS = 'PINHOLE_BROWSER_NETNS';
let browserStatus = 0;
if (tiers.includes('browser') && process.env[IN_NETNS] !== '1') {
  tiers = tiers.filter((t) => t !== 'browser');
  const why = !existsSync(CHROMIUM)
    ? `${CHROMIUM} is missing`
    : process.getuid?.() !== 0
      ? 'not root (the loopback-only namespace needs unshare -n)'
      : undefined;
  if (why && process.env.CI === 'true') {
    console.error(`test/run: browser tier cannot run: ${why}`);
    process.exit(1);
  } else if (why) {
    console.error(`test/run: skipping the browser tier: ${why}`);
  } else {
    const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, process.argv[1], 'browser'], {
      stdio: 'inherit',
      env: { ...process.env, [IN_NETNS]: '1' },
    });
    if (r.error) console.error(`test/run: unshare failed: ${r.error.message}`);
    browserStatus = r.status ?? 1;
  }
  if (tiers.length === 0) process.exit(browserStatus);
}
const files = [];
for (const tier of tiers) {
  const dir = join('dist', 'test', tier);
  if (!existsSync(dir)) {
    console.error(`test/run: no compiled tier ${dir} (run npm run build)`);
    process.exit(1);
  }
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.test.js')) files.push(join(dir, f));
}
if (files.length === 0) {
  console.error('test/run: no test files found');
  process.exit(1);
}
// One file at a time: werift peers are CPU-heavy on a 2-core machine. --expose-gc lets the soak test measure retained memory.
// A test file that never exits (a leaked handle) must fail the run, not hang CI.
// The NAT lab alone takes about 17 min on 2 cores (its impaired matrix and the 3-minute idle test).
const RUN_TIMEOUT_MS = 45 * 60_000;
const r = spawnSync(process.execPath, ['--expose-gc', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  timeout: RUN_TIMEOUT_MS,
  killSignal: 'SIGKILL',
});
if (r.error) console.error(`test/run: ${r.error.message} (a test file did not exit within ${RUN_TIMEOUT_MS / 60_000} min?)`);
process.exit((r.status ?? 1) || browserStatus);
