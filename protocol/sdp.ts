/** The DTLS certificate fingerprint an SDP announces: what the handshake signed and session/ compares. */

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
