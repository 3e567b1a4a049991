/**
 * The state dir on disk: every persistent record of this installation is a
 * file in it (identity.json, controllers.json, devices.json, dtls.json).
 *
 * The state dir is `--state-dir`, else $XDG_CONFIG_HOME/pinhole, else
 * ~/.config/pinhole (resolveStateDir, pure: the environment is passed in).
 * Files are mode 0600 in a directory created with mode 0700.
 *
 * Like ssh with its private keys, a state file that other users could read
 * (any mode bit beyond 0600), that another user owns, that is a symlink or
 * not a regular file, or that sits in a directory other users can write to,
 * is refused with an PinholeError carrying a stable code; nothing is
 * silently "fixed". POSIX mode checks are skipped on Windows, where modes do
 * not mean this.
 *
 * ensureStateDir, readSecureFile, writeSecureFile (atomic replace) and
 * createSecureFile (create once) do the checks; FileStateStore offers them to
 * the core as a StateStore (crypto/state.ts).
 */

import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fchmodSync,
  constants as fsc,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  type Stats,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { type Identity, openIdentity, type StateStore } from '../../crypto/index.js';
import { PinholeError } from '../../protocol/index.js';
import { nodeCurve25519 } from './curve25519.js';

/** Mode of every state file written by writeSecureFile/createSecureFile; a file read with any other bit set is refused. */
export const SECURE_FILE_MODE = 0o600;
/** Mode of a state dir this module creates. */
export const STATE_DIR_MODE = 0o700;

/**
 * The state directory: the override if given, else $XDG_CONFIG_HOME/pinhole
 * (only if absolute, as the XDG spec requires), else $HOME/.config/pinhole.
 * Pure: reads nothing but its arguments.
 */
export function resolveStateDir(env: { XDG_CONFIG_HOME?: string; HOME?: string }, override?: string): string {
  if (override !== undefined && override !== '') return override;
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'pinhole');
  const home = env.HOME;
  if (home && isAbsolute(home)) return join(home, '.config', 'pinhole');
  throw new PinholeError('state-no-dir', 'cannot locate the state directory: set --state-dir, XDG_CONFIG_HOME or HOME');
}

const isWindows = process.platform === 'win32';
const myUid = (): number | undefined => (typeof process.getuid === 'function' ? process.getuid() : undefined);
const modeString = (mode: number): string => (mode & 0o777).toString(8).padStart(4, '0');

function ioError(e: unknown, what: string, path: string): PinholeError {
  if (e instanceof PinholeError) return e;
  const code = (e as NodeJS.ErrnoException)?.code ?? 'error';
  return new PinholeError('state-io', `${what} ${path}: ${code}`, path);
}

function checkDirArg(dir: unknown): asserts dir is string {
  if (typeof dir !== 'string' || dir === '') throw new PinholeError('state-no-dir', 'state directory must be a non-empty path');
}

/** A bare file name inside the state dir: no separators, no '.' or '..'. Anything else is a caller bug. */
function checkFileName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw new PinholeError('state-bad-input', `state file name must be a plain file name, got ${JSON.stringify(name)}`);
  }
}

/**
 * Checks an existing state dir: a real directory (not a symlink), owned by
 * this user, not writable by group or others. Returns false if it does not
 * exist.
 */
function checkStateDir(dir: string): boolean {
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'ENOENT') return false;
    throw ioError(e, 'cannot stat state directory', dir);
  }
  if (!st.isDirectory()) throw new PinholeError('state-io', `state directory ${dir} is not a directory`, dir);
  if (isWindows) return true;
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid)
    throw new PinholeError('state-owner', `state directory ${dir} is owned by uid ${st.uid}, not by this user (uid ${uid})`, dir);
  if ((st.mode & 0o022) !== 0)
    throw new PinholeError(
      'state-dir-permissions',
      `state directory ${dir} has mode ${modeString(st.mode)}: others can write to it; run: chmod 700 ${dir}`,
      dir,
    );
  return true;
}

