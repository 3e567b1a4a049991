/** protocol: what other folders use. */
export { base32, decodeBase64url, equalBytes, fromBase64url, toBase64url, utf8ByteLength, utf8Decode } from './bytes.js';
export { deviceRoom, formatPairingCode, generatePairingCode, parsePairingCode, parseRoom, type PairingCode } from './code.js';
export type { CodeIn, ErrorCode, ErrorSource, HandshakeErrorCode, StateErrorCode, SecurityCode } from './errors.js';
export { ERRORS, ERROR_SOURCES, PinholeError, SECURITY_CODES, isErrorCode, isPinholeError, isSecurityCode, toErrorCode } from './errors.js';
export { encodeControl, encodeData, parseFrame } from './frames.js';
export type { ChangeNotification, Level, Method, Methods, PinMode, RpcRequest, RpcResponse } from './rpc.js';
export { DEFAULT_BLINK_INTERVAL_MS, DEFAULT_BLINK_TIMES, MAX_BLINK_INTERVAL_MS, MAX_BLINK_TIMES, MAX_PIN, MIN_BLINK_INTERVAL_MS, parseIncoming, parseRequest, rpcError } from './rpc.js';
export type { ClientMessage, RegisterProof, Role, ServerMessage, SignalErrorCode, SignalPayload } from './signaling.js';
export { CLOSE_LEAVE, HELLO_NONCE_BYTES, MAX_LINK_FRAME_BYTES, MAX_SIGNAL_BYTES, PROTOCOL_VERSION, encode, makeRegisterProof, parseClientMessage, parseServerMessage, parseSignalPayload, registerProofMessage } from './signaling.js';
export { VERSION } from './version.js';
export { MAX_PEER_NAME_CHARS, foldPeerName, isValidPeerName } from './names.js';
export { parseSdpFingerprint } from './sdp.js';
