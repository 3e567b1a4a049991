/**
 * The long-term Ed25519 identity of one pinhole installation (issue 4,
 * "Identity and pair-once"). Created on first use, then loaded.
 *
 *   <state dir>/identity.json   mode 0600, in a directory created with mode 0700
 *   {"v":1,"alg":"ed25519","secretKey":"<32 bytes base64url>","publicKey":"<32 bytes base64url>"}
 *
 * The state dir is `--state-dir`, else $XDG_CONFIG_HOME/pinhole, else
 * ~/.config/pinhole (resolveStateDir, pure: the environment is passed in).
 *
 * Like ssh with its private keys, a key file that other users could read
 * (any mode bit beyond 0600), that another user owns, that is a symlink, or
 * that sits in a directory other users can write to, is refused with an
 * IdentityError carrying a stable code; nothing is silently "fixed".
 * POSIX mode checks are skipped on Windows, where modes do not mean this.
 *
 * Signatures are plain Ed25519 (RFC 8032) from @noble/curves; verification is
 * strict RFC 8032 (no ZIP-215 leniency, small-order keys refused). Callers
 * must domain-separate what they sign (e.g. a fixed "pinhole/1 dtls-fp" prefix)
 * so that one signature can never be replayed as another kind of statement.
 */
import { closeSync, fstatSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readSync, unlinkSync, writeSync, chmodSync, constants as fsc } from 'node:fs';
import { join, isAbsolute } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';

/** Name of the identity file inside the state dir. */
export const IDENTITY_FILE = 'identity.json';
/** Mode of the identity file. */
export const IDENTITY_FILE_MODE = 0o600;
/** Mode of a state dir this module creates. */
export const STATE_DIR_MODE = 0o700;
/** Bytes of SHA-256(publicKey) shown in a fingerprint: 80 bits, 16 base32 characters. */
export const FINGERPRINT_BYTES = 10;
/** Largest identity file read; a real one is about 150 bytes. */
const MAX_IDENTITY_FILE_BYTES = 4096;

export type IdentityErrorCode =
  | 'identity-no-state-dir' // neither an override, an absolute XDG_CONFIG_HOME nor HOME
  | 'identity-permissions' // key file mode wider than 0600
  | 'identity-dir-permissions' // state dir writable by group or others
  | 'identity-owner' // key file or state dir owned by another user
  | 'identity-not-file' // key file path is a symlink or not a regular file
  | 'identity-corrupt' // key file unreadable as an identity (bad JSON, fields, lengths, key mismatch)
  | 'identity-io'; // any other filesystem failure

export class IdentityError extends Error {
  constructor(readonly code: IdentityErrorCode, message: string, readonly path?: string) {
    super(message);
    this.name = 'IdentityError';
  }
}

export interface Identity {
  /** Ed25519 public key, 32 bytes. Pin this full key, never the fingerprint. */
  readonly publicKey: Uint8Array;
  /** Short human form for reading aloud and comparing: XXXX-XXXX-XXXX-XXXX (base32 of SHA-256(publicKey)[0..10]). */
  readonly fingerprint: string;
  /** The key file. */
  readonly path: string;
  /** True if this call created the key. */
  readonly created: boolean;
  /** Ed25519 signature (64 bytes) of msg. */
  sign(msg: Uint8Array): Uint8Array;
}

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
  throw new IdentityError('identity-no-state-dir', 'cannot locate the state directory: set --state-dir, XDG_CONFIG_HOME or HOME');
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32, no padding. */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/** The short human form of a public key: base32 of the first 10 bytes of SHA-256(publicKey), in groups of four. */
export function fingerprintOf(publicKey: Uint8Array): string {
  return base32(sha256(publicKey).subarray(0, FINGERPRINT_BYTES)).match(/.{1,4}/g)!.join('-');
}

/** Strict RFC 8032 Ed25519 verification; false (never a throw) for anything malformed. */
export function verifyIdentitySignature(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
  if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(msg instanceof Uint8Array)) return false;
  try {
    return ed25519.verify(sig, msg, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

const isWindows = process.platform === 'win32';
const myUid = (): number | undefined => (typeof process.getuid === 'function' ? process.getuid() : undefined);

function ioError(e: unknown, what: string, path: string): IdentityError {
  if (e instanceof IdentityError) return e;
  const code = (e as NodeJS.ErrnoException)?.code ?? 'error';
  return new IdentityError('identity-io', `${what} ${path}: ${code}`, path);
}

/** Creates the state dir (0700) if missing; refuses one that others can write to or that another user owns. */
function ensureStateDir(dir: string): void {
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode: STATE_DIR_MODE });
    if (created !== undefined && !isWindows) chmodSync(dir, STATE_DIR_MODE); // exact mode whatever the umask
  } catch (e) {
    throw ioError(e, 'cannot create state directory', dir);
  }
  let st;
  try {
    st = lstatSync(dir);
  } catch (e) {
    throw ioError(e, 'cannot stat state directory', dir);
  }
  if (!st.isDirectory()) throw new IdentityError('identity-io', `state directory ${dir} is not a directory`, dir);
  if (isWindows) return;
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid) throw new IdentityError('identity-owner', `state directory ${dir} is owned by uid ${st.uid}, not by this user (uid ${uid})`, dir);
  if ((st.mode & 0o022) !== 0) throw new IdentityError('identity-dir-permissions', `state directory ${dir} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: others can write to it; run: chmod 700 ${dir}`, dir);
}

