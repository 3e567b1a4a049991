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
import { lstatSync } from 'node:fs';
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

  /**
   * A loader for `dir` that loads again only when the file or the dir may
   * have changed, else returns the store it loaded last: what a device reads
   * at every command. Loading checks every key (a curve point decode, about
   * 0.1 ms each on a laptop, far more on a small board); a stat is a few
   * microseconds. Every write replaces the file by rename (a new inode and
   * change time), and a chmod, chown or hand edit changes the change time
   * too, so no change goes unseen. Throws as load() does.
   */
  static reader(dir: string): () => TrustedControllers {
    let last: { stamp: string; store: TrustedControllers } | undefined;
    return () => {
      const d = stampOf(dir);
      const f = stampOf(join(dir, CONTROLLERS_FILE));
      const stamp = d !== undefined && f !== undefined ? `${d}|${f}` : undefined;
      if (stamp === undefined || last?.stamp !== stamp) {
        const store = TrustedControllers.load(dir);
        last = stamp === undefined ? undefined : { stamp, store };
        return store;
      }
      return last.store;
    };
  }
}

/** What changes whenever a file or dir is replaced, edited, chmod'ed or chown'ed; '-' if absent; undefined if it cannot be told (load() then says why). */
function stampOf(path: string): string | undefined {
  try {
    const s = lstatSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.ctimeNs}:${s.mtimeNs}:${s.size}:${s.mode}:${s.uid}`;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? '-' : undefined;
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
