/**
 * The pairing state: which controllers a device accepts, which devices a
 * controller has paired with. Each is a list of peers pinned by Ed25519 key,
 * kept as one JSON record in a StateStore (crypto/state.ts; on Node a 0600
 * file in the state dir, platform/node/peer-files.ts):
 *
 *   controllers.json  {"v":1,"controllers":[{name, publicKey, fingerprint, addedAt, rights?}]}   device side
 *   devices.json      {"v":1,"devices":[{name, publicKey, fingerprint, server, pairedAt}]}   controller side
 *
 * A record that fails validation is refused with PinholeError
 * 'state-corrupt' and is never overwritten: a store that failed to load
 * cannot be written through. Unknown fields are refused too, because writing
 * the store back would silently drop what a newer version put there.
 *
 * Invalid arguments (a bad name, key, URL or time) throw PinholeError
 * 'state-bad-input' and change nothing. A failed write throws and leaves
 * both the record and the in-memory store unchanged.
 *
 * A controller's `rights` ({access, pins}, protocol/rpc.ts) are written only
 * when they grant less than FULL_RIGHTS; an entry without them (every file
 * written before rights existed) has full rights. So a list with no
 * restriction stays readable by an older pinhole, and one with restrictions
 * is refused by it (unknown field) rather than read as full rights.
 *
 * The stores are not locked across processes: two processes changing the same
 * store at once can lose one update (the record itself is always whole).
 */
import {
  BY_INPUT,
  equalBytes,
  FULL_RIGHTS,
  foldPeerName,
  isValidPeerName,
  MAX_PEER_NAME_CHARS,
  MAX_PIN,
  PinholeError,
  type Rights,
  toBase64url,
} from '../protocol/index.js';
import { decodeKey32, fingerprintOf, isValidIdentityKey } from './identity.js';
import type { StateStore } from './state.js';

/** Device side: the trusted controllers record. */
export const CONTROLLERS_FILE = 'controllers.json';
/** Controller side: the known devices record. */
export const DEVICES_FILE = 'devices.json';
/** Longest server URL in devices.json, in characters. */
export const MAX_SERVER_URL_CHARS = 2048;
/** Largest controllers.json / devices.json read, in bytes (an entry is about 200 bytes). */
export const MAX_STORE_FILE_BYTES = 1024 * 1024;

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
  /** What it may do on this device (FULL_RIGHTS unless restricted); read by the device at every command. */
  readonly rights: Readonly<Rights>;
}

/** Most pins one controller's rights may list: every pin number 0..MAX_PIN once. */
export const MAX_RIGHTS_PINS = MAX_PIN + 1;

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

const isTime = (t: unknown): t is number => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0;
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const badInput = (msg: string): PinholeError => new PinholeError('state-bad-input', msg);

function checkName(name: unknown, what: string): asserts name is string {
  if (!isValidPeerName(name))
    throw badInput(`${what} must be 1..${MAX_PEER_NAME_CHARS} printable characters without leading or trailing spaces, got ${JSON.stringify(name)}`);
}
function checkKey(publicKey: unknown): asserts publicKey is Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw badInput('public key must be a 32-byte Uint8Array');
  if (!isValidIdentityKey(publicKey)) throw badInput('public key is not a valid Ed25519 public key');
}
function checkTime(t: unknown, what: string): asserts t is number {
  if (!isTime(t)) throw badInput(`${what} must be a non-negative integer number of ms since the epoch, got ${String(t)}`);
}

/**
 * A ws:// or wss:// URL with a host, or a comma-separated list of them (the
 * servers of one deployment), at most MAX_SERVER_URL_CHARS in all, no
 * whitespace or control characters.
 */
export function isValidServerUrl(url: unknown): url is string {
  if (typeof url !== 'string' || url.length === 0 || url.length > MAX_SERVER_URL_CHARS) return false;
  // the WHATWG parser silently strips tabs and newlines; refuse them instead
  if (/[\s\p{Cc}]/u.test(url)) return false;
  return url.split(',').every((one) => {
    try {
      const u = new URL(one);
      return (u.protocol === 'ws:' || u.protocol === 'wss:') && u.hostname !== '';
    } catch {
      return false;
    }
  });
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

/** Strict JSON object check: exactly these keys, no more, no fewer (besides any of `optional`). */
export function exactObject(v: unknown, keys: readonly string[], optional: readonly string[] = []): Record<string, unknown> | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const have = Object.keys(o);
  if (!keys.every((k) => Object.hasOwn(o, k))) return undefined;
  if (have.length - keys.length > optional.filter((k) => Object.hasOwn(o, k)).length) return undefined;
  return o;
}

