// `pinhole doctor`'s classification (doctor/nat-behaviour.ts) from synthetic RFC 5780 test
// outcomes, every branch; plus the pure parts of the STUN server (bindingResponse) and of the
// doctor's shell (retransmit schedule, ERROR-CODE reader). No sockets.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import stun from 'stun';
import { classifyNat, type Endpoint, formatEndpoint, type NatObservations, type Probe, SUMMARY, validOther } from '../../doctor/nat-behaviour.js';
import { errorCode, retransmitSchedule, STUN_RTO_MS } from '../../doctor/netcheck.js';
import { altHostProblem, bindingResponse, CHANGE_IP, CHANGE_PORT, type Rfc5780Context } from '../../signaling/stun.js';

const ep = (address: string, port: number): Endpoint => ({ address, port });
const PRIMARY = ep('198.18.0.10', 3478);
const PRIMARY_ALTPORT = ep('198.18.0.10', 3479);
const ALT_PRIMARYPORT = ep('198.18.0.11', 3478);
const ALT = ep('198.18.0.11', 3479);
const LOCAL = ep('10.0.1.2', 40000);
const PUBLIC = ep('198.18.1.1', 40000);

const answer = (to: Endpoint, mapped: Endpoint, from: Endpoint = to, other: Endpoint | null = ALT, rttMs = 80): Probe => ({
  kind: 'answer',
  to,
  from,
  mapped,
  other,
  rttMs,
});
const timeout = (to: Endpoint): Probe => ({ kind: 'timeout', to });
const skipped: Probe = { kind: 'skipped' };

/** A cone NAT (EIM, APDF) seen through a server with an alternate address: the base every test varies. */
function obs(over: Partial<NatObservations> = {}): NatObservations {
  return {
    stunAvailable: true,
    local: LOCAL,
    mapping: { t1: answer(PRIMARY, PUBLIC), t2: answer(ALT_PRIMARYPORT, PUBLIC), t3: skipped },
    filtering: { t1: answer(PRIMARY, ep('198.18.1.1', 40001)), t2: timeout(PRIMARY), t3: timeout(PRIMARY) },
    hairpin: 'not-received',
    latencySamplesMs: [83.34, 81.26, 90],
    ...over,
  };
}
const publicMapping = (t2: Endpoint, t3: Probe = skipped): NatObservations['mapping'] => ({ t1: answer(PRIMARY, PUBLIC), t2: answer(ALT_PRIMARYPORT, t2), t3 });

describe('classifyNat: UDP and STUN availability', () => {
  test('a server without STUN: nothing tested, verdict unknown', () => {
    const r = classifyNat(obs({ stunAvailable: false }));
    assert.deepEqual(
      [r.udp, r.nat, r.discovery, r.mapping, r.filtering, r.hairpinning, r.latencyMs, r.publicAddress],
      ['not-tested', 'unknown', 'not-tested', 'unknown', 'unknown', 'not-tested', null, null],
    );
    assert.equal(r.verdict, 'unknown');
    assert.equal(r.summary, SUMMARY.unknown);
    assert.match(r.reasons[0]!, /runs no STUN/);
  });

  test('no answer to either first test: UDP blocked, relay, and says why', () => {
    const r = classifyNat(
      obs({ mapping: { t1: timeout(PRIMARY), t2: skipped, t3: skipped }, filtering: { t1: timeout(PRIMARY), t2: skipped, t3: skipped }, latencySamplesMs: [] }),
    );
    assert.equal(r.udp, 'blocked');
    assert.equal(r.verdict, 'relay');
    assert.equal(r.summary, 'relay will be used');
    assert.match(r.reasons[0]!, /UDP is blocked/);
    assert.deepEqual([r.mapping, r.filtering, r.hairpinning, r.publicAddress, r.latencyMs], ['unknown', 'unknown', 'not-tested', null, null]);
  });

  test('only the filtering socket got an answer: UDP ok, mapping unknown, verdict unknown', () => {
    const r = classifyNat(obs({ mapping: { t1: timeout(PRIMARY), t2: skipped, t3: skipped }, hairpin: 'skipped', latencySamplesMs: [] }));
    assert.equal(r.udp, 'ok');
    assert.equal(r.publicAddress, '198.18.1.1:40001');
    assert.equal(r.nat, 'unknown');
    assert.equal(r.mapping, 'unknown');
    assert.match(r.notes.mapping!, /first mapping test/);
    assert.equal(r.filtering, 'address-and-port-dependent');
    assert.equal(r.hairpinning, 'not-tested');
    assert.equal(r.verdict, 'unknown');
    assert.equal(r.latencyMs, null);
  });

  test('latency is the lowest sample, to one decimal', () => {
    assert.equal(classifyNat(obs()).latencyMs, 81.3);
    assert.equal(classifyNat(obs({ latencySamplesMs: [] })).latencyMs, null);
  });

  test('IPv6 public addresses are bracketed', () => {
    const v6 = ep('2001:db8::1', 5000);
    const r = classifyNat(obs({ local: v6, mapping: { t1: answer(ep('2001:db8::10', 3478), v6, undefined, null), t2: skipped, t3: skipped } }));
    assert.equal(r.publicAddress, '[2001:db8::1]:5000');
    assert.equal(formatEndpoint(ep('::1', 1)), '[::1]:1');
  });
});

