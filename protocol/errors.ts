/**
 * Errors with stable string codes. Callers and tests match on `code`, never
 * on message text.
 *
 * The one registry of codes: every code any pinhole error carries, grouped by
 * where it comes from, each with a one-line meaning. docs/errors.md has one
 * table per group and lists exactly these codes (test/unit/errors.test.ts);
 * the code unions declared beside their parsers (SignalErrorCode, RpcErrorCode,
 * HandshakeErrorCode, StateErrorCode, GpioErrorCode, SealErrorCode,
 * CpaceErrorCode) are checked there, at compile time, to equal their group.
 */

/** Why a session handshake failed (crypto/handshake.ts); the peer may be told one in a `fail` message. */
export type HandshakeErrorCode =
  | 'wrong-code' // CPace key confirmation failed: the code's secret differs (or the exchange was tampered with)
  | 'code-spent' // the pairing code was already tried once; the device has printed a new one
  | 'not-paired' // the device does not trust this controller (never paired, or revoked)
  | 'device-changed' // the device's identity key is not the one saved at pairing
  | 'bad-handshake' // malformed, out of order, wrong version, or a signature/box that does not verify
  | 'fingerprint-mismatch' // an SDP carried a DTLS fingerprint other than the one the peer signed
  | 'device-busy'; // the device already serves as many controllers as it takes

/** Why the identity or another state file could not be used (IdentityError, crypto/identity.ts). */
export type StateErrorCode =
  | 'state-no-dir' // neither an override, an absolute XDG_CONFIG_HOME nor HOME
  | 'state-permissions' // key (or other state) file mode wider than 0600
  | 'state-dir-permissions' // state dir writable by group or others
  | 'state-owner' // key (or other state) file or state dir owned by another user
  | 'state-not-file' // key (or other state) file path is a symlink or not a regular file
  | 'state-corrupt' // key file unreadable as an identity (bad JSON, fields, lengths, key mismatch); also any state file that fails validation
  | 'state-bad-input' // a caller passed an invalid argument (peer name, key length, URL, file name); nothing was written
  | 'state-io'; // any other filesystem failure