function encodeIdentity(secretKey: Uint8Array, publicKey: Uint8Array): string {
  return `${JSON.stringify({ v: 1, alg: 'ed25519', secretKey: Buffer.from(secretKey).toString('base64url'), publicKey: Buffer.from(publicKey).toString('base64url') })}\n`;
}

function decodeKey(v: unknown): Uint8Array | undefined {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(v)) return undefined;
  const b = Buffer.from(v, 'base64url');
  return b.length === 32 && b.toString('base64url') === v ? new Uint8Array(b) : undefined;
}

function parseIdentity(text: string, path: string): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const corrupt = (why: string) => new IdentityError('identity-corrupt', `identity file ${path} is corrupt (${why}); move it away to create a new identity (peers paired with the old one must pair again)`, path);
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw corrupt('not JSON');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw corrupt('not an object');
  const o = j as Record<string, unknown>;
  if (o.v !== 1 || o.alg !== 'ed25519') throw corrupt('unknown version or algorithm');
  const secretKey = decodeKey(o.secretKey);
  const publicKey = decodeKey(o.publicKey);
  if (!secretKey || !publicKey) throw corrupt('keys are not 32-byte base64url');
  const derived = ed25519.getPublicKey(secretKey);
  if (Buffer.compare(Buffer.from(derived), Buffer.from(publicKey)) !== 0) throw corrupt('public key does not match the secret key');
  return { secretKey, publicKey };
}

/** Reads the key file, refusing symlinks, non-regular files, other owners and wide modes. undefined if it does not exist. */
function readKeyFile(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new IdentityError('identity-not-file', `identity file ${path} is a symlink; refusing to follow it`, path);
    throw ioError(e, 'cannot open identity file', path);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new IdentityError('identity-not-file', `identity file ${path} is not a regular file`, path);
    if (!isWindows) {
      const uid = myUid();
      if (uid !== undefined && st.uid !== uid) throw new IdentityError('identity-owner', `identity file ${path} is owned by uid ${st.uid}, not by this user (uid ${uid})`, path);
      if ((st.mode & 0o777 & ~IDENTITY_FILE_MODE) !== 0) {
        throw new IdentityError('identity-permissions', `identity file ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, wider than 0600; run: chmod 600 ${path}`, path);
      }
    }
    if (st.size > MAX_IDENTITY_FILE_BYTES) throw new IdentityError('identity-corrupt', `identity file ${path} is ${st.size} bytes, too large to be an identity`, path);
    const buf = Buffer.alloc(MAX_IDENTITY_FILE_BYTES + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > MAX_IDENTITY_FILE_BYTES) throw new IdentityError('identity-corrupt', `identity file ${path} is too large to be an identity`, path);
    }
    return buf.subarray(0, n).toString('utf8');
  } catch (e) {
    throw ioError(e, 'cannot read identity file', path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a new identity without ever exposing a partial or wider-mode file:
 * a temp file opened O_EXCL with mode 0600 (fchmod'ed to exactly 0600),
 * fsynced, then hard-linked into place. link() fails if the file appeared in
 * the meantime, so a concurrent first run keeps one identity. Returns false
 * if another process won the race.
 */
function writeKeyFile(path: string, text: string): boolean {
  const tmp = `${path}.tmp-${process.pid}-${Buffer.from(randomBytes(6)).toString('hex')}`;
  let fd: number;
  try {
    fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0), IDENTITY_FILE_MODE);
  } catch (e) {
    throw ioError(e, 'cannot create identity file', tmp);
  }
  try {
    try {
      if (!isWindows) chmodSync(tmp, IDENTITY_FILE_MODE);
      const data = Buffer.from(text, 'utf8');
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException)?.code === 'EEXIST') return false;
      throw e;
    }
  } catch (e) {
    throw ioError(e, 'cannot write identity file', path);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  }
}

function makeIdentity(secretKey: Uint8Array, publicKey: Uint8Array, path: string, created: boolean): Identity {
  const sk = secretKey.slice();
  return {
    publicKey: publicKey.slice(),
    fingerprint: fingerprintOf(publicKey),
    path,
    created,
    sign: (msg: Uint8Array) => {
      if (!(msg instanceof Uint8Array)) throw new TypeError('msg must be a Uint8Array');
      return ed25519.sign(msg, sk);
    },
  };
}

/**
 * Loads the identity in `dir`, creating the dir (0700) and a fresh key
 * (0600) on first use. Throws IdentityError with a stable code.
 */
export function loadOrCreateIdentity(dir: string): Identity {
  if (typeof dir !== 'string' || dir === '') throw new IdentityError('identity-no-state-dir', 'state directory must be a non-empty path');
  ensureStateDir(dir);
  const path = join(dir, IDENTITY_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    const text = readKeyFile(path);
    if (text !== undefined) {
      const { secretKey, publicKey } = parseIdentity(text, path);
      return makeIdentity(secretKey, publicKey, path, false);
    }
    const secretKey = ed25519.utils.randomSecretKey();
    const publicKey = ed25519.getPublicKey(secretKey);
    if (writeKeyFile(path, encodeIdentity(secretKey, publicKey))) return makeIdentity(secretKey, publicKey, path, true);
    // another process created it between our read and our link: load theirs
  }
  throw new IdentityError('identity-io', `identity file ${path} keeps appearing and disappearing`, path);
}
