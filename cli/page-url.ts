/**
 * The pairing link a device prints: the controller page's URL with the code
 * in the fragment (`#pair=CODE`). A fragment never leaves the browser, so the
 * code's secret stays off every server, the page's own included.
 */
import { PinholeError } from '../protocol/index.js';

const usage = (m: string): PinholeError => new PinholeError('usage', m);

/** The page the signaling server serves at `/`: `wss://h[:p]/…` -> `https://h[:p]/`, `ws://h[:p]/…` -> `http://h[:p]/`. */
export function defaultPageUrl(server: string): string {
  const u = new URL(server);
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw usage(`--server must be ws:// or wss://, not ${u.protocol}`);
  return `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}/`;
}

/**
 * `--page-url`, checked and normalised, or the default from the server. It
 * must be an http:// or https:// URL without user info; its fragment may
 * carry page settings (`#server=wss://…`) but no `pair=`, which the link adds.
 */
export function resolvePageUrl(flag: string | undefined, server: string): string {
  if (flag === undefined) return defaultPageUrl(server);
  let u: URL;
  try {
    u = new URL(flag);
  } catch {
    throw usage(`--page-url ${flag} is not a URL; use https://host[:port]/`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw usage(`--page-url must be http:// or https://, not ${u.protocol}`);
  if (u.username !== '' || u.password !== '') throw usage('--page-url must not carry a user name or password');
  if (fragmentParams(u.hash).some(([k]) => k === 'pair')) throw usage('--page-url must not carry pair= in its fragment: the device adds the code');
  return u.href;
}

/** `#a=1&b=2` -> [['a','1'],['b','2']], as the page reads its fragment. */
function fragmentParams(hash: string): [string, string][] {
  return [...new URLSearchParams(hash.replace(/^#/, ''))];
}

/** The WebSocket URL a page at `pageUrl` connects to when its fragment names none: its own origin. */
function pageDefaultServer(pageUrl: URL): string {
  return `${pageUrl.protocol === 'https:' ? 'wss:' : 'ws:'}//${pageUrl.host}/`;
}

/** A fragment value, readable: URLSearchParams decodes it, and `:` and `/` need no escaping there. */
const fragmentValue = (v: string): string => encodeURIComponent(v).replace(/%3A/gi, ':').replace(/%2F/gi, '/');

/**
 * The pairing link, `PAGE#pair=CODE`. When PAGE already has a fragment the
 * code joins it (`#server=…&pair=CODE`); when the page would not reach
 * `server` on its own (another origin, or a server path other than `/`), the
 * link names it (`#server=…&pair=CODE`), so one scan is enough.
 */
export function pairingLink(pageUrl: string, server: string, code: string): string {
  const u = new URL(pageUrl);
  const params = fragmentParams(u.hash);
  const parts = u.hash === '' || u.hash === '#' ? [] : [u.hash.slice(1)];
  if (!params.some(([k]) => k === 'server') && pageDefaultServer(u) !== new URL(server).href) parts.push(`server=${fragmentValue(server)}`);
  parts.push(`pair=${fragmentValue(code)}`);
  u.hash = '';
  return `${u.href.replace(/#$/, '')}#${parts.join('&')}`;
}

/** Hosts a browser treats as potentially trustworthy over plain http://. */
function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Why a browser would not run the page at `pageUrl`, or undefined: it needs
 * a secure context (WebCrypto, IndexedDB keys), which is https:// or
 * http:// on a loopback host.
 */
export function insecurePageProblem(pageUrl: string): string | undefined {
  const u = new URL(pageUrl);
  if (u.protocol === 'https:' || isLoopbackHost(u.hostname)) return undefined;
  return `the pairing link's page ${u.origin}/ is plain http:// on a host that is not loopback: browsers run the page only in a secure context (https://, or http:// on the browser's own 127.0.0.1 or localhost); serve it over TLS (docs/cli.md, "Behind a TLS reverse proxy")`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: colour sequences are what it matches
const ANSI_SGR = /\x1b\[[0-9;]*m/g;

/** Renders a link as a QR code for the terminal (see loadQrRenderer). */
export type QrRenderer = (link: string, ansi: boolean) => string;

/**
 * Loads the QR renderer (on demand: only a device printing codes needs it):
 * half-block characters, two modules a character, low error correction to
 * keep it small. `ansi` paints it black on white with escape sequences, so
 * it scans on a dark terminal too; without, it is plain characters (for a
 * log file or a pipe).
 */
export async function loadQrRenderer(): Promise<QrRenderer> {
  const { default: QRCode } = await import('qrcode');
  return (link, ansi) => {
    let out = '';
    // qrcode renders synchronously when given a callback.
    QRCode.toString(
      link,
      ansi ? { type: 'terminal', small: true, errorCorrectionLevel: 'L' } : { type: 'utf8', margin: 2, errorCorrectionLevel: 'L' },
      (err, s) => {
        if (err) throw err;
        out = s;
      },
    );
    if (out === '') throw new Error('qrcode did not render synchronously');
    // The terminal renderer ends on a line of colour resets only: drop it (a line of spaces is the quiet zone: kept).
    const lines = out.split('\n');
    while (lines.length > 0 && lines.at(-1)!.replace(ANSI_SGR, '') === '') lines.pop();
    return lines.join('\n') + (ansi ? '\x1b[0m' : '');
  };
}
