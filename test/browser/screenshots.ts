// `npm run screenshots`: the controller page at desktop and phone sizes, paired with a device on
// the sim board and showing some edges, saved as docs/page-desktop.png and docs/page-phone.png.
// Runs in a loopback-only namespace like the browser tier (root).
import { join } from 'node:path';
import { startDevice, startServer } from '../integration/helpers.js';
import { inLoopbackNamespace, launchChromium, ROOT } from './harness.js';

const IN_NETNS = 'PINHOLE_SCREENSHOTS_NETNS';
inLoopbackNamespace(IN_NETNS, 'screenshots');

const server = await startServer();
const device = await startDevice(server, { pins: [17, 20, 21, 27], name: 'kitchen-edison' });
const chromium = await launchChromium();
try {
  const page = await chromium.context.newPage();
  await page.setViewportSize({ width: 1200, height: 820 });
  await page.goto(`${server.url.replace('ws:', 'http:')}/`);
  await page.getByLabel('Pairing code').fill(device.code!);
  await page.getByRole('button', { name: 'Pair' }).click();
  await page.waitForFunction(() => document.getElementById('path')?.textContent === 'direct', undefined, { timeout: 20_000 });
  await page.getByLabel('pin 20 mode').selectOption('out');
  await page.getByLabel('pin 21 mode').selectOption('in');
  await page.getByLabel('pin 27 mode').selectOption('in');
  const sw = page.getByRole('switch', { name: 'pin 20' });
  for (let i = 0; i < 7; i++) {
    await sw.click();
    device.gpio.drive(21, (i % 2) as 0 | 1);
    if (i % 3 === 0) device.gpio.drive(27, ((i / 3) % 2) as 0 | 1);
    await new Promise((r) => setTimeout(r, 700));
  }
  await new Promise((r) => setTimeout(r, 2_500)); // the round trip shows
  await page.screenshot({ path: join(ROOT, 'docs', 'page-desktop.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ROOT, 'docs', 'page-phone.png') });
  console.log('wrote docs/page-desktop.png and docs/page-phone.png');
} finally {
  await chromium.dispose();
  await device.agent.stop();
  await server.close();
}
process.exit(0);
