/**
 * Persistent pairing state next to identity.json (issue 4, "pair once").
 * Pure file I/O: no network, no werift (the DTLS generator is injected).
 *
 *   <state dir>/controllers.json  device side: controllers this device accepts
 *   <state dir>/devices.json      controller side: devices this controller paired with
 *   <state dir>/dtls.json         this installation's DTLS certificate and key
 *
 * Every file is JSON with "v":1, mode 0600 in a 0700 dir, read and written
 * through identity.ts (readSecureFile / writeSecureFile / createSecureFile),
 * so the same refusals apply: wider mode 'identity-permissions', symlink
 * 'identity-not-file', other owner 'identity-owner', group/other-writable dir
 * 'identity-dir-permissions'. A file that fails validation is refused with
 * 'identity-corrupt' and is never overwritten: a store that failed to load
 * cannot be written through. Unknown fields are refused too, because writing
 * the store back would silently drop what a newer version put there.
 *
 * Invalid arguments (a bad name, key, URL or time) throw IdentityError
 * 'identity-bad-input' and change nothing. A failed write throws and leaves
 * both the file and the in-memory store unchanged.
 *
 * The stores are not locked across processes: two processes changing the same
 * store at once can lose one update (the file itself is always whole).
 */
import { MAX_PEER_NAME_CHARS, foldPeerName, isValidPeerName } from '../../protocol/index.js';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { PinholeError } from '../../protocol/index.js';
import { IdentityError, createSecureFile, decodeKey32, ensureStateDir, fingerprintOf, isValidIdentityKey, readSecureFile, writeSecureFile } from '../../crypto/index.js';

/** Device side: the trusted controllers file. */
export const CONTROLLERS_FILE = 'controllers.json';
/** Controller side: the known devices file. */
export const DEVICES_FILE = 'devices.json';
/** The DTLS certificate file. */
export const DTLS_FILE = 'dtls.json';
/** Longest server URL in devices.json, in characters. */
export const MAX_SERVER_URL_CHARS = 2048;
/** Largest controllers.json / devices.json read, in bytes (an entry is about 200 bytes). */
export const MAX_STORE_FILE_BYTES = 1024 * 1024;
/** Largest dtls.json read, in bytes (an ECDSA P-256 one is about 1.2 KB; RSA-4096 about 6 KB). */
export const MAX_DTLS_FILE_BYTES = 64 * 1024;

/** A controller this device accepts. */
export interface TrustedController {
  /** Unique within the store, 1..64 printable characters (isValidPeerName). */
  readonly name: string;
  /** Ed25519 public key, 32 bytes: what is pinned. */
  readonly publicKey: Uint8Array;
  /** fingerprintOf(publicKey), for people. */
  readonly fingerprint: string;
  /** When it was first added, ms since the epoch. Kept when the same key is added again. */
  readonly addedAt: number;
}

/** A device this controller has paired with. */
export interface KnownDevice {
  /** What the user types (`pinhole control NAME ...`): unique within the store, 1..64 printable characters. */
  readonly name: string;
  /** The device's Ed25519 public key, 32 bytes. */
  readonly publicKey: Uint8Array;
  /** fingerprintOf(publicKey). */
  readonly fingerprint: string;
  /** Signaling server the device registers with: a ws:// or wss:// URL. */
  readonly server: string;
  /** When it was paired, ms since the epoch. */
  readonly pairedAt: number;
}

import type { DtlsKeyPair } from '../../session/index.js';
export type { DtlsKeyPair };

const isTime = (t: unknown): t is number => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0;
const encodeKey = (k: Uint8Array): string => Buffer.from(k).toString('base64url');
const sameKey = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const badInput = (msg: string): IdentityError => new IdentityError('identity-bad-input', msg);