const isFull = (r: Readonly<Rights>): boolean => r.access === 'full' && r.pins === null;
/** A frozen copy of `r`, sharing nothing with it. */
const freezeRights = (r: Readonly<Rights>): Readonly<Rights> =>
  Object.freeze({ access: r.access, pins: r.pins === null ? null : (Object.freeze([...r.pins]) as number[]) });

/** Stored rights: exactly {access, pins}, pins null or sorted unique integers 0..MAX_PIN; the reason as a string when invalid. */
function parseRights(v: unknown): Readonly<Rights> | string {
  const o = exactObject(v, ['access', 'pins']);
  if (!o) return 'rights is not an object with exactly access, pins';
  if (o.access !== 'full' && o.access !== 'read-only') return 'rights.access is not "full" or "read-only"';
  if (o.pins === null) return freezeRights({ access: o.access, pins: null });
  const pins = o.pins;
  if (!Array.isArray(pins) || pins.length > MAX_RIGHTS_PINS) return `rights.pins is not null or an array of at most ${MAX_RIGHTS_PINS} pins`;
  for (let i = 0; i < pins.length; i++) {
    const p: unknown = pins[i];
    if (!Number.isInteger(p) || (p as number) < 0 || (p as number) > MAX_PIN) return `rights.pins holds ${JSON.stringify(p)}, not a pin 0..${MAX_PIN}`;
    if (i > 0 && (p as number) <= pins[i - 1]) return 'rights.pins is not sorted without repeats';
  }
  return freezeRights({ access: o.access, pins: pins as number[] });
}

/** Rights given by a caller: pins are sorted and deduplicated; throws 'state-bad-input' for anything else invalid. */
function checkRights(r: unknown): Readonly<Rights> {
  if (typeof r !== 'object' || r === null) throw badInput('rights must be an object {access, pins}');
  const { access, pins } = r as Partial<Rights>;
  const sorted = Array.isArray(pins) ? [...new Set(pins)].sort((a, b) => a - b) : pins;
  const parsed = parseRights({ access, pins: sorted });
  if (typeof parsed === 'string') throw badInput(parsed);
  return parsed;
}

/** Builds the 'state-corrupt' error of one state record: `<what> <where> is corrupt (<why>); <advice>`. */
export function corruptRecord(where: string, what: string, advice: string): (why: string) => PinholeError {
  return (why) => new PinholeError('state-corrupt', `${what} ${where} is corrupt (${why}); ${advice}`, where);
}

/** A stored key: canonical base64url of 32 bytes that are a usable Ed25519 key. */
function storedKey(v: unknown): Uint8Array | string {
  const k = decodeKey32(v);
  if (!k) return 'publicKey is not 32-byte base64url';
  return isValidIdentityKey(k) ? k : 'publicKey is not a valid Ed25519 public key';
}

/** Validates the fields every peer entry has; the reason as a string when invalid. */
function parsePeerFields(o: Record<string, unknown>): PeerEntry | string {
  if (!isValidPeerName(o.name)) return 'invalid name';
  const publicKey = storedKey(o.publicKey);
  if (typeof publicKey === 'string') return publicKey;
  if (o.fingerprint !== fingerprintOf(publicKey)) return 'fingerprint does not match publicKey';
  return { name: o.name, publicKey, fingerprint: o.fingerprint };
}

/** What every peer entry holds. */
interface PeerEntry {
  readonly name: string;
  readonly publicKey: Uint8Array;
  readonly fingerprint: string;
}

/** What distinguishes one list of peers from another. */
interface PeerListSpec<E extends PeerEntry> {
  /** Record name in the StateStore. */
  record: string;
  /** The list's key in the JSON object. */
  listKey: string;
  /** Names the record in messages. */
  label: string;
  /** What to tell the user about a corrupt record. */
  advice: string;
  /** The exact fields of one entry, in the order written. */
  fields: readonly string[];
  /** Fields an entry may leave out (written after `fields`, and only when `encode` gives something other than undefined). */
  optional?: readonly string[];
  /** What is written for a field beyond publicKey (default: its value as is; undefined leaves it out). */
  encode?(field: string, value: unknown): unknown;
  /** Checks the fields beyond name, publicKey and fingerprint; the entry, or the reason it is invalid. */
  entry(o: Record<string, unknown>, peer: PeerEntry): E | string;
  /** Set if two entries holding one key make the record corrupt: names an entry in that message. */
  uniqueKey?: string;
}

