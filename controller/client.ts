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
import { type ControllerPlatform, connectDevice, type Device, type PlatformConnectOptions } from './device.js';

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

/**
 * Options of connect(): connectDevice()'s (controller/device.ts), with the
 * state in a directory. Give `code` (first pairing) or `device` (a device
 * paired before).
 */
export type ConnectOptions = Omit<PlatformConnectOptions, 'name' | 'devices' | 'identity' | 'cert' | 'onStage'> & {
  /** Directory with this controller's identity and paired devices (created 0700). */
  stateDir: string;
  /** Name the device shows for this controller (default: this host's name). */
  name?: string;
};

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
