/**
 * Errors with stable string codes. Callers and tests match on `code`, never
 * on message text. Every code is listed in docs/errors.md.
 */
import type { SignalErrorCode } from './signaling.js';
import type { RpcErrorCode } from './rpc.js';
import type { HandshakeErrorCode } from '../crypto/index.js';
import type { IdentityErrorCode } from '../crypto/index.js';

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
