/**
 * What pinhole reads in an SDP: the DTLS certificate fingerprint it announces
 * (what the handshake signed and session/ compares), and its candidate lines
 * (withheld from the description and sent one by one: the coordinated start).
 */

const SDP_SHA256 = /^a=fingerprint:sha-256 ([0-9a-f]{2}(?::[0-9a-f]{2}){31})$/i;

/**
 * The SHA-256 certificate fingerprint an SDP announces, upper-case
 * (`AB:CD:...`, 32 hex pairs), from its `a=fingerprint:sha-256` line(s),
 * session- or media-level; repeats of the same value are fine. undefined if
 * there is none, if a fingerprint line is malformed, if two different
 * SHA-256 values appear, or if any fingerprint line uses another hash
 * function: werift verifies the peer's certificate against the strongest
 * algorithm present (sha-512 before sha-256), so an injected sha-512 line
 * would otherwise bypass a check of the signed sha-256 value.
 */
export function parseSdpFingerprint(sdp: string): string | undefined {
  if (typeof sdp !== 'string') return undefined;
  let found: string | undefined;
  // split on any line break: every line werift sees (it splits on CRLF) starts one of ours
  for (const line of sdp.split(/\r\n|\r|\n/)) {
    if (!/^a=fingerprint:/i.test(line)) continue;
    const m = SDP_SHA256.exec(line);
    if (!m) return undefined;
    const fp = m[1].toUpperCase();
    if (found !== undefined && found !== fp) return undefined;
    found = fp;
  }
  return found;
}

/**
 * Splits an SDP into the SDP without its candidate and end-of-candidates
 * lines (joined with CRLF), the candidates it held (`candidate:…`, without
 * `a=`) and its first media section's mid (null if none).
 */
export function splitCandidates(sdp: string): { sdp: string; candidates: string[]; mid: string | null } {
  const lines = sdp.split(/\r?\n/);
  const candidates = lines.filter((l) => l.startsWith('a=candidate:')).map((l) => l.slice(2));
  const mid = lines.find((l) => l.startsWith('a=mid:'))?.slice(6) ?? null;
  const kept = lines.filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates');
  return { sdp: kept.join('\r\n'), candidates, mid };
}
