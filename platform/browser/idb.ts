/**
 * The page's persistent state in IndexedDB: the core's StateStore
 * (crypto/state.ts: identity key, paired devices) and the DTLS certificate.
 *
 *   database <dbName> (default 'pinhole'), version 1
 *     object store 'state'  key: record name, value: its text
 *     object store 'certs'  key: 'dtls', value: the RTCCertificate itself (structured clone)
 *
 * The StateStore interface is synchronous and IndexedDB is not, so the store
 * works on an in-memory copy loaded at open(); writes change the copy at once
 * and go to disk in order, one transaction each. IndexedDB runs readwrite
 * transactions on one store in the order they were created, so the disk
 * never holds an older text after a newer one.
 */

import { checkedText, type StateStore } from '../../crypto/index.js';
import { PinholeError } from '../../protocol/index.js';
import { certFingerprint } from './rtc.js';

/** The database a page uses unless told otherwise. */
export const DEFAULT_DB_NAME = 'pinhole';
const DB_VERSION = 1;
const STATE = 'state';
const CERTS = 'certs';
const CERT_KEY = 'dtls';

/**
 * Renew the certificate when less than this much of its life remains. The
 * fingerprint is signed afresh in every handshake (nothing pins it), so a new
 * one costs nothing; but a certificate that expires during a long session
 * would make the next redial's DTLS fail, so we renew well before: a week
 * covers a tab left open for days.
 */
export const RENEW_BEFORE_MS = 7 * 24 * 3600_000;
/** Life asked of a new certificate; Chromium caps it (at 30 days by default behaviour, 365 at most), and `expires` tells what we got. */
export const CERT_LIFETIME_MS = 365 * 24 * 3600_000;

const ioError = (what: string, e: unknown, where: string): PinholeError =>
  new PinholeError('state-io', `IndexedDB ${what} failed: ${(e as Error | null)?.message ?? String(e)}`, where);

/** Opens (creating or upgrading) the database. */
function openDb(dbName: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    let req: IDBOpenDBRequest;
    try {
      req = indexedDB.open(dbName, DB_VERSION);
    } catch (e) {
      reject(ioError('open', e, `indexeddb:${dbName}`));
      return;
    }
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(STATE)) db.createObjectStore(STATE);
      if (!db.objectStoreNames.contains(CERTS)) db.createObjectStore(CERTS);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(ioError('open', req.error, `indexeddb:${dbName}`));
    req.onblocked = () => reject(new PinholeError('state-io', `IndexedDB ${dbName} is held open at an older version by another tab`, `indexeddb:${dbName}`));
  });
}

/** Resolves when a transaction commits. */
function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** A StateStore (crypto/state.ts, synchronous) over an in-memory copy of IndexedDB. */
export class IdbStateStore implements StateStore {
  readonly #texts: Map<string, string>;
  /** Writes not yet on disk. */
  readonly #pending = new Set<Promise<void>>();
  /** The first write that failed, reported by every later flush(). */
  #failed: PinholeError | undefined;

  private constructor(
    private readonly db: IDBDatabase,
    readonly dbName: string,
    texts: Map<string, string>,
  ) {
    this.#texts = texts;
  }

  /** Opens the database and loads every record. Throws PinholeError `state-io` (IndexedDB refused: private mode, quota, blocked upgrade) or `state-corrupt` (a record that is not text). */
  static async open(dbName: string = DEFAULT_DB_NAME): Promise<IdbStateStore> {
    const db = await openDb(dbName);
    const where = `indexeddb:${dbName}`;
    try {
      const tx = db.transaction(STATE, 'readonly');
      const store = tx.objectStore(STATE);
      const [keys, values] = await Promise.all([request(store.getAllKeys()), request(store.getAll())]);
      const texts = new Map<string, string>();
      keys.forEach((k, i) => {
        const v: unknown = values[i];
        if (typeof k !== 'string' || typeof v !== 'string') {
          throw new PinholeError('state-corrupt', `IndexedDB ${dbName} holds a state record that is not text`, where);
        }
        texts.set(k, v);
      });
      return new IdbStateStore(db, dbName, texts);
    } catch (e) {
      db.close();
      throw e instanceof PinholeError ? e : ioError('read', e, where);
    }
  }

