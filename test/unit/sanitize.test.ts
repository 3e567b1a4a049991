// What a hostile server or peer sends must not reach the terminal as escape sequences or hidden text.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { sanitizeForTerminal as clean, MAX_TERMINAL_FIELD_CHARS, toJsonLine } from '../../cli/sanitize.js';

/** Anything a terminal acts on, or that hides or reorders text. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this test looks for
const DANGEROUS = /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2064\u2066-\u2069\ufeff]/u;

test('issue 9: plain text, letters of any script and emoji survive unchanged', () => {
  for (const s of [
    'pin 20 = 1',
    'kitchen-board (rev. 2)',
    'Küche ÄÖÜ ß',
    'Доска',
    '板子 ボード',
    'לוח בית',
    'مجلس',
    'देवनागरी',
    '🎉 party',
    '👩🏽‍💻 dev',
    '🇫🇷',
    '❤️',
    'e\u0301',
    '   spaced   ',
  ]) {
    assert.equal(clean(s), s, JSON.stringify(s));
  }
});

test('issue 9: whole escape sequences go: CSI, OSC title, OSC 52 clipboard, DCS, SOS/PM/APC, 8-bit forms, lone ESC', () => {
  const cases: [string, string][] = [
    ['\u001b[2Jfake', 'fake'],
    ['a\u001b[31;1mred\u001b[0mb', 'aredb'],
    ['\u001b[?1049h\u001b[H', ''],
    ['\u001b]0;pwned\u0007ok', 'ok'],
    ['\u001b]2;title\u001b\\ok', 'ok'],
    ['\u001b]52;c;cm0gLXJmIH4K\u0007ok', 'ok'],
    ['\u001b]8;;http://evil.example\u001b\\link\u001b]8;;\u001b\\', 'link'],
    ['\u001bP+q544e\u001b\\ok', 'ok'],
    ['\u001bXsos\u001b\\\u001b^pm\u001b\\\u001b_apc\u001b\\ok', 'ok'],
    ['\u009b2Jok', 'ok'],
    ['\u009d0;pwned\u009cok', 'ok'],
    ['\u0090dcs\u009cok', 'ok'],
    ['\u001bcreset', 'reset'],
    ['\u001b(Bascii', 'ascii'],
    ['\u001b]0;never ends', ''],
    ['trailing\u001b', 'trailing'],
  ];
  for (const [input, want] of cases) assert.equal(clean(input), want, JSON.stringify(input));
});

test('issue 9: C0 controls, DEL and C1 controls go; tab and line breaks become spaces', () => {
  assert.equal(clean('a\u0000b\u0007c\u0008d\u007fe\u0080f\u0099g'), 'abcdefg'); // (U+009F is APC: a string control)
  assert.equal(clean('ok\r\npin 20 = 1'), 'ok  pin 20 = 1', 'a peer cannot start a new result line');
  assert.equal(clean('a\nb\rc\u000bd\u000ce\u0085f\u2028g\u2029h'), 'a b c d e f g h');
  assert.equal(clean('a\tb'), 'a b');
  for (let c = 0; c < 0x20; c++) assert.doesNotMatch(clean(`x${String.fromCharCode(c)}y`), DANGEROUS, `U+${c.toString(16)}`);
  for (let c = 0x7f; c <= 0x9f; c++) assert.doesNotMatch(clean(`x${String.fromCharCode(c)}y`), DANGEROUS, `U+${c.toString(16)}`);
});

test('issue 9: bidi overrides, isolates and marks go', () => {
  // "evil\u202Egnp.exe" shows as "evilexe.png"
  assert.equal(clean('evil\u202egnp.exe'), 'evilgnp.exe');
  for (const c of ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069', '\u200e', '\u200f', '\u061c']) {
    assert.equal(clean(`a${c}b`), 'ab', `U+${c.codePointAt(0)!.toString(16)}`);
  }
});

test('issue 9: zero-width and other text-hiding characters go; an emoji ZWJ sequence keeps its joiner', () => {
  for (const c of ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u2061', '\u{e0041}', '\u3164', '\u115f', '\u034f', '\u{e0100}']) {
    assert.equal(clean(`ad${c}min`), 'admin', `U+${c.codePointAt(0)!.toString(16)}`);
  }
  assert.equal(clean('👩‍👩‍👧'), '👩‍👩‍👧');
  assert.equal(clean('a\u200d👩'), 'a👩', 'a joiner next to a letter is not an emoji sequence');
});

test('issue 9: lone surrogates become U+FFFD; non-strings print as their JSON', () => {
  assert.equal(clean('a\ud800b'), 'a\ufffdb');
  assert.equal(clean(1), '1');
  assert.equal(clean(null), 'null');
  assert.equal(clean({ toString: null, x: '\u001b[2J' }), '{"toString":null,"x":"\\u001b[2J"}');
  assert.equal(clean(['a', 1]), '["a",1]');
});

test('issue 9: length is capped, in code points, with an ellipsis', () => {
  assert.equal([...clean('x'.repeat(5000))].length, MAX_TERMINAL_FIELD_CHARS);
  assert.ok(clean('x'.repeat(5000)).endsWith('…'));
  assert.equal(clean('😀'.repeat(10), 4), '😀😀😀…');
  assert.equal(clean('x'.repeat(MAX_TERMINAL_FIELD_CHARS)), 'x'.repeat(MAX_TERMINAL_FIELD_CHARS));
});

test('issue 9: property: nothing dangerous survives, and clean text is a fixed point', () => {
  const nasty = fc.constantFrom(
    '\u001b',
    '[',
    ']',
    '\u0007',
    '\\',
    '\u009b',
    '\u009d',
    '\u009c',
    '\n',
    '\r',
    '\u202e',
    '\u200b',
    '\u200d',
    '\ufeff',
    '2J',
    '0;',
    '52;c;',
    'P',
    'a',
    '👩',
    '\ud800',
  );
  fc.assert(
    fc.property(fc.array(fc.oneof(nasty, fc.string({ unit: 'binary' })), { maxLength: 30 }), (parts) => {
      const out = clean(parts.join(''));
      assert.doesNotMatch(out, DANGEROUS);
      assert.ok([...out].length <= MAX_TERMINAL_FIELD_CHARS);
      assert.equal(clean(out), out);
    }),
  );
});

test('issue 9: JSON output stays exact: ESC arrives as \\u001b, C1 and bidi characters as escapes too', () => {
  const v = { name: '\u001b]0;pwned\u0007\u009b2J\u202eok\u2028👩‍💻', n: 1 };
  const line = toJsonLine(v);
  assert.deepEqual(JSON.parse(line), v, 'parses back to exactly the same value');
  assert.ok(line.includes('\\u001b]0;pwned\\u0007'), line);
  assert.ok(line.includes('\\u009b2J\\u202eok\\u2028'), line);
  assert.doesNotMatch(line, DANGEROUS);
  assert.equal(toJsonLine({ a: 'plain ü 🎉' }), JSON.stringify({ a: 'plain ü 🎉' }));
  fc.assert(fc.property(fc.jsonValue(), (j) => assert.deepEqual(JSON.parse(toJsonLine(j)), JSON.parse(JSON.stringify(j)))));
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => assert.doesNotMatch(toJsonLine(s), DANGEROUS)));
});
