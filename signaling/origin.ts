/**
 * Which web pages may open a WebSocket to the signaling server. Browsers send
 * an `Origin` header with every WebSocket upgrade; Node clients (the device
 * agent, `pinhole control`) send none and are always let in. The check keeps
 * a page on another site from using a visitor's browser as a client of this
 * server; it protects the server's service, not the peers, whose secrets do
 * not depend on it.
 */

/** `'*'`: every origin; else the origins allowed, each as `normalizeOrigin` returns it. */
export type AllowedOrigins = '*' | readonly string[];

/** Longest origin accepted, in characters: a host name is at most 253, and a scheme and port add a few. */
const MAX_ORIGIN_CHARS = 300;

/**
 * An origin as a browser serialises it: `scheme://host[:port]`, lowercased,
 * the scheme's default port dropped, an IDN host in punycode. Takes
 * `http://` and `https://` origins, with at most a `/` after them (no path,
 * query, fragment or user info). Returns undefined for anything else,
 * `null` (the opaque origin) included.
 */
export function normalizeOrigin(s: string): string | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_ORIGIN_CHARS || s.trim() !== s) return undefined;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '' || u.pathname !== '/') return undefined;
  // `new URL('https://h?')` and `'https://h#'` have empty search and hash but are not origins.
  if (/[?#]/.test(s)) return undefined;
  return u.origin;
}

/**
 * Checks and normalises a configured list: `'*'`, or origins (each through
 * normalizeOrigin). Returns the list, or a reason it is bad.
 */
export function parseAllowedOrigins(v: unknown): { ok: true; value: AllowedOrigins } | { ok: false; reason: string } {
  if (v === '*') return { ok: true, value: '*' };
  if (!Array.isArray(v)) return { ok: false, reason: `allowed origins must be '*' or a list of origins, got ${typeof v}` };
  const out: string[] = [];
  for (const o of v) {
    if (o === '*') return { ok: false, reason: "'*' cannot be part of a list of origins: give it alone" };
    const n = typeof o === 'string' ? normalizeOrigin(o) : undefined;
    if (n === undefined) return { ok: false, reason: `"${String(o).slice(0, 80)}" is not an origin: use scheme://host[:port], e.g. https://pinhole.example` };
    if (!out.includes(n)) out.push(n);
  }
  return { ok: true, value: out };
}

/** Parses `--allow-origin` values: each `*` or a comma-separated list of origins. */
export function parseOriginFlag(values: readonly string[]): { ok: true; value: AllowedOrigins } | { ok: false; reason: string } {
  const parts = values.flatMap((v) => v.split(',')).map((p) => p.trim());
  if (parts.some((p) => p === '')) return { ok: false, reason: 'an empty origin' };
  if (parts.length === 1 && parts[0] === '*') return { ok: true, value: '*' };
  return parseAllowedOrigins(parts);
}

/**
 * What the server does with an upgrade: `allow`, or `refuse` with the origin
 * to log (normalised, or `invalid`: never the raw header, which may carry
 * bytes a terminal acts on). `header` undefined: no Origin sent (a Node
 * client), always allowed.
 */
export function checkOrigin(allowed: AllowedOrigins, header: string | undefined): { allow: true } | { allow: false; origin: string } {
  if (header === undefined || allowed === '*') return { allow: true };
  const n = normalizeOrigin(header);
  if (n !== undefined && allowed.includes(n)) return { allow: true };
  return { allow: false, origin: n ?? (header === 'null' ? 'null' : 'invalid') };
}
