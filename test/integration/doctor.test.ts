// `pinhole doctor` and the RFC 5780 STUN server on loopback: 127.0.0.1 primary, 127.0.0.2
// alternate (both on lo on Linux). No NAT here, so mapping and filtering are endpoint-independent.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import stun from 'stun';
import { resolveSignalConfig, type SignalServer, startSignalServer } from '../../signaling/index.js';
import { exited, runCli, spawnUntil } from './helpers.js';

const HOST = '127.0.0.1';
const ALT = '127.0.0.2';
const C = stun.constants;

const start = (stunAltHost: string | null) => startSignalServer(resolveSignalConfig({ host: HOST, port: 0, stunPort: 0, stunAltHost, log: () => undefined }));

/** Sends a Binding request (CHANGE-REQUEST when flags given) from a fresh socket; resolves with the answer and its source. */
async function ask(to: { address: string; port: number }, flags: number | null): Promise<{ res: stun.StunResponse; from: string } | null> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, HOST, () => r()));
  try {
    const m = stun.createMessage(C.STUN_BINDING_REQUEST);
    if (flags !== null) m.addAttribute(C.STUN_ATTR_CHANGE_REQUEST, flags);
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 1000);
      s.on('message', (buf, rinfo) => {
        clearTimeout(timer);
        resolve({ res: stun.decode(buf), from: `${rinfo.address}:${rinfo.port}` });
      });
      s.send(m.toBuffer(), to.port, to.address);
    });
  } finally {
    s.close();
  }
}

const addrOf = (res: stun.StunResponse, type: number) => {
  const v = res.getAttribute(type)?.value as { address: string; port: number } | undefined;
  return v ? `${v.address}:${v.port}` : undefined;
};

