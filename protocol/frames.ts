/**
 * Link frames: what travels inside a relay message or one data-channel
 * message. Sequence numbers let the link change path without losing or
 * doubling a message: the receiver drops seqs it has seen and holds early
 * ones until the gap fills; the sender resends what is unacknowledged on the
 * new path.
 *
 *   {"t":"d","q":5,"a":3,"m":<payload>}   data: seq 5, I have everything up to 3
 *   {"t":"a","a":4}                        bare acknowledgement
 *   {"t":"p","n":1}                        probe: "does this path work?" (answered on the same path)
 *   {"t":"P","n":1}                        probe reply
 */
import { MAX_LINK_FRAME_BYTES, parseJson } from './signaling.js';

export type LinkFrame = { t: 'd'; q: number; a: number; m: unknown } | { t: 'a'; a: number } | { t: 'p'; n: number } | { t: 'P'; n: number };

const isSeq = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** Validates one frame; returns undefined for anything malformed or oversized. */
export function parseFrame(text: string | Uint8Array): LinkFrame | undefined {
  const j = parseJson(text, MAX_LINK_FRAME_BYTES);
  if (!j.ok) return undefined;
  const f = j.value as Record<string, unknown>;
  if (typeof f !== 'object' || f === null || Array.isArray(f)) return undefined;
  switch (f.t) {
    case 'd':
      return isSeq(f.q) && f.q > 0 && isSeq(f.a) && 'm' in f ? { t: 'd', q: f.q, a: f.a, m: f.m } : undefined;
    case 'a':
      return isSeq(f.a) ? { t: 'a', a: f.a } : undefined;
    case 'p':
    case 'P':
      return isSeq(f.n) ? { t: f.t, n: f.n } : undefined;
    default:
      return undefined;
  }
}

/** Encodes a data frame around an already-serialised payload (saves a re-stringify on resend). */
export function encodeData(q: number, a: number, payloadJson: string): string {
  return `{"t":"d","q":${q},"a":${a},"m":${payloadJson}}`;
}

/** Encodes a control frame. */
export function encodeControl(f: Exclude<LinkFrame, { t: 'd' }>): string {
  return JSON.stringify(f);
}
