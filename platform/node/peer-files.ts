/**
 * The pairing stores (crypto/peers.ts) as files in the state dir, next to
 * identity.json:
 *
 *   <state dir>/controllers.json  device side: controllers this device accepts
 *   <state dir>/devices.json      controller side: devices this controller paired with
 *
 * Read and written through FileStateStore (./state-files.ts), so the state
 * dir's refusals apply: wider mode 'state-permissions', symlink or
 * non-regular file 'state-not-file', other owner 'state-owner',
 * group/other-writable dir 'state-dir-permissions'.
 */
import { join } from 'node:path';
import { CONTROLLERS_FILE, DEVICES_FILE, KnownDeviceStore, TrustedControllerStore } from '../../crypto/index.js';
import { FileStateStore } from './state-files.js';

/** Device side: the controllers this device accepts, in `<dir>/controllers.json`. */
export class TrustedControllers extends TrustedControllerStore {
  private constructor(
    /** The state dir. */
    readonly dir: string,
  ) {
    super(FileStateStore.open(dir));
  }

  /** The file this store lives in. */
  get path(): string {
    return join(this.dir, CONTROLLERS_FILE);
  }

  /**
   * Loads the store from `dir` (created 0700 if missing); an absent file is
   * an empty store (nothing is written until the first change). Throws
   * IdentityError, 'state-corrupt' for a file that does not validate.
   */
  static load(dir: string): TrustedControllers {
    return new TrustedControllers(dir);
  }
}

/** Controller side: the devices this controller has paired with, in `<dir>/devices.json`. */
export class KnownDevices extends KnownDeviceStore {
  private constructor(
    /** The state dir. */
    readonly dir: string,
  ) {
    super(FileStateStore.open(dir));
  }

  /** The file this store lives in. */
  get path(): string {
    return join(this.dir, DEVICES_FILE);
  }

  /** Loads the store from `dir` (created 0700 if missing); an absent file is an empty store. Throws IdentityError. */
  static load(dir: string): KnownDevices {
    return new KnownDevices(dir);
  }
}