/** Error codes by where they come from. */
export const ERROR_SOURCES = {
  /** `error{code}` messages of the signaling server. */
  signal: {
    'bad-message': 'a frame is not JSON, has the wrong shape or types, or nests too deep',
    'too-large': 'a frame is over MAX_SIGNAL_BYTES',
    version: 'register/join with another protocol version',
    'bad-room': 'the room name is malformed',
    'room-taken': 'a device already holds this room',
    'unknown-room': 'no device has this room (a wrong or spent code)',
    'room-full': 'another controller is already in this pairing room',
    'device-busy': 'the device already serves as many controllers as it takes (--max-controllers)',
    'join-limited': 'too many joins of pairing rooms from this address',
    'no-peer': 'relay while the other side is absent',
    'not-joined': 'relay or admit before register/join',
    'already-joined': 'a second register/join on one socket',
    expired: 'the room went unused too long, or its device did not come back',
    'rate-limited': 'too many messages, or the server holds MAX_ROOMS rooms',
    'bad-proof': 'register of a device room without a valid proof of its key',
    'register-limited': 'too many registrations from this address',
    'too-many-rooms': "this address's devices already hold MAX_ROOMS_PER_ADDR rooms",
    'not-admitted': 'the device did not admit this controller within ADMIT_TIMEOUT_MS',
    'cluster-unavailable': 'a clustered server cannot reach its shared store: a join of a room on another node, or a register of a new room, waits for it',
  },
  /** Raised on the controller or device side, beyond what the server or the device sends. */
  local: {
    usage: 'bad arguments to an API call or the CLI',
    'server-unreachable': 'could not open the WebSocket to the signaling server',
    timeout: "no answer within the caller's timeout",
    'device-offline': 'the code is known but its device is not connected',
    'peer-left': 'the other side went away during a session',
    'link-closed': 'the link was closed (locally or because every path died)',
    overflow: 'too many frames unacknowledged or out of order',
    'unknown-device': 'controller: no paired device by that name in the state dir',
    'name-taken': 'controller: pairing would save a device under the name of another device',
    'unknown-controller': 'device: --revoke, --allow or --read-only named no trusted controller',
    'broker-refused': 'mqtt: the MQTT broker refused the first connection (bad user name or password, not authorised)',
  },
  /** Handshake refusals (HandshakeError, and `fail`/`abort` from the peer). */
  handshake: {
    'wrong-code': "CPace key confirmation failed: the code's secret differs (or the exchange was tampered with)",
    'code-spent': 'the pairing code was already tried once',
    'not-paired': 'the device does not trust this controller (never paired, or revoked)',
    'device-changed': "the device's identity key is not the one saved at pairing",
    'bad-handshake': 'malformed, out of order, wrong version, or a signature/box that does not verify',
    'fingerprint-mismatch': 'an SDP carried a DTLS fingerprint other than the one the peer signed',
    'device-busy': 'the device already serves as many controllers as it takes (--max-controllers)',
  },
  /** The state files (IdentityError). */
  state: {
    'state-no-dir': 'neither an override, an absolute XDG_CONFIG_HOME nor HOME',
    'state-permissions': 'a state file mode is wider than 0600',
    'state-dir-permissions': 'the state dir is writable by group or others',
    'state-owner': 'a state file or the state dir is owned by another user',
    'state-not-file': 'a state file path is a symlink or not a regular file',
    'state-corrupt': 'a state file does not parse or fails validation',
    'state-bad-input': 'an invalid name, key, URL or file name was about to be stored',
    'state-io': 'any other filesystem failure',
  },
  /** The device's JSON-RPC `error.data.code`. */
  rpc: {
    'parse-error': 'the payload was not JSON',
    'invalid-request': 'not a JSON-RPC 2.0 request',
    'method-not-found': 'unknown method',
    'invalid-params': 'wrong pin, value, mode, times or interval',
    'internal-error': 'a bug on the device',
    'pin-not-allowed': "the pin is outside the device's allowed pins",
    'pin-mode': 'the operation does not fit the pin direction',
    'no-such-pin': 'the board has no such GPIO',
    hardware: 'the GPIO backend reported a failure',
    'not-allowed': "this controller's rights on the device do not cover the command (read-only, or outside its pins)",
    preempted: 'a later write, mode or blink on the pin (from any controller) stopped this blink',
    'pin-busy': 'another consumer holds the line (its name is in the message)',
  },
  /** A GPIO backend (GpioError). */
  gpio: {
    'no-such-pin': 'the board has no such GPIO',
    'pin-mode': 'the operation does not fit the pin direction',
    hardware: 'the GPIO backend reported a failure',
    'backend-unavailable': 'libmraa, the GPIO chip or koffi missing or unusable',
    'pin-busy': 'another consumer holds the line (its name is in the message)',
    'gpio-permission': 'this user may not open the GPIO chip (the message names the gpio group and the udev rule)',
  },
  /** Sealing a frame (SealError): programming or capacity errors, never caused by the peer. */
  seal: {
    'seal-too-large': 'the plaintext is over MAX_SEALED_PLAINTEXT_BYTES',
    'seal-exhausted': 'the sealer used up its frame counter',
    'seal-usage': 'bad key, session id, option or plaintext type',
  },
  /** CPace (CpaceError); the handshake reports these as bad-handshake. */
  cpace: {
    'pake-malformed': 'the peer message is not lv_cat(Y, AD) with a 32-byte Y',
    'pake-invalid-point': 'Y does not decode, is the identity, K is the identity, or Y reflects our own share',
    'pake-state': 'finish() called twice (secret scalars are single-use)',
    'pake-unconfirmed': 'key() before a successful verifyConfirm()',
  },
} as const;

