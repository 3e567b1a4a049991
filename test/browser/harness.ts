// The browser test harness: Debian's chromium driven by playwright-core, test code bundled with
// esbuild for the page and served from a loopback HTTP server. The browser tier (test/run.mjs)
// runs these files inside a loopback-only network namespace, so everything here stays on lo.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext } from 'playwright-core';

/** The .ts sources sit at the repo root; this file runs from dist/test/browser. */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Debian's chromium package: playwright-core downloads no browser. */
export const CHROMIUM = '/usr/bin/chromium';
export const LOOPBACK = '127.0.0.1';

/**
 * Chromium flags: headless without a sandbox (we run as root in a namespace), no network
 * chatter of its own, no QUIC, WebRTC allowed on loopback and with real host addresses in
 * place of mDNS names (the namespace has only lo). Playwright's own --disable-features list
 * is replaced by ours.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

/** Longest a Chromium launch may take: a cold start on a 2-core machine takes a few seconds. */
export const LAUNCH_TIMEOUT_MS = 30_000;

/** Why the browser tests cannot run here, or undefined if they can. */
export function unavailable(): string | undefined {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium)`;
  if (process.getuid?.() !== 0) return 'not root: the loopback-only network namespace needs unshare -n';
  return undefined;
}

/**
 * For a script that drives Chromium (a bench, the screenshots): unless `envVar` is set, runs this
 * same process again inside a loopback-only network namespace (`unshare -n`, `lo` up) and exits
 * with its code; inside, returns. `what` names the script in the one line said when it cannot run.
 */
export function inLoopbackNamespace(envVar: string, what: string): void {
  if (process.env[envVar] === '1') return;
  const why = unavailable();
  if (why) {
    console.error(`${what} cannot run: ${why}`);
    process.exit(1);
  }
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, [envVar]: '1' },
  });
  process.exit(r.status ?? 1);
}

/** A running Chromium: one context, closed with close(). */
export interface Chromium {
  context: BrowserContext;
  /** The user-data-dir of a persistent context (reused by relaunch()); '' for a fresh profile. */
  userDataDir: string;
  /** Closes the browser, keeping a persistent user-data-dir on disk. */
  close(): Promise<void>;
  /** Closes this browser and starts a new one (on the same user-data-dir if persistent). */
  relaunch(): Promise<Chromium>;
  /** Closes the browser and removes its user-data-dir. */
  dispose(): Promise<void>;
}

/**
 * Launches Chromium. `persistent`: a context on a user-data-dir kept across reloads and
 * relaunch() (IndexedDB survives); otherwise a fresh profile that dies with the browser.
 */
export async function launchChromium(opts: { persistent?: boolean; userDataDir?: string } = {}): Promise<Chromium> {
  const { chromium } = await import('playwright-core');
  const persistent = opts.persistent || opts.userDataDir !== undefined;
  // Playwright gives a non-persistent launch a fresh profile dir of its own and removes it on close.
  const userDataDir = opts.userDataDir ?? (persistent ? await mkdtemp(join(tmpdir(), 'pinhole-chromium-')) : '');
  let browser: Browser | undefined;
  let context: BrowserContext;
  if (persistent) {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: LAUNCH_TIMEOUT_MS,
    });
  } else {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: LAUNCH_TIMEOUT_MS,
    });
    context = await browser.newContext();
  }
  const close = async () => {
    await context.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
  };
  return {
    context,
    userDataDir,
    close,
    relaunch: async () => {
      await close();
      return launchChromium(persistent ? { userDataDir } : {});
    },
    dispose: async () => {
      await close();
      if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Bundles a TS entry (a path relative to the repo root, or absolute) for the page: esbuild, platform 'browser', one ESM file. */
export async function bundle(entry: string): Promise<string> {
  const { build } = await import('esbuild');
  const r = await build({
    entryPoints: [isAbsolute(entry) ? entry : join(ROOT, entry)],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    sourcemap: 'inline',
  });
  return r.outputFiles[0]!.text;
}

/** A loopback HTTP server for one test page. */
export interface TestPage {
  /** The page's URL (http://127.0.0.1:PORT/). */
  url: string;
  close(): Promise<void>;
}

/** Serves `/` (an HTML page loading /app.js as a module) and `/app.js` (the bundle of `entry`) on 127.0.0.1. */
export async function servePage(entry: string, title = 'pinhole test'): Promise<TestPage> {
  const js = await bundle(entry);
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title><script type="module" src="/app.js"></script></head><body></body></html>`;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const body = path === '/' ? html : path === '/app.js' ? js : undefined;
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': path === '/' ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${LOOPBACK}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
