/**
 * The Node platform's direct path for PeerSession: werift's DirectPath
 * (rtc.ts), loaded on first use. Importing this file (or platform/node's
 * index) does not load werift; only preloadDirect() or a first dial does.
 */
import type { Dialer } from '../../session/index.js';

let rtcModule: Promise<typeof import('./rtc.js')> | undefined;

/**
 * Starts loading werift (a few hundred ms of CPU) without waiting for it.
 * Only runs that try a direct path pay for it; callers start it early, in
 * parallel with connecting to the server.
 */
export function preloadDirect(): Promise<typeof import('./rtc.js')> {
  rtcModule ??= import('./rtc.js');
  return rtcModule;
}

/** Makes werift attempts for SessionOptions.dialer. */
export const weriftDialer: Dialer = async (role, config, sendSignal, onFrame) => {
  const { DirectPath } = await preloadDirect();
  return new DirectPath(role, config, sendSignal, (data) => onFrame(data));
};