/**
 * Creates the state dir with mode 0700 (exactly, whatever the umask) if it is
 * missing, then checks it: a real directory owned by this user that group
 * and others cannot write to. Readable by others is accepted: the files in
 * it are 0600. Throws PinholeError.
 */
export function ensureStateDir(dir: string): void {
  checkDirArg(dir);
  try {
    const created = mkdirSync(dir, { recursive: true, mode: STATE_DIR_MODE });
    if (created !== undefined && !isWindows) chmodSync(dir, STATE_DIR_MODE); // exact mode whatever the umask
  } catch (e) {
    throw ioError(e, 'cannot create state directory', dir);
  }
  checkStateDir(dir);
}

/** What a non-regular file is, for messages. */
function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device file';
  return 'not a regular file';
}

function notRegular(label: string, path: string, st: Stats): PinholeError {
  return new PinholeError('state-not-file', `${label} ${path} is ${fileKind(st)}, not a regular file; move it away`, path);
}

/**
 * Reads `<dir>/<name>` as UTF-8 text, or undefined if the dir or the file
 * does not exist. Refuses (PinholeError): a dir failing ensureStateDir's
 * checks, a symlink or non-regular file such as a FIFO, socket, directory
 * or device ('state-not-file', at once: nothing blocks), a file owned
 * by another user ('state-owner'), any mode bit beyond 0600
 * ('state-permissions'; 0400 is fine), more than `maxBytes` bytes or
 * invalid UTF-8 ('state-corrupt'). Creates nothing. `label` names the
 * file in messages (default "state file").
 */
export function readSecureFile(dir: string, name: string, maxBytes: number, label = 'state file'): string | undefined {
  checkDirArg(dir);
  checkFileName(name);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new PinholeError('state-bad-input', `maxBytes must be a non-negative integer, got ${maxBytes}`);
  if (!checkStateDir(dir)) return undefined;
  const path = join(dir, name);
  const symlink = (): PinholeError => new PinholeError('state-not-file', `${label} ${path} is a symlink; refusing to follow it`, path);
  // Look before opening: opening a FIFO waits for a writer forever, and opening a device can act on it.
  let before: Stats;
  try {
    before = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'ENOENT') return undefined;
    throw ioError(e, `cannot stat ${label}`, path);
  }
  if (before.isSymbolicLink()) throw symlink();
  if (!before.isFile()) throw notRegular(label, path, before);
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink planted in place of the file fails with ELOOP instead of being read.
    // O_NONBLOCK: a FIFO swapped in after the lstat opens at once (and fstat refuses it).
    fd = openSync(path, fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0) | (fsc.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw symlink();
    throw ioError(e, `cannot open ${label}`, path);
  }
  try {
    // fstat, not stat: checks the file we actually opened
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegular(label, path, st);
    if (!isWindows) {
      const uid = myUid();
      if (uid !== undefined && st.uid !== uid)
        throw new PinholeError('state-owner', `${label} ${path} is owned by uid ${st.uid}, not by this user (uid ${uid})`, path);
      if ((st.mode & 0o777 & ~SECURE_FILE_MODE) !== 0) {
        throw new PinholeError('state-permissions', `${label} ${path} has mode ${modeString(st.mode)}, wider than 0600; run: chmod 600 ${path}`, path);
      }
    }
    if (st.size > maxBytes)
      throw new PinholeError('state-corrupt', `${label} ${path} is ${st.size} bytes, more than the ${maxBytes} allowed; move it away`, path);
    // read up to maxBytes + 1: the file may grow between fstat and read
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > maxBytes) throw new PinholeError('state-corrupt', `${label} ${path} is more than the ${maxBytes} bytes allowed; move it away`, path);
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
    } catch {
      throw new PinholeError('state-corrupt', `${label} ${path} is not valid UTF-8; move it away`, path);
    }
  } catch (e) {
    throw ioError(e, `cannot read ${label}`, path);
  } finally {
    closeSync(fd);
  }
}