describe('STUN server with --stun-alt-host (RFC 5780) on loopback', () => {
  let server: SignalServer;
  before(async () => {
    server = await start(ALT);
  });
  after(() => server?.close());

  test('four sockets: primary and alternate IP, each on port and port + 1', async () => {
    const p = server.stunPort!;
    assert.deepEqual(server.stunAlt, { address: ALT, port: p + 1 });
    for (const [ip, port] of [
      [HOST, p],
      [HOST, p + 1],
      [ALT, p],
      [ALT, p + 1],
    ] as const) {
      const a = await ask({ address: ip, port }, null);
      assert.ok(a, `answer from ${ip}:${port}`);
      assert.equal(a.from, `${ip}:${port}`);
      assert.equal(addrOf(a.res, C.STUN_ATTR_RESPONSE_ORIGIN), `${ip}:${port}`);
      assert.equal(addrOf(a.res, C.STUN_ATTR_OTHER_ADDRESS), `${ip === HOST ? ALT : HOST}:${port === p ? p + 1 : p}`);
    }
  });

  test('CHANGE-REQUEST answers from the other IP and/or port, and says so in RESPONSE-ORIGIN', async () => {
    const p = server.stunPort!;
    const before = server.stats().stun!.changed;
    for (const [flags, want] of [
      [0x06, `${ALT}:${p + 1}`],
      [0x04, `${ALT}:${p}`],
      [0x02, `${HOST}:${p + 1}`],
      [0x00, `${HOST}:${p}`],
    ] as const) {
      const a = await ask({ address: HOST, port: p }, flags);
      assert.ok(a, `answer to flags ${flags}`);
      assert.equal(a.from, want, `flags ${flags}`);
      assert.equal(addrOf(a.res, C.STUN_ATTR_RESPONSE_ORIGIN), want);
      assert.equal(addrOf(a.res, C.STUN_ATTR_OTHER_ADDRESS), `${ALT}:${p + 1}`);
    }
    assert.equal(server.stats().stun!.changed - before, 3);
  });

  test('/healthz tells the STUN port and the alternate address', async () => {
    const j = (await (await fetch(`http://${HOST}:${server.port}/healthz`)).json()) as Record<string, unknown>;
    assert.equal(j.stunPort, server.stunPort);
    assert.equal(j.stunAltHost, ALT);
    assert.equal(j.stunAltPort, server.stunPort! + 1);
  });

  test('issue 3: doctor reports UDP ok, no NAT, endpoint-independent mapping and filtering, direct', async () => {
    const changed0 = server.stats().stun!.changed;
    const r = await runCli(['doctor', '--server', server.url, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.length, 1, 'one JSON object');
    const j = r.json[0]!;
    assert.equal(j.ok, true);
    assert.equal(j.udp, 'ok');
    assert.equal(j.stun, `udp://${HOST}:${server.stunPort}`);
    assert.equal(j.stunAlt, `udp://${ALT}:${server.stunPort! + 1}`);
    assert.equal(j.discovery, 'available');
    assert.equal(j.nat, 'none');
    assert.match(String(j.publicAddress), /^127\.0\.0\.1:\d+$/);
    assert.equal(j.publicAddress, j.localAddress);
    assert.equal(j.mapping, 'endpoint-independent');
    assert.equal(j.filtering, 'endpoint-independent');
    assert.equal(j.hairpinning, 'yes');
    assert.equal(typeof j.latencyMs, 'number');
    assert.equal(j.verdict, 'direct');
    assert.equal(j.summary, 'direct connections likely');
    const tests = j.tests as { mapping: Record<string, { result: string; from?: string }>; filtering: Record<string, { result: string; from?: string }> };
    assert.equal(tests.mapping.t2!.result, 'answer', 'mapping test II went to the alternate address');
    assert.equal(tests.mapping.t2!.from, `${ALT}:${server.stunPort}`);
    assert.equal(tests.filtering.t2!.from, `${ALT}:${server.stunPort! + 1}`, 'filtering test II answered from the other IP and port');
    assert.ok(server.stats().stun!.changed - changed0 >= 2, 'the server really answered CHANGE-REQUESTs from other sockets');
  });

  test('issue 3: the text report reads like netcheck', async () => {
    const r = await runCli(['doctor', '--server', server.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines[0], 'Report:');
    for (const line of [
      '* UDP: yes',
      '* Mapping: endpoint-independent',
      '* Filtering: endpoint-independent',
      '* Hairpinning: yes',
      '* Verdict: direct connections likely',
    ])
      assert.ok(
        r.lines.some((l) => l.includes(line)),
        `${line} in:\n${r.stdout}`,
      );
    assert.ok(r.lines.some((l) => /\* Latency: \d+\.\d ms/.test(l)));
  });
});

describe('STUN server without an alternate address', () => {
  let server: SignalServer;
  before(async () => {
    server = await start(null);
  });
  after(() => server?.close());

  test('no OTHER-ADDRESS; /healthz says stunAltHost null', async () => {
    const a = await ask({ address: HOST, port: server.stunPort! }, null);
    assert.ok(a);
    assert.equal(a.res.hasAttribute(C.STUN_ATTR_OTHER_ADDRESS), false);
    assert.equal(server.stunAlt, null);
    const j = (await (await fetch(`http://${HOST}:${server.port}/healthz`)).json()) as Record<string, unknown>;
    assert.deepEqual([j.stunPort, j.stunAltHost, j.stunAltPort], [server.stunPort, null, null]);
  });

  test('issue 3: doctor says behaviour discovery is unavailable on this server', async () => {
    const r = await runCli(['doctor', '--server', server.url, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json[0]!;
    assert.equal(j.udp, 'ok');
    assert.equal(j.discovery, 'unavailable');
    assert.equal(j.filtering, 'unavailable');
    assert.equal(j.stunAlt, null);
    assert.match(String((j.notes as Record<string, string>).discovery), /--stun-alt-host/);
    const t = await runCli(['doctor', '--server', server.url]);
    assert.equal(t.code, 0, t.stderr);
    assert.ok(
      t.lines.some((l) => l.includes('* Behaviour discovery: unavailable on this server')),
      t.stdout,
    );
    assert.ok(
      t.lines.some((l) => l.includes('* Filtering: unavailable')),
      t.stdout,
    );
  });
});

describe('doctor failures and usage', () => {
  test('issue 3: an unreachable server exits 4 with server-unreachable', async () => {
    const port = await freeTcpPort();
    const r = await runCli(['doctor', '--server', `ws://${HOST}:${port}`, '--json', '--timeout', '500']);
    assert.equal(r.code, 4);
    assert.equal(r.json[0]!.ok, false);
    assert.equal(r.json[0]!.error, 'server-unreachable');
    assert.match(r.stderr, /cannot reach the server/);
  });

  test('a server without STUN: exit 0, nothing tested, verdict unknown', async () => {
    const s = await startSignalServer(resolveSignalConfig({ host: HOST, port: 0, stunPort: null, log: () => undefined }));
    try {
      const r = await runCli(['doctor', '--server', s.url, '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual([r.json[0]!.udp, r.json[0]!.verdict, r.json[0]!.stun], ['not-tested', 'unknown', null]);
    } finally {
      await s.close();
    }
  });

  test('usage errors exit 2: no --server, a stray argument, a bad --timeout', async () => {
    for (const args of [
      ['doctor'],
      ['doctor', '--server', 'ws://127.0.0.1:1', 'now'],
      ['doctor', '--server', 'ws://127.0.0.1:1', '--timeout', 'x'],
      ['doctor', '--server', 'http://127.0.0.1:1'],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  test('doctor --help documents itself', async () => {
    const r = await runCli(['doctor', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--timeout MS/);
  });
});

describe('pinhole signal --stun-alt-host', () => {
  test('the listening line includes the alternate address; /healthz reports it', async () => {
    const s = await spawnUntil(['signal', '--host', HOST, '--port', '0', '--stun-port', '0', '--stun-alt-host', ALT], /listening/);
    try {
      const first = JSON.parse(s.out().split('\n')[0]!) as { event: string; http: string; stun: string; stunAlt: string };
      assert.equal(first.event, 'listening');
      const m = /^udp:\/\/127\.0\.0\.1:(\d+)$/.exec(first.stun);
      assert.ok(m, first.stun);
      assert.equal(first.stunAlt, `udp://${ALT}:${Number(m[1]) + 1}`);
      const j = (await (await fetch(first.http)).json()) as Record<string, unknown>;
      assert.deepEqual([j.stunPort, j.stunAltHost, j.stunAltPort], [Number(m[1]), ALT, Number(m[1]) + 1]);
    } finally {
      s.proc.kill('SIGTERM');
      assert.equal(await exited(s.proc), 0);
    }
  });

  test('bad combinations are usage errors (exit 2)', async () => {
    for (const args of [
      ['--stun-alt-host', ALT], // --host defaults to 0.0.0.0
      ['--host', HOST, '--stun-alt-host', HOST],
      ['--host', HOST, '--stun-alt-host', '::1'],
      ['--host', HOST, '--stun-alt-host', 'not-an-ip'],
      ['--host', HOST, '--stun-port', '65535', '--stun-alt-host', ALT],
    ]) {
      const r = await runCli(['signal', '--port', '0', ...args], { killAfterMs: 5000 });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  test('an explicit --stun-port puts the alternate port at port + 1', async () => {
    const p = await freeUdpPairPort();
    const server = await startSignalServer(resolveSignalConfig({ host: HOST, port: 0, stunPort: p, stunAltHost: ALT, log: () => undefined }));
    try {
      assert.equal(server.stunPort, p);
      assert.deepEqual(server.stunAlt, { address: ALT, port: p + 1 });
      const a = await ask({ address: ALT, port: p + 1 }, null);
      assert.ok(a);
      assert.equal(addrOf(a.res, C.STUN_ATTR_OTHER_ADDRESS), `${HOST}:${p}`);
    } finally {
      await server.close();
    }
  });
});

function freeTcpPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, HOST, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A UDP port P such that P and P + 1 were just free on both loopback addresses (a server with port 0 found it). */
async function freeUdpPairPort(): Promise<number> {
  const s = await start(ALT);
  const p = s.stunPort!;
  await s.close();
  return p;
}