/** A group of the registry. */
export type ErrorSource = keyof typeof ERROR_SOURCES;
/** The codes of some groups of the registry. */
export type CodeIn<S extends ErrorSource> = S extends ErrorSource ? keyof (typeof ERROR_SOURCES)[S] & string : never;

/** Every error code, flat: code → one-line meaning. */
export const ERRORS: Readonly<{ [K in CodeIn<ErrorSource>]: string }> = Object.freeze(Object.assign({}, ...Object.values(ERROR_SOURCES)));

/** Every code a PinholeError can carry. */
export type ErrorCode = keyof typeof ERRORS;

/** Codes raised on the controller or device side, beyond what the server or the device sends. */
export type LocalErrorCode = CodeIn<'local'>;

/**
 * Codes of session `security` events: a frame dropped as an attack or junk
 * (not errors: the session goes on). Listed in docs/errors.md.
 */
export const SECURITY_CODES = {
  'relay-unsealed': 'a plain-text frame on the relay after the handshake',
  'relay-malformed': 'a relay frame that is not a sealed frame',
  'relay-bad-mac': 'a relay frame that does not authenticate',
  'relay-replay': 'a relay frame with a counter at or below the last accepted one',
  'relay-wrong-direction': 'a relay frame sealed for the other direction',
  'direct-malformed': 'a data channel frame that is not a sealed frame',
  'direct-bad-mac': 'a data channel frame that does not authenticate',
  'direct-replay': 'a data channel frame with a counter at or below the last accepted one',
  'direct-wrong-direction': 'a data channel frame sealed for the other direction',
  'peer-direct-malformed': 'the peer dropped a direct-malformed frame and tore the channel down',
  'peer-direct-bad-mac': 'the peer dropped a direct-bad-mac frame and tore the channel down',
  'peer-direct-replay': 'the peer dropped a direct-replay frame and tore the channel down',
  'peer-direct-wrong-direction': 'the peer dropped a direct-wrong-direction frame and tore the channel down',
  'server-invalid': 'the server sent a frame the protocol does not allow',
} as const;

/** A code of a session `security` event. */
export type SecurityCode = keyof typeof SECURITY_CODES;

const has = (o: object, s: unknown): boolean => typeof s === 'string' && Object.hasOwn(o, s);

/** True if `s` is a registered error code; with `from`, one of those groups' codes. */
export function isErrorCode(s: unknown): s is ErrorCode;
export function isErrorCode<S extends ErrorSource>(s: unknown, from: S | readonly S[]): s is CodeIn<S>;
export function isErrorCode(s: unknown, from?: ErrorSource | readonly ErrorSource[]): boolean {
  if (from === undefined) return has(ERRORS, s);
  const groups: readonly ErrorSource[] = typeof from === 'string' ? [from] : from;
  return groups.some((g) => has(ERROR_SOURCES[g], s));
}

/**
 * `s` if it is a registered code (of the `from` groups, when given), else
 * `fallback`: turns a code from the network into one this version documents.
 */
export function toErrorCode(s: unknown, fallback: ErrorCode): ErrorCode;
export function toErrorCode<S extends ErrorSource>(s: unknown, fallback: CodeIn<S>, from: S | readonly S[]): CodeIn<S>;
export function toErrorCode(s: unknown, fallback: string, from?: ErrorSource | readonly ErrorSource[]): string {
  const ok = from === undefined ? isErrorCode(s) : isErrorCode(s, from);
  return ok ? (s as string) : fallback;
}

/** True if `s` is a registered security event code. */
export function isSecurityCode(s: unknown): s is SecurityCode {
  return has(SECURITY_CODES, s);
}

/** An error with a stable `code`. */
export class PinholeError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The state file or directory concerned, for the state codes. */
    readonly path?: string,
  ) {
    super(message);
    this.name = 'PinholeError';
  }
}

/** True for a PinholeError, optionally with one of the given codes. */
export function isPinholeError(e: unknown, ...codes: ErrorCode[]): e is PinholeError {
  return e instanceof PinholeError && (codes.length === 0 || codes.includes(e.code));
}
