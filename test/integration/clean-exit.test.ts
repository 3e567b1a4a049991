// Regression (issue 2): closing a session while werift is mid-setLocalDescription left its
// ICE loop polling forever, so a process that closed everything never exited.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = `
import { startSignalServer, resolveSignalConfig } from '${dist}/signaling/index.js';
import { DeviceAgent, SimGpio } from '${dist}/device/index.js';
import { connect } from '${dist}/controller/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const dir = mkdtempSync(join(tmpdir(), 'pinhole-test-clean-exit-'));
const s = await startSignalServer(resolveSignalConfig({ host: '127.0.0.1', port: 0, stunPort: 0, log: () => {} }));
const a = await DeviceAgent.start({ server: s.url, name: 'x', stateDir: join(dir, 'device'), gpio: new SimGpio(), version: '0' });
const stateDir = join(dir, 'controller');
for (let i = 0; i < 3; i++) {
  // Pair once with the code, then by name (issue 4).
  const c = await connect(i === 0 ? { server: s.url, code: a.pairingCode, stateDir } : { device: 'x', stateDir });
  await c.write(20, i % 2);
  await c.close(); // at once: the device is still answering the offer
}
await a.stop();
await s.close();
rmSync(dir, { recursive: true, force: true });
console.log('closed');
`;

test('issue 2: a process that closes its controller, device and server exits by itself', async () => {
  const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      resolve(null);
    }, 15_000);
    p.on('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  assert.match(out, /closed/);
  assert.equal(code, 0, `did not exit on its own within 15 s; output: ${out}`);
});
