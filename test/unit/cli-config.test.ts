// `pinhole device` flags for many controllers and their rights, resolved without a process or a socket.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Flags, resolveDevice } from '../../cli/config.js';
import { deviceEventPrinter } from '../../cli/main.js';
import { DEFAULT_MAX_CONTROLLERS, type DeviceEvent } from '../../device/index.js';
import { FULL_RIGHTS, MAX_CONTROLLERS_LIMIT } from '../../protocol/index.js';
import { codeOf } from './codes.js';

const SERVER = 'ws://127.0.0.1:1';
const dev = (f: Flags) => resolveDevice({ 'state-dir': '/nonexistent/pinhole-test', ...f }, {});
const run = (f: Flags) => dev({ server: SERVER, ...f });

describe('issue 12: pinhole device --max-controllers', () => {
  test('defaults to DEFAULT_MAX_CONTROLLERS (8)', () => {
    assert.equal(DEFAULT_MAX_CONTROLLERS, 8);
    assert.equal(run({}).maxControllers, DEFAULT_MAX_CONTROLLERS);
  });

  test('takes 1..MAX_CONTROLLERS_LIMIT', () => {
    for (const n of [1, 2, 8, MAX_CONTROLLERS_LIMIT]) assert.equal(run({ 'max-controllers': String(n) }).maxControllers, n);
  });

  test('refuses anything else with usage', () => {
    for (const v of ['0', String(MAX_CONTROLLERS_LIMIT + 1), '-1', '2.5', 'eight', '', ' 3', '1e1', '0x8'])
      assert.equal(
        codeOf(() => run({ 'max-controllers': v })),
        'usage',
        JSON.stringify(v),
      );
  });
});

describe('issue 12: pinhole device --pair-rights and --pair-pins', () => {
  test('default: codes pair controllers with full rights', () => {
    assert.deepEqual(run({}).pairRights, FULL_RIGHTS);
    assert.deepEqual(run({ 'pair-rights': 'full' }).pairRights, FULL_RIGHTS);
  });

  test('read-only, pins, or both', () => {
    assert.deepEqual(run({ 'pair-rights': 'read-only' }).pairRights, { access: 'read-only', pins: null });
    assert.deepEqual(run({ 'pair-pins': '20,13,5-6' }).pairRights, { access: 'full', pins: [5, 6, 13, 20] });
    assert.deepEqual(run({ 'pair-rights': 'read-only', 'pair-pins': '13' }).pairRights, { access: 'read-only', pins: [13] });
    // Within the device's own --pins.
    assert.deepEqual(run({ pins: '13,20-23', 'pair-pins': '21-22' }).pairRights, { access: 'full', pins: [21, 22] });
  });

  test('bad values are usage errors', () => {
    for (const f of [
      { 'pair-rights': 'admin' },
      { 'pair-rights': 'READ-ONLY' },
      { 'pair-rights': '' },
      { 'pair-pins': '' },
      { 'pair-pins': '13,x' },
      { 'pair-pins': '9-3' },
      { 'pair-pins': '5000' },
      // A pin the device does not allow at all.
      { pins: '13,20', 'pair-pins': '13,21' },
    ])
      assert.equal(
        codeOf(() => run(f)),
        'usage',
        JSON.stringify(f),
      );
  });
});