/** fsync the directory so a rename or link into it survives a power cut (boards lose power); best effort. */
function syncDir(dir: string): void {
  if (isWindows) return;
  let fd: number | undefined;
  try {
    fd = openSync(dir, fsc.O_RDONLY | (fsc.O_DIRECTORY ?? 0) | (fsc.O_NONBLOCK ?? 0));
    fsyncSync(fd);
  } catch {
    /* some filesystems refuse fsync on a directory: the data itself is already synced */
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Writes `text` to a fresh temp file next to `<dir>/<name>`: opened O_EXCL
 * with mode 0600 (fchmod'ed to exactly 0600 whatever the umask), fully
 * written and fsynced, so that no reader ever sees a partial or wider-mode
 * file. Then `place(tmp, path)` moves it into place; the temp file is
 * always removed afterwards.
 */
function writeViaTemp<T>(dir: string, name: string, text: string, label: string, place: (tmp: string, path: string) => T): T {
  checkDirArg(dir);
  checkFileName(name);
  if (typeof text !== 'string') throw new PinholeError('state-bad-input', 'state file content must be a string');
  ensureStateDir(dir);
  const path = join(dir, name);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number;
  try {
    fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0), SECURE_FILE_MODE);
  } catch (e) {
    throw ioError(e, `cannot create ${label}`, tmp);
  }
  try {
    try {
      if (!isWindows) fchmodSync(fd, SECURE_FILE_MODE);
      const data = Buffer.from(text, 'utf8');
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const result = place(tmp, path);
    syncDir(dir);
    return result;
  } catch (e) {
    throw ioError(e, `cannot write ${label}`, path);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone (renamed into place) */
    }
  }
}

/**
 * Creates `<dir>/<name>` (mode 0600, dir made 0700 if missing) only if it
 * does not exist yet: the fsynced temp file is hard-linked into place and
 * link() fails if the name is taken, so of two processes creating at once
 * exactly one wins. Returns false, writing nothing, if the file already
 * existed. For write-once files (keys, certificates).
 */
export function createSecureFile(dir: string, name: string, text: string, label = 'state file'): boolean {
  return writeViaTemp(dir, name, text, label, (tmp, path) => {
    try {
      linkSync(tmp, path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException)?.code === 'EEXIST') return false;
      throw e;
    }
  });
}

/**
 * Atomically creates or replaces `<dir>/<name>` with `text` (mode 0600, dir
 * made 0700 if missing): the fsynced temp file is renamed over the old one,
 * so a reader, or a crash, sees either the old or the new content, never a
 * mix. Last writer wins: there is no lock between processes. For stores
 * that change (trusted controllers, known devices).
 */
export function writeSecureFile(dir: string, name: string, text: string, label = 'state file'): void {
  writeViaTemp(dir, name, text, label, (tmp, path) => renameSync(tmp, path));
}

/**
 * The state dir as the core's StateStore: read/write/create are
 * readSecureFile/writeSecureFile/createSecureFile on `<dir>/<name>`.
 */
export class FileStateStore implements StateStore {
  private constructor(readonly dir: string) {}

  /** The store over `dir`, creating the dir (0700) if missing and checking it (ensureStateDir). Throws PinholeError. */
  static open(dir: string): FileStateStore {
    ensureStateDir(dir);
    return new FileStateStore(dir);
  }

  read(name: string, maxBytes: number, label?: string): string | undefined {
    return readSecureFile(this.dir, name, maxBytes, label);
  }

  write(name: string, text: string, label?: string): void {
    writeSecureFile(this.dir, name, text, label);
  }

  create(name: string, text: string, label?: string): boolean {
    return createSecureFile(this.dir, name, text, label);
  }

  where(name: string): string {
    return join(this.dir, name);
  }
}

/**
 * Loads the identity in `dir`, creating the dir (0700) and a fresh key
 * (0600) on first use; it signs with OpenSSL. Throws PinholeError with a
 * stable code.
 */
export function loadOrCreateIdentity(dir: string): Identity {
  return openIdentity(FileStateStore.open(dir), undefined, nodeCurve25519);
}
