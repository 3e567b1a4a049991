// The browser bench's page: on load it opens the BrowserController, connects by name to the device
// named in the fragment (#device=NAME&server=URL), writes once, and records from the page's time
// origin (navigation start) until the first ack and until the direct path; then it times direct
// round trips on request. bench/browser.ts reads window.bench.
import type { Device } from '../controller/device.js';
import { BrowserController } from '../platform/browser/index.js';

interface Result {
  ack?: number;
  direct?: number;
  error?: string;
}
const result: Result = {};
let dev: Device | undefined;
let ctl: BrowserController | undefined;

const api = {
  result,
  /** Pairs (once, untimed) with `code` on `server`. */
  async pair(server: string, code: string): Promise<string> {
    ctl ??= await BrowserController.open({ server, name: 'bench-page' });
    const d = await ctl.pair(code);
    await d.close();
    return d.peer!.name;
  },
  /** `n` direct round trips (writes), in ms each. */
  async roundTrips(n: number): Promise<number[]> {
    const out: number[] = [];
    let v: 0 | 1 = 0;
    for (let i = 0; i < n; i++) {
      v = v === 1 ? 0 : 1;
      const t = performance.now();
      await dev!.write(20, v);
      out.push(performance.now() - t);
    }
    return out;
  },
  path: () => dev?.path ?? 'none',
  close: () => dev?.close(),
};
(window as unknown as { bench: typeof api }).bench = api;

const params = new URLSearchParams(location.hash.slice(1));
const name = params.get('device');
const server = params.get('server');
if (name && server) {
  void (async () => {
    try {
      ctl = await BrowserController.open({ server, name: 'bench-page' });
      dev = await ctl.connect(name);
      const direct = dev.whenDirect(15_000).then((ok) => {
        if (ok) result.direct = performance.now();
      });
      await dev.write(20, 1);
      result.ack = performance.now();
      await direct;
    } catch (e) {
      result.error = (e as { code?: string }).code ?? String(e);
    }
  })();
}