describe('issue 12: pinhole device --allow, --read-only and --controllers', () => {
  test('--allow NAME: full on every pin; with --pins: full on those (sorted); no server needed', () => {
    const all = dev({ allow: 'lap' });
    assert.deepEqual(all.action, { kind: 'allow', who: 'lap', pins: null });
    assert.equal(all.server, '');
    const some = dev({ allow: 'lap', pins: '20,13,5-6' });
    assert.deepEqual(some.action, { kind: 'allow', who: 'lap', pins: [5, 6, 13, 20] });
    assert.equal(some.pins, undefined, "--pins with --allow is the controller's, not the device's");
  });

  test('--read-only NAME keeps its pins (undefined) unless --pins is given', () => {
    assert.deepEqual(dev({ 'read-only': 'lap' }).action, { kind: 'read-only', who: 'lap', pins: undefined });
    assert.deepEqual(dev({ 'read-only': 'ABCD-EFGH-JKLM-NPQR', pins: '7' }).action, { kind: 'read-only', who: 'ABCD-EFGH-JKLM-NPQR', pins: [7] });
  });

  test('--controllers and --revoke as before', () => {
    assert.deepEqual(dev({ controllers: true }).action, { kind: 'list' });
    assert.deepEqual(dev({ revoke: 'lap' }).action, { kind: 'revoke', who: 'lap' });
    assert.deepEqual(run({}).action, { kind: 'run' });
  });

  test('one action at a time; run-only flags do not go with one; bad pins are refused', () => {
    for (const f of [
      { allow: 'a', 'read-only': 'b' },
      { allow: 'a', revoke: 'a' },
      { controllers: true, 'read-only': 'a' },
      { controllers: true, revoke: 'a' },
      { allow: 'a', 'max-controllers': '4' },
      { 'read-only': 'a', 'pair-rights': 'full' },
      { controllers: true, 'pair-pins': '13' },
      { allow: 'a', pins: '13,,x' },
      { 'read-only': 'a', pins: '2000' },
    ])
      assert.equal(
        codeOf(() => dev(f)),
        'usage',
        JSON.stringify(f),
      );
  });

  test('running still needs a server', () => {
    assert.equal(
      codeOf(() => dev({ 'max-controllers': '4' })),
      'usage',
    );
  });
});

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this test looks for
const TERMINAL_CONTROL = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200f]/u;

describe("issue 12: the device's connect and leave lines", () => {
  const HOSTILE = 'lap\u001b]0;pwned\u0007\r\nfake line\u202e';
  const FP = 'ABCD-EFGH-JKLM-NPQR';
  const lines = (events: DeviceEvent[], json = false) => {
    const out: string[] = [];
    const err: string[] = [];
    const print = deviceEventPrinter({ stdout: (s) => out.push(s), stderr: (s) => err.push(s) }, { json, maxControllers: 8, pairRights: FULL_RIGHTS });
    for (const e of events) print(e);
    return { out, err };
  };
  const session: DeviceEvent[] = [
    { event: 'controller', session: 's1', name: HOSTILE, fingerprint: FP, paired: false, path: 'relay', controllers: 2 },
    { event: 'path', session: 's1', name: HOSTILE, path: 'direct', previous: 'relay' },
    { event: 'path', session: 's1', name: HOSTILE, path: 'none', previous: 'direct' },
    { event: 'controller-left', session: 's1', name: HOSTILE, controllers: 1 },
  ];

  test('one line each, with the name sanitized, the path and the count', () => {
    const { out, err } = lines(session);
    assert.equal(out.length, 4);
    assert.deepEqual(err, []);
    for (const l of out) {
      assert.doesNotMatch(l, TERMINAL_CONTROL, JSON.stringify(l));
      assert.ok(!l.includes('pwned'), l);
      assert.ok(l.includes('lap'), l);
    }
    const [connect, , , leave] = out as [string, string, string, string];
    assert.ok(connect.includes(FP) && connect.includes('relay') && connect.includes('2 of 8'), connect);
    // The leave line names the path the session had, not the `none` it dropped to.
    assert.ok(leave.includes('direct') && leave.includes('1 of 8'), leave);
  });

  test('a refusal past the cap goes to stderr; --json prints the events exactly', () => {
    const busy: DeviceEvent = { event: 'busy', session: 's9', controllers: 8 };
    const { out, err } = lines([busy]);
    assert.deepEqual(out, []);
    assert.equal(err.length, 1);
    assert.ok(err[0]!.includes('device-busy'), err[0]);
    const j = lines([...session, busy], true);
    assert.deepEqual(
      j.out.map((l) => JSON.parse(l)),
      [...session, busy],
    );
    for (const l of j.out) assert.doesNotMatch(l, TERMINAL_CONTROL);
  });
});
