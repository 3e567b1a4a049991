/**
 * CPace (balanced PAKE) on ristretto255 with SHA-512: the cipher suite
 * CPACE-RISTR255-SHA512 of draft-irtf-cfrg-cpace-21 ("CPace, a balanced
 * composable PAKE", Abdalla, Haase, Hesse, 23 April 2026), written against
 * @noble/curves (ristretto255, RFC 9496 element derivation) and
 * @noble/hashes (SHA-512, HMAC). Nothing here is a new primitive: every
 * function below is one the draft defines, named as the draft names it,
 * and test/unit/pake.test.ts pins each one to the draft's Appendix B.3
 * vectors.
 *
 * Pinhole runs CPace in the draft's initiator-responder setting (section
 * 6.3, transcript_ir): the controller is always the initiator A and the
 * device always the responder B. A party never plays both roles for the same
 * code, which is the draft's defence against loopback attacks (section
 * 10.1.2).
 *
 *   A (controller)                                   B (device)
 *   g = calculate_generator(PRS, CI, sid)            g = calculate_generator(PRS, CI, sid)
 *   ya = sample_scalar(); Ya = ya*g                  yb = sample_scalar(); Yb = yb*g
 *            ---- lv_cat(Ya, ADa) ---->
 *            <--- lv_cat(Yb, ADb) -----
 *   K = scalar_mult_vfy(ya, Yb), abort if G.I        K = scalar_mult_vfy(yb, Ya), abort if G.I
 *   ISK = SHA-512(lv_cat(DSI||"_ISK", sid, K) || transcript_ir(Ya, ADa, Yb, ADb))
 *   mac_key = SHA-512("CPaceMac" || sid || ISK)                      (section 10.4)
 *            ---- Ta = HMAC-SHA-512(mac_key, lv_cat(Ya, ADa)) ---->
 *            <--- Tb = HMAC-SHA-512(mac_key, lv_cat(Yb, ADb)) -----
 *   each side checks the other's tag; only then is ISK released.
 *
 * The wire message of each side is exactly lv_cat(Y, AD): the bytes that the
 * draft's key confirmation authenticates. The draft leaves the wire encoding
 * to the application (section 4.3); this is the obvious one.
 *
 * Beyond the draft, one extra abort: a peer share equal to our own share is
 * refused (a reflected message). Honest runs never hit it.
 *
 * The module is pure: randomness is injected (`rng`), nothing touches the
 * network or the clock.
 */
import { ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { concatBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { equalBytes, PinholeError } from '../protocol/index.js';

type RistrettoPoint = InstanceType<typeof ristretto255.Point>;
const Point = ristretto255.Point;

// ---------------------------------------------------------------------------
// Suite constants (draft section 8.3, SHA-512 from section 6.2)

/** G_Ristretto255.DSI */
export const CPACE_DSI: Uint8Array = utf8ToBytes('CPaceRistretto255');
/** G.DSI || b"_ISK", the ISK domain separator (section 7.2). */
export const CPACE_DSI_ISK: Uint8Array = utf8ToBytes('CPaceRistretto255_ISK');
/** H.s_in_bytes for SHA-512: the input block size. */
export const SHA512_S_IN_BYTES = 128;
/** G_Ristretto255.field_size_bytes */
export const FIELD_SIZE_BYTES = 32;
/** G_Ristretto255.group_size_bits */
export const GROUP_SIZE_BITS = 252;
/** Length of an encoded ristretto255 element, and so of Ya / Yb. */
export const ELEMENT_BYTES = 32;
/** G.I: the public encoding of the neutral element. */
export const CPACE_IDENTITY: Uint8Array = new Uint8Array(ELEMENT_BYTES);
/** Length of ISK (SHA-512 output). */
export const ISK_BYTES = 64;
/** Length of a key-confirmation tag (HMAC-SHA-512 output). */
export const CONFIRM_BYTES = 64;
/** Largest associated data accepted in a peer message. Pinhole's AD is a short version/role string. */
export const MAX_AD_BYTES = 1024;

// ---------------------------------------------------------------------------
// String utilities (draft section 6.3 and Appendix A)

/** prepend_len: the LEB128 encoding of len(data), then data (Appendix A.1.1). */
export function prependLen(data: Uint8Array): Uint8Array {
  let length = data.length;
  const enc: number[] = [];
  for (;;) {
    enc.push(length < 128 ? length : (length & 0x7f) + 0x80);
    length = Math.floor(length / 128);
    if (length === 0) break;
  }
  return concatBytes(Uint8Array.from(enc), data);
}

/** lv_cat: prepend_len of each argument, concatenated (Appendix A.1.3). */
export function lvCat(...args: Uint8Array[]): Uint8Array {
  return concatBytes(...args.map(prependLen));
}

/** generator_string(DSI, PRS, CI, sid, s_in_bytes) (section 8.1, Appendix A.2). */
export function generatorString(dsi: Uint8Array, prs: Uint8Array, ci: Uint8Array, sid: Uint8Array, sInBytes: number): Uint8Array {
  const lenZpad = Math.max(0, sInBytes - 1 - prependLen(prs).length - prependLen(dsi).length);
  return lvCat(dsi, prs, new Uint8Array(lenZpad), ci, sid);
}

/** transcript_ir(Ya, ADa, Yb, ADb) = lv_cat(Ya, ADa) || lv_cat(Yb, ADb) (Appendix A.3.4). */
export function transcriptIr(ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return concatBytes(lvCat(ya, ada), lvCat(yb, adb));
}

// ---------------------------------------------------------------------------
// Group environment G_Ristretto255 (draft section 8.3)

/** SHA-512(generator_string(...)), 2 * field_size_bytes = 64 bytes, the input of element_derivation. */
export function generatorHash(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Uint8Array {
  return sha512(generatorString(CPACE_DSI, prs, ci, sid, SHA512_S_IN_BYTES));
}

/**
 * G.calculate_generator(H, PRS, CI, sid): element_derivation (RFC 9496
 * section 4.3.4, noble's `deriveToCurve`) of the 64-byte generator hash.
 * Returns the decoded point _g.
 */
export function calculateGenerator(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): RistrettoPoint {
  return ristretto255_hasher.deriveToCurve!(generatorHash(prs, ci, sid));
}

/**
 * G.sample_scalar() as the draft recommends for group abstractions: take
 * field_size_bytes random bytes, clear the bits above group_size_bits, read
 * little-endian. Zero (probability 2^-252) is resampled: noble refuses it and
 * the draft's alternative sampling excludes it too.
 */
export function sampleScalar(rng: (n: number) => Uint8Array): bigint {
  for (let tries = 0; tries < 8; tries++) {
    const bytes = rng(FIELD_SIZE_BYTES);
    if (!(bytes instanceof Uint8Array) || bytes.length !== FIELD_SIZE_BYTES) throw new TypeError('rng must return 32 bytes');
    const b = Uint8Array.from(bytes);
    b[FIELD_SIZE_BYTES - 1]! &= 0xff >> (8 * FIELD_SIZE_BYTES - GROUP_SIZE_BITS); // keep the low 252 bits
    let y = 0n;
    for (let i = b.length - 1; i >= 0; i--) y = (y << 8n) | BigInt(b[i]!);
    b.fill(0);
    if (y !== 0n) return y;
  }
  throw new Error('rng keeps returning zero scalars');
}

/** Reads a scalar given as 32 little-endian bytes (the draft's vector format), without clearing bits. */
export function scalarFromBytesLE(bytes: Uint8Array): bigint {
  let y = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) y = (y << 8n) | BigInt(bytes[i]!);
  return y;
}

/** G.scalar_mult(y, _g) = encode(y * _g). */
export function scalarMult(y: bigint, g: RistrettoPoint): Uint8Array {
  return g.multiply(y).toBytes();
}

/**
 * G.scalar_mult_vfy(y, X): if decode(X) fails return G.I, else
 * encode(y * decode(X)). The identity encoding decodes to the neutral element,
 * and y * I = I encodes as G.I, so it yields G.I as well: callers abort on it.
 */
export function scalarMultVfy(y: bigint, x: Uint8Array): Uint8Array {
  let p: RistrettoPoint;
  try {
    if (x.length !== ELEMENT_BYTES) return CPACE_IDENTITY.slice();
    p = Point.fromBytes(x);
  } catch {
    return CPACE_IDENTITY.slice();
  }
  return p.multiply(y).toBytes();
}

/** ISK = H.hash(lv_cat(G.DSI || b"_ISK", sid, K) || transcript_ir(Ya, ADa, Yb, ADb)) (section 7.2). */
export function deriveIsk(sid: Uint8Array, k: Uint8Array, ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return sha512(concatBytes(lvCat(CPACE_DSI_ISK, sid, k), transcriptIr(ya, ada, yb, adb)));
}

/** sid_output = H.hash(b"CPaceSidOutput" || transcript_ir(Ya, ADa, Yb, ADb)) (section 10.6). */
export function sidOutput(ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return sha512(concatBytes(utf8ToBytes('CPaceSidOutput'), transcriptIr(ya, ada, yb, adb)));
}

/** mac_key = H.hash(b"CPaceMac" || sid || ISK) (section 10.4). */
export function confirmationKey(sid: Uint8Array, isk: Uint8Array): Uint8Array {
  return sha512(concatBytes(utf8ToBytes('CPaceMac'), sid, isk));
}

/** T = MAC(mac_key, lv_cat(Y, AD)) with MAC = HMAC-SHA-512 (section 10.4). */
export function confirmationTag(macKey: Uint8Array, y: Uint8Array, ad: Uint8Array): Uint8Array {
  return hmac(sha512, macKey, lvCat(y, ad));
}

// ---------------------------------------------------------------------------
// Protocol session

export type CpaceRole = 'initiator' | 'responder';

/** Stable codes of a PinholeError. */
export type CpaceErrorCode =
  | 'pake-malformed' // the peer message is not lv_cat(Y, AD) with a 32-byte Y
  | 'pake-invalid-point' // Y does not decode, is the identity, K = G.I, or Y reflects our own share
  | 'pake-state' // finish() called twice (secret scalars are single-use)
  | 'pake-unconfirmed'; // key() before a successful verifyConfirm() (or after a failed one)

export interface CpaceOptions {
  /** PRS: the password-related string. For pinhole, the canonical (parsed) pairing code as UTF-8. */
  password: Uint8Array;
  /** Which side of transcript_ir this party is: A (initiator) or B (responder). */
  role: CpaceRole;
  /** sid: a public session identifier both sides know before starting. Default: empty. */
  sid?: Uint8Array;
  /** CI: a channel identifier both sides know, never sent. Default: empty. See cpaceChannelId(). */
  ci?: Uint8Array;
  /** This party's associated data (ADa or ADb), sent in clear and authenticated. Default: empty. */
  ad?: Uint8Array;
  /** Source of randomness; default a CSPRNG. Injected by tests to replay the draft's vectors. */
  rng?: (n: number) => Uint8Array;
}

/** A started CPace run: our message is ready, the peer's has not arrived. */
export interface CpaceStart {
  /** The message to send: lv_cat(Y, AD). */
  readonly message: Uint8Array;
  /**
   * Processes the peer's message lv_cat(Y', AD'). Throws PinholeError
   * ('pake-malformed', 'pake-invalid-point') on a message the draft says to
   * abort on, and 'pake-state' if called twice.
   */
  finish(peerMessage: Uint8Array): CpaceSession;
}

/** A CPace run with both shares: ISK is derived but held back until the peer proves it has it. */
export interface CpaceSession {
  /** Our key-confirmation tag, to send to the peer. */
  readonly confirm: Uint8Array;
  /** The peer's associated data (authenticated once confirmation succeeds). */
  readonly peerAd: Uint8Array;
  /** sid_output of the draft (section 10.6): public, the same on both sides of an honest run. */
  readonly sidOutput: Uint8Array;
  /**
   * Checks the peer's tag in constant time. One attempt: after a false, the
   * session is dead and key() throws.
   */
  verifyConfirm(peerConfirm: Uint8Array): boolean;
  /** ISK (64 bytes), only after verifyConfirm() returned true. Feed it to a KDF (crypto/seal.ts). */
  key(): Uint8Array;
}

/** Reads one prepend_len field at `off`; undefined if truncated or the length is not minimally encoded. */
function readLv(buf: Uint8Array, off: number): { value: Uint8Array; next: number } | undefined {
  let len = 0;
  let shift = 1;
  let i = off;
  for (;;) {
    if (i >= buf.length || i - off >= 4) return undefined; // 4 LEB128 bytes = 2^28: far beyond any message
    const b = buf[i++]!;
    len += (b & 0x7f) * shift;
    shift *= 128;
    if ((b & 0x80) === 0) break;
  }
  if (i + len > buf.length) return undefined;
  const value = buf.subarray(i, i + len);
  if (prependLen(value).length !== i + len - off) return undefined; // non-minimal LEB128
  return { value, next: i + len };
}

/** Splits a wire message lv_cat(Y, AD) into its two fields, strictly. */
export function parseCpaceMessage(msg: Uint8Array): { y: Uint8Array; ad: Uint8Array } | undefined {
  if (!(msg instanceof Uint8Array)) return undefined;
  const y = readLv(msg, 0);
  if (!y || y.value.length !== ELEMENT_BYTES) return undefined;
  const ad = readLv(msg, y.next);
  if (!ad || ad.next !== msg.length || ad.value.length > MAX_AD_BYTES) return undefined;
  return { y: y.value.slice(), ad: ad.value.slice() };
}

/**
 * CI for the initiator-responder setting, as the draft's vectors build it
 * (section 10.1.1: initiator identity first): lv_cat(initiatorId, responderId).
 */
export function cpaceChannelId(initiatorId: string, responderId: string): Uint8Array {
  return lvCat(utf8ToBytes(initiatorId), utf8ToBytes(responderId));
}

const asBytes = (v: Uint8Array | undefined, name: string): Uint8Array => {
  if (v === undefined) return new Uint8Array(0);
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  return v.slice();
};

/** Starts one CPace run. The returned object is single-use. */
export function cpaceStart(opts: CpaceOptions): CpaceStart {
  if (!(opts.password instanceof Uint8Array) || opts.password.length === 0) throw new TypeError('password must be a non-empty Uint8Array');
  if (opts.role !== 'initiator' && opts.role !== 'responder') throw new TypeError("role must be 'initiator' or 'responder'");
  const prs = opts.password.slice();
  const sid = asBytes(opts.sid, 'sid');
  const ci = asBytes(opts.ci, 'ci');
  const ad = asBytes(opts.ad, 'ad');
  if (ad.length > MAX_AD_BYTES) throw new TypeError(`ad must be at most ${MAX_AD_BYTES} bytes`);
  const role = opts.role;
  const rng = opts.rng ?? ((n: number) => randomBytes(n));

  const g = calculateGenerator(prs, ci, sid);
  prs.fill(0);
  let y: bigint | undefined = sampleScalar(rng);
  const ownY = scalarMult(y, g);
  const message = lvCat(ownY, ad);

  return {
    message: message.slice(),
    finish(peerMessage: Uint8Array): CpaceSession {
      if (y === undefined) throw new PinholeError('pake-state', 'this CPace run has already been finished; start a new one');
      const secret = y;
      y = undefined; // secret scalars MUST NOT be reused (section 10.9)
      const parsed = parseCpaceMessage(peerMessage);
      if (!parsed) throw new PinholeError('pake-malformed', 'peer PAKE message is not lv_cat(Y, AD) with a 32-byte Y');
      if (equalBytes(parsed.y, ownY)) throw new PinholeError('pake-invalid-point', 'peer PAKE share reflects our own share');
      const k = scalarMultVfy(secret, parsed.y);
      if (equalBytes(k, CPACE_IDENTITY))
        throw new PinholeError('pake-invalid-point', 'peer PAKE share is not a valid ristretto255 element (or is the identity)');

      const [ya, ada, yb, adb] = role === 'initiator' ? [ownY, ad, parsed.y, parsed.ad] : [parsed.y, parsed.ad, ownY, ad];
      const isk = deriveIsk(sid, k, ya, ada, yb, adb);
      k.fill(0);
      const macKey = confirmationKey(sid, isk);
      const confirm = confirmationTag(macKey, ownY, ad);
      const expected = confirmationTag(macKey, parsed.y, parsed.ad);
      macKey.fill(0);
      let state: 'pending' | 'confirmed' | 'failed' = 'pending';
      return {
        confirm: confirm.slice(),
        peerAd: parsed.ad.slice(),
        sidOutput: sidOutput(ya, ada, yb, adb),
        verifyConfirm(peerConfirm: Uint8Array): boolean {
          if (state !== 'pending') return state === 'confirmed' && peerConfirm instanceof Uint8Array && equalBytes(peerConfirm, expected);
          const ok = peerConfirm instanceof Uint8Array && equalBytes(peerConfirm, expected);
          state = ok ? 'confirmed' : 'failed';
          if (!ok) isk.fill(0);
          return ok;
        },
        key(): Uint8Array {
          if (state !== 'confirmed')
            throw new PinholeError(
              'pake-unconfirmed',
              state === 'failed' ? 'key confirmation failed: wrong code or tampered exchange' : 'key confirmation has not completed',
            );
          return isk.slice();
        },
      };
    },
  };
}