/**
 * A list of peers pinned by key, as one JSON record in a StateStore. Loads
 * and validates the whole record at construction; every change is written at
 * once (write first, then swap the list in memory). Returned entries are
 * frozen copies.
 */
abstract class PeerList<E extends PeerEntry> {
  protected entries: E[];

  protected constructor(
    protected readonly store: StateStore,
    private readonly spec: PeerListSpec<E>,
  ) {
    this.entries = PeerList.parse(store, spec);
  }

  private static parse<E extends PeerEntry>(store: StateStore, spec: PeerListSpec<E>): E[] {
    const text = store.read(spec.record, MAX_STORE_FILE_BYTES, spec.label);
    if (text === undefined) return [];
    const corrupt = corruptRecord(store.where(spec.record), spec.label, spec.advice);
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch {
      throw corrupt('not JSON');
    }
    const o = exactObject(j, ['v', spec.listKey]);
    if (!o) throw corrupt(`not an object with exactly "v" and "${spec.listKey}"`);
    if (o.v !== 1) throw corrupt(`unknown version ${JSON.stringify(o.v)}`);
    const list = o[spec.listKey];
    if (!Array.isArray(list)) throw corrupt(`"${spec.listKey}" is not an array`);
    const entry = (v: unknown): E | string => {
      const o = exactObject(v, spec.fields, spec.optional);
      if (!o) return `not an object with exactly ${spec.fields.join(', ')}${spec.optional ? ` (and optionally ${spec.optional.join(', ')})` : ''}`;
      const peer = parsePeerFields(o);
      return typeof peer === 'string' ? peer : spec.entry(o, peer);
    };
    const entries = list.map((v, i) => {
      const r = entry(v);
      if (typeof r === 'string') throw corrupt(`entry ${i}: ${r}`);
      return r;
    });
    const names = new Set<string>();
    const keys = new Set<string>();
    for (const e of entries) {
      if (names.has(e.name)) throw corrupt(`name ${JSON.stringify(e.name)} appears twice`);
      names.add(e.name);
      if (spec.uniqueKey === undefined) continue;
      const k = toBase64url(e.publicKey);
      if (keys.has(k)) throw corrupt(`${spec.uniqueKey} ${e.fingerprint} appears twice`);
      keys.add(k);
    }
    return entries;
  }

  /** A frozen copy of one entry. */
  protected copy(e: E): E {
    return Object.freeze({ ...e, publicKey: e.publicKey.slice() });
  }

  /** All entries, sorted by name (code point order, locale-independent). */
  list(): E[] {
    return this.entries.map((e) => this.copy(e)).sort(byName);
  }

  /** Writes first, then swaps the in-memory list: a failed write changes nothing. */
  protected commit(next: E[]): void {
    next.sort(byName);
    const { fields, optional = [], encode = (_f: string, v: unknown) => v } = this.spec;
    const list = next.map((e) => {
      const o: Record<string, unknown> = {};
      for (const f of [...fields, ...optional]) {
        const v = f === 'publicKey' ? toBase64url(e.publicKey) : encode(f, (e as Record<string, unknown>)[f]);
        if (v !== undefined) o[f] = v;
      }
      return o;
    });
    this.store.write(this.spec.record, `${JSON.stringify({ v: 1, [this.spec.listKey]: list }, null, 1)}\n`, this.spec.label);
    this.entries = next;
  }
}

const CONTROLLERS: PeerListSpec<TrustedController> = {
  record: CONTROLLERS_FILE,
  listKey: 'controllers',
  label: 'trusted controllers file',
  advice: 'fix it or move it away (moving it away forgets every paired controller: they must pair again)',
  fields: ['name', 'publicKey', 'fingerprint', 'addedAt'],
  optional: ['rights'],
  // Full rights are left out: see the top of this file.
  encode: (f, v) => (f === 'rights' && isFull(v as Rights) ? undefined : v),
  entry: (o, peer) => {
    if (!isTime(o.addedAt)) return 'invalid addedAt';
    const rights = Object.hasOwn(o, 'rights') ? parseRights(o.rights) : FULL_RIGHTS;
    return typeof rights === 'string' ? rights : { ...peer, addedAt: o.addedAt, rights };
  },
  uniqueKey: 'controller',
};

