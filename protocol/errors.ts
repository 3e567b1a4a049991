/**
 * Errors with stable string codes. Callers and tests match on `code`, never
 * on message text. Every code is listed in docs/errors.md.
 */
import type { SignalErrorCode } from './signaling.js';
import type { RpcErrorCode } from './rpc.js';

/** Why a session handshake failed (crypto/handshake.ts); the peer may be told one in a `fail` message. */
export type HandshakeErrorCode =
  | 'wrong-code' // CPace key confirmation failed: the code's secret differs (or the exchange was tampered with)
  | 'code-spent' // the pairing code was already tried once; the device has printed a new one
  | 'not-paired' // the device does not trust this controller (never paired, or revoked)
  | 'device-changed' // the device's identity key is not the one saved at pairing
  | 'bad-handshake' // malformed, out of order, wrong version, or a signature/box that does not verify
  | 'fingerprint-mismatch'; // an SDP carried a DTLS fingerprint other than the one the peer signed

/** Why the identity or another state file could not be used (IdentityError, crypto/identity.ts). */
export type IdentityErrorCode =
  | 'identity-no-state-dir' // neither an override, an absolute XDG_CONFIG_HOME nor HOME
  | 'identity-permissions' // key (or other state) file mode wider than 0600
  | 'identity-dir-permissions' // state dir writable by group or others
  | 'identity-owner' // key (or other state) file or state dir owned by another user
  | 'identity-not-file' // key (or other state) file path is a symlink or not a regular file
  | 'identity-corrupt' // key file unreadable as an identity (bad JSON, fields, lengths, key mismatch); also any state file that fails validation
  | 'identity-bad-input' // a caller passed an invalid argument (peer name, key length, URL, file name); nothing was written
  | 'identity-io'; // any other filesystem failure

/** Codes raised on the controller or device side, beyond what the server or the device sends. */
export type LocalErrorCode =
  | 'server-unreachable' // could not open the WebSocket to the signaling server
  | 'timeout' // no answer within the caller's timeout
  | 'device-offline' // the code is known but its device is not connected
  | 'peer-left' // the other side went away during a session
  | 'link-closed' // the link was closed (locally or because every path died)
  | 'overflow' // too many frames unacknowledged or out of order
  | 'usage' // bad arguments to an API call
  | 'unknown-device' // controller: no paired device by that name in the state dir
  | 'name-taken' // controller: pairing would save a device under the name of another device
  | 'unknown-controller'; // device: --revoke named no trusted controller

/** Every code a PinholeError can carry. */
export type ErrorCode = LocalErrorCode | SignalErrorCode | RpcErrorCode | HandshakeErrorCode | IdentityErrorCode;

/** An error with a stable `code`. */
export class PinholeError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'PinholeError';
  }
}

/** True for a PinholeError, optionally with one of the given codes. */
export function isPinholeError(e: unknown, ...codes: ErrorCode[]): e is PinholeError {
  return e instanceof PinholeError && (codes.length === 0 || codes.includes(e.code));
}
