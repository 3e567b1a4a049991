/**
 * NAT behaviour classification for `pinhole doctor`: pure functions from the
 * outcomes of STUN tests (run by ./doctor.ts) to a report. No sockets here,
 * so every branch is unit-tested from synthetic outcomes.
 *
 * The tests are those of RFC 5780 (NAT Behavior Discovery Using STUN):
 * - section 4.3, mapping: test I (primary address), test II (alternate IP,
 *   primary port), test III (alternate IP, alternate port), all from one
 *   local socket; the XOR-MAPPED-ADDRESS answers are compared.
 * - section 4.4, filtering: from a second, fresh local socket that only ever
 *   sends to the primary address, test I, test II (CHANGE-REQUEST change IP
 *   and port) and test III (change port only); which answers arrive tells
 *   which sources the NAT lets in.
 * - hairpinning (section 4.7): one local socket sends to the other's public
 *   (mapped) address; arriving means the NAT hairpins.
 * Vocabulary (endpoint-independent, address-dependent,
 * address-and-port-dependent) is RFC 4787's.
 */

/** An IP address and port. */
export interface Endpoint {
  address: string;
  port: number;
}

/** Outcome of one STUN Binding transaction. */
export type Probe =
  | {
      kind: 'answer';
      /** Where the request was sent. */
      to: Endpoint;
      /** Where the answer came from (the datagram's source). */
      from: Endpoint;
      /** XOR-MAPPED-ADDRESS: how the server saw us. */
      mapped: Endpoint;
      /** OTHER-ADDRESS, or null when the server has none (no RFC 5780). */
      other: Endpoint | null;
      /** Round trip of the answered transmission, ms. */
      rttMs: number;
    }
  /** A STUN error response, e.g. 420 when the server refuses CHANGE-REQUEST. */
  | { kind: 'error'; to: Endpoint; code: number }
  /** No answer before the deadline (retransmits included). */
  | { kind: 'timeout'; to: Endpoint }
  /** Not run: an earlier result made it pointless or impossible. */
  | { kind: 'skipped' };

/** Everything `pinhole doctor` measured; the input of `classifyNat`. */
export interface NatObservations {
  /** The server runs STUN (its /healthz said so). False: nothing else was run. */
  stunAvailable: boolean;
  /** The local address of the mapping socket (the source IP the route picks, and its port), or null if unknown. */
  local: Endpoint | null;
  /** RFC 5780 4.3 tests, on one socket. */
  mapping: { t1: Probe; t2: Probe; t3: Probe };
  /** RFC 5780 4.4 tests, on a second socket. t1 also tells whether UDP works. */
  filtering: { t1: Probe; t2: Probe; t3: Probe };
  /** Hairpinning: 'received' = a packet to our own public address arrived. */
  hairpin: 'received' | 'not-received' | 'skipped';
  /** Round trips of plain binding requests to the primary address, ms. */
  latencySamplesMs: number[];
}

export type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';
/** 'unavailable': the server cannot run the test (no alternate address); 'unknown': it ran but gave no usable answer. */
export type BehaviourResult = Behaviour | 'unavailable' | 'unknown';

/** Doctor's conclusion. */
export type Verdict = 'direct' | 'relay' | 'unknown';

/** The classified result: what `pinhole doctor` prints. */
export interface NatReport {
  /** 'ok': the STUN server answered; 'blocked': no answer; 'not-tested': the server runs no STUN. */
  udp: 'ok' | 'blocked' | 'not-tested';
  /** The public (mapped) address, "IP:PORT", or null. */
  publicAddress: string | null;
  /** 'none': the mapped address is our own; 'yes': it differs; 'unknown': not measured. */
  nat: 'none' | 'yes' | 'unknown';
  /** RFC 5780 discovery: 'available' (the server has an alternate address), 'unavailable', 'not-tested'. */
  discovery: 'available' | 'unavailable' | 'not-tested';
  mapping: BehaviourResult;
  filtering: BehaviourResult;
  hairpinning: 'yes' | 'no' | 'not-tested';
  /** Lowest round trip to the STUN server, ms (one decimal), or null. */
  latencyMs: number | null;
  verdict: Verdict;
  /** One line: "direct connections likely", "relay will be used", ... */
  summary: string;
  /** Why, in plain sentences, most important first. */
  reasons: string[];
  /** Explanations of individual lines (e.g. why a test could not run), keyed by line. */
  notes: Partial<Record<'udp' | 'mapping' | 'filtering' | 'hairpinning' | 'discovery', string>>;
}

