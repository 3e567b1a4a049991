import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  CODE_ALPHABET,
  DEVICE_ROOM_DOMAIN,
  deviceRoom,
  formatPairingCode,
  generatePairingCode,
  MAX_ROOM_LENGTH,
  MIN_ROOM_LENGTH,
  PAIRING_CODE_LENGTH,
  type PairingCode,
  parsePairingCode,
  parseRoom,
  ROOM_LENGTH,
  SECRET_BITS,
  SECRET_LENGTH,
} from '../../protocol/code.js';

/** RFC 4648 base32 without padding, written differently from protocol/code.ts: via a bit string. */
function base32(bytes: Uint8Array): string {
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
  return out;
}

function parsed(typed: string): PairingCode {
  const r = parsePairingCode(typed);
  assert.ok(r.ok, `expected ${JSON.stringify(typed)} to parse: ${r.ok ? '' : r.reason}`);
  return { room: r.room, secret: r.secret };
}
function rejected(typed: string): string {
  const r = parsePairingCode(typed);
  assert.equal(r.ok, false, `expected ${JSON.stringify(typed)} to be rejected`);
  return (r as { ok: false; reason: string }).reason;
}
function room(s: string): string {
  const r = parseRoom(s);
  assert.ok(r.ok, `expected room ${JSON.stringify(s)} to parse: ${r.ok ? '' : r.reason}`);
  return r.room;
}

describe('pairing codes', () => {
  test('issue 4: the secret has at least 20 bits', () => {
    assert.equal(SECRET_BITS, SECRET_LENGTH * Math.log2(CODE_ALPHABET.length));
    assert.ok(SECRET_BITS >= 29, `SECRET_BITS = ${SECRET_BITS}`);
    assert.equal(ROOM_LENGTH, 4);
    assert.equal(SECRET_LENGTH, 6);
    assert.equal(PAIRING_CODE_LENGTH, 10);
  });

  test('issue 2: the alphabet has no look-alike characters', () => {
    for (const c of '01OILU') assert.ok(!CODE_ALPHABET.includes(c), `alphabet contains ${c}`);
    assert.equal(new Set(CODE_ALPHABET).size, CODE_ALPHABET.length, 'no repeated symbols');
    assert.equal(CODE_ALPHABET.length, 30);
    assert.match(CODE_ALPHABET, /^[A-Z2-9]+$/, 'upper-case letters and digits only');
  });

  test('issue 4: a generated code is a 4-symbol room and a 6-symbol secret from the alphabet', () => {
    for (let i = 0; i < 1000; i++) {
      const c = generatePairingCode();
      assert.equal(c.room.length, ROOM_LENGTH);
      assert.equal(c.secret.length, SECRET_LENGTH);
      for (const ch of c.room + c.secret) assert.ok(CODE_ALPHABET.includes(ch), `unexpected ${ch} in ${c.room}${c.secret}`);
    }
  });

  test('generated codes are unique and use the whole alphabet in both parts', () => {
    const seen = new Set<string>();
    const roomSymbols = new Set<string>();
    const secretSymbols = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const c = generatePairingCode();
      seen.add(c.room + c.secret);
      for (const ch of c.room) roomSymbols.add(ch);
      for (const ch of c.secret) secretSymbols.add(ch);
    }
    assert.equal(seen.size, 20_000);
    assert.equal(roomSymbols.size, CODE_ALPHABET.length);
    assert.equal(secretSymbols.size, CODE_ALPHABET.length);
  });

  test('issue 4: displayed as RRRR-SSS-SSS', () => {
    assert.equal(formatPairingCode({ room: 'K7QM', secret: 'X3PD9H' }), 'K7QM-X3P-D9H');
    assert.equal(formatPairingCode({ room: 'K7QM', secret: 'X3PD9' }), 'K7QM-X3P-D9');
    assert.equal(formatPairingCode({ room: 'K7QM', secret: 'X3PD9HTRW' }), 'K7QM-X3P-D9H-TRW');
    for (let i = 0; i < 100; i++) assert.match(formatPairingCode(generatePairingCode()), /^[2-9A-Z]{4}-[2-9A-Z]{3}-[2-9A-Z]{3}$/);
  });

  test('issue 4: generate, format and parse round-trip, also lower-cased or without dashes', () => {
    for (let i = 0; i < 200; i++) {
      const c = generatePairingCode();
      const f = formatPairingCode(c);
      assert.deepEqual(parsed(f), c);
      assert.deepEqual(parsed(f.toLowerCase()), c);
      assert.deepEqual(parsed(c.room + c.secret), c);
      assert.deepEqual(parsed(f.replace(/-/g, ' ')), c);
    }
  });

  test('case-insensitive; dashes and whitespace anywhere', () => {
    const want = { room: 'K7QM', secret: 'X3PD9H' };
    for (const t of ['K7QM-X3P-D9H', 'k7qm-x3p-d9h', 'K7QMX3PD9H', 'k7qm x3p d9h', ' K7QM--X3P D9H ', 'K7-QM-X3-PD-9H', 'k7QmX3pD9h', 'K7QM\tX3P\nD9H']) {
      assert.deepEqual(parsed(t), want, t);
    }
  });

  test('issue 4: typed look-alikes are rejected with a reason naming the character, never mapped', () => {
    // each of these is K7QM-X3P-D9H with one symbol replaced by a look-alike
    const cases: Array<[string, string]> = [
      ['K7QM-X3P-D0H', '0'],
      ['K7QM-X3P-DOH', 'O'],
      ['k7qm-x3p-doh', 'o'],
      ['K7QM-X3P-D1H', '1'],
      ['K7QM-X3P-DIH', 'I'],
      ['K7QM-X3P-DLH', 'L'],
      ['k7qm-x3p-dlh', 'l'],
      ['K7QM-X3P-DUH', 'U'],
      ['KUQM-X3P-D9H', 'U'],
    ];
    for (const [t, ch] of cases) {
      const reason = rejected(t);
      assert.ok(reason.includes(`"${ch}"`), `${t}: reason should name ${ch}: ${reason}`);
      assert.match(reason, /no 0, O, 1, I, L or U/, t);
    }
    assert.match(rejected('K7QM-X3P-D0H'), /symbol 9/, 'the position is named too');
  });

  test('other characters are rejected, named, never mapped or thrown on', () => {
    for (const t of [
      'K7QM-X3P-D9!',
      'K7QM_X3P_D9H',
      'K7QM.X3P.D9H',
      'ÄBCD-X3P-D9H',
      'K7QM/X3PD9H',
      'K7QM+X3PD9H',
      'K7QMX3PD9H\u0000',
      'K7QMX3PD9H😀',
      '<script>ab',
      'ßK7QMX3PD9',
    ]) {
      const reason = rejected(t);
      assert.match(reason, /cannot be in a pairing code/, t);
    }
    assert.match(rejected('K7QM-X3P-D9!'), /"!"/);
    assert.match(rejected('K7QMX3PD9H😀'), /"😀"/, 'a character outside the BMP is named whole');
  });

  test('issue 4: exactly 10 symbols after normalising: a code typed one symbol short or long is refused locally, not spent', () => {
    const A = CODE_ALPHABET;
    assert.deepEqual(parsed(A.slice(0, 10)), { room: A.slice(0, 4), secret: A.slice(4, 10) });
    assert.match(rejected(A.slice(0, 9)), /too short: 9 symbols, want 10/);
    assert.match(rejected(A.slice(0, 11)), /too long: 11 symbols, want 10/);
    assert.match(rejected(A.slice(0, 8)), /too short: 8 symbols, want 10/);
    rejected('');
    rejected('----------');
    rejected('K7QM');
    rejected('K7QM-X3P-D'); // 8 symbols
  });

  test('issue 4: a user-chosen code has the generated shape: room is the first 4, secret the last 6', () => {
    assert.deepEqual(parsed('hams-ter-bnc'), { room: 'HAMS', secret: 'TERBNC' });
    assert.match(rejected('hams-ter-bench-7'), /too long/);
    // chosen codes are held to the same alphabet as generated ones
    assert.match(rejected('office-bench'), /"o" \(symbol 1\)/, 'the character is named as typed');
  });
});

