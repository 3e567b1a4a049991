/**
 * The controller API, in the manner of Johnny-Five:
 *
 *   const dev = await connect({ server, code: 'K7QM-X3P-D9H', stateDir }); // first time: pairs
 *   const dev = await connect({ device: 'kitchen', stateDir });            // afterwards: by name
 *   await dev.write(20, 1);
 *   dev.on('change', (c) => ...);
 *   await dev.close();
 *
 * Every session starts with an authenticated handshake over the server
 * (crypto/handshake.ts); commands then go over the sealed relay at once and move
 * to the direct path when it opens; `dev.path` tells which is in use.
 */

import { hostname } from 'node:os';
import {
  KnownDevices,
  loadOrCreateDtlsCert,
  loadOrCreateIdentity,
  nodeAead,
  nodeCurve25519,
  preloadDirect,
  SignalClient,
  weriftDialer,
} from '../platform/node/index.js';
import type { PairingCode } from '../protocol/index.js';
import type { IceServer } from '../session/index.js';
import { type ControllerPlatform, connectDevice, type Device } from './device.js';

export {
  type Change,
  DEFAULT_TIMEOUT_MS,
  Device,
  type DeviceEvents,
  type DeviceInfo,
  type DevicePhase,
  type DirectFailed,
  type Opened,
  RECONNECT_BASE_MS,
  RECONNECT_MAX_MS,
  type Reopen,
  refusalError,
} from './device.js';

/** Options of connect(). Give `code` (first pairing) or `device` (a device paired before). */
export interface ConnectOptions {
  /** Signaling server URL, ws:// or wss://. Required with `code`; with `device` it defaults to the one saved at pairing. */
  server?: string;
  /**
   * First pairing: the code the device printed, as typed (case and dashes do
   * not matter), or already parsed (parsePairingCode). Spent by this attempt.
   */
  code?: string | PairingCode;
  /** A device paired before, by the name it was saved under. */
  device?: string;
  /** Directory with this controller's identity and paired devices (created 0700). */
  stateDir: string;
  /** Name the device shows for this controller (default: this host's name). */
  name?: string;
  /**
   * Pairing only: save the device under this name instead of the one it
   * gives itself (1-64 printable characters). Ignored with `device`.
   */
  as?: string;
  /**
   * Pairing only: if another device (another key) is saved under that name
   * (compared case-insensitively), replace it. Without it such a pairing
   * fails with `name-taken` and nothing is saved. The same device pairing
   * again under its name always replaces its entry. Ignored with `device`.
   */
  replace?: boolean;
  /** Timeout for connecting and for each command, in ms (default DEFAULT_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Try the direct path (default true). */
  direct?: boolean;
  /** Extra ICE servers after the server's own STUN. */
  iceServers?: IceServer[];
  /**
   * Reconnect by itself when the session is lost (default true): pending
   * calls are resent on the new session (the device runs each id at most
   * once) and watches renewed; see the Device's `disconnected`, `reconnected`
   * and `resync` events. False: a lost session closes the Device.
   */
  reconnect?: boolean;
  /** Receives one line per change of the Device's phase (see DevicePhase); default: none. */
  log?: (line: string) => void;
}
/** Node's controller platform: `ws`, werift (loaded on first use) and OpenSSL's crypto. */
const NODE_PLATFORM: ControllerPlatform = {
  openSignal: (url, timeoutMs) => SignalClient.connect(url, timeoutMs),
  dialer: weriftDialer,
  aead: nodeAead,
  curve25519: nodeCurve25519,
};

/**
 * Connects to a device: pairs with `code` the first time (and saves the
 * device under its name in `stateDir`), or finds a paired `device` by name.
 * Rejects as connectDevice() (controller/device.ts) does, or with a `state-*`
 * code for unusable state files.
 */
export async function connect(opts: ConnectOptions): Promise<Device> {
  const direct = opts.direct ?? true;
  // werift loads while the WebSocket opens and the handshake runs; a stored DTLS certificate does not wait for it.
  if (direct) preloadDirect().catch(() => undefined);
  const { stateDir, ...rest } = opts;
  return connectDevice(NODE_PLATFORM, {
    ...rest,
    name: opts.name ?? hostname(),
    direct,
    devices: () => KnownDevices.load(stateDir),
    identity: () => loadOrCreateIdentity(stateDir),
    cert: () => loadOrCreateDtlsCert(stateDir, async () => (await preloadDirect()).generateDtlsKeys()),
  });
}