export const SUMMARY: Record<Verdict, string> = {
  direct: 'direct connections likely',
  relay: 'relay will be used',
  unknown: 'unknown: direct connections may or may not work',
};

/** "IP:PORT" ("[v6]:PORT" for IPv6). */
export function formatEndpoint(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

/** Classifies the observations. Pure; every branch is covered by unit tests. */
export function classifyNat(o: NatObservations): NatReport {
  const notes: NatReport['notes'] = {};
  if (!o.stunAvailable) {
    notes.udp = 'the server runs no STUN server, so nothing could be tested';
    return {
      udp: 'not-tested',
      publicAddress: null,
      nat: 'unknown',
      discovery: 'not-tested',
      mapping: 'unknown',
      filtering: 'unknown',
      hairpinning: 'not-tested',
      latencyMs: null,
      verdict: 'unknown',
      summary: SUMMARY.unknown,
      reasons: [
        'the server runs no STUN server (started with --stun-port -1?), so UDP and NAT behaviour could not be tested',
        'pinhole still tries a direct path and falls back to the relay',
      ],
      notes,
    };
  }

  const first = o.mapping.t1.kind === 'answer' ? o.mapping.t1 : o.filtering.t1.kind === 'answer' ? o.filtering.t1 : null;
  const latency = o.latencySamplesMs.length ? Math.round(Math.min(...o.latencySamplesMs) * 10) / 10 : null;
  if (!first) {
    notes.udp = 'no answer from the STUN server over UDP';
    return {
      udp: 'blocked',
      publicAddress: null,
      nat: 'unknown',
      discovery: 'not-tested',
      mapping: 'unknown',
      filtering: 'unknown',
      hairpinning: 'not-tested',
      latencyMs: null,
      verdict: 'relay',
      summary: SUMMARY.relay,
      reasons: [
        'UDP is blocked: the STUN server did not answer over UDP, though the server answered over TCP',
        'WebRTC needs UDP, so the relay (over the WebSocket, TCP) will be used for every peer',
        "if UDP should work here, check firewalls for outgoing UDP to the server's STUN port",
      ],
      notes,
    };
  }

  const m1 = o.mapping.t1.kind === 'answer' ? o.mapping.t1 : null;
  const mapped = first.mapped;
  const nat: NatReport['nat'] = m1 && o.local ? (sameEndpoint(m1.mapped, o.local) ? 'none' : 'yes') : 'unknown';
  const other = first.other && validOther(first.other, first.to) ? first.other : null;
  if (first.other && !other) notes.discovery = 'the server announced an alternate address equal in IP or port to its primary one; ignored';
  const discovery: NatReport['discovery'] = other ? 'available' : 'unavailable';
  if (!other && !notes.discovery) notes.discovery = 'the server has no alternate address; start it with --stun-alt-host to enable the RFC 5780 tests';

  const mapping = classifyMapping(o, nat, other !== null, notes);
  const filtering = classifyFiltering(o, other !== null, notes);
  const hairpinning = o.hairpin === 'received' ? 'yes' : o.hairpin === 'not-received' ? 'no' : 'not-tested';
  if (hairpinning === 'not-tested') notes.hairpinning = 'needs a public address on two local sockets';
  else if (hairpinning === 'no' && filtering !== 'endpoint-independent' && nat === 'yes') notes.hairpinning = 'or your NAT filtered the hairpinned packets';

  const { verdict, reasons } = decide(nat, mapping, filtering, discovery);
  if (hairpinning === 'no' && nat === 'yes') reasons.push('no hairpinning: a peer on your own LAN is reached by its local address, not through the NAT');
  return {
    udp: 'ok',
    publicAddress: formatEndpoint(mapped),
    nat,
    discovery,
    mapping,
    filtering,
    hairpinning,
    latencyMs: latency,
    verdict,
    summary: SUMMARY[verdict],
    reasons,
    notes,
  };
}

/** OTHER-ADDRESS is usable only if it differs from the primary in both IP and port (RFC 5780 section 7.4). */
export function validOther(other: Endpoint, primary: Endpoint): boolean {
  return other.address !== primary.address && other.port !== primary.port;
}

function classifyMapping(o: NatObservations, nat: NatReport['nat'], discovery: boolean, notes: NatReport['notes']): BehaviourResult {
  const { t1, t2, t3 } = o.mapping;
  if (nat === 'none') {
    notes.mapping = 'no NAT: your address is the one the server sees';
    return 'endpoint-independent';
  }
  if (t1.kind !== 'answer') {
    notes.mapping = 'the first mapping test got no answer';
    return 'unknown';
  }
  if (!discovery) {
    notes.mapping = "needs the server's alternate address";
    return 'unavailable';
  }
  if (t2.kind !== 'answer') {
    notes.mapping = `no answer from the alternate address ${t2.kind === 'skipped' ? '' : formatEndpoint(t2.to)}`.trim();
    return 'unknown';
  }
  if (sameEndpoint(t2.mapped, t1.mapped)) return 'endpoint-independent';
  if (t3.kind !== 'answer') {
    notes.mapping = `the public port changed with the destination IP, and the alternate port ${t3.kind === 'skipped' ? '' : formatEndpoint(t3.to) + ' '}did not answer`;
    return 'unknown';
  }
  return sameEndpoint(t3.mapped, t2.mapped) ? 'address-dependent' : 'address-and-port-dependent';
}

function classifyFiltering(o: NatObservations, discovery: boolean, notes: NatReport['notes']): BehaviourResult {
  const { t1, t2, t3 } = o.filtering;
  if (t1.kind !== 'answer') {
    notes.filtering = 'the first filtering test got no answer';
    return 'unknown';
  }
  if (!discovery) {
    notes.filtering = "needs the server's alternate address";
    return 'unavailable';
  }
  if (t2.kind === 'error' || (t2.kind === 'timeout' && t3.kind === 'error')) {
    notes.filtering = 'the server refused CHANGE-REQUEST';
    return 'unavailable';
  }
  if (t2.kind === 'answer') {
    // An answer to "change IP and port" must come from another IP and port; else the server ignored the request.
    if (t2.from.address !== t2.to.address && t2.from.port !== t2.to.port) return 'endpoint-independent';
    notes.filtering = 'the server answered CHANGE-REQUEST from the address asked, so it does not honour it';
    return 'unknown';
  }
  if (t2.kind === 'skipped' || t3.kind === 'skipped') {
    notes.filtering = 'not all filtering tests ran';
    return 'unknown';
  }
  if (t3.kind === 'answer') {
    if (t3.from.address === t3.to.address && t3.from.port !== t3.to.port) return 'address-dependent';
    notes.filtering = 'the server answered "change port" from an unexpected address';
    return 'unknown';
  }
  return 'address-and-port-dependent';
}

const POINT_TO_ALT = 'run the server with --stun-alt-host (a second IP address) to test NAT behaviour';

function decide(
  nat: NatReport['nat'],
  mapping: BehaviourResult,
  filtering: BehaviourResult,
  discovery: NatReport['discovery'],
): { verdict: Verdict; reasons: string[] } {
  if (nat === 'none') {
    const reasons = ['no NAT: the address the server sees is your own, so peers can reach it'];
    if (filtering === 'address-dependent' || filtering === 'address-and-port-dependent')
      reasons.push('a firewall filters unsolicited packets, but replies to what you sent get in, so hole punching works as through a cone NAT');
    else if (filtering === 'unavailable' || filtering === 'unknown') reasons.push('whether a firewall filters incoming UDP was not tested');
    return { verdict: 'direct', reasons };
  }
  if (mapping === 'endpoint-independent') {
    const reasons = [
      'endpoint-independent mapping: your public address and port stay the same for every destination, so a peer can punch through to the address the server saw',
    ];
    if (filtering === 'address-and-port-dependent')
      reasons.push(
        'address-and-port-dependent filtering: direct works with peers whose mapping is endpoint-independent too (most home routers); with a peer behind a symmetric NAT the relay will be used',
      );
    else if (filtering === 'endpoint-independent' || filtering === 'address-dependent')
      reasons.push(`${filtering} filtering: even a peer behind a symmetric NAT can reach you, so direct is likely with almost any peer`);
    return { verdict: 'direct', reasons };
  }
  if (mapping === 'address-dependent' || mapping === 'address-and-port-dependent') {
    return {
      verdict: 'relay',
      reasons: [
        `${mapping} mapping ("symmetric NAT"): your NAT picks a new public port for each destination, so the port the server saw is not the one a peer would see`,
        'direct works only with a peer that has no NAT, or a NAT with endpoint-independent mapping and endpoint-independent or address-dependent filtering; with most peers the relay will be used',
      ],
    };
  }
  if (mapping === 'unavailable' || discovery === 'unavailable') {
    return {
      verdict: 'unknown',
      reasons: ['UDP works and you are behind a NAT, but this server cannot test how it behaves (it has no alternate address)', POINT_TO_ALT],
    };
  }
  return {
    verdict: 'unknown',
    reasons: [
      'UDP works and you are behind a NAT, but the mapping tests got no usable answer from the alternate address',
      'pinhole will try a direct path and fall back to the relay',
    ],
  };
}
