/**
 * The session handshake: mutual authentication and a fresh session secret,
 * run over the (untrusted) server relay before any link frame. Pure: no
 * sockets, no clock; randomness is injectable.
 *
 *   controller (initiator)                                device (responder)
 *   c1 {e: Ec, pake?: lv(Ya, "pinhole/1"||Ec)}  ─────────▶
 *                                      ◀─────────  d1 {e: Ed, pake?: lv(Yb, "pinhole/1"||Ed), conf?: Tb,
 *                                                      box: AEAD_kd(th1, {id_d, name, fp_d, sig_d(th1 ...)})}
 *   c2 {conf?: Ta, box: AEAD_kc(th2, {id_c, name, fp_c, direct, sig_c(th2 ...)})}  ─────────▶
 *
 * It is SIGMA-I (Krawczyk, "SIGMA: the SIGn-and-MAc approach", CRYPTO 2003;
 * the shape of IKEv2 and TLS 1.3): an ephemeral X25519 exchange, each side
 * signing the transcript with its long-term Ed25519 identity, and each
 * identity sent under an AEAD key from the DH secret (the "MAC" of SIGMA).
 *
 * At first pairing (`pake` present) a CPace run on the code's secret part
 * (crypto/pake.ts, draft-irtf-cfrg-cpace-21) rides along, with its key
 * confirmation (Tb in d1, Ta in c2). Each side's CPace associated data
 * carries its X25519 share, so the confirmation tags also authenticate the
 * DH exchange: a server that swaps shares changes ADa/ADb, the ISKs differ
 * and Tb fails. Until then identities are unknown, so the PAKE is what makes
 * the peer trustworthy; the session secret mixes ISK in as well.
 *
 * Later sessions (no `pake`) rely on the pinned identity keys: the controller
 * requires the device key it saved at pairing, the device requires a key in
 * its trusted-controllers list.
 *
 * The DTLS certificate fingerprints (`fp`) are signed here, so each side
 * knows the peer's certificate before any SDP arrives and can refuse an SDP
 * whose fingerprint differs (session/session.ts).
 *
 * Key schedule (HKDF-SHA-256, RFC 5869):
 *   th1 = SHA-256(lv("pinhole/1 handshake"), lv(sid), lv(Ec), lv(Ed), lv(pakeA), lv(pakeB), lv(Tb))
 *   hs  = HKDF-Extract(salt = th1, ikm = DH)
 *   kd  = HKDF-Expand(hs, "pinhole/1 hs d2c", 32)      kc = HKDF-Expand(hs, "pinhole/1 hs c2d", 32)
 *   th2 = SHA-256(th1, lv(box_d), lv(Ta))
 *   secret = HKDF(salt = th2, ikm = DH || ISK, info = "pinhole/1 session", 32)
 *   (ISK is empty without a PAKE.) The secret feeds deriveSealKeys (crypto/seal.ts).
 */

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { expand, extract, hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import {
  equalBytes,
  fromBase64url,
  type HandshakeErrorCode,
  isErrorCode,
  isPinholeError,
  isValidPeerName,
  MAX_PEER_NAME_CHARS,
  PinholeError,
  toBase64url,
  utf8Decode,
} from '../protocol/index.js';
import { type Curve25519, nobleCurve25519, type X25519Key } from './curve25519.js';
import { type CpaceSession, type CpaceStart, cpaceChannelId, cpaceStart, lvCat } from './pake.js';

/** Version of the handshake messages; a peer with another one is refused with `bad-handshake`. */
export const HANDSHAKE_VERSION = 1;
/** Largest handshake message, in bytes: the biggest (d1) is about 600. */
export const MAX_HANDSHAKE_BYTES = 4096;
/** Longest peer name carried in a handshake, in characters (the receiver checks it with isValidPeerName). */
export const MAX_PEER_NAME = MAX_PEER_NAME_CHARS;
/** Bytes of the session secret handed to deriveSealKeys. */
export const SESSION_SECRET_BYTES = 32;

/** Associated-data prefix of both CPace messages; the X25519 share follows it. */
const AD_PREFIX = utf8ToBytes('pinhole/1');
const CPACE_CI = cpaceChannelId('pinhole/1 controller', 'pinhole/1 device');
const NONCE0 = new Uint8Array(12);

/** Why a handshake failed (defined with every other stable code in protocol/errors.ts). */
export type { HandshakeErrorCode };

/** Handshake messages, as carried in relay `data` (JSON text, so never confused with a sealed frame, which is base64url). */
export type HandshakeMessage =
  | { hs: 'c1'; v: number; e: string; pake?: string }
  | { hs: 'd1'; e: string; pake?: string; conf?: string; box: string }
  | { hs: 'c2'; conf?: string; box: string }
  | { hs: 'fail'; code: HandshakeErrorCode };

/** True if a relay `data` string is a handshake message rather than a sealed frame. */
export function isHandshakeText(data: string): boolean {
  return data.startsWith('{');
}

type Obj = Record<string, unknown>;
const B64 = /^[A-Za-z0-9_-]*$/;
const b64 = (x: unknown, max: number): x is string => typeof x === 'string' && x.length <= max && B64.test(x);

/** Validates one handshake message. Undefined for anything malformed. Never throws. */
export function parseHandshake(text: string): HandshakeMessage | undefined {
  if (typeof text !== 'string' || text.length > MAX_HANDSHAKE_BYTES) return undefined;
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return undefined;
  const o = m as Obj;
  const optB64 = (k: string, max: number): boolean => o[k] === undefined || b64(o[k], max);
  switch (o.hs) {
    case 'c1':
      if (!Number.isInteger(o.v) || !b64(o.e, 64) || !optB64('pake', 2048)) return undefined;
      return { hs: 'c1', v: o.v as number, e: o.e, ...(o.pake !== undefined ? { pake: o.pake as string } : {}) };
    case 'd1':
      if (!b64(o.e, 64) || !optB64('pake', 2048) || !optB64('conf', 128) || !b64(o.box, 2048)) return undefined;
      return {
        hs: 'd1',
        e: o.e,
        box: o.box,
        ...(o.pake !== undefined ? { pake: o.pake as string } : {}),
        ...(o.conf !== undefined ? { conf: o.conf as string } : {}),
      };
    case 'c2':
      if (!optB64('conf', 128) || !b64(o.box, 2048)) return undefined;
      return { hs: 'c2', box: o.box, ...(o.conf !== undefined ? { conf: o.conf as string } : {}) };
    case 'fail':
      return isErrorCode(o.code, 'handshake') ? { hs: 'fail', code: o.code } : undefined;
    default:
      return undefined;
  }
}

/** Serialises a handshake message. */
export function encodeHandshake(m: HandshakeMessage): string {
  return JSON.stringify(m);
}

/** What a side needs of its identity: the public key and a signer (crypto/identity.ts's Identity fits). */
export interface HandshakeIdentity {
  readonly publicKey: Uint8Array;
  sign(msg: Uint8Array): Uint8Array;
}

/** The authenticated peer, as the handshake proved it. */
export interface PeerInfo {
  /** Ed25519 identity key, 32 bytes. */
  publicKey: Uint8Array;
  /** The peer's name (device `--name`, controller `--name`). Chosen by the peer: display only. */
  name: string;
  /** The peer's DTLS certificate fingerprint (SDP form, sha-256), or null if it has no direct path. */
  certFp: string | null;
  /** Controller only: it will offer a direct path. */
  direct: boolean;
}

/** Outcome of a completed handshake. */
export interface HandshakeResult {
  peer: PeerInfo;
  /** 32 bytes, fresh per session: input to deriveSealKeys. */
  secret: Uint8Array;
  /** True if this session paired by code (the peer is new, not pinned). */
  paired: boolean;
}

/** What each side says about itself. */
export interface LocalInfo {
  identity: HandshakeIdentity;
  name: string;
  /** Our DTLS certificate fingerprint, or null when we take no direct path. */
  certFp: string | null;
}

const enc = toBase64url;
function dec(s: string | undefined, len?: number): Uint8Array {
  if (s === undefined) throw new PinholeError('bad-handshake', 'handshake field missing');
  const b = fromBase64url(s);
  if (b === undefined || (len !== undefined && b.length !== len)) throw new PinholeError('bad-handshake', 'handshake field has the wrong encoding or length');
  return b;
}
const lv = (...parts: Uint8Array[]): Uint8Array => lvCat(...parts);
const FP = /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/;

function dh(key: X25519Key, peerPublic: Uint8Array): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = key.sharedSecret(peerPublic);
  } catch {
    throw new PinholeError('bad-handshake', 'peer key share is not a valid X25519 point');
  }
  if (shared.every((b) => b === 0)) throw new PinholeError('bad-handshake', 'peer key share is a low-order point');
  return shared;
}

