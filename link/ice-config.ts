/** Derives the direct path's ICE configuration from the signaling server's URL. */
import type { IceServer, RtcConfig } from './rtc.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$/i;

/**
 * ICE config for a server at `serverUrl` whose STUN port is `stunPort` (0 = none):
 * our own STUN first, then `extra` servers. When the server is on loopback every
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
  const iceServers: IceServer[] = stunPort > 0 ? [{ urls: `stun:${stunHost}:${stunPort}` }, ...extra] : [...extra];
  return loopback ? { iceServers, hostAddresses: ['127.0.0.1'] } : { iceServers };
}
