/**
 * What the network sends must not drive the terminal. A hostile server or
 * peer could otherwise set the window title, clear the screen, write the
 * clipboard (OSC 52), reorder text with bidi controls or fake a result line.
 *
 * Human output passes every string that came from the network through
 * sanitizeForTerminal(). JSON output is not altered: toJsonLine() keeps every
 * value exact, and only spells the dangerous characters as \uXXXX escapes.
 */

/**
 * Longest network-originated field printed, in code points; the rest becomes
 * "…". Far above any message of ours or a peer name (64), well below the
 * server's 1024-character error messages, so a peer cannot flood the screen.
 */
export const MAX_TERMINAL_FIELD_CHARS = 300;

// ECMA-48 sequences, removed whole (an unterminated string control runs to the end of the text).
const ESCAPE_SEQUENCE = new RegExp(
  [
    // OSC, DCS, SOS, PM, APC (7-bit ESC ] P X ^ _, or 8-bit C1), ended by BEL or ST (ESC \ or U+009C)
    String.raw`(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[\s\S]*?(?:\x07|\x1b\\|\x9c|$)`,
    // CSI (ESC [ or U+009B): parameters, intermediates, final byte
    String.raw`(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?`,
    // any other escape: ESC, intermediates, final byte
    String.raw`\x1b[\x20-\x2f]*[\x30-\x7e]?`,
  ].join('|'),
  'g',
);
// Line and paragraph breaks: one line stays one line.
const LINE_BREAK = /[\n\v\f\r\x85\u2028\u2029]/g;
// Controls (C0, DEL, C1), format characters (bidi embeddings, overrides, isolates and marks,
// zero-width space/joiners, word joiner, BOM, tags, ...), and invisible letters and selectors
// that only hide or smuggle text. A zero-width joiner between two pictographs builds one
// emoji (👩🏽‍💻) and hides nothing: it is matched first, as `keep`, and stays.
const INVISIBLE =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: the joiner is matched on its own, between pictographs, on purpose
  /(?<keep>(?<=\p{Extended_Pictographic}[\u{1F3FB}-\u{1F3FF}]?\uFE0F?)\u200D(?=\p{Extended_Pictographic}))|[\p{Cc}\p{Cf}\u034F\u115F\u1160\u17B4\u17B5\u3164\uFFA0\u{E0100}-\u{E01EF}]/gu;
const LONE_SURROGATE = /\p{Cs}/gu;

function text(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === undefined || v === null) return String(v);
  try {
    // A parsed JSON value: an object with "toString": null would make String() throw.
    return JSON.stringify(v) ?? String(v);
  } catch {
    return '[unprintable]';
  }
}

/**
 * `v` made safe to print on one terminal line: escape sequences (CSI, OSC
 * incl. OSC 52, DCS, SOS, PM, APC, and their 8-bit C1 forms) removed whole;
 * every other control character (C0, DEL, C1) and format character (bidi
 * controls, zero-width characters, BOM, tags) removed, except a tab or line
 * break, which becomes a space; invisible filler letters removed; lone
 * surrogates become U+FFFD; at most `max` code points. Letters of any
 * script, symbols and emoji stay. Non-strings (a number a peer sent, or an
 * object where a string was due) are shown as their JSON text.
 */
export function sanitizeForTerminal(v: unknown, max = MAX_TERMINAL_FIELD_CHARS): string {
  const s = text(v)
    .replace(ESCAPE_SEQUENCE, '')
    .replace(LINE_BREAK, ' ')
    .replace(/\t/g, ' ')
    .replace(INVISIBLE, (_m: string, keep: string | undefined) => keep ?? '')
    .replace(LONE_SURROGATE, '\uFFFD');
  const chars = [...s];
  return chars.length <= max ? s : `${chars.slice(0, Math.max(0, max - 1)).join('')}…`;
}

// Characters JSON.stringify leaves raw that a terminal acts on or hides text with. In its
// output they can only stand inside strings, where a \uXXXX escape means the same.
const JSON_UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
const u16 = (c: string): string => [...Array(c.length).keys()].map((i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join('');

/**
 * `JSON.stringify(value)` with DEL, C1 controls, format characters and
 * line/paragraph separators also written as \uXXXX (JSON.stringify escapes
 * only C0 controls and lone surrogates): it parses back to exactly `value`,
 * and no byte of it drives a terminal.
 */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value).replace(JSON_UNSAFE, u16);
}
