/**
 * Behind a reverse proxy every socket comes from the proxy, so the
 * per-address limits would see one client. `trustedProxies` names the proxies
 * whose X-Forwarded-For is believed: the client is then the rightmost address
 * in it that is not one of them (each proxy appends the address it saw, so
 * what lies to the left of a trusted hop was written by the client and proves
 * nothing). Nobody else's header counts: a client that sends one to the
 * server directly is still its socket's address.
 */
import { isIP } from 'node:net';
import { PinholeError } from '../protocol/index.js';
import { addressKey } from './router.js';

/** The address keys of a list of proxy addresses (IPv4 or IPv6, no ranges); PinholeError('usage') for anything else. */
export function trustedProxySet(list: readonly string[]): ReadonlySet<string> {
  const out = new Set<string>();
  for (const raw of list) {
    const a = raw.trim();
    if (isIP(a) === 0) throw new PinholeError('usage', `a trusted proxy must be an IP address, got ${JSON.stringify(raw)}`);
    out.add(canonical(a));
  }
  return out;
}

/** Whether a socket's peer is one of the trusted proxies. */
export function isTrustedProxy(peer: string, trusted: ReadonlySet<string>): boolean {
  return trusted.size > 0 && trusted.has(canonical(peer));
}

/** The client's address for a socket from `peer` with these X-Forwarded-For headers. */
export function clientAddress(peer: string, forwardedFor: string | string[] | undefined, trusted: ReadonlySet<string>): string {
  if (forwardedFor === undefined || !isTrustedProxy(peer, trusted)) return peer;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const a = hops[i]!.trim();
    // A hop that is no address: stop at the last trusted one, whose limits then apply.
    if (isIP(a) === 0) return client;
    client = a;
    if (!trusted.has(canonical(a))) return a;
  }
  return client;
}

/** One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 in lower case. */
function canonical(a: string): string {
  const k = addressKey(a);
  return k.endsWith('::/64') ? a.toLowerCase() : k;
}
