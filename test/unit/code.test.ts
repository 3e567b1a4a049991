import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  CODE_ALPHABET,
  CODE_BITS,
  CODE_GROUP,
  CODE_LENGTH,
  MAX_CODE_LENGTH,
  MIN_CODE_LENGTH,
  formatCode,
  generateCode,
  parseCode,
} from '../../link/code.js';

function parsed(typed: string): string {
  const r = parseCode(typed);
  assert.equal(r.ok, true, `expected ${JSON.stringify(typed)} to parse`);
  return (r as { ok: true; code: string }).code;
}
function rejected(typed: string): void {
  assert.equal(parseCode(typed).ok, false, `expected ${JSON.stringify(typed)} to be rejected`);
}

describe('code generation', () => {
  test('issue 2: at least 50 bits of entropy', () => {
    assert.ok(CODE_BITS >= 50, `CODE_BITS = ${CODE_BITS}`);
    assert.equal(CODE_BITS, CODE_LENGTH * Math.log2(CODE_ALPHABET.length));
  });

  test('issue 2: the alphabet has no look-alike characters', () => {
    for (const c of '01OILU') assert.ok(!CODE_ALPHABET.includes(c), `alphabet contains ${c}`);
    assert.equal(new Set(CODE_ALPHABET).size, CODE_ALPHABET.length, 'no repeated symbols');
    assert.match(CODE_ALPHABET, /^[A-Z2-9]+$/, 'upper-case letters and digits only');
  });

  test('generated codes have CODE_LENGTH symbols from the alphabet', () => {
    for (let i = 0; i < 1000; i++) {
      const c = generateCode();
      assert.equal(c.length, CODE_LENGTH);
      for (const ch of c) assert.ok(CODE_ALPHABET.includes(ch), `unexpected ${ch} in ${c}`);
    }
  });

  test('generated codes are unique and use the whole alphabet', () => {
    const seen = new Set<string>();
    const symbols = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const c = generateCode();
      seen.add(c);
      for (const ch of c) symbols.add(ch);
    }
    assert.equal(seen.size, 20_000);
    assert.equal(symbols.size, CODE_ALPHABET.length);
  });

  test('generated codes parse to themselves, also when formatted or lower-cased', () => {
    for (let i = 0; i < 200; i++) {
      const c = generateCode();
      assert.equal(parsed(c), c);
      assert.equal(parsed(formatCode(c)), c);
      assert.equal(parsed(formatCode(c).toLowerCase()), c);
    }
  });
});

describe('parseCode', () => {
  test('case-insensitive; dashes and spaces optional', () => {
    const want = 'K7QMX3PD9HTR';
    for (const t of ['K7QM-X3PD-9HTR', 'k7qm-x3pd-9htr', 'K7QMX3PD9HTR', 'k7qm x3pd 9htr', ' K7QM--X3PD 9HTR ', 'K7-QM-X3-PD-9H-TR', 'k7QmX3pD9hTr', 'K7QM\tX3PD\n9HTR']) {
      assert.equal(parsed(t), want, t);
    }
  });

  test('length bounds after normalising', () => {
    parsed('A'.repeat(MIN_CODE_LENGTH));
    parsed('A'.repeat(MAX_CODE_LENGTH));
    rejected('A'.repeat(MIN_CODE_LENGTH - 1));
    rejected('A'.repeat(MAX_CODE_LENGTH + 1));
    rejected('');
    rejected('----------');
    rejected('AB-CD-E'); // 5 symbols once dashes go
    parsed('AB-CD-EF');
  });

  test('bad characters are rejected, not mapped', () => {
    for (const t of ['ABCDEF!', 'ABC_DEF', 'ABC.DEF', 'ÄBCDEFG', 'ABCDEF/', 'ABC+DEF', 'ABCDEF\u0000', 'ABCDEF😀', '<script>']) rejected(t);
  });

  test('user-chosen codes may use any letter or digit, 0/O and 1/I/L included', () => {
    assert.equal(parsed('office-0101'), 'OFFICE0101');
    assert.equal(parsed('lil-i-o-1'), 'LILIO1');
  });
});

describe('formatCode', () => {
  test('groups of CODE_GROUP joined by dashes', () => {
    assert.equal(formatCode('K7QMX3PD9HTR'), 'K7QM-X3PD-9HTR');
    assert.equal(formatCode('ABCDEFG'), 'ABCD-EFG');
    assert.equal(formatCode('ABCD'), 'ABCD');
    for (let i = 0; i < 100; i++) {
      const f = formatCode(generateCode());
      for (const g of f.split('-')) assert.ok(g.length <= CODE_GROUP && g.length > 0);
    }
  });

  test('round-trip: parseCode(formatCode(c)) === c for any valid normalised code', () => {
    for (const c of ['ABCDEF', 'ABCDEFGHJ', 'A'.repeat(MAX_CODE_LENGTH), 'OFFICE0101']) {
      assert.equal(parsed(formatCode(c)), c);
    }
  });
});
