/**
 * The controller page (page/, built into dist/page/ by page/build.ts) as HTTP
 * responses: `/` and the content-hashed files its manifest lists, with the
 * page's Content-Security-Policy and no referrer. Used by the signaling
 * server (at `/`, unless `page: false`) and by `pinhole page --serve`.
 *
 * A page served by the signaling server runs that server's code: see
 * docs/security.md, "Who the page trusts", for what that costs and how a
 * copy on a trusted origin avoids it.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The page's policy: its own script and style only (no inline code, nothing
 * from elsewhere), and WebSocket connections to any signaling server (the
 * server is a setting of the page), and Trusted Types with no policy, so
 * markup from a string (innerHTML) cannot run at all. In index.html's <meta>,
 * and as a header.
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; require-trusted-types-for 'script'; trusted-types 'none'";
/** The header's policy: the page's, and no framing (which a <meta> policy cannot say). */
export const PAGE_CSP_HEADER = `${PAGE_CSP}; frame-ancestors 'none'`;

/** What page/build.ts writes beside the files: the bundle's SHA-256 (hex), the files, and each asset's SRI. */
export interface PageManifest {
  hash: string;
  files: string[];
  integrity: Record<string, string>;
}

/** The built page in memory. */
export interface PageFiles {
  manifest: PageManifest;
  /** By URL path: `/` and `/<file>`. */
  byPath: Map<string, { body: Buffer; type: string; immutable: boolean }>;
}

/** Where the build puts the page: dist/page, beside this file's dist/signaling. */
export const PAGE_DIR = fileURLToPath(new URL('../page/', import.meta.url));

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/** Reads the built page from `dir`; undefined if it was not built (its manifest is missing or unreadable). */
export function loadPage(dir = PAGE_DIR): PageFiles | undefined {
  let manifest: PageManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as PageManifest;
  } catch {
    return undefined;
  }
  const byPath: PageFiles['byPath'] = new Map();
  for (const f of manifest.files) {
    if (!/^[\w.-]+$/.test(f)) return undefined; // the manifest names plain files in dir, nothing else
    const body = readFileSync(join(dir, f));
    const entry = { body, type: TYPES[f.split('.').pop()!] ?? 'application/octet-stream', immutable: f !== 'index.html' };
    byPath.set(`/${f}`, entry);
    if (f === 'index.html') byPath.set('/', entry);
  }
  return { manifest, byPath };
}

/** The hash of the built page's bundle, or undefined if it was not built. */
export function pageHash(dir = PAGE_DIR): string | undefined {
  return loadPage(dir)?.manifest.hash;
}

/** Answers a request for one of the page's paths (GET or HEAD); false, answering nothing, for any other path. */
export function servePage(page: PageFiles, req: IncomingMessage, res: ServerResponse): boolean {
  const path = (req.url ?? '/').split('?')[0]!;
  const f = page.byPath.get(path);
  if (!f) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Length': 0 }).end();
    return true;
  }
  res.writeHead(200, {
    'Content-Type': f.type,
    'Content-Length': f.body.length,
    'Content-Security-Policy': PAGE_CSP_HEADER,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    // Hashed names never change content; index.html must be fetched again to pick up a release.
    'Cache-Control': f.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  res.end(req.method === 'HEAD' ? undefined : f.body);
  return true;
}