  read(name: string, maxBytes: number, label?: string): string | undefined {
    return checkedText(this.#texts.get(name), maxBytes, this.where(name), label);
  }

  write(name: string, text: string): void {
    this.#texts.set(name, text);
    this.#persist(name, text, 'put');
  }

  /**
   * Creates `name` unless this store already holds it. Another tab's store
   * has its own copy: if it created the record first, our add() fails on
   * disk, our copy takes the stored text, and flush() rejects (state-io), so
   * the caller learns that what it created did not stick.
   */
  create(name: string, text: string): boolean {
    if (this.#texts.has(name)) return false;
    this.#texts.set(name, text);
    this.#persist(name, text, 'add');
    return true;
  }

  where(name: string): string {
    return `indexeddb:${this.dbName}/${name}`;
  }

  /** Resolves when every write so far is on disk; rejects with the first write that failed. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.#pending]);
    if (this.#failed) throw this.#failed;
  }

  /** Closes the database once the pending writes are done. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#pending]);
    this.db.close();
  }

  #persist(name: string, text: string, how: 'put' | 'add'): void {
    let p: Promise<void>;
    try {
      const tx = this.db.transaction(STATE, 'readwrite');
      const store = tx.objectStore(STATE);
      if (how === 'put') store.put(text, name);
      else {
        const r = store.add(text, name);
        r.onerror = (ev) => {
          if (r.error?.name !== 'ConstraintError') return;
          ev.preventDefault(); // the add fails alone; read what the other tab stored
          store.get(name).onsuccess = (g) => {
            const v: unknown = (g.target as IDBRequest).result;
            if (typeof v === 'string') this.#texts.set(name, v);
          };
          this.#failed ??= new PinholeError('state-io', `${this.where(name)} was created by another tab at the same time; reload the page`, this.where(name));
        };
      }
      p = done(tx);
    } catch (e) {
      p = Promise.reject(e);
    }
    const tracked = p.then(
      () => undefined,
      (e: unknown) => {
        this.#failed ??= ioError(`write of ${name}`, e, this.where(name));
      },
    );
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }
}

/**
 * The DTLS certificate (RTCPeerConnection.generateCertificate, ECDSA P-256),
 * kept in IndexedDB and renewed when less than RENEW_BEFORE_MS of its life
 * remains. `fingerprint` is certFingerprint(certificate), what the handshake
 * signs. Throws PinholeError `state-io` when IndexedDB refuses.
 */
export async function loadOrCreateCertificate(dbName: string = DEFAULT_DB_NAME): Promise<{ certificate: RTCCertificate; fingerprint: string }> {
  const db = await openDb(dbName);
  const where = `indexeddb:${dbName}/${CERTS}/${CERT_KEY}`;
  try {
    let stored: unknown;
    try {
      stored = await request(db.transaction(CERTS, 'readonly').objectStore(CERTS).get(CERT_KEY));
    } catch (e) {
      throw ioError('read', e, where);
    }
    if (stored instanceof RTCCertificate && stored.expires - Date.now() > RENEW_BEFORE_MS) {
      return { certificate: stored, fingerprint: certFingerprint(stored) };
    }
    const certificate = await RTCPeerConnection.generateCertificate({
      name: 'ECDSA',
      namedCurve: 'P-256',
      expires: CERT_LIFETIME_MS,
    } as AlgorithmIdentifier);
    try {
      const tx = db.transaction(CERTS, 'readwrite');
      tx.objectStore(CERTS).put(certificate, CERT_KEY);
      await done(tx);
    } catch (e) {
      throw ioError('write', e, where);
    }
    return { certificate, fingerprint: certFingerprint(certificate) };
  } finally {
    db.close();
  }
}