function th1Of(sid: string, ec: Uint8Array, ed: Uint8Array, pakeA: Uint8Array, pakeB: Uint8Array, tb: Uint8Array): Uint8Array {
  return sha256(lv(utf8ToBytes('pinhole/1 handshake'), utf8ToBytes(sid), ec, ed, pakeA, pakeB, tb));
}

function boxKeys(shared: Uint8Array, th1: Uint8Array): { kc: Uint8Array; kd: Uint8Array } {
  const prk = extract(sha256, shared, th1);
  return { kc: expand(sha256, prk, utf8ToBytes('pinhole/1 hs c2d'), 32), kd: expand(sha256, prk, utf8ToBytes('pinhole/1 hs d2c'), 32) };
}

function sessionSecret(shared: Uint8Array, isk: Uint8Array, th2: Uint8Array): Uint8Array {
  return hkdf(sha256, concatBytes(shared, isk), th2, utf8ToBytes('pinhole/1 session'), SESSION_SECRET_BYTES);
}

function signedStatement(role: 'device' | 'controller', th: Uint8Array, pub: Uint8Array, name: string, fp: string | null, direct: boolean): Uint8Array {
  return concatBytes(utf8ToBytes(`pinhole/1 ${role} identity`), lv(th, pub, utf8ToBytes(name), utf8ToBytes(fp ?? ''), new Uint8Array([direct ? 1 : 0])));
}

