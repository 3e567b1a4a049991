// werift's DTLS (DtlsServer, DtlsClient) over an in-memory datagram wire we control,
// so flights can be reordered, duplicated, dropped, replayed and tampered with
// deterministically. Checks pinhole's patch to werift (patches/, docs/werift.md).

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { CipherContext, DtlsClient, DtlsServer } from 'werift';
import { type DtlsKeyPair, generateDtlsKeys } from '../../platform/node/rtc.js';

type DtlsOptions = ConstructorParameters<typeof DtlsServer>[0];
type DtlsTransport = DtlsOptions['transport'];
type Side = 'server' | 'client';

/**
 * What one direction of the wire delivers of a batch: the datagrams one side
 * sent in one go (a flight, a retransmission of one, application data).
 * `sent` holds every batch this direction was given so far, this one last.
 */
type Policy = (batch: Buffer[], sent: readonly Buffer[][]) => Buffer[];
const asSent: Policy = (b) => b;

/** Longest wait for a handshake that should complete (the lossy case waits for werift's 0.5 s and 1 s timers). */
const HANDSHAKE_TIMEOUT_MS = 8_000;
/** How long a handshake that failed is watched afterwards, to see that nothing opens late. */
const FAILED_GRACE_MS = 1_500;

/** One direction: batches what a side sends in one synchronous burst, then delivers what the policy keeps, a datagram per macrotask. */
class Wire {
  readonly sent: Buffer[][] = [];
  private pending: Buffer[] = [];
  private closed = false;
  constructor(
    private readonly policy: Policy,
    private readonly deliver: (d: Buffer) => void,
  ) {}

  send(d: Buffer): void {
    if (this.closed) return;
    this.pending.push(Buffer.from(d));
    if (this.pending.length === 1) setImmediate(() => void this.flush());
  }

  close(): void {
    this.closed = true;
  }

  private async flush(): Promise<void> {
    const batch = this.pending.splice(0);
    this.sent.push(batch);
    for (const d of this.policy(batch, this.sent)) {
      await new Promise((r) => setImmediate(r));
      if (this.closed) return;
      this.deliver(d);
    }
  }
}

function memoryTransport(send: (d: Buffer) => void): DtlsTransport {
  return {
    type: 'memory',
    address: {} as never,
    closed: false,
    onData: () => undefined,
    send: async (d: Buffer) => send(d),
    close: async () => undefined,
  } as DtlsTransport;
}

// ---------------------------------------------------------------- datagram surgery

/** The DTLS records of a datagram. */
function records(d: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o + 13 <= d.length; ) {
    const end = o + 13 + d.readUInt16BE(o + 11);
    out.push(d.subarray(o, end));
    o = end;
  }
  return out;
}
const CT_CHANGE_CIPHER_SPEC = 20;
const CT_HANDSHAKE = 22;
const isPlainHandshake = (r: Buffer) => r[0] === CT_HANDSHAKE && r.readUInt16BE(3) === 0;
/** Handshake message types in a datagram's plaintext records. */
const msgTypes = (d: Buffer) =>
  records(d)
    .filter(isPlainHandshake)
    .map((r) => r[13]!);
const hasChangeCipherSpec = (batch: Buffer[]) => batch.some((d) => records(d).some((r) => r[0] === CT_CHANGE_CIPHER_SPEC));

/** A plaintext handshake record holding the fragment [start, end) of the message in `r` (one whole message). */
function fragmentRecord(r: Buffer, start: number, end: number, seq?: number): Buffer {
  const hs = r.subarray(13);
  const length = hs.readUIntBE(1, 3);
  const header = Buffer.from(hs.subarray(0, 12));
  if (seq !== undefined) header.writeUInt16BE(seq, 4);
  header.writeUIntBE(start, 6, 3);
  header.writeUIntBE(end - start, 9, 3);
  assert.equal(hs.readUIntBE(9, 3), length, 'expected an unfragmented message');
  const body = Buffer.concat([header, hs.subarray(12 + start, 12 + end)]);
  const rec = Buffer.from(r.subarray(0, 13));
  rec.writeUInt16BE(body.length, 11);
  return Buffer.concat([rec, body]);
}

/** Every plaintext handshake message of the batch in two fragments, second half first. */
const fragmentedReversed: Policy = (batch) =>
  batch.flatMap((d) =>
    records(d).flatMap((r) => {
      const length = isPlainHandshake(r) ? r.readUIntBE(14, 3) : 0;
      if (length < 2) return [r];
      const mid = length >> 1;
      return [fragmentRecord(r, mid, length), fragmentRecord(r, 0, mid)];
    }),
  );

/** At the first batch with a ChangeCipherSpec (client flight 5, server flight 6), every earlier batch again first. */
function replayEarlierFlights(): Policy {
  let done = false;
  return (batch, sent) => {
    if (done || !hasChangeCipherSpec(batch)) return batch;
    done = true;
    return [...sent.slice(0, -1).flat(), ...batch];
  };
}