describe('classifyNat: mapping (RFC 5780 4.3)', () => {
  test('no NAT (mapped == local): endpoint-independent without further tests, direct', () => {
    const r = classifyNat(
      obs({
        local: PUBLIC,
        mapping: { t1: answer(PRIMARY, PUBLIC), t2: skipped, t3: skipped },
        filtering: { t1: answer(PRIMARY, PUBLIC), t2: answer(PRIMARY, PUBLIC, ALT), t3: skipped },
        hairpin: 'received',
      }),
    );
    assert.deepEqual([r.nat, r.mapping, r.filtering, r.hairpinning, r.verdict], ['none', 'endpoint-independent', 'endpoint-independent', 'yes', 'direct']);
    assert.equal(r.summary, 'direct connections likely');
    assert.deepEqual(r.reasons, ['no NAT: the address the server sees is your own, so peers can reach it']);
  });

  test('no NAT but a filtering firewall: still direct, and the firewall is mentioned', () => {
    const r = classifyNat(obs({ local: PUBLIC }));
    assert.equal(r.verdict, 'direct');
    assert.equal(r.filtering, 'address-and-port-dependent');
    assert.match(r.reasons[1]!, /firewall filters/);
  });

  test('EIM: test II maps like test I; test III is not needed', () => {
    const r = classifyNat(obs());
    assert.deepEqual([r.nat, r.mapping, r.publicAddress], ['yes', 'endpoint-independent', '198.18.1.1:40000']);
  });

  test('address-dependent mapping: II differs from I, III equals II; relay', () => {
    const p2 = ep('198.18.1.1', 40100);
    const r = classifyNat(obs({ mapping: publicMapping(p2, answer(ALT, p2)) }));
    assert.equal(r.mapping, 'address-dependent');
    assert.equal(r.verdict, 'relay');
    assert.match(r.reasons[0]!, /^address-dependent mapping/);
  });

  test('address-and-port-dependent mapping (symmetric): III differs from II; relay, says who direct still works with', () => {
    const r = classifyNat(obs({ mapping: publicMapping(ep('198.18.1.1', 40100), answer(ALT, ep('198.18.1.1', 40200))) }));
    assert.equal(r.mapping, 'address-and-port-dependent');
    assert.equal(r.verdict, 'relay');
    assert.equal(r.summary, 'relay will be used');
    assert.match(r.reasons[0]!, /symmetric NAT/);
    assert.match(r.reasons[1]!, /only with a peer that has no NAT, or a NAT with endpoint-independent mapping/);
  });

  test('test II unanswered: mapping unknown, verdict unknown', () => {
    const r = classifyNat(obs({ mapping: { t1: answer(PRIMARY, PUBLIC), t2: timeout(ALT_PRIMARYPORT), t3: skipped } }));
    assert.equal(r.mapping, 'unknown');
    assert.match(r.notes.mapping!, /no answer from the alternate address 198\.18\.0\.11:3478/);
    assert.equal(r.verdict, 'unknown');
    assert.match(r.reasons[0]!, /no usable answer from the alternate address/);
  });

  test('test II skipped although discovery is available: mapping unknown', () => {
    const r = classifyNat(obs({ mapping: { t1: answer(PRIMARY, PUBLIC), t2: skipped, t3: skipped } }));
    assert.equal(r.mapping, 'unknown');
    assert.equal(r.notes.mapping, 'no answer from the alternate address');
  });

  test('test III unanswered after II differed: mapping unknown', () => {
    const r = classifyNat(obs({ mapping: publicMapping(ep('198.18.1.1', 40100), timeout(ALT)) }));
    assert.equal(r.mapping, 'unknown');
    assert.match(r.notes.mapping!, /alternate port 198\.18\.0\.11:3479 did not answer/);
  });

  test('unknown local address: NAT presence unknown, mapping still classified from the tests', () => {
    const r = classifyNat(obs({ local: null }));
    assert.equal(r.nat, 'unknown');
    assert.equal(r.mapping, 'endpoint-independent');
    assert.equal(r.verdict, 'direct');
  });
});