function sealBox(key: Uint8Array, th: Uint8Array, role: 'device' | 'controller', me: LocalInfo, direct: boolean): string {
  const sig = me.identity.sign(signedStatement(role, th, me.identity.publicKey, me.name, me.certFp, direct));
  const body = JSON.stringify({ id: enc(me.identity.publicKey), name: me.name, fp: me.certFp, direct, sig: enc(sig) });
  return enc(chacha20poly1305(key, NONCE0, th).encrypt(utf8ToBytes(body)));
}

function openBox(key: Uint8Array, th: Uint8Array, role: 'device' | 'controller', box: string, curve: Curve25519): PeerInfo {
  let body: Obj;
  try {
    const pt = chacha20poly1305(key, NONCE0, th).decrypt(dec(box));
    body = JSON.parse(utf8Decode(pt)) as Obj;
  } catch {
    throw new PinholeError('bad-handshake', `the ${role}'s identity does not open: tampered handshake`);
  }
  const { id, name, fp, direct, sig } = body ?? {};
  if (!isValidPeerName(name)) throw new PinholeError('bad-handshake', `bad ${role} name`);
  if (!(fp === null || (typeof fp === 'string' && FP.test(fp))) || typeof direct !== 'boolean')
    throw new PinholeError('bad-handshake', `bad ${role} identity fields`);
  const publicKey = dec(typeof id === 'string' ? id : undefined, 32);
  const signature = dec(typeof sig === 'string' ? sig : undefined, 64);
  if (!curve.ed25519Verify(publicKey, signedStatement(role, th, publicKey, name, fp, direct), signature)) {
    throw new PinholeError('bad-handshake', `the ${role}'s signature does not verify`);
  }
  return { publicKey, name, certFp: fp, direct };
}

function adFor(share: Uint8Array): Uint8Array {
  return concatBytes(AD_PREFIX, share);
}

function checkAd(peerAd: Uint8Array, share: Uint8Array): void {
  if (!equalBytes(peerAd, adFor(share))) throw new PinholeError('bad-handshake', 'PAKE associated data does not carry the key share');
}

function cpaceFail(e: unknown): never {
  if (isPinholeError(e) && isErrorCode(e.code, 'cpace')) throw new PinholeError('bad-handshake', `PAKE: ${e.message}`);
  throw e;
}

/** Options of the controller's handshake. */
export interface ControllerHandshakeOptions extends LocalInfo {
  /** Session id from the server (`joined`). Public. */
  sid: string;
  /** We will offer a direct path after the handshake. */
  direct: boolean;
  /** First pairing: the secret part of the code (canonical), the CPace password. */
  pairingSecret?: string;
  /** Later sessions: the device key saved at pairing. Exactly one of pairingSecret / expectDevice. */
  expectDevice?: Uint8Array;
  /** Randomness for the X25519 key and the CPace scalar (default crypto.getRandomValues, via noble's randomBytes). */
  rng?: (n: number) => Uint8Array;
  /** X25519 and Ed25519 verification (default: the pure one; Node roles pass platform/node's nodeCurve25519). */
  curve25519?: Curve25519;
}

