/** Peer names: shown in lists and prompts, and sent by the peer at pairing, so checked everywhere. */

/** Longest peer name, in Unicode code points. */
export const MAX_PEER_NAME_CHARS = 64;

// Control, format (bidi overrides, zero-width), surrogate, private-use, line and
// paragraph separators: a name is shown in lists and prompts, and must not be
// able to rewrite the terminal or pass for another name.
const NAME_FORBIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Zl}\p{Zp}]/u;

/**
 * True for a valid peer name: a string of 1..64 code points with no control,
 * format, surrogate, private-use or line/paragraph-separator characters and
 * no leading or trailing whitespace. Names may come from the peer at
 * pairing, so check before use.
 */
export function isValidPeerName(name: unknown): name is string {
  if (typeof name !== 'string') return false;
  const n = [...name].length;
  return n >= 1 && n <= MAX_PEER_NAME_CHARS && !NAME_FORBIDDEN.test(name) && name.trim() === name;
}

/**
 * How device names are compared when saving: case-insensitively and after
 * NFKC, so that two names that look alike (`Board`, `board`, `ｂｏａｒｄ`)
 * cannot both be saved.
 */
export function foldPeerName(name: string): string {
  return name.normalize('NFKC').toLowerCase();
}