describe('classifyNat: filtering (RFC 5780 4.4)', () => {
  test('cone (EIM + APDF): direct, but not with a symmetric peer', () => {
    const r = classifyNat(obs());
    assert.equal(r.filtering, 'address-and-port-dependent');
    assert.equal(r.verdict, 'direct');
    assert.match(r.reasons[1]!, /with a peer behind a symmetric NAT the relay will be used/);
  });

  test('endpoint-independent: "change IP and port" answered from another IP and port', () => {
    const r = classifyNat(obs({ filtering: { t1: answer(PRIMARY, PUBLIC), t2: answer(PRIMARY, PUBLIC, ALT), t3: timeout(PRIMARY) } }));
    assert.equal(r.filtering, 'endpoint-independent');
    assert.equal(r.verdict, 'direct');
    assert.match(r.reasons[1]!, /even a peer behind a symmetric NAT/);
  });

  test('address-dependent: only "change port" answered, from the same IP', () => {
    const r = classifyNat(obs({ filtering: { t1: answer(PRIMARY, PUBLIC), t2: timeout(PRIMARY), t3: answer(PRIMARY, PUBLIC, PRIMARY_ALTPORT) } }));
    assert.equal(r.filtering, 'address-dependent');
    assert.match(r.reasons[1]!, /^address-dependent filtering/);
  });

  test('a server answering CHANGE-REQUEST from the address asked does not honour it: unknown', () => {
    const r = classifyNat(obs({ filtering: { t1: answer(PRIMARY, PUBLIC), t2: answer(PRIMARY, PUBLIC, PRIMARY), t3: timeout(PRIMARY) } }));
    assert.equal(r.filtering, 'unknown');
    assert.match(r.notes.filtering!, /does not honour it/);
  });

  test('"change port" answered from an unexpected address: unknown', () => {
    const r = classifyNat(obs({ filtering: { t1: answer(PRIMARY, PUBLIC), t2: timeout(PRIMARY), t3: answer(PRIMARY, PUBLIC, ALT) } }));
    assert.equal(r.filtering, 'unknown');
    assert.match(r.notes.filtering!, /unexpected address/);
  });

  test('420 to CHANGE-REQUEST (in test II, or in test III after II timed out): unavailable', () => {
    const e: Probe = { kind: 'error', to: PRIMARY, code: 420 };
    for (const f of [
      { t1: answer(PRIMARY, PUBLIC), t2: e, t3: timeout(PRIMARY) },
      { t1: answer(PRIMARY, PUBLIC), t2: timeout(PRIMARY), t3: e },
    ]) {
      const r = classifyNat(obs({ filtering: f }));
      assert.equal(r.filtering, 'unavailable');
      assert.match(r.notes.filtering!, /refused CHANGE-REQUEST/);
    }
  });

  test('tests II/III skipped although discovery is available: unknown', () => {
    const r = classifyNat(obs({ filtering: { t1: answer(PRIMARY, PUBLIC), t2: skipped, t3: skipped } }));
    assert.equal(r.filtering, 'unknown');
    assert.match(r.notes.filtering!, /not all/);
  });

  test('filtering test I unanswered: unknown, the rest still classified', () => {
    const r = classifyNat(obs({ filtering: { t1: timeout(PRIMARY), t2: skipped, t3: skipped } }));
    assert.equal(r.filtering, 'unknown');
    assert.equal(r.mapping, 'endpoint-independent');
    assert.equal(r.verdict, 'direct');
    assert.equal(r.reasons.length, 2, 'the EIM reason and the hairpin one, no filtering reason');
  });
});

