/**
 * Pairing codes and room names.
 *
 * A pairing code, as the device prints it, is `RRRR-SSS-SSS`: 10 symbols of
 * CODE_ALPHABET, generated with nanoid's custom alphabet (crypto random).
 *
 * - The first ROOM_LENGTH (4) symbols are the **room**: public, sent to the
 *   signaling server in `register`/`join`, only a rendezvous name (~19.6 bits,
 *   no secrecy intended).
 * - The remaining SECRET_LENGTH (6) symbols are the **secret**: the CPace
 *   password, never sent anywhere, SECRET_BITS (29.4 bits).
 *
 * Every code, generated or chosen with `--code`, has exactly
 * PAIRING_CODE_LENGTH (10) symbols: a code typed with a symbol missing or
 * extra is refused before anything is sent, instead of spending the code's
 * one attempt on a wrong secret.
 *
 * Codes are typed case-insensitively, with or without dashes or spaces.
 * Look-alikes are not silently mapped: a typed 0/O, 1/I/L or U is rejected
 * with a reason naming the character, since guessing wrong would burn the
 * code (the device retires a pairing code after one PAKE attempt).
 *
 * A paired device also registers a persistent room derived from its identity
 * key (deviceRoom): 26 characters, so it can never collide with the 4-symbol
 * room of a pairing code. The server deals only with rooms (parseRoom).
 */

import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { customAlphabet } from 'nanoid';
import { base32 } from './bytes.js';

/** 30 symbols with no look-alikes: no 0/O, 1/I/L, and no U (V/U confusion when read aloud). */
export const CODE_ALPHABET = '23456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Symbols of the public room at the start of a pairing code: 4 x log2(30) = 19.6 bits, a rendezvous name only. */
export const ROOM_LENGTH = 4;

/** Symbols of the secret in a generated pairing code: 6 x log2(30) = 29.4 bits, well above what one guess per code needs. */
export const SECRET_LENGTH = 6;

/** Symbols in a generated pairing code (room + secret). */
export const PAIRING_CODE_LENGTH = ROOM_LENGTH + SECRET_LENGTH;

/** Symbols per group of the secret when a code is displayed (`K7QM-X3P-D9H`). */
export const SECRET_GROUP = 3;

/** Entropy of a generated secret, in bits (the PAKE password strength). */
export const SECRET_BITS = SECRET_LENGTH * Math.log2(CODE_ALPHABET.length);

/** Shortest room name the server accepts (the room of a pairing code). */
export const MIN_ROOM_LENGTH = ROOM_LENGTH;

/** Longest room name the server accepts, after normalising. */
export const MAX_ROOM_LENGTH = 32;

/** Characters of base32 after the 'D' in a device room: 25 x 5 = 125 bits of SHA-256. */
export const DEVICE_ROOM_HASH_CHARS = 25;

/** Domain separator hashed before the public key in deviceRoom. */
export const DEVICE_ROOM_DOMAIN = 'pinhole/1 device room';

/** A pairing code split into its parts, both normalised (upper case, no dashes). */
export interface PairingCode {
  /** Public rendezvous name: sent to the server. */
  room: string;
  /** CPace password: never sent anywhere. */
  secret: string;
}

/** Result of parsing a typed pairing code. */
export type PairingCodeParse = ({ ok: true } & PairingCode) | { ok: false; reason: string };

/** Result of parsing a room name. */
export type RoomParse = { ok: true; room: string } | { ok: false; reason: string };

const genPairing = customAlphabet(CODE_ALPHABET, PAIRING_CODE_LENGTH);

/** A fresh random pairing code: ROOM_LENGTH + SECRET_LENGTH symbols of CODE_ALPHABET. */
export function generatePairingCode(): PairingCode {
  const s = genPairing();
  return { room: s.slice(0, ROOM_LENGTH), secret: s.slice(ROOM_LENGTH) };
}

