// The one helper the unit tests use to assert an error's code (tests assert codes, not text).
import assert from 'node:assert/strict';
import { type ErrorCode, isPinholeError } from '../../protocol/index.js';

/** The PinholeError code `fn` throws; fails the test if it returns, and rethrows anything that is not a PinholeError. */
export function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (e) {
    if (isPinholeError(e)) return e.code;
    throw e;
  }
  assert.fail('expected a PinholeError, but the call succeeded');
}
