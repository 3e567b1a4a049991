import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { HandshakeErrorCode } from '../../crypto/handshake.js';
import type { StateErrorCode } from '../../crypto/identity.js';
import type { CpaceErrorCode } from '../../crypto/pake.js';
import type { OpenErrorCode, SealErrorCode } from '../../crypto/seal.js';
import type { GpioErrorCode } from '../../device/gpio/gpio.js';
import {
  type CodeIn,
  ERROR_SOURCES,
  ERRORS,
  type ErrorCode,
  type ErrorSource,
  isErrorCode,
  isPinholeError,
  isSecurityCode,
  PinholeError,
  SECURITY_CODES,
  type SecurityCode,
  toErrorCode,
} from '../../protocol/errors.js';
import type { RpcErrorCode } from '../../protocol/rpc.js';
import { RPC_ERROR_NUMBERS } from '../../protocol/rpc.js';
import type { SignalErrorCode } from '../../protocol/signaling.js';

// Compile-time: each code union declared beside its parser equals its registry group, both ways.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const UNIONS_MATCH_REGISTRY: [
  Same<SignalErrorCode, CodeIn<'signal'>>,
  Same<RpcErrorCode, CodeIn<'rpc'>>,
  Same<HandshakeErrorCode, CodeIn<'handshake'>>,
  Same<StateErrorCode, CodeIn<'state'>>,
  Same<GpioErrorCode, CodeIn<'gpio'>>,
  Same<SealErrorCode, CodeIn<'seal'>>,
  Same<CpaceErrorCode, CodeIn<'cpace'>>,
  Same<SecurityCode, `relay-${OpenErrorCode}` | 'relay-unsealed' | `direct-${OpenErrorCode}` | `peer-direct-${OpenErrorCode}` | 'server-invalid'>,
  Same<ErrorCode, CodeIn<ErrorSource>>,
] = [true, true, true, true, true, true, true, true, true];

/** The repository root: this file runs as dist/test/unit/errors.test.js. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * The codes in docs/errors.md, by group: each table follows a `<!-- codes: GROUP -->`
 * marker; a table's codes are the backticked names in its first column.
 */
