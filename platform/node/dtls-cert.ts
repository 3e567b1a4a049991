/**
 * This installation's DTLS certificate, kept in the state dir:
 *
 *   <state dir>/dtls.json   {"v":1,certPem,keyPem,signatureHash}, 0600
 *
 * Node-only: the PEMs are checked with node:crypto. The generator is
 * injected, so this file needs no werift.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { corruptRecord, exactObject } from '../../crypto/index.js';
import { PinholeError } from '../../protocol/index.js';
import type { DtlsKeyPair } from '../../session/index.js';
import { FileStateStore } from './state-files.js';

export type { DtlsKeyPair };

/** The DTLS certificate file. */
export const DTLS_FILE = 'dtls.json';
/** Largest dtls.json read, in bytes (an ECDSA P-256 one is about 1.2 KB; RSA-4096 about 6 KB). */
export const MAX_DTLS_FILE_BYTES = 64 * 1024;

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
 * Throws PinholeError: 'state-corrupt' if the stored PEMs do not parse
 * or the key is not the certificate's, 'state-bad-input' if `generate`
 * returns such a pair, plus the usual file refusals.
 */
export async function loadOrCreateDtlsCert(
  dir: string,
  generate: () => Promise<DtlsKeyPair>,
): Promise<{ keys: DtlsKeyPair; fingerprint: string; created: boolean }> {
  const store = FileStateStore.open(dir);
  const path = store.where(DTLS_FILE);
  const label = 'DTLS certificate file';
  const corrupt = corruptRecord(path, label, 'move it away: a new certificate is created on the next start');
  for (let attempt = 0; attempt < 2; attempt++) {
    const text = store.read(DTLS_FILE, MAX_DTLS_FILE_BYTES, label);
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
    if (typeof r === 'string') throw new PinholeError('state-bad-input', `the DTLS certificate generator returned an invalid pair: ${r}`);
    const body = { v: 1, certPem: r.keys.certPem, keyPem: r.keys.keyPem, signatureHash: r.keys.signatureHash };
    if (store.create(DTLS_FILE, `${JSON.stringify(body, null, 1)}\n`, label)) return { keys: copyKeys(r.keys), fingerprint: r.fingerprint, created: true };
    // another process created it while we generated: load theirs
  }
  throw new PinholeError('state-io', `${label} ${path} keeps appearing and disappearing`, path);
}
