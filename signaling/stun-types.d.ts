/**
 * Minimal ambient types for the `stun` package (v2.1.0 ships none). Only the
 * parts pinhole uses are declared; see node_modules/stun/src for the rest.
 */
declare module 'stun' {
  import type { RemoteInfo, Socket } from 'node:dgram';
  import type { EventEmitter } from 'node:events';

  namespace stun {
    interface StunAddress {
      address: string;
      port: number;
      family: 'IPv4' | 'IPv6';
    }

    interface StunAttribute {
      readonly type: number;
      readonly value: unknown;
    }

    class StunMessage {
      /** Message type (method and class), e.g. 0x0001 for a Binding request. */
      readonly type: number;
      /** 12-byte transaction id (RFC 5389). */
      readonly transactionId: Buffer;
      /** True when the magic cookie is missing (an RFC 3489 message). */
      isLegacy(): boolean;
      readonly count: number;
      getAttribute(type: number): StunAttribute | undefined;
      hasAttribute(type: number): boolean;
      [Symbol.iterator](): Iterator<StunAttribute>;
    }

    /** An outgoing message. */
    class StunRequest extends StunMessage {
      setType(type: number): void;
      setTransactionId(id: Buffer): boolean;
      addAttribute(type: number, ...values: unknown[]): StunAttribute | undefined;
      removeAttribute(type: number): StunAttribute | undefined;
      addAddress(address: string, port: number): StunAttribute | undefined;
      addXorAddress(address: string, port: number): StunAttribute | undefined;
      addAlternateServer(address: string, port: number): StunAttribute | undefined;
      addSoftware(software: string): StunAttribute | undefined;
      addError(code: number, reason?: string): StunAttribute | undefined;
      addUnknownAttributes(types: number[]): StunAttribute | undefined;
      addFingerprint(): boolean;
      addMessageIntegrity(key: string): boolean;
      toBuffer(): Buffer;
    }

    /** A decoded (incoming) message. */
    class StunResponse extends StunMessage {
      getAddress(): StunAddress | undefined;
      getXorAddress(): StunAddress | undefined;
      getAlternateServer(): StunAddress | undefined;
      getError(): { code: number; reason: string } | undefined;
      getSoftware(): string | undefined;
    }

    class StunServer extends EventEmitter {
      constructor(socket: Socket);
      /** Decodes one datagram and emits the matching event. */
      process(message: Buffer, rinfo: RemoteInfo): void;
      listen(port: number, address?: string, callback?: () => void): void;
      send(message: StunRequest, port: number, address: string, callback?: (err: Error | null) => void): boolean;
      close(): void;
      on(event: 'bindingRequest' | 'bindingIndication' | 'bindingResponse' | 'bindingError', listener: (msg: StunResponse, rinfo: RemoteInfo) => void): this;
      on(event: 'error', listener: (err: Error) => void): this;
      on(event: 'listening' | 'close', listener: () => void): this;
    }

    interface RequestOptions {
      server?: StunServer;
      socket?: Socket;
      message?: StunRequest;
      timeout?: number;
      maxTimeout?: number;
      retries?: number;
    }

    function createServer(options: { type: 'udp4' | 'udp6'; socket?: Socket }): StunServer;
    function createMessage(type: number, transactionId?: Buffer): StunRequest;
    function createTransaction(): Buffer;
    function request(url: string, options?: RequestOptions): Promise<StunResponse>;
    function encode(message: StunMessage): Buffer;
    function decode(message: Buffer): StunResponse;

    const constants: Readonly<Record<string, number | string>> & {
      readonly STUN_BINDING_REQUEST: number;
      readonly STUN_BINDING_RESPONSE: number;
      readonly STUN_BINDING_ERROR_RESPONSE: number;
      readonly STUN_ATTR_XOR_MAPPED_ADDRESS: number;
      readonly STUN_ATTR_MAPPED_ADDRESS: number;
      readonly STUN_ATTR_FINGERPRINT: number;
      readonly STUN_ATTR_CHANGE_REQUEST: number;
      readonly STUN_ATTR_OTHER_ADDRESS: number;
      readonly STUN_ATTR_RESPONSE_ORIGIN: number;
      readonly STUN_ATTR_SOFTWARE: number;
      readonly STUN_CODE_UNKNOWN_ATTRIBUTE: number;
      readonly STUN_EVENT_BINDING_REQUEST: 'bindingRequest';
    };
  }

  export = stun;
}
