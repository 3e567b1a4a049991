/** Derives the direct path's ICE configuration from the signaling server's URL. */
import type { IceServer, RtcConfig } from './direct.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$/i;

/**
 * ICE config for a server at `serverUrl` whose STUN port is `stunPort` (0 = none):
 * our own STUN first, then `extra` servers (a `stun:` among them replaces ours). When the server is on loopback every
 * peer is on this host, so ICE is kept to 127.0.0.1.
 */
export function iceConfigFor(serverUrl: string, stunPort: number, extra: IceServer[] = []): RtcConfig {
  let host = '127.0.0.1';
  try {
    host = new URL(serverUrl).hostname;
  } catch {
    /* validated by the caller */
  }
  const loopback = LOOPBACK.test(host);
  const stunHost = loopback ? '127.0.0.1' : host;
  // werift uses only the first STUN server: one the user names explicitly replaces ours.
  const ours = stunPort > 0 && !extra.some((s) => s.urls.startsWith('stun:')) ? [{ urls: `stun:${stunHost}:${stunPort}` }] : [];
  const iceServers: IceServer[] = [...ours, ...extra];
  return loopback ? { iceServers, hostAddresses: ['127.0.0.1'] } : { iceServers };
}

/**
 * Parses an `--ice-server` value: `stun:HOST:PORT`, or `turn:USER:PASS@HOST:PORT`
 * (also `turns:`; `?transport=tcp` is passed through). Returns an error string
 * for anything else.
 */
export function parseIceServer(s: string): IceServer | string {
  const m = /^(stun|turns?):(?:([^:@]+):([^@]+)@)?([^:@/?]+|\[[0-9a-fA-F:]+\]):(\d{1,5})(\?transport=(?:udp|tcp))?$/.exec(s);
  if (!m) return `cannot read ICE server "${s}"; use stun:HOST:PORT or turn:USER:PASS@HOST:PORT`;
  const [, scheme, user, pass, host, port, query] = m;
  if (Number(port) < 1 || Number(port) > 65535) return `bad port in "${s}"`;
  const urls = `${scheme}:${host}:${port}${query ?? ''}`;
  if (scheme === 'stun') return user ? `stun: takes no credentials ("${s}")` : { urls };
  if (!user || !pass) return `a TURN server needs credentials: turn:USER:PASS@HOST:PORT ("${s}")`;
  return { urls, username: decodeURIComponent(user), credential: decodeURIComponent(pass) };
}