describe('classifyNat: a server without an alternate address', () => {
  const noAlt = (p: Probe): Probe => (p.kind === 'answer' ? { ...p, other: null } : p);
  const base = obs();
  const withoutAlt = (over: Partial<NatObservations> = {}) =>
    obs({ mapping: { t1: noAlt(base.mapping.t1), t2: skipped, t3: skipped }, filtering: { t1: noAlt(base.filtering.t1), t2: skipped, t3: skipped }, ...over });

  test('behind a NAT: discovery unavailable, verdict unknown, points at --stun-alt-host', () => {
    const r = classifyNat(withoutAlt());
    assert.deepEqual([r.udp, r.discovery, r.mapping, r.filtering], ['ok', 'unavailable', 'unavailable', 'unavailable']);
    assert.match(r.notes.discovery!, /no alternate address/);
    assert.equal(r.verdict, 'unknown');
    assert.match(r.reasons.join(' '), /--stun-alt-host/);
  });

  test('no NAT: mapping is known anyway (endpoint-independent), filtering unavailable, direct', () => {
    const r = classifyNat(withoutAlt({ local: PUBLIC }));
    assert.deepEqual([r.discovery, r.mapping, r.filtering, r.verdict], ['unavailable', 'endpoint-independent', 'unavailable', 'direct']);
    assert.match(r.reasons[1]!, /not tested/);
  });

  test('an OTHER-ADDRESS equal in IP or port to the primary is ignored (RFC 5780 7.4)', () => {
    assert.equal(validOther(ALT, PRIMARY), true);
    assert.equal(validOther(ALT_PRIMARYPORT, PRIMARY), false);
    assert.equal(validOther(PRIMARY_ALTPORT, PRIMARY), false);
    const bad = answer(PRIMARY, PUBLIC, PRIMARY, PRIMARY_ALTPORT);
    const r = classifyNat(obs({ mapping: { t1: bad, t2: skipped, t3: skipped }, filtering: { t1: bad, t2: skipped, t3: skipped } }));
    assert.equal(r.discovery, 'unavailable');
    assert.match(r.notes.discovery!, /ignored/);
    assert.equal(r.mapping, 'unavailable');
  });
});

describe('classifyNat: hairpinning', () => {
  test('received = yes; not received behind a NAT = no, with a reason; skipped = not tested', () => {
    const yes = classifyNat(obs({ hairpin: 'received' }));
    assert.equal(yes.hairpinning, 'yes');
    assert.ok(!yes.reasons.some((x) => /hairpin/.test(x)));
    const no = classifyNat(obs());
    assert.equal(no.hairpinning, 'no');
    assert.match(no.notes.hairpinning!, /filtered/);
    assert.match(no.reasons.at(-1)!, /no hairpinning/);
    const eif = classifyNat(obs({ filtering: { t1: answer(PRIMARY, PUBLIC), t2: answer(PRIMARY, PUBLIC, ALT), t3: skipped } }));
    assert.equal(eif.notes.hairpinning, undefined, 'an open filter cannot be the reason');
    const skip = classifyNat(obs({ hairpin: 'skipped' }));
    assert.equal(skip.hairpinning, 'not-tested');
    assert.match(skip.notes.hairpinning!, /two local sockets/);
  });
});