function documentedCodes(): { groups: Map<string, string[]>; unmarked: string[] } {
  const text = readFileSync(`${ROOT}docs/errors.md`, 'utf8');
  const groups = new Map<string, string[]>();
  const unmarked: string[] = [];
  let group: string | undefined;
  for (const line of text.split('\n')) {
    const marker = /^<!-- codes: ([a-z]+) -->$/.exec(line.trim());
    if (marker) {
      group = marker[1];
      assert.ok(!groups.has(group), `two tables for ${group}`);
      groups.set(group, []);
      continue;
    }
    if (line.startsWith('## ')) group = undefined;
    if (!line.startsWith('|')) continue;
    const first = line.split('|')[1]?.trim() ?? '';
    if (first === 'code' || /^-+$/.test(first)) continue;
    const codes = [...first.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
    assert.ok(codes.length > 0, `a table row without a code: ${line}`);
    if (group === undefined) unmarked.push(...codes);
    else groups.get(group)?.push(...codes);
  }
  return { groups, unmarked };
}

describe('issue 11: docs/errors.md lists exactly the registry', () => {
  test('the code unions beside their parsers equal their registry groups (checked by the compiler)', () => {
    assert.ok(UNIONS_MATCH_REGISTRY.every((x) => x === true));
  });

  test('every group has one table listing exactly its codes, each once', () => {
    const { groups, unmarked } = documentedCodes();
    assert.deepEqual(unmarked, [], 'code tables outside a <!-- codes: GROUP --> section');
    const expected = [...Object.keys(ERROR_SOURCES), 'security'].sort();
    assert.deepEqual([...groups.keys()].sort(), expected);
    for (const [group, codes] of groups) {
      const registry = group === 'security' ? SECURITY_CODES : ERROR_SOURCES[group as ErrorSource];
      assert.equal(new Set(codes).size, codes.length, `${group}: a code listed twice`);
      const documented = new Set(codes);
      const missing = Object.keys(registry).filter((c) => !documented.has(c));
      const extra = codes.filter((c) => !Object.hasOwn(registry, c));
      assert.deepEqual(missing, [], `${group}: registry codes not in docs/errors.md`);
      assert.deepEqual(extra, [], `${group}: documented codes not in the registry`);
    }
  });

  test('every documented code is a registry code, and every registry code is documented', () => {
    const { groups } = documentedCodes();
    const documented = new Set([...groups.values()].flat());
    const all = [...Object.keys(ERRORS), ...Object.keys(SECURITY_CODES)];
    assert.deepEqual(
      all.filter((c) => !documented.has(c)),
      [],
    );
    assert.deepEqual(
      [...documented].filter((c) => !isErrorCode(c) && !isSecurityCode(c)),
      [],
    );
  });
});

describe('error code registry', () => {
  test('ERRORS is the union of the groups, each code with a one-line meaning', () => {
    const union = new Set(Object.values(ERROR_SOURCES).flatMap((g) => Object.keys(g)));
    assert.deepEqual(Object.keys(ERRORS).sort(), [...union].sort());
    for (const [code, meaning] of Object.entries({ ...ERRORS, ...SECURITY_CODES })) {
      assert.match(code, /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, `code ${code}`);
      assert.ok(meaning.length > 0 && !meaning.includes('\n'), `meaning of ${code}`);
    }
    assert.ok(Object.isFrozen(ERRORS));
  });

  test('a code shared by two groups means the same in both', () => {
    const seen = new Map<string, string>();
    for (const group of Object.values(ERROR_SOURCES)) {
      for (const [code, meaning] of Object.entries(group)) {
        if (seen.has(code)) assert.equal(meaning, seen.get(code), code);
        seen.set(code, meaning);
      }
    }
  });

  test('security codes are not error codes', () => {
    for (const code of Object.keys(SECURITY_CODES)) assert.equal(isErrorCode(code), false, code);
  });

  test('every RPC code has its JSON-RPC number', () => {
    assert.deepEqual(Object.keys(RPC_ERROR_NUMBERS).sort(), Object.keys(ERROR_SOURCES.rpc).sort());
  });

  test('isErrorCode: registered strings only, own keys only, optionally within groups', () => {
    assert.equal(isErrorCode('timeout'), true);
    assert.equal(isErrorCode('bad-message'), true);
    assert.equal(isErrorCode('seal-usage'), true);
    assert.equal(isErrorCode('nope'), false);
    assert.equal(isErrorCode(''), false);
    assert.equal(isErrorCode('toString'), false);
    assert.equal(isErrorCode('__proto__'), false);
    assert.equal(isErrorCode('constructor'), false);
    assert.equal(isErrorCode(undefined), false);
    assert.equal(isErrorCode(42), false);
    assert.equal(isErrorCode({ toString: () => 'timeout' }), false);
    assert.equal(isErrorCode('timeout', 'signal'), false);
    assert.equal(isErrorCode('room-full', 'signal'), true);
    assert.equal(isErrorCode('hardware', ['signal', 'gpio']), true);
    assert.equal(isErrorCode('wrong-code', ['signal', 'rpc']), false);
  });

  test('toErrorCode maps anything unregistered to the fallback', () => {
    assert.equal(toErrorCode('room-full', 'bad-message'), 'room-full');
    assert.equal(toErrorCode('no-such-code', 'bad-message'), 'bad-message');
    assert.equal(toErrorCode(null, 'internal-error'), 'internal-error');
    assert.equal(toErrorCode('__proto__', 'bad-message'), 'bad-message');
    // Within groups: a real code from the wrong group is refused too.
    const fromServer: SignalErrorCode = toErrorCode('timeout', 'bad-message', 'signal');
    assert.equal(fromServer, 'bad-message');
    const fromDevice: RpcErrorCode = toErrorCode('preempted', 'internal-error', 'rpc');
    assert.equal(fromDevice, 'preempted');
    const refusal: HandshakeErrorCode = toErrorCode('expired', 'bad-handshake', ['handshake']);
    assert.equal(refusal, 'bad-handshake');
  });

  test('PinholeError carries its code', () => {
    const e = new PinholeError('device-offline', 'gone');
    assert.equal(e.code, 'device-offline');
    assert.equal(e.name, 'PinholeError');
    assert.ok(isPinholeError(e));
    assert.ok(isPinholeError(e, 'timeout', 'device-offline'));
    assert.ok(!isPinholeError(e, 'timeout'));
    assert.ok(!isPinholeError(new Error('x')));
  });
});
