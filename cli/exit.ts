/** Exit codes of the CLI and the mapping from error codes to them. Documented in docs/cli.md. */
import { type ErrorCode, PinholeError } from '../protocol/index.js';

/** Process exit codes. */
export const EXIT = {
  ok: 0,
  /** Internal failure: a bug, reported with its message. */
  internal: 1,
  /** Bad arguments. */
  usage: 2,
  /** Refused: unknown, wrong, spent or expired code; not paired or revoked; the handshake failed or the server tampered with it. */
  refused: 3,
  /** Server or device unreachable, or timed out. */
  unreachable: 4,
  /** The device refused the command. */
  rejected: 5,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  usage: EXIT.usage,
  'unknown-controller': EXIT.usage,
  'state-no-dir': EXIT.usage,
  'state-permissions': EXIT.usage,
  'state-dir-permissions': EXIT.usage,
  'state-owner': EXIT.usage,
  'state-not-file': EXIT.usage,
  'state-corrupt': EXIT.usage,
  'state-bad-input': EXIT.usage,
  'state-io': EXIT.usage,
  'wrong-code': EXIT.refused,
  'code-spent': EXIT.refused,
  'not-paired': EXIT.refused,
  'device-changed': EXIT.refused,
  'bad-handshake': EXIT.refused,
  'fingerprint-mismatch': EXIT.refused,
  'unknown-device': EXIT.refused,
  'name-taken': EXIT.refused,
  'broker-refused': EXIT.refused,
  'join-limited': EXIT.unreachable,
  'bad-room': EXIT.refused,
  'unknown-room': EXIT.refused,
  expired: EXIT.refused,
  'room-taken': EXIT.refused,
  version: EXIT.refused,
  'server-unreachable': EXIT.unreachable,
  'cluster-unavailable': EXIT.unreachable,
  timeout: EXIT.unreachable,
  'device-offline': EXIT.unreachable,
  'peer-left': EXIT.unreachable,
  'link-closed': EXIT.unreachable,
  'room-full': EXIT.unreachable,
  'device-busy': EXIT.unreachable,
  'rate-limited': EXIT.unreachable,
  'register-limited': EXIT.unreachable,
  'too-many-rooms': EXIT.unreachable,
  'not-admitted': EXIT.unreachable,
  'bad-proof': EXIT.refused,
  overflow: EXIT.unreachable,
  'pin-not-allowed': EXIT.rejected,
  'pin-mode': EXIT.rejected,
  'no-such-pin': EXIT.rejected,
  'invalid-params': EXIT.rejected,
  'method-not-found': EXIT.rejected,
  'not-allowed': EXIT.rejected,
  preempted: EXIT.rejected,
  hardware: EXIT.rejected,
  'pin-busy': EXIT.rejected,
  'gpio-permission': EXIT.usage,
  'backend-unavailable': EXIT.usage,
};

/** The exit code for an error: its mapped code, or 1 for anything unexpected. */
export function exitCodeFor(e: unknown): number {
  return e instanceof PinholeError ? (BY_CODE[e.code] ?? EXIT.internal) : EXIT.internal;
}