describe('STUN server: bindingResponse (pure)', () => {
  const C = stun.constants;
  const grid: Rfc5780Context['grid'] = [
    [PRIMARY, PRIMARY_ALTPORT],
    [ALT_PRIMARYPORT, ALT],
  ];
  const request = (flags: number | null) => {
    const m = stun.createMessage(C.STUN_BINDING_REQUEST);
    if (flags !== null) m.addAttribute(C.STUN_ATTR_CHANGE_REQUEST, flags);
    return stun.decode(m.toBuffer());
  };
  const client = { address: '198.18.1.1', port: 40000 };
  const addr = (m: stun.StunRequest, type: number) => {
    const v = stun.decode(m.toBuffer()).getAttribute(type)?.value as Endpoint | undefined;
    return v && ep(v.address, v.port);
  };

  test('CHANGE-REQUEST picks the socket: every flag combination from every socket', () => {
    for (const ip of [0, 1] as const)
      for (const port of [0, 1] as const)
        for (const [flags, dIp, dPort] of [
          [null, 0, 0],
          [0, 0, 0],
          [CHANGE_PORT, 0, 1],
          [CHANGE_IP, 1, 0],
          [CHANGE_IP | CHANGE_PORT, 1, 1],
        ] as const) {
          const r = bindingResponse(request(flags), client, { grid, at: [ip, port] });
          assert.notEqual(r, 'drop');
          if (r === 'drop') return;
          const want = [dIp ? 1 - ip : ip, dPort ? 1 - port : port];
          assert.deepEqual(r.from, want, `at ${ip},${port} flags ${flags}`);
          assert.equal(r.message.type, C.STUN_BINDING_RESPONSE);
          assert.deepEqual(addr(r.message, C.STUN_ATTR_XOR_MAPPED_ADDRESS), client);
          assert.deepEqual(addr(r.message, C.STUN_ATTR_MAPPED_ADDRESS), client, 'RFC 5780 6.1: MAPPED-ADDRESS too');
          assert.deepEqual(addr(r.message, C.STUN_ATTR_RESPONSE_ORIGIN), grid[want[0]!]![want[1]!], 'RESPONSE-ORIGIN = the sending socket');
          assert.deepEqual(addr(r.message, C.STUN_ATTR_OTHER_ADDRESS), grid[1 - ip]![1 - port], 'OTHER-ADDRESS = the diagonal socket');
        }
  });

  test('without RFC 5780: no OTHER-ADDRESS, and CHANGE-REQUEST gets 420', () => {
    const ok = bindingResponse(request(null), client);
    assert.ok(ok !== 'drop');
    assert.equal(ok.message.type, C.STUN_BINDING_RESPONSE);
    assert.equal(ok.message.hasAttribute(C.STUN_ATTR_OTHER_ADDRESS), false);
    assert.equal(ok.message.hasAttribute(C.STUN_ATTR_RESPONSE_ORIGIN), false);
    assert.equal(ok.message.hasAttribute(C.STUN_ATTR_MAPPED_ADDRESS), false, 'kept small without RFC 5780');
    const refused = bindingResponse(request(0), client);
    assert.ok(refused !== 'drop');
    assert.equal(refused.message.type, C.STUN_BINDING_ERROR_RESPONSE);
    assert.equal(errorCode(refused.message.toBuffer()), 420);
  });

  test('altHostProblem: needs a specific primary IP, an IP alternate of the same family, and a different one', () => {
    assert.equal(altHostProblem('198.18.0.10', '198.18.0.11'), null);
    assert.equal(altHostProblem('::1', '2001:db8::1'), null);
    assert.match(altHostProblem('0.0.0.0', '198.18.0.11')!, /specific address/);
    assert.match(altHostProblem('::', '::1')!, /specific address/);
    assert.match(altHostProblem('localhost', '127.0.0.2')!, /must be an IP address/);
    assert.match(altHostProblem('127.0.0.1', 'example')!, /must be an IP address/);
    assert.match(altHostProblem('127.0.0.1', '0.0.0.0')!, /specific address/);
    assert.match(altHostProblem('127.0.0.1', '::2')!, /same family/);
    assert.match(altHostProblem('127.0.0.1', '127.0.0.1')!, /differ/);
    assert.match(altHostProblem('::1', '0:0::1')!, /differ/);
  });
});

describe('doctor shell helpers (pure)', () => {
  test('retransmits double from STUN_RTO_MS and stay within the timeout', () => {
    assert.equal(STUN_RTO_MS, 200);
    assert.deepEqual(retransmitSchedule(1500), [0, 200, 600, 1400]);
    assert.deepEqual(retransmitSchedule(1400), [0, 200, 600]);
    assert.deepEqual(retransmitSchedule(1), [0]);
  });

  test('errorCode reads ERROR-CODE by hand, after other attributes; 0 when absent', () => {
    const m = stun.createMessage(stun.constants.STUN_BINDING_ERROR_RESPONSE);
    m.addSoftware('abc'); // 3 bytes: exercises padding
    m.addError(487);
    assert.equal(errorCode(m.toBuffer()), 487);
    assert.equal(errorCode(stun.createMessage(stun.constants.STUN_BINDING_RESPONSE).toBuffer()), 0);
    assert.equal(errorCode(Buffer.alloc(10)), 0);
  });
});
