/** Exit codes of the CLI and the mapping from error codes to them. Documented in docs/cli.md. */
import { PinholeError, type ErrorCode } from '../link/index.js';

/** Process exit codes. */
export const EXIT = {
  ok: 0,
  /** Internal failure: a bug, reported with its message. */
  internal: 1,
  /** Bad arguments. */
  usage: 2,
  /** Pairing refused: unknown, malformed or expired code. */
  refused: 3,
  /** Server or device unreachable, or timed out. */
  unreachable: 4,
  /** The device refused the command. */
  rejected: 5,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  usage: EXIT.usage,
  'bad-code': EXIT.refused,
  'unknown-code': EXIT.refused,
  expired: EXIT.refused,
  'code-taken': EXIT.refused,
  version: EXIT.refused,
  'server-unreachable': EXIT.unreachable,
  timeout: EXIT.unreachable,
  'device-offline': EXIT.unreachable,
  'peer-left': EXIT.unreachable,
  'link-closed': EXIT.unreachable,
  'room-full': EXIT.unreachable,
  'rate-limited': EXIT.unreachable,
  overflow: EXIT.unreachable,
  'pin-not-allowed': EXIT.rejected,
  'pin-mode': EXIT.rejected,
  'no-such-pin': EXIT.rejected,
  'invalid-params': EXIT.rejected,
  'method-not-found': EXIT.rejected,
  busy: EXIT.rejected,
  hardware: EXIT.rejected,
};

/** The exit code for an error: its mapped code, or 1 for anything unexpected. */
export function exitCodeFor(e: unknown): number {
  return e instanceof PinholeError ? (BY_CODE[e.code] ?? EXIT.internal) : EXIT.internal;
}