/**
 * Names a controller cannot be stored under: BY_INPUT is what a change
 * notification says for an edge no controller caused, so a controller
 * called that could pass its writes off as the outside world's.
 */
const RESERVED_CONTROLLER_NAMES: readonly string[] = [BY_INPUT];

/**
 * Device side: the controllers this device accepts. Keyed by public key;
 * names are unique too. An absent record is an empty store (nothing is
 * written until the first change).
 */
export class TrustedControllerStore extends PeerList<TrustedController> {
  /** Loads the store from `store`. Throws PinholeError, 'state-corrupt' for a record that does not validate. */
  protected constructor(store: StateStore) {
    super(store, CONTROLLERS);
  }

  /** The store kept in `store`; see the constructor. */
  static open(store: StateStore): TrustedControllerStore {
    return new TrustedControllerStore(store);
  }

  /** The entry pinning exactly this 32-byte key, or undefined. */
  find(publicKey: Uint8Array): TrustedController | undefined {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return undefined;
    const e = this.entries.find((x) => equalBytes(x.publicKey, publicKey));
    return e && this.copy(e);
  }

  /** The entry whose fingerprint is exactly `fingerprint` (as fingerprintOf writes it), or undefined. */
  findFingerprint(fingerprint: string): TrustedController | undefined {
    const e = this.entries.find((x) => x.fingerprint === fingerprint);
    return e && this.copy(e);
  }

  /**
   * Trusts `publicKey` under `name` with `rights` and writes the record. The
   * same key again keeps its entry and addedAt and takes the new name and
   * rights. A name already used by another key, or reserved (BY_INPUT), gets
   * a suffix (-2, -3, ...) so names stay unique; the returned entry carries
   * the name actually stored. `now` is ms since the epoch. Throws
   * 'state-bad-input' for an invalid name, key, time or rights (pins are
   * sorted and deduplicated first).
   */
  add(name: string, publicKey: Uint8Array, now: number, rights: Readonly<Rights> = FULL_RIGHTS): TrustedController {
    checkName(name, 'controller name');
    checkKey(publicKey);
    checkTime(now, 'now');
    const granted = checkRights(rights);
    const old = this.entries.find((x) => equalBytes(x.publicKey, publicKey));
    const others = this.entries.filter((x) => x !== old);
    const stored = uniqueName(name, new Set([...others.map((x) => x.name), ...RESERVED_CONTROLLER_NAMES]));
    if (old && old.name === stored && sameRights(old.rights, granted)) return this.copy(old);
    const entry: TrustedController = old
      ? { ...old, name: stored, rights: granted }
      : { name: stored, publicKey: publicKey.slice(), fingerprint: fingerprintOf(publicKey), addedAt: now, rights: granted };
    this.commit([...others, entry]);
    return this.copy(entry);
  }

  /**
   * Gives the controller `who` names new rights and writes the record at
   * once; returns its entry. `who` is matched as revoke() matches it, but
   * a fingerprint match wins over a name match: a name is what a controller
   * called itself at pairing, so one named after another's fingerprint must
   * not receive that one's rights. Throws PinholeError 'unknown-controller'
   * when nothing matches, 'state-bad-input' for invalid rights.
   */
  setRights(who: string, rights: Readonly<Rights>): TrustedController {
    const granted = checkRights(rights);
    const e = this.entryOf(who);
    if (!e) throw new PinholeError('unknown-controller', `no trusted controller is named ${JSON.stringify(String(who))} or has that fingerprint`);
    if (sameRights(e.rights, granted)) return this.copy(e);
    const entry: TrustedController = { ...e, rights: granted };
    this.commit([...this.entries.filter((x) => x !== e), entry]);
    return this.copy(entry);
  }

  /** The entry `who` names, as setRights() matches it (a fingerprint match first, then a name), or undefined. */
  findWho(who: string): TrustedController | undefined {
    const e = this.entryOf(who);
    return e && this.copy(e);
  }