/** The controller's side: start() gives c1; onD1() checks the device and gives c2 plus the result. */
export class ControllerHandshake {
  private readonly curve: Curve25519;
  private readonly e: X25519Key;
  private readonly ec: Uint8Array;
  private readonly cpace: CpaceStart | undefined;
  private c1: (HandshakeMessage & { hs: 'c1' }) | undefined;
  private done = false;

  constructor(private readonly o: ControllerHandshakeOptions) {
    if ((o.pairingSecret === undefined) === (o.expectDevice === undefined)) throw new TypeError('give exactly one of pairingSecret and expectDevice');
    const rng = o.rng ?? randomBytes;
    this.curve = o.curve25519 ?? nobleCurve25519;
    this.e = this.curve.x25519(rng(32));
    this.ec = this.e.publicKey;
    this.cpace =
      o.pairingSecret === undefined
        ? undefined
        : cpaceStart({ password: utf8ToBytes(o.pairingSecret), role: 'initiator', sid: utf8ToBytes(o.sid), ci: CPACE_CI, ad: adFor(this.ec), rng });
  }

  /** The first message. */
  start(): string {
    this.c1 = { hs: 'c1', v: HANDSHAKE_VERSION, e: enc(this.ec), ...(this.cpace ? { pake: enc(this.cpace.message) } : {}) };
    return encodeHandshake(this.c1);
  }

  /** Processes d1. Throws PinholeError; on success returns c2 (to send) and the result. */
  onD1(m: HandshakeMessage): { reply: string; result: HandshakeResult } {
    if (this.done || !this.c1 || m.hs !== 'd1') throw new PinholeError('bad-handshake', `unexpected handshake message ${m.hs}`);
    this.done = true;
    const ed = dec(m.e, 32);
    let session: CpaceSession | undefined;
    let isk: Uint8Array = new Uint8Array(0);
    if (this.cpace) {
      if (m.pake === undefined || m.conf === undefined) throw new PinholeError('bad-handshake', 'device answered pairing without a PAKE');
      try {
        session = this.cpace.finish(dec(m.pake));
      } catch (e) {
        cpaceFail(e);
      }
      checkAd(session.peerAd, ed);
      if (!session.verifyConfirm(dec(m.conf)))
        throw new PinholeError('wrong-code', 'wrong pairing code (or the exchange was tampered with); the device has printed a new code');
      isk = session.key();
    } else if (m.pake !== undefined || m.conf !== undefined) throw new PinholeError('bad-handshake', 'device answered with a PAKE nobody asked for');
    const shared = dh(this.e, ed);
    const th1 = th1Of(
      this.o.sid,
      this.ec,
      ed,
      this.cpace?.message ?? new Uint8Array(0),
      m.pake ? dec(m.pake) : new Uint8Array(0),
      m.conf ? dec(m.conf) : new Uint8Array(0),
    );
    const { kc, kd } = boxKeys(shared, th1);
    const peer = openBox(kd, th1, 'device', m.box, this.curve);
    if (this.o.expectDevice && !equalBytes(peer.publicKey, this.o.expectDevice)) {
      throw new PinholeError(
        'device-changed',
        `device "${peer.name}" answered with an identity key other than the one saved at pairing; pair again with a code if this is expected`,
      );
    }
    const ta = session ? session.confirm : new Uint8Array(0);
    const th2 = sha256(concatBytes(th1, lv(dec(m.box), ta)));
    const box = sealBox(kc, th2, 'controller', this.o, this.o.direct);
    const reply = encodeHandshake({ hs: 'c2', box, ...(session ? { conf: enc(ta) } : {}) });
    return { reply, result: { peer, secret: sessionSecret(shared, isk, th2), paired: session !== undefined } };
  }
}

/** Options of the device's handshake. */
export interface DeviceHandshakeOptions extends LocalInfo {
  /** Session id from the server (`peer`). Public. */
  sid: string;
  /**
   * The pairing secret this room accepts, or undefined for the device's
   * persistent room, where only trusted controllers may enter.
   */
  pairingSecret?: string;
  /** True if a controller with this key is trusted (paired and not revoked). */
  isTrusted(publicKey: Uint8Array): boolean;
  /** Randomness for the X25519 key and the CPace scalar (default crypto.getRandomValues, via noble's randomBytes). */
  rng?: (n: number) => Uint8Array;
  /** X25519 and Ed25519 verification (default: the pure one; Node roles pass platform/node's nodeCurve25519). */
  curve25519?: Curve25519;
}

