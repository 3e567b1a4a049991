/** protocol: what other folders use. */
export { base32, decodeBase64url, equalBytes, fromBase64url, toBase64url, utf8ByteLength, utf8Decode } from './bytes.js';
export { deviceRoom, formatPairingCode, generatePairingCode, type PairingCode, parsePairingCode, parseRoom } from './code.js';
export type { CodeIn, ErrorCode, ErrorSource, HandshakeErrorCode, SecurityCode, StateErrorCode } from './errors.js';
export { ERROR_SOURCES, ERRORS, isErrorCode, isPinholeError, isSecurityCode, PinholeError, SECURITY_CODES, toErrorCode } from './errors.js';
export { encodeControl, encodeData, parseFrame } from './frames.js';
export { foldPeerName, isValidPeerName, MAX_PEER_NAME_CHARS } from './names.js';
export type { ChangeNotification, Level, Method, Methods, PinInfo, PinMode, Pull, Rights, RpcRequest, RpcResponse } from './rpc.js';
export {
  BY_INPUT,
  DEFAULT_BLINK_INTERVAL_MS,
  DEFAULT_BLINK_TIMES,
  FULL_RIGHTS,
  MAX_BLINK_INTERVAL_MS,
  MAX_BLINK_TIMES,
  MAX_BY_CHARS,
  MAX_PIN,
  MIN_BLINK_INTERVAL_MS,
  parseIncoming,
  parseRequest,
  rpcError,
} from './rpc.js';
export { parseSdpFingerprint, splitCandidates } from './sdp.js';
export type { ClientMessage, Parsed, RegisterProof, Role, ServerMessage, SignalErrorCode, SignalPayload } from './signaling.js';
export {
  CLOSE_GOING_AWAY,
  CLOSE_LEAVE,
  DEFAULT_ROOM_CONTROLLERS,
  encode,
  HELLO_NONCE_BYTES,
  MAX_CONTROLLERS_LIMIT,
  MAX_GOAWAY_MS,
  MAX_LINK_FRAME_BYTES,
  MAX_SIGNAL_BYTES,
  makeRegisterProof,
  PAIRING_ROOM_CONTROLLERS,
  PROTOCOL_VERSION,
  parseClientMessage,
  parseServerMessage,
  parseSignalPayload,
  registerProofMessage,
  relayDataBytes,
} from './signaling.js';
export { VERSION } from './version.js';
