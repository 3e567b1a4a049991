/**
 * A user-space TCP proxy that puts a server "far away": every chunk, in both
 * directions, is held `delayMs` before it is forwarded, in order. Only TCP
 * (the signaling WebSocket) goes through it.
 */

import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { LOOPBACK } from './baselines.js';

/** A running delay proxy. */
export interface DelayProxy {
  /** Port on 127.0.0.1 to connect to instead of the target. */
  port: number;
  /** Closes the listener and every proxied connection. */
  close(): Promise<void>;
}

/** Forwards from `src` to `dst`, each chunk (and the end) `delayMs` after it arrived, preserving order. */
function delayedPipe(src: net.Socket, dst: net.Socket, delayMs: number): void {
  const queue: Array<{ at: number; chunk: Buffer | null }> = [];
  let timer: NodeJS.Timeout | undefined;
  const drain = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length && queue[0]!.at <= now) {
      const { chunk } = queue.shift()!;
      if (dst.destroyed) return;
      if (chunk) dst.write(chunk);
      else dst.end();
    }
    if (queue.length) timer = setTimeout(drain, Math.max(0, queue[0]!.at - performance.now()));
  };
  const push = (chunk: Buffer | null): void => {
    queue.push({ at: performance.now() + delayMs, chunk });
    timer ??= setTimeout(drain, delayMs);
  };
  src.on('data', (c: Buffer) => push(c));
  src.on('end', () => push(null));
  src.on('close', () => {
    // A reset (not a clean end) is passed on after the delay too.
    if (src.errored) setTimeout(() => dst.destroy(), delayMs);
  });
  dst.on('close', () => {
    if (timer) clearTimeout(timer);
    queue.length = 0;
  });
}

/** Starts a proxy on 127.0.0.1 (free port) to `targetPort` on 127.0.0.1, adding `delayMs` each way. */
export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: LOOPBACK, port: targetPort });
    upstream.setNoDelay(true);
    track(client);
    track(upstream);
    delayedPipe(client, upstream, delayMs);
    delayedPipe(upstream, client, delayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
