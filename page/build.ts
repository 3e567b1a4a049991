/**
 * Builds the controller page into dist/page/: page/app.ts bundled by esbuild
 * (self-contained, minified), page/style.css, and index.html loading both by
 * content-hashed names with Subresource Integrity under a strict CSP, plus
 * manifest.json with the bundle's hash (shown by `pinhole --version`), which
 * lets a user or a packager check what a page runs. Run by `npm run build`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { PAGE_CSP, type PageManifest } from '../signaling/page.js';

/** Sources sit at the repo root; this file runs from dist/page. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = join(ROOT, 'dist', 'page');
/** Hex digits of the content hash in a file name: enough to never collide between releases. */
const NAME_HASH_CHARS = 16;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const sri = (b: Buffer | string): string => `sha384-${createHash('sha384').update(b).digest('base64')}`;

const r = await build({
  entryPoints: [join(ROOT, 'page', 'app.ts')],
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  minify: true,
  write: false,
  logLevel: 'warning',
  legalComments: 'none',
});
const js = Buffer.from(r.outputFiles[0]!.contents);
const css = readFileSync(join(ROOT, 'page', 'style.css'));
const hash = sha256(js);
const jsName = `app.${hash.slice(0, NAME_HASH_CHARS)}.js`;
const cssName = `app.${sha256(css).slice(0, NAME_HASH_CHARS)}.css`;
const html = readFileSync(join(ROOT, 'page', 'index.html'), 'utf8')
  .replace('%CSP%', PAGE_CSP)
  .replace('%JS%', jsName)
  .replace('%JS_SRI%', sri(js))
  .replace('%CSS%', cssName)
  .replace('%CSS_SRI%', sri(css));

mkdirSync(OUT, { recursive: true });
// Files of an earlier build go: the manifest lists exactly what is served.
for (const f of readdirSync(OUT)) if (/^app\.[0-9a-f]+\.(js|css)$/.test(f)) rmSync(join(OUT, f));
writeFileSync(join(OUT, jsName), js);
writeFileSync(join(OUT, cssName), css);
writeFileSync(join(OUT, 'index.html'), html);
const manifest: PageManifest = { hash, files: ['index.html', jsName, cssName], integrity: { [jsName]: sri(js), [cssName]: sri(css) } };
writeFileSync(join(OUT, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
process.stdout.write(`page: dist/page/${jsName} (${js.length} bytes, sha256 ${hash})\n`);
