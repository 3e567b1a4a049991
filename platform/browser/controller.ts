/**
 * The browser's controller: the same Device and connectDevice() as Node's
 * (controller/device.ts), with the page's own platform: its WebSocket, its
 * RTCPeerConnection, and IndexedDB for the identity key, the DTLS certificate
 * and the paired devices. What the page (page/app.ts) uses, and all it uses.
 */

import { type ControllerPlatform, connectDevice, type Device } from '../../controller/device.js';
import { type Identity, type KnownDeviceStore, openIdentity } from '../../crypto/index.js';
import { KnownDeviceStore as Devices } from '../../crypto/peers.js';
import { browserAead } from './aead.js';
import { IdbStateStore, loadOrCreateCertificate } from './idb.js';
import { browserDialer } from './rtc.js';
import { BrowserSignal } from './signal.js';

/** The IndexedDB database the page keeps its state in when the caller names none. */
export const DEFAULT_DB_NAME = 'pinhole';
/** The name a device shows for a browser controller when the caller gives none. */
export const DEFAULT_BROWSER_NAME = 'browser';

/** A device paired before, as the page lists it. */
export interface PairedDevice {
  name: string;
  fingerprint: string;
  server: string;
  pairedAt: number;
}

/** Where a connection is before its Device exists. */
export type Stage = 'connecting' | 'securing';

export interface BrowserControllerOptions {
  /** Signaling server URL, ws:// or wss://. */
  server: string;
  /** Try the direct path (default: when the page has RTCPeerConnection). False: relay only. */
  direct?: boolean;
  /** IndexedDB database name (default DEFAULT_DB_NAME). */
  dbName?: string;
  /** The name the device shows for this controller (default DEFAULT_BROWSER_NAME). */
  name?: string;
  /** One line per change of a Device's phase. */
  log?: (line: string) => void;
}

export class BrowserController {
  private constructor(
    private readonly opts: BrowserControllerOptions,
    private readonly store: IdbStateStore,
    private readonly identity: Identity,
    private readonly platform: ControllerPlatform,
    private readonly cert: (() => Promise<{ fingerprint: string }>) | undefined,
  ) {}

  /** Opens the page's state (creating the identity key on first use). Rejects with a `state-*` PinholeError if IndexedDB cannot be used. */
  static async open(opts: BrowserControllerOptions): Promise<BrowserController> {
    const dbName = opts.dbName ?? DEFAULT_DB_NAME;
    const store = await IdbStateStore.open(dbName);
    const identity = openIdentity(store, (n) => crypto.getRandomValues(new Uint8Array(n)));
    await store.flush();
    const rtc = (opts.direct ?? true) && typeof RTCPeerConnection === 'function';
    const certificate = rtc ? await loadOrCreateCertificate(dbName) : undefined;
    const platform: ControllerPlatform = {
      openSignal: (url, timeoutMs) => BrowserSignal.connect(url, timeoutMs),
      aead: browserAead,
      ...(certificate ? { dialer: browserDialer(certificate.certificate) } : {}),
    };
    const fp = certificate?.fingerprint;
    return new BrowserController(opts, store, identity, platform, fp ? async () => ({ fingerprint: fp }) : undefined);
  }

  /** The paired devices, by name. */
  devices(): PairedDevice[] {
    return this.known()
      .list()
      .map((d) => ({ name: d.name, fingerprint: d.fingerprint, server: d.server, pairedAt: d.pairedAt }));
  }

  /**
   * Pairs with the code a device printed, through `opts.server` (default: the controller's), and
   * saves the device under its own name (replacing an entry of that name).
   */
  async pair(code: string, opts: { server?: string; onStage?: (s: Stage) => void } = {}): Promise<Device> {
    const dev = await connectDevice(this.platform, { ...this.common(opts.onStage), server: opts.server ?? this.opts.server, code, replace: true });
    await this.store.flush();
    return dev;
  }

  /** Connects to a paired device by name (on the server it was paired through). */
  connect(name: string, opts: { onStage?: (s: Stage) => void } = {}): Promise<Device> {
    return connectDevice(this.platform, { ...this.common(opts.onStage), device: name });
  }

  /** Forgets a paired device; false if there was none of that name. */
  async remove(name: string): Promise<boolean> {
    const removed = this.known().remove(name);
    await this.store.flush();
    return removed;
  }

  private known(): KnownDeviceStore {
    return Devices.open(this.store);
  }

  private common(onStage: ((s: Stage) => void) | undefined) {
    return {
      name: this.opts.name ?? DEFAULT_BROWSER_NAME,
      devices: () => this.known(),
      identity: () => this.identity,
      ...(this.cert ? { cert: this.cert } : {}),
      direct: this.cert !== undefined,
      ...(this.opts.log ? { log: this.opts.log } : {}),
      ...(onStage ? { onStage } : {}),
    };
  }
}
