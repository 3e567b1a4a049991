import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

/** The .ts sources sit at the repo root; this file runs from dist/test/unit. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The core: what must run unchanged in a browser. */
const CORE = ['protocol', 'crypto', 'transport', 'session'];
/** The browser platform's files (it has no index): each must bundle for a page just like the core. */
const BROWSER_PLATFORM = readdirSync(join(ROOT, 'platform', 'browser'))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .sort()
  .map((f) => `platform/browser/${f}`);
/** Node globals a browser lacks; esbuild rewrites every free reference to one into a marker we can search for. */
const NODE_GLOBALS = ['Buffer', 'process', 'require', '__dirname', '__filename', 'global', 'setImmediate'];
const marker = (name: string): string => `__node_global_${name}__`;

type Esbuild = typeof import('esbuild');
const esbuild = async (): Promise<Esbuild> => (await import('esbuild')) as Esbuild;

interface Bundle {
  errors: string[];
  text: string;
}

/** Bundles `<dir>/index.ts` (or the file `dir`, if it names a .ts file), or `{ source }` given inline. */
async function bundle(dir: string | { source: string }, format: 'esm' | 'iife'): Promise<Bundle> {
  const { build } = await esbuild();
  const entry = (d: string) => join(ROOT, d.endsWith('.ts') ? d : join(d, 'index.ts'));
  try {
    const r = await build({
      ...(typeof dir === 'string' ? { entryPoints: [entry(dir)] } : { stdin: { contents: dir.source, loader: 'ts', resolveDir: ROOT } }),
      bundle: true,
      platform: 'browser',
      format,
      ...(format === 'iife' ? { globalName: '__core' } : {}),
      write: false,
      logLevel: 'silent',
      define: Object.fromEntries(NODE_GLOBALS.map((g) => [g, marker(g)])),
    });
    return { errors: [], text: r.outputFiles[0]!.text };
  } catch (e) {
    const errors = (e as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors;
    if (!errors) throw e;
    return { errors: errors.map((m) => (m.location ? `${m.location.file}:${m.location.line}: ${m.text}` : m.text)), text: '' };
  }
}

/** A context with what a browser page offers the core, and nothing of Node's. */
function browserContext(): vm.Context {
  return vm.createContext({
    crypto: webcrypto,
    TextEncoder,
    TextDecoder,
    URL,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    queueMicrotask,
    console,
  });
}

describe('issue 11: the core bundles for the browser', () => {
  test('the browser context really lacks the Node globals (so the check below can fail)', () => {
    const ctx = browserContext();
    for (const g of NODE_GLOBALS) assert.equal(vm.runInContext(`typeof ${g}`, ctx), 'undefined', g);
    assert.throws(() => vm.runInContext('Buffer.from("x")', ctx), /Buffer is not defined/);
  });

  test('the Node-global check sees real uses only, not a name in a string or a comment', async () => {
    const named = async (source: string) => {
      const b = await bundle({ source }, 'esm');
      assert.deepEqual(b.errors, []);
      return NODE_GLOBALS.filter((g) => b.text.includes(marker(g)));
    };
    assert.deepEqual(await named('export const f = (s: string) => Buffer.from(s).length;'), ['Buffer']);
    assert.deepEqual(await named('export const pid = () => process.pid;'), ['process']);
    assert.deepEqual(await named('// Buffer and process\nexport const s = "Buffer process require";'), []);
    assert.deepEqual(await named('export const g = (Buffer: number) => Buffer + 1;'), [], 'a local named Buffer is not the global');
  });

  test('the browser platform has files to check', () => {
    assert.ok(BROWSER_PLATFORM.includes('platform/browser/rtc.ts') && BROWSER_PLATFORM.includes('platform/browser/idb.ts'), BROWSER_PLATFORM.join(' '));
  });

  for (const dir of [...CORE, ...BROWSER_PLATFORM]) {
    test(`${dir.endsWith('.ts') ? dir : `${dir}/index.ts`} bundles with no Node built-in, names no Node global, and evaluates with browser globals only`, async () => {
      const esm = await bundle(dir, 'esm');
      assert.deepEqual(esm.errors, [], `esbuild --platform=browser failed for ${dir}:\n${esm.errors.join('\n')}`);
      assert.doesNotMatch(esm.text, /\bnode:[a-z_]+/, 'no node: import is left');
      const named = NODE_GLOBALS.filter((g) => esm.text.includes(marker(g)));
      assert.deepEqual(named, [], `the bundle of ${dir} refers to Node globals`);
      const iife = await bundle(dir, 'iife');
      assert.deepEqual(iife.errors, []);
      const ctx = browserContext();
      vm.runInContext(iife.text, ctx, { filename: `${dir}.bundle.js` });
      const exports = vm.runInContext('__core', ctx) as Record<string, unknown>;
      assert.ok(Object.keys(exports).length > 0, `${dir} exports something`);
    });
  }

  test('in that context the bundled crypto seals and opens a frame, and protocol parses one', async () => {
    const ctx = browserContext();
    for (const dir of ['protocol', 'crypto']) {
      const b = await bundle(dir, 'iife');
      assert.deepEqual(b.errors, []);
      vm.runInContext(`${b.text}\nglobalThis.core_${dir} = __core;`, ctx);
    }
    const out = vm.runInContext(
      `(() => {
        const { deriveSealKeys, Sealer, Opener } = core_crypto;
        const keys = deriveSealKeys(crypto.getRandomValues(new Uint8Array(32)), 'sid-browser');
        const frame = new Sealer(keys.c2d, 'c2d', 'sid-browser').seal('{"t":"a","a":1}');
        const r = new Opener(keys.c2d, 'c2d', 'sid-browser').open(frame);
        return JSON.stringify({ ok: r.ok, frame: r.ok ? core_protocol.parseFrame(r.plaintext) : null, b64: core_protocol.toBase64url(new Uint8Array([255, 239])) });
      })()`,
      ctx,
    ) as string;
    assert.deepEqual(JSON.parse(out), { ok: true, frame: { t: 'a', a: 1 }, b64: '_-8' });
  });
});