/** The device's side: onC1() gives d1; onC2() checks the controller and gives the result. */
export class DeviceHandshake {
  private state: 'c1' | 'c2' | 'done' = 'c1';
  private shared: Uint8Array | undefined;
  private th1: Uint8Array | undefined;
  private kc: Uint8Array | undefined;
  private boxD: Uint8Array | undefined;
  private cpace: CpaceSession | undefined;

  constructor(private readonly o: DeviceHandshakeOptions) {}

  /** True once c1 carried a PAKE attempt: the pairing code is spent, whatever the outcome. */
  pakeAttempted = false;

  /** Processes c1. Throws PinholeError; returns d1 to send. */
  onC1(m: HandshakeMessage): string {
    if (this.state !== 'c1' || m.hs !== 'c1') throw new PinholeError('bad-handshake', `unexpected handshake message ${m.hs}`);
    this.state = 'c2';
    if (m.v !== HANDSHAKE_VERSION) throw new PinholeError('bad-handshake', `handshake version ${m.v} not supported (want ${HANDSHAKE_VERSION})`);
    const ec = dec(m.e, 32);
    const rng = this.o.rng ?? randomBytes;
    const e = (this.o.curve25519 ?? nobleCurve25519).x25519(rng(32));
    const ed = e.publicKey;
    let pakeB: Uint8Array = new Uint8Array(0);
    let tb: Uint8Array = new Uint8Array(0);
    if (m.pake !== undefined) {
      if (this.o.pairingSecret === undefined) throw new PinholeError('bad-handshake', 'pairing attempted in a room that does not take codes');
      this.pakeAttempted = true;
      const start = cpaceStart({
        password: utf8ToBytes(this.o.pairingSecret),
        role: 'responder',
        sid: utf8ToBytes(this.o.sid),
        ci: CPACE_CI,
        ad: adFor(ed),
        rng,
      });
      try {
        this.cpace = start.finish(dec(m.pake));
      } catch (err) {
        cpaceFail(err);
      }
      checkAd(this.cpace.peerAd, ec);
      pakeB = start.message;
      tb = this.cpace.confirm;
    } else if (this.o.pairingSecret !== undefined) throw new PinholeError('bad-handshake', 'this room is for pairing; a code is required');
    this.shared = dh(e, ec);
    this.th1 = th1Of(this.o.sid, ec, ed, m.pake ? dec(m.pake) : new Uint8Array(0), pakeB, tb);
    const { kc, kd } = boxKeys(this.shared, this.th1);
    this.kc = kc;
    const box = sealBox(kd, this.th1, 'device', this.o, false);
    this.boxD = dec(box);
    return encodeHandshake({ hs: 'd1', e: enc(ed), box, ...(this.cpace ? { pake: enc(pakeB), conf: enc(tb) } : {}) });
  }

  /** Processes c2. Throws PinholeError; returns the result. */
  onC2(m: HandshakeMessage): HandshakeResult {
    if (this.state !== 'c2' || m.hs !== 'c2' || !this.shared || !this.th1 || !this.kc || !this.boxD)
      throw new PinholeError('bad-handshake', `unexpected handshake message ${m.hs}`);
    this.state = 'done';
    let isk: Uint8Array = new Uint8Array(0);
    let ta: Uint8Array = new Uint8Array(0);
    if (this.cpace) {
      if (m.conf === undefined) throw new PinholeError('bad-handshake', 'controller did not confirm the PAKE');
      ta = dec(m.conf);
      if (!this.cpace.verifyConfirm(ta)) throw new PinholeError('wrong-code', 'a controller tried a wrong pairing code');
      isk = this.cpace.key();
    } else if (m.conf !== undefined) throw new PinholeError('bad-handshake', 'unexpected PAKE confirmation');
    const th2 = sha256(concatBytes(this.th1, lv(this.boxD, ta)));
    const peer = openBox(this.kc, th2, 'controller', m.box, this.o.curve25519 ?? nobleCurve25519);
    if (!this.cpace && !this.o.isTrusted(peer.publicKey))
      throw new PinholeError('not-paired', `controller "${peer.name}" is not paired with this device (or was revoked); pair it with a code`);
    return { peer, secret: sessionSecret(this.shared, isk, th2), paired: this.cpace !== undefined };
  }
}
