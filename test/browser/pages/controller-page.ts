// A test page exposing the BrowserController (platform/browser) on window, for controller.test.ts to drive.
import type { Device } from '../../../controller/device.js';
import { BrowserController } from '../../../platform/browser/index.js';

let ctl: BrowserController | undefined;
let dev: Device | undefined;
const changes: unknown[] = [];
const paths: string[] = [];

const api = {
  async open(server: string, direct: boolean, dbName: string): Promise<void> {
    ctl = await BrowserController.open({ server, direct, dbName, name: 'chromium' });
  },
  async pair(code: string): Promise<string> {
    dev = await ctl!.pair(code);
    dev.on('change', (c) => changes.push(c));
    dev.on('path', (p) => paths.push(p));
    return dev.path;
  },
  async connect(name: string): Promise<string> {
    dev = await ctl!.connect(name);
    dev.on('change', (c) => changes.push(c));
    dev.on('path', (p) => paths.push(p));
    return dev.path;
  },
  devices: () => ctl!.devices(),
  write: (pin: number, v: 0 | 1) => dev!.write(pin, v),
  read: (pin: number) => dev!.read(pin),
  mode: (pin: number, m: 'in' | 'out') => dev!.mode(pin, m),
  watch: (pin: number) => dev!.watch(pin),
  info: () => dev!.info(),
  path: () => dev?.path ?? 'none',
  whenDirect: (ms: number) => dev!.whenDirect(ms),
  changes: () => changes,
  paths: () => paths,
  close: () => dev?.close(),
  /** A PinholeError's code, or 'ok'. */
  async tryPair(code: string): Promise<string> {
    try {
      const d = await ctl!.pair(code);
      await d.close();
      return 'ok';
    } catch (e) {
      return (e as { code?: string }).code ?? String(e);
    }
  },
};
(window as unknown as { pinhole: typeof api }).pinhole = api;