function checkName(name: unknown, what: string): asserts name is string {
  if (!isValidPeerName(name)) throw badInput(`${what} must be 1..${MAX_PEER_NAME_CHARS} printable characters without leading or trailing spaces, got ${JSON.stringify(name)}`);
}
function checkKey(publicKey: unknown): asserts publicKey is Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw badInput('public key must be a 32-byte Uint8Array');
  if (!isValidIdentityKey(publicKey)) throw badInput('public key is not a valid Ed25519 public key');
}
/** A stored key: canonical base64url of 32 bytes that are a usable Ed25519 key. */
function storedKey(v: unknown): Uint8Array | string {
  const k = decodeKey32(v);
  if (!k) return 'publicKey is not 32-byte base64url';
  return isValidIdentityKey(k) ? k : 'publicKey is not a valid Ed25519 public key';
}
function checkTime(t: unknown, what: string): asserts t is number {
  if (!isTime(t)) throw badInput(`${what} must be a non-negative integer number of ms since the epoch, got ${String(t)}`);
}

/** A ws:// or wss:// URL with a host, at most MAX_SERVER_URL_CHARS, no whitespace or control characters. */
export function isValidServerUrl(url: unknown): url is string {
  if (typeof url !== 'string' || url.length === 0 || url.length > MAX_SERVER_URL_CHARS) return false;
  // the WHATWG parser silently strips tabs and newlines; refuse them instead
  if (/[\s\p{Cc}]/u.test(url)) return false;
  try {
    const u = new URL(url);
    return (u.protocol === 'ws:' || u.protocol === 'wss:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** Keeps at most `max` code points (never splits a surrogate pair). */
const truncate = (s: string, max: number): string => [...s].slice(0, max).join('');

/** `base` if free, else base-2, base-3, ..., shortening base so the result stays within MAX_PEER_NAME_CHARS. */
function uniqueName(base: string, taken: ReadonlySet<string>): string {
  if (!taken.has(base)) return base;
  // at most taken.size candidates can be taken, so this ends by taken.size + 2
  for (let i = 2; ; i++) {
    const suffix = `-${i}`;
    const candidate = truncate(base, MAX_PEER_NAME_CHARS - suffix.length) + suffix;
    if (!taken.has(candidate)) return candidate;
  }
}

/** Strict JSON object check: exactly these keys, no more, no fewer. */
function exactObject(v: unknown, keys: readonly string[]): Record<string, unknown> | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const have = Object.keys(o);
  if (have.length !== keys.length || !keys.every((k) => Object.prototype.hasOwnProperty.call(o, k))) return undefined;
  return o;
}

/** Parses `{"v":1,"<listKey>":[...]}`, each element through `entry` (which returns a reason string when invalid). */
function parseStore<T>(text: string, listKey: string, entry: (e: unknown) => T | string, corrupt: (why: string) => IdentityError): T[] {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw corrupt('not JSON');
  }
  const o = exactObject(j, ['v', listKey]);
  if (!o) throw corrupt(`not an object with exactly "v" and "${listKey}"`);
  if (o.v !== 1) throw corrupt(`unknown version ${JSON.stringify(o.v)}`);
  const list = o[listKey];
  if (!Array.isArray(list)) throw corrupt(`"${listKey}" is not an array`);
  return list.map((e, i) => {
    const r = entry(e);
    if (typeof r === 'string') throw corrupt(`entry ${i}: ${r}`);
    return r;
  });
}

function corruptError(path: string, what: string, advice: string): (why: string) => IdentityError {
  return (why) => new IdentityError('identity-corrupt', `${what} ${path} is corrupt (${why}); ${advice}`, path);
}

function copyController(e: TrustedController): TrustedController {
  return Object.freeze({ name: e.name, publicKey: e.publicKey.slice(), fingerprint: e.fingerprint, addedAt: e.addedAt });
}

function parseControllerEntry(v: unknown): TrustedController | string {
  const o = exactObject(v, ['name', 'publicKey', 'fingerprint', 'addedAt']);
  if (!o) return 'not an object with exactly name, publicKey, fingerprint, addedAt';
  if (!isValidPeerName(o.name)) return 'invalid name';
  const publicKey = storedKey(o.publicKey);
  if (typeof publicKey === 'string') return publicKey;
  if (o.fingerprint !== fingerprintOf(publicKey)) return 'fingerprint does not match publicKey';
  if (!isTime(o.addedAt)) return 'invalid addedAt';
  return { name: o.name, publicKey, fingerprint: o.fingerprint, addedAt: o.addedAt };
}

/**
 * Device side: the controllers this device accepts, in `<dir>/controllers.json`
 * (`{"v":1,"controllers":[{name, publicKey (base64url), fingerprint, addedAt}]}`).
 * Keyed by public key; names are unique too. Every change is written at once.
 * Returned entries are frozen copies.
 */
export class TrustedControllers {
  private constructor(
    /** The state dir. */
    readonly dir: string,
    private entries: TrustedController[],
  ) {}

  /** The file this store lives in. */
  get path(): string {
    return join(this.dir, CONTROLLERS_FILE);
  }

  /**
   * Loads the store from `dir` (created 0700 if missing); an absent file is
   * an empty store (nothing is written until the first change). Throws
   * IdentityError, 'identity-corrupt' for a file that does not validate.
   */
  static load(dir: string): TrustedControllers {
    ensureStateDir(dir);
    const path = join(dir, CONTROLLERS_FILE);
    const corrupt = corruptError(path, 'trusted controllers file', 'fix it or move it away (moving it away forgets every paired controller: they must pair again)');
    const text = readSecureFile(dir, CONTROLLERS_FILE, MAX_STORE_FILE_BYTES, 'trusted controllers file');
    const entries = text === undefined ? [] : parseStore(text, 'controllers', parseControllerEntry, corrupt);
    const names = new Set<string>();
    const keys = new Set<string>();
    for (const e of entries) {
      if (names.has(e.name)) throw corrupt(`name ${JSON.stringify(e.name)} appears twice`);
      const k = encodeKey(e.publicKey);
      if (keys.has(k)) throw corrupt(`controller ${e.fingerprint} appears twice`);
      names.add(e.name);
      keys.add(k);
    }
    return new TrustedControllers(dir, entries);
  }

  /** All entries, sorted by name (code point order, locale-independent). */
  list(): TrustedController[] {
    return this.entries.map(copyController).sort(byName);
  }

  /** The entry pinning exactly this 32-byte key, or undefined. */
  find(publicKey: Uint8Array): TrustedController | undefined {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return undefined;
    const e = this.entries.find((x) => sameKey(x.publicKey, publicKey));
    return e && copyController(e);
  }

  /**
   * Trusts `publicKey` under `name` and writes the file. The same key again
   * keeps its entry and addedAt and takes the new name. A name already used
   * by another key gets a suffix (-2, -3, ...) so names stay unique; the
   * returned entry carries the name actually stored. `now` is ms since the
   * epoch. Throws 'identity-bad-input' for an invalid name, key or time.
   */
  add(name: string, publicKey: Uint8Array, now: number): TrustedController {
    checkName(name, 'controller name');
    checkKey(publicKey);
    checkTime(now, 'now');
    const old = this.entries.find((x) => sameKey(x.publicKey, publicKey));
    const others = this.entries.filter((x) => x !== old);
    const stored = uniqueName(name, new Set(others.map((x) => x.name)));
    if (old && old.name === stored) return copyController(old);
    const entry: TrustedController = old
      ? { ...old, name: stored }
      : { name: stored, publicKey: publicKey.slice(), fingerprint: fingerprintOf(publicKey), addedAt: now };
    this.commit([...others, entry]);
    return copyController(entry);
  }

  /**
   * Removes every entry whose name is exactly `nameOrFingerprint`, or whose
   * fingerprint matches it (case-insensitive, dashes optional, the full 16
   * characters), writes the file if anything matched, and returns what was
   * removed, sorted by name (empty if nothing matched). Both are matched at
   * once so that a controller cannot dodge revocation by naming itself after
   * another's fingerprint.
   */
  revoke(nameOrFingerprint: string): TrustedController[] {
    if (typeof nameOrFingerprint !== 'string' || nameOrFingerprint === '') return [];
    const fp = nameOrFingerprint.replace(/-/g, '').toUpperCase();
    const matches = (e: TrustedController) => e.name === nameOrFingerprint || e.fingerprint.replace(/-/g, '') === fp;
    const removed = this.entries.filter(matches);
    if (removed.length === 0) return [];
    this.commit(this.entries.filter((e) => !matches(e)));
    return removed.map(copyController).sort(byName);
  }

  /** Writes first, then swaps the in-memory list: a failed write changes nothing. */
  private commit(next: TrustedController[]): void {
    next.sort(byName);
    const body = { v: 1, controllers: next.map((e) => ({ name: e.name, publicKey: encodeKey(e.publicKey), fingerprint: e.fingerprint, addedAt: e.addedAt })) };
    writeSecureFile(this.dir, CONTROLLERS_FILE, `${JSON.stringify(body, null, 1)}\n`, 'trusted controllers file');
    this.entries = next;
  }
}

function copyDevice(e: KnownDevice): KnownDevice {
  return Object.freeze({ name: e.name, publicKey: e.publicKey.slice(), fingerprint: e.fingerprint, server: e.server, pairedAt: e.pairedAt });
}

function parseDeviceEntry(v: unknown): KnownDevice | string {
  const o = exactObject(v, ['name', 'publicKey', 'fingerprint', 'server', 'pairedAt']);
  if (!o) return 'not an object with exactly name, publicKey, fingerprint, server, pairedAt';
  if (!isValidPeerName(o.name)) return 'invalid name';
  const publicKey = storedKey(o.publicKey);
  if (typeof publicKey === 'string') return publicKey;
  if (o.fingerprint !== fingerprintOf(publicKey)) return 'fingerprint does not match publicKey';
  if (!isValidServerUrl(o.server)) return 'server is not a ws:// or wss:// URL';
  if (!isTime(o.pairedAt)) return 'invalid pairedAt';
  return { name: o.name, publicKey, fingerprint: o.fingerprint, server: o.server, pairedAt: o.pairedAt };
}


/**
 * Controller side: the devices this controller has paired with, in
 * `<dir>/devices.json` (`{"v":1,"devices":[{name, publicKey, fingerprint, server, pairedAt}]}`).
 * Keyed by name: save() keeps names unique under foldPeerName (files
 * written before may still hold names differing only in case; get() then
 * wants the exact one). The same key under two names is allowed. Every change
 * is written at once. Returned entries are frozen copies.
 */
export class KnownDevices {
  private constructor(
    /** The state dir. */
    readonly dir: string,
    private entries: KnownDevice[],
  ) {}

  /** The file this store lives in. */
  get path(): string {
    return join(this.dir, DEVICES_FILE);
  }

  /** Loads the store from `dir` (created 0700 if missing); an absent file is an empty store. Throws IdentityError. */
  static load(dir: string): KnownDevices {
    ensureStateDir(dir);
    const path = join(dir, DEVICES_FILE);
    const corrupt = corruptError(path, 'known devices file', 'fix it or move it away (moving it away forgets every paired device: each must be paired again)');
    const text = readSecureFile(dir, DEVICES_FILE, MAX_STORE_FILE_BYTES, 'known devices file');
    const entries = text === undefined ? [] : parseStore(text, 'devices', parseDeviceEntry, corrupt);
    const names = new Set<string>();
    for (const e of entries) {
      if (names.has(e.name)) throw corrupt(`name ${JSON.stringify(e.name)} appears twice`);
      names.add(e.name);
    }
    return new KnownDevices(dir, entries);
  }

  /** All entries, sorted by name (code point order). */
  list(): KnownDevice[] {
    return this.entries.map(copyDevice).sort(byName);
  }

  private resolve(name: string): KnownDevice | undefined {
    if (typeof name !== 'string') return undefined;
    const exact = this.entries.find((e) => e.name === name);
    if (exact) return exact;
    const folded = foldPeerName(name);
    const ci = this.entries.filter((e) => foldPeerName(e.name) === folded);
    return ci.length === 1 ? ci[0] : undefined; // ambiguous: let the user type it exactly
  }

  /** The device named exactly `name`, else the only one whose name matches under foldPeerName, else undefined. */
  get(name: string): KnownDevice | undefined {
    const e = this.resolve(name);
    return e && copyDevice(e);
  }

  /**
   * Stores device `name` and writes the file. Every entry whose name equals
   * `name` under foldPeerName is replaced, and returned in `replaced`. If one
   * of them holds another key, that is another device: without
   * `opts.replace` nothing changes and PinholeError 'name-taken' is thrown;
   * the same key under that name is a re-pair and is always allowed.
   * `server` is a ws:// or wss:// URL, `now` ms since the epoch. Throws
   * 'identity-bad-input' for an invalid name, key, URL or time.
   */
  save(name: string, publicKey: Uint8Array, server: string, now: number, opts: { replace?: boolean } = {}): { entry: KnownDevice; replaced: KnownDevice[] } {
    checkName(name, 'device name');
    checkKey(publicKey);
    if (!isValidServerUrl(server)) throw badInput(`server must be a ws:// or wss:// URL of at most ${MAX_SERVER_URL_CHARS} characters, got ${JSON.stringify(String(server).slice(0, 100))}`);
    checkTime(now, 'now');
    const folded = foldPeerName(name);
    const old = this.entries.filter((e) => foldPeerName(e.name) === folded);
    const other = old.find((e) => !sameKey(e.publicKey, publicKey));
    if (other && opts.replace !== true) {
      throw new PinholeError('name-taken', `another device (${other.fingerprint}) is already saved as "${other.name}"`);
    }
    const entry: KnownDevice = { name, publicKey: publicKey.slice(), fingerprint: fingerprintOf(publicKey), server, pairedAt: now };
    this.commit([...this.entries.filter((e) => !old.includes(e)), entry]);
    return { entry: copyDevice(entry), replaced: old.map(copyDevice).sort(byName) };
  }

  /** Forgets the device get(name) would return and writes the file; false if there is none. */
  remove(name: string): boolean {
    const e = this.resolve(name);
    if (!e) return false;
    this.commit(this.entries.filter((x) => x !== e));
    return true;
  }

  /** Writes first, then swaps the in-memory list: a failed write changes nothing. */
  private commit(next: KnownDevice[]): void {
    next.sort(byName);
    const body = { v: 1, devices: next.map((e) => ({ name: e.name, publicKey: encodeKey(e.publicKey), fingerprint: e.fingerprint, server: e.server, pairedAt: e.pairedAt })) };
    writeSecureFile(this.dir, DEVICES_FILE, `${JSON.stringify(body, null, 1)}\n`, 'known devices file');
    this.entries = next;
  }
}

/** Checks a DTLS key pair; returns it (copied) with its SHA-256 fingerprint, or the reason it is invalid. */
function checkDtlsKeys(v: unknown): { keys: DtlsKeyPair; fingerprint: string } | string {
  const o = exactObject(v, ['certPem', 'keyPem', 'signatureHash']);
  if (!o) return 'not an object with exactly certPem, keyPem, signatureHash';
  const { certPem, keyPem } = o;
  if (typeof certPem !== 'string' || typeof keyPem !== 'string') return 'certPem and keyPem must be strings';
  const sh = exactObject(o.signatureHash, ['hash', 'signature']);
  const byte = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 255;
  if (!sh || !byte(sh.hash) || !byte(sh.signature)) return 'signatureHash must be { hash, signature } with integers 0..255';
  // werift takes the first PEM block; refuse extra blocks rather than guess which one is meant
  if ((certPem.match(/-----BEGIN /g) ?? []).length !== 1) return 'certPem must hold exactly one PEM block';
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch {
    return 'certPem is not an X.509 certificate';
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return 'keyPem is not an unencrypted private key';
  }
  if (!x509.checkPrivateKey(key)) return 'keyPem is not the key of certPem';
  // TLS SignatureAlgorithm numbers werift uses: 1 rsa, 3 ecdsa; a mismatch would fail every handshake
  if ((sh.signature === 1 && key.asymmetricKeyType !== 'rsa') || (sh.signature === 3 && key.asymmetricKeyType !== 'ec')) {
    return `signatureHash.signature ${sh.signature} does not fit a ${key.asymmetricKeyType} key`;
  }
  return { keys: { certPem, keyPem, signatureHash: { hash: sh.hash, signature: sh.signature } }, fingerprint: x509.fingerprint256 };
}

const copyKeys = (k: DtlsKeyPair): DtlsKeyPair => ({ certPem: k.certPem, keyPem: k.keyPem, signatureHash: { ...k.signatureHash } });

/**
 * Loads this installation's DTLS certificate from `<dir>/dtls.json`
 * (`{"v":1,certPem,keyPem,signatureHash}`, 0600), or on first use calls
 * `generate()` once and stores the result. The file is created by link(), so
 * of two processes creating at once one wins and the other loads the
 * winner's (its own generated pair is discarded, `created` false).
 *
 * `fingerprint` is SHA-256 of the certificate DER as in SDP
 * (`a=fingerprint:sha-256 AB:CD:...`): 32 upper-case hex pairs joined by ':'.
 *
 * Throws IdentityError: 'identity-corrupt' if the stored PEMs do not parse
 * or the key is not the certificate's, 'identity-bad-input' if `generate`
 * returns such a pair, plus the usual file refusals.
 */
export async function loadOrCreateDtlsCert(dir: string, generate: () => Promise<DtlsKeyPair>): Promise<{ keys: DtlsKeyPair; fingerprint: string; created: boolean }> {
  ensureStateDir(dir);
  const path = join(dir, DTLS_FILE);
  const label = 'DTLS certificate file';
  const corrupt = corruptError(path, label, 'move it away: a new certificate is created on the next start');
  for (let attempt = 0; attempt < 2; attempt++) {
    const text = readSecureFile(dir, DTLS_FILE, MAX_DTLS_FILE_BYTES, label);
    if (text !== undefined) {
      let j: unknown;
      try {
        j = JSON.parse(text);
      } catch {
        throw corrupt('not JSON');
      }
      const o = exactObject(j, ['v', 'certPem', 'keyPem', 'signatureHash']);
      if (!o) throw corrupt('not an object with exactly v, certPem, keyPem, signatureHash');
      if (o.v !== 1) throw corrupt(`unknown version ${JSON.stringify(o.v)}`);
      const r = checkDtlsKeys({ certPem: o.certPem, keyPem: o.keyPem, signatureHash: o.signatureHash });
      if (typeof r === 'string') throw corrupt(r);
      return { ...r, created: false };
    }
    const generated = await generate();
    const r = checkDtlsKeys(generated && { certPem: generated.certPem, keyPem: generated.keyPem, signatureHash: generated.signatureHash });
    if (typeof r === 'string') throw badInput(`the DTLS certificate generator returned an invalid pair: ${r}`);
    const body = { v: 1, certPem: r.keys.certPem, keyPem: r.keys.keyPem, signatureHash: r.keys.signatureHash };
    if (createSecureFile(dir, DTLS_FILE, `${JSON.stringify(body, null, 1)}\n`, label)) return { keys: copyKeys(r.keys), fingerprint: r.fingerprint, created: true };
    // another process created it while we generated: load theirs
  }
  throw new IdentityError('identity-io', `${label} ${path} keeps appearing and disappearing`, path);
}

export { parseSdpFingerprint } from '../../session/index.js';