describe('parseRoom', () => {
  test('normalises case, dashes and spaces', () => {
    assert.equal(room('k7qm'), 'K7QM');
    assert.equal(room(' K7-QM '), 'K7QM');
    assert.equal(room('dabc-def2'), 'DABCDEF2');
  });

  test('issue 4: 4..32 of [A-Z0-9]; wider than the code alphabet on purpose', () => {
    room('A'.repeat(MIN_ROOM_LENGTH));
    room('A'.repeat(MAX_ROOM_LENGTH));
    room('0O1IL-U');
    for (const bad of ['', 'ABC', 'A'.repeat(MAX_ROOM_LENGTH + 1), 'ABC_DEF', 'ÄBCD', 'ABCD!', 'AB.CD', '----']) {
      assert.equal(parseRoom(bad).ok, false, bad);
    }
  });

  test('the room of every pairing code is a valid room', () => {
    for (let i = 0; i < 100; i++) {
      const c = generatePairingCode();
      assert.equal(room(c.room), c.room);
    }
  });
});

describe('deviceRoom', () => {
  const key = (fill: number): Uint8Array => new Uint8Array(32).fill(fill);

  test('the reference base32 matches the RFC 4648 test vectors', () => {
    const enc = (s: string): string => base32(new TextEncoder().encode(s));
    assert.deepEqual(['', 'f', 'fo', 'foo', 'foob', 'fooba', 'foobar'].map(enc), ['', 'MY', 'MZXQ', 'MZXW6', 'MZXW6YQ', 'MZXW6YTB', 'MZXW6YTBOI']);
  });

  test('issue 4: deterministic, 26 characters, D + base32 of SHA-256(domain || key), a valid room', () => {
    for (let i = 0; i < 50; i++) {
      const pk = new Uint8Array(randomBytes(32));
      const r = deviceRoom(pk);
      assert.equal(r, deviceRoom(new Uint8Array(pk)), 'same key, same room');
      assert.equal(r.length, 26);
      assert.match(r, /^D[A-Z2-7]{25}$/);
      assert.equal(room(r), r, 'parseRoom leaves it unchanged');
      const h = createHash('sha256').update(DEVICE_ROOM_DOMAIN).update(pk).digest();
      assert.equal(r, 'D' + base32(h).slice(0, 25), 'independent computation agrees');
    }
  });

  test('issue 4: known answers (computed independently with Python hashlib/base64)', () => {
    assert.equal(deviceRoom(new Uint8Array(32)), 'DHGLJCS3IJHKX4TOFAL2I6AO56');
    assert.equal(deviceRoom(Uint8Array.from({ length: 32 }, (_, i) => i)), 'DZAEFWX56H52RW2C7FPAIDCT5O');
  });

  test('different keys give different rooms; the domain separator is in the hash', () => {
    assert.notEqual(deviceRoom(key(1)), deviceRoom(key(2)));
    const plain = 'D' + base32(createHash('sha256').update(key(1)).digest()).slice(0, 25);
    assert.notEqual(deviceRoom(key(1)), plain);
  });

  test('a device room never collides with a pairing-code room (different lengths)', () => {
    assert.notEqual(deviceRoom(key(0)).length, ROOM_LENGTH);
  });
});