/** Displays a pairing code: the room, then the secret in groups of three: `K7QM-X3P-D9H`. */
export function formatPairingCode(c: PairingCode): string {
  const groups = [c.room];
  for (let i = 0; i < c.secret.length; i += SECRET_GROUP) groups.push(c.secret.slice(i, i + SECRET_GROUP));
  return groups.join('-');
}

const LOOK_ALIKES = '0O1ILU';

/**
 * Parses a typed pairing code: case-insensitive, dashes and whitespace
 * ignored, every symbol from CODE_ALPHABET. The first ROOM_LENGTH symbols are
 * the room, the rest the secret. Exactly PAIRING_CODE_LENGTH symbols, so a
 * typo in the length never spends a code. Never throws.
 */
export function parsePairingCode(typed: string): PairingCodeParse {
  if (typeof typed !== 'string') return { ok: false, reason: 'pairing code must be a string' };
  const chars = [...typed.replace(/[\s-]+/g, '')];
  let code = '';
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    const up = ch.toUpperCase();
    if (up.length === 1 && CODE_ALPHABET.includes(up)) {
      code += up;
      continue;
    }
    const what = `${JSON.stringify(ch)} (symbol ${i + 1})`;
    if (up.length === 1 && LOOK_ALIKES.includes(up)) {
      return { ok: false, reason: `${what} is never used in pairing codes, which have no 0, O, 1, I, L or U: check the code as printed` };
    }
    return { ok: false, reason: `${what} cannot be in a pairing code: use only the letters and digits it shows` };
  }
  if (code.length < PAIRING_CODE_LENGTH) {
    return { ok: false, reason: `pairing code too short: ${code.length} symbols, want ${PAIRING_CODE_LENGTH} (like K7QM-X3P-D9H)` };
  }
  if (code.length > PAIRING_CODE_LENGTH) {
    return { ok: false, reason: `pairing code too long: ${code.length} symbols, want ${PAIRING_CODE_LENGTH} (like K7QM-X3P-D9H)` };
  }
  return { ok: true, room: code.slice(0, ROOM_LENGTH), secret: code.slice(ROOM_LENGTH) };
}

/**
 * Normalises and validates a room name as the server sees it: upper case,
 * dashes and whitespace dropped, then MIN_ROOM_LENGTH..MAX_ROOM_LENGTH
 * characters of [A-Z0-9]. Wider than CODE_ALPHABET on purpose: device rooms
 * are base32 (A-Z2-7). Never throws.
 */
export function parseRoom(s: string): RoomParse {
  if (typeof s !== 'string') return { ok: false, reason: 'room must be a string' };
  const room = s.toUpperCase().replace(/[\s-]+/g, '');
  if (room.length < MIN_ROOM_LENGTH) return { ok: false, reason: `room too short (at least ${MIN_ROOM_LENGTH} letters or digits)` };
  if (room.length > MAX_ROOM_LENGTH) return { ok: false, reason: `room too long (at most ${MAX_ROOM_LENGTH} letters or digits)` };
  if (!/^[A-Z0-9]+$/.test(room)) return { ok: false, reason: 'room may hold only letters, digits and dashes' };
  return { ok: true, room };
}

/**
 * The persistent room of a paired device: 'D' followed by the first
 * DEVICE_ROOM_HASH_CHARS characters of base32(SHA-256(DEVICE_ROOM_DOMAIN ||
 * publicKey)), 26 characters in all. Anyone who knows the device's public key
 * can compute it, but only the key's holder can register it: the server wants
 * a signature by that key (a registration proof, ./signaling.ts). Joining it
 * proves nothing; the handshake decides who gets in.
 */
export function deviceRoom(publicKey: Uint8Array): string {
  const h = sha256(concatBytes(utf8ToBytes(DEVICE_ROOM_DOMAIN), publicKey));
  return 'D' + base32(h).slice(0, DEVICE_ROOM_HASH_CHARS);
}