  private entryOf(who: string): TrustedController | undefined {
    const fp = typeof who === 'string' ? who.replace(/-/g, '').toUpperCase() : '';
    return this.entries.find((x) => x.fingerprint.replace(/-/g, '') === fp) ?? this.entries.find((x) => x.name === who);
  }

  /** A frozen copy, its rights too. */
  protected override copy(e: TrustedController): TrustedController {
    return Object.freeze({ ...e, publicKey: e.publicKey.slice(), rights: freezeRights(e.rights) });
  }

  /**
   * Removes every entry whose name is exactly `nameOrFingerprint`, or whose
   * fingerprint matches it (case-insensitive, dashes optional, the full 16
   * characters), writes the record if anything matched, and returns what was
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
    return removed.map((e) => this.copy(e)).sort(byName);
  }
}

function sameRights(a: Readonly<Rights>, b: Readonly<Rights>): boolean {
  if (a.access !== b.access) return false;
  if (a.pins === null || b.pins === null) return a.pins === b.pins;
  return a.pins.length === b.pins.length && a.pins.every((p, i) => p === b.pins![i]);
}

const DEVICES: PeerListSpec<KnownDevice> = {
  record: DEVICES_FILE,
  listKey: 'devices',
  label: 'known devices file',
  advice: 'fix it or move it away (moving it away forgets every paired device: each must be paired again)',
  fields: ['name', 'publicKey', 'fingerprint', 'server', 'pairedAt'],
  entry: (o, peer) => {
    if (!isValidServerUrl(o.server)) return 'server is not a ws:// or wss:// URL';
    if (!isTime(o.pairedAt)) return 'invalid pairedAt';
    return { ...peer, server: o.server, pairedAt: o.pairedAt };
  },
};

/**
 * Controller side: the devices this controller has paired with. Keyed by
 * name: save() keeps names unique under foldPeerName (records written
 * before may still hold names differing only in case; get() then wants the
 * exact one). The same key under two names is allowed. An absent record is
 * an empty store.
 */
export class KnownDeviceStore extends PeerList<KnownDevice> {
  /** Loads the store from `store`. Throws PinholeError. */
  protected constructor(store: StateStore) {
    super(store, DEVICES);
  }

  /** The store kept in `store`; see the constructor. */
  static open(store: StateStore): KnownDeviceStore {
    return new KnownDeviceStore(store);
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
    return e && this.copy(e);
  }

  /**
   * Stores device `name` and writes the record. Every entry whose name
   * equals `name` under foldPeerName is replaced, and returned in
   * `replaced`. If one of them holds another key, that is another device:
   * without `opts.replace` nothing changes and PinholeError 'name-taken' is
   * thrown; the same key under that name is a re-pair and is always allowed.
   * `server` is a ws:// or wss:// URL, `now` ms since the epoch. Throws
   * 'state-bad-input' for an invalid name, key, URL or time.
   */
  save(name: string, publicKey: Uint8Array, server: string, now: number, opts: { replace?: boolean } = {}): { entry: KnownDevice; replaced: KnownDevice[] } {
    checkName(name, 'device name');
    checkKey(publicKey);
    if (!isValidServerUrl(server))
      throw badInput(`server must be a ws:// or wss:// URL of at most ${MAX_SERVER_URL_CHARS} characters, got ${JSON.stringify(String(server).slice(0, 100))}`);
    checkTime(now, 'now');
    const folded = foldPeerName(name);
    const old = this.entries.filter((e) => foldPeerName(e.name) === folded);
    const other = old.find((e) => !equalBytes(e.publicKey, publicKey));
    if (other && opts.replace !== true) {
      throw new PinholeError('name-taken', `another device (${other.fingerprint}) is already saved as "${other.name}"`);
    }
    const entry: KnownDevice = { name, publicKey: publicKey.slice(), fingerprint: fingerprintOf(publicKey), server, pairedAt: now };
    this.commit([...this.entries.filter((e) => !old.includes(e)), entry]);
    return { entry: this.copy(entry), replaced: old.map((e) => this.copy(e)).sort(byName) };
  }

  /** Forgets the device get(name) would return and writes the record; false if there is none. */
  remove(name: string): boolean {
    const e = this.resolve(name);
    if (!e) return false;
    this.commit(this.entries.filter((x) => x !== e));
    return true;
  }
}
