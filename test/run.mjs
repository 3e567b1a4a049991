#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
// Runs the compiled test tiers with node's test runner.
// Usage: node test/run.mjs [unit|integration|natlab ...]   (default: unit integration)
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const tiers = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'integration'];
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
process.exit(r.status ?? 1);