/** Drops the first batch each predicate matches (a lost flight), once. */
function dropFirst(...matches: ((batch: Buffer[]) => boolean)[]): Policy {
  const left = [...matches];
  return (batch) => {
    const i = left.findIndex((m) => m(batch));
    if (i < 0) return batch;
    left.splice(i, 1);
    return [];
  };
}
const HT = { clientHello: 1, serverHello: 2, helloVerifyRequest: 3, certificate: 11, certificateVerify: 15, clientKeyExchange: 16 } as const;
const hasType = (t: number) => (batch: Buffer[]) => batch.some((d) => msgTypes(d).includes(t));

// ---------------------------------------------------------------- keys

/** werift's own RSA certificate (2048-bit), its other supported signature algorithm. */
const rsaKeys = async (): Promise<DtlsKeyPair> => {
  const k = await CipherContext.createSelfSignedCertificateWithKey({ hash: 4, signature: 1 }, 23);
  return { certPem: k.certPem, keyPem: k.keyPem, signatureHash: { hash: k.signatureHash.hash, signature: k.signatureHash.signature } };
};
/** `real`'s certificate (public: it crosses the network in clear) with a fresh key of the same type. */
function stolen(real: DtlsKeyPair): DtlsKeyPair {
  const rsa = real.signatureHash.signature === 1;
  const { privateKey } = rsa ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...real, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

// ---------------------------------------------------------------- one handshake

interface RunOptions {
  toServer?: Policy;
  toClient?: Policy;
  serverKeys?: DtlsKeyPair;
  clientKeys?: DtlsKeyPair;
  extendedMasterSecret?: boolean;
  certificateRequest?: boolean;
}
interface Outcome {
  connected: Record<Side, boolean>;
  errors: Partial<Record<Side, Error & { code?: string }>>;
  /** Application data each side received. */
  received: Record<Side, string[]>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms: number): Promise<void> {
  for (const t0 = performance.now(); !cond() && performance.now() - t0 < ms; ) await sleep(5);
}

/** A DtlsServer/DtlsClient pair as werift's RTCDtlsTransport makes them, over two Wires. */
async function run(o: RunOptions = {}): Promise<Outcome> {
  const serverKeys = o.serverKeys ?? (await generateDtlsKeys());
  const clientKeys = o.clientKeys ?? (await generateDtlsKeys());
  const out: Outcome = { connected: { server: false, client: false }, errors: {}, received: { server: [], client: [] } };
  const serverT = memoryTransport((d) => s2c.send(d));
  const clientT = memoryTransport((d) => c2s.send(d));
  const c2s = new Wire(o.toServer ?? asSent, (d) => serverT.onData(d, undefined as never));
  const s2c = new Wire(o.toClient ?? asSent, (d) => clientT.onData(d, undefined as never));
  const common = { extendedMasterSecret: o.extendedMasterSecret ?? true };
  const keys = (k: DtlsKeyPair) => ({ cert: k.certPem, key: k.keyPem, signatureHash: k.signatureHash as DtlsOptions['signatureHash'] });
  const server = new DtlsServer({ transport: serverT, ...keys(serverKeys), ...common, certificateRequest: o.certificateRequest ?? true });
  const client = new DtlsClient({ transport: clientT, ...keys(clientKeys), ...common });
  for (const [side, s] of [
    ['server', server],
    ['client', client],
  ] as const) {
    s.onConnect.subscribe(() => {
      out.connected[side] = true;
      if (out.connected.server && out.connected.client) {
        void server.send(Buffer.from('from server'));
        void client.send(Buffer.from('from client'));
      }
    });
    s.onError.subscribe((e) => void (out.errors[side] ??= e));
    s.onData.subscribe((d) => void out.received[side].push(d.toString()));
  }
  try {
    client.connect().catch((e: Error) => void (out.errors.client ??= e));
    const failed = () => out.errors.server !== undefined || out.errors.client !== undefined;
    await until(() => failed() || (out.received.server.length > 0 && out.received.client.length > 0), HANDSHAKE_TIMEOUT_MS);
    if (failed()) await sleep(FAILED_GRACE_MS);
    return out;
  } finally {
    c2s.close();
    s2c.close();
    server.close();
    client.close();
  }
}

function assertCompleted(o: Outcome): void {
  assert.deepEqual(
    o.errors,
    {},
    `handshake errors: ${Object.values(o.errors)
      .map((e) => e?.message)
      .join('; ')}`,
  );
  assert.deepEqual(o.connected, { server: true, client: true });
  assert.ok(o.received.server.includes('from client'), 'server received the client data');
  assert.ok(o.received.client.includes('from server'), 'client received the server data');
}
function assertFailed(o: Outcome, side: Side, code: string): void {
  assert.equal(o.errors[side]?.code, code, `expected ${code} on the ${side}, got ${o.errors[side]?.message ?? 'no error'}`);
  assert.deepEqual(o.connected, { server: false, client: false }, 'neither side may connect');
  assert.deepEqual(o.received, { server: [], client: [] }, 'no application data may flow');
}

/** A policy that counts the batches it changed (so a test knows its perturbation happened). */
function tracked(policy: Policy): { policy: Policy; altered: number } {
  const t = {
    altered: 0,
    policy: (batch: Buffer[], sent: readonly Buffer[][]) => {
      const out = policy(batch, sent);
      if (out.length !== batch.length || out.some((d, i) => !d.equals(batch[i]!))) t.altered++;
      return out;
    },
  };
  return t;
}

/** The direction a role's werift receives on. */
const toward = (role: Side, policy: Policy): RunOptions => (role === 'server' ? { toServer: policy } : { toClient: policy });

// ---------------------------------------------------------------- cases

test('in order: handshake completes and data flows both ways (ECDSA P-256)', async () => {
  assertCompleted(await run());
});

test('in order: handshake completes and data flows both ways (RSA, both ends)', async () => {
  assertCompleted(await run({ serverKeys: await rsaKeys(), clientKeys: await rsaKeys() }));
});

for (const role of ['server', 'client'] as const) {
  const cases: [string, () => Policy][] = [
    ['every flight delivered with its datagrams reversed', () => (b) => [...b].reverse()],
    ['every datagram duplicated', () => (b) => b.flatMap((d) => [d, d])],
    ['earlier flights retransmitted mid-handshake', replayEarlierFlights],
    ['handshake messages in fragments, delivered last fragment first', () => fragmentedReversed],
  ];
  for (const [what, policy] of cases) {
    test(`issue 10: ${what}: completes (werift as ${role})`, async () => {
      const p = tracked(policy());
      assertCompleted(await run(toward(role, p.policy)));
      assert.ok(p.altered > 0, 'the wire changed some batch');
    });
  }
}

test('lost flights are sent again and the handshake completes (werift as server)', async () => {
  // The first ClientHello and the first flight 5 are lost: the client's timers resend them.
  const p = tracked(dropFirst(hasType(HT.clientHello), hasType(HT.clientKeyExchange)));
  assertCompleted(await run({ toServer: p.policy }));
  assert.equal(p.altered, 2, 'both flights were lost once');
});

test('lost flights are sent again and the handshake completes (werift as client)', async () => {
  // The HelloVerifyRequest and the server's last flight are lost: the client repeats its flight,
  // the server answers the repeat (neither flight has a timer of its own).
  const p = tracked(dropFirst(hasType(HT.helloVerifyRequest), hasChangeCipherSpec));
  assertCompleted(await run({ toClient: p.policy }));
  assert.equal(p.altered, 2, 'both flights were lost once');
});

for (const alg of ['ECDSA P-256', 'RSA'] as const) {
  const keys = alg === 'RSA' ? rsaKeys : generateDtlsKeys;

  test(`issue 9: a client with a stolen certificate and a random key fails on the server's CertificateVerify check (${alg})`, async () => {
    const real = await keys();
    assertFailed(await run({ clientKeys: stolen(real), serverKeys: await keys() }), 'server', 'ERR_DTLS_CERTIFICATE_VERIFY');
  });

  test(`issue 9: a server with a stolen certificate and a random key fails on the client's ServerKeyExchange check (${alg})`, async () => {
    const real = await keys();
    assertFailed(await run({ serverKeys: stolen(real), clientKeys: await keys() }), 'client', 'ERR_DTLS_SERVER_KEY_EXCHANGE');
  });
}

test('issue 9: a handshake changed in flight fails on the Finished check', async () => {
  // No extended master secret and no client certificate: only Finished covers the ServerHello's
  // session_id, flipped here on its way to the client.
  let flipped = false;
  const flipSessionId: Policy = (batch) =>
    batch.map((d) => {
      if (flipped || !msgTypes(d).includes(HT.serverHello)) return d;
      flipped = true;
      const c = Buffer.from(d);
      c[13 + 12 + 35] ^= 1; // record header, handshake header, version + random + session_id length
      return c;
    });
  const o = await run({ toClient: flipSessionId, extendedMasterSecret: false, certificateRequest: false });
  assert.ok(flipped, 'the ServerHello was changed');
  assertFailed(o, 'server', 'ERR_DTLS_FINISHED');
});

test('issue 9: a second Certificate in the client flight, after its CertificateVerify, is refused', async () => {
  // The client's Finished replaced by a copy of its Certificate under the Finished's message_seq:
  // without the order check the server would swap the certificate it already verified.
  let done = false;
  const swap: Policy = (batch) => {
    if (done || !hasType(HT.certificateVerify)(batch)) return batch;
    done = true;
    const cert = batch.flatMap(records).find((r) => isPlainHandshake(r) && r[13] === HT.certificate)!;
    const cv = batch.flatMap(records).find((r) => isPlainHandshake(r) && r[13] === HT.certificateVerify)!;
    const finishedSeq = cv.readUInt16BE(13 + 4) + 1;
    const length = cert.readUIntBE(14, 3);
    return [
      ...batch.filter((d) => !hasChangeCipherSpec([d]) && records(d).every((r) => r.readUInt16BE(3) === 0)),
      fragmentRecord(cert, 0, length, finishedSeq),
    ];
  };
  const o = await run({ toServer: swap });
  assert.ok(done, 'the client flight was changed');
  assertFailed(o, 'server', 'ERR_DTLS_UNEXPECTED_MESSAGE');
});
