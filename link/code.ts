/**
 * Pairing codes: generated with nanoid's custom alphabet, shown grouped,
 * typed case-insensitively with or without dashes or spaces.
 */
import { customAlphabet } from 'nanoid';

/** 30 symbols with no look-alikes: no 0/O, 1/I/L, and no U (V/U confusion when read aloud). */
export const CODE_ALPHABET = '23456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Characters in a generated code: 12 x log2(30) = 58.9 bits, above the 50 the design asks for. */
export const CODE_LENGTH = 12;

/** Characters per group when a code is displayed. */
export const CODE_GROUP = 4;

/** Shortest code a user may choose with `--code`, after normalising. */
export const MIN_CODE_LENGTH = 6;

/** Longest normalised code. */
export const MAX_CODE_LENGTH = 32;

/** Entropy of a generated code, in bits. */
export const CODE_BITS = CODE_LENGTH * Math.log2(CODE_ALPHABET.length);

const gen = customAlphabet(CODE_ALPHABET, CODE_LENGTH);

/** A fresh random code, normalised (no dashes, upper case). */
export function generateCode(): string {
  return gen();
}

/** Result of parsing a typed code. */
export type CodeParse = { ok: true; code: string } | { ok: false; reason: string };

/**
 * Normalises a typed code: upper case, dashes and spaces dropped. Generated
 * codes use CODE_ALPHABET only; a user-chosen `--code` may use any letter or
 * digit, so a typed 0/O or 1/I/L is checked, not silently mapped.
 */
export function parseCode(typed: string): CodeParse {
  const code = typed.toUpperCase().replace(/[\s-]+/g, '');
  if (code.length < MIN_CODE_LENGTH) return { ok: false, reason: `code too short (at least ${MIN_CODE_LENGTH} letters or digits)` };
  if (code.length > MAX_CODE_LENGTH) return { ok: false, reason: `code too long (at most ${MAX_CODE_LENGTH} letters or digits)` };
  if (!/^[A-Z0-9]+$/.test(code)) return { ok: false, reason: 'code may hold only letters, digits and dashes' };
  return { ok: true, code };
}

/** Displays a normalised code in groups: `K7QM-X3PD-9HTR`. */
export function formatCode(code: string): string {
  const groups: string[] = [];
  for (let i = 0; i < code.length; i += CODE_GROUP) groups.push(code.slice(i, i + CODE_GROUP));
  return groups.join('-');
}
