// The Router test harness, shared by the router's unit tests: a fake clock, deterministic
// sessions and nonces, and every reply checked against the protocol.
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { deviceRoom } from '../../protocol/code.js';
import {
  type ClientMessage,
  encode,
  HELLO_NONCE_BYTES,
  makeRegisterProof,
  PROTOCOL_VERSION,
  parseServerMessage,
  type RegisterProof,
  type ServerMessage,
} from '../../protocol/signaling.js';
import { type Action, type Admission, type ConnId, Router, type RouterLimits } from '../../signaling/router.js';

/** An Ed25519 key pair shaped like an Identity (publicKey + sign), for registration proofs. */
export interface Key {
  publicKey: Uint8Array;
  sign(msg: Uint8Array): Uint8Array;
}
export function newKey(): Key {
  const sk = ed25519.utils.randomSecretKey();
  return { publicKey: ed25519.getPublicKey(sk), sign: (m) => ed25519.sign(m, sk) };
}

export const STUN = 3478;
/** A pairing code's room, normalised and as a peer might send it. */
export const ROOM = 'K7QM';
export const TYPED = 'k7-qm';

/** Drives a Router with a fake clock and checks every reply against the protocol. */
export class Harness {
  readonly router: Router;
  now = 1_000_000;
  readonly all: Action[] = [];
  /** The nonce of each socket's hello. */
  readonly nonces = new Map<ConnId, string>();
  private sessions = 0;
  private nonceCount = 0;

  /** `cluster`: one node of a cluster (RouterOptions.cluster). */
  constructor(limits?: Partial<RouterLimits>, opts: { cluster?: boolean } = {}) {
    this.router = new Router({
      stunPort: STUN,
      newSession: () => `s${++this.sessions}`,
      // Deterministic and distinct: the count in the first bytes.
      newNonce: () => {
        const b = new Uint8Array(HELLO_NONCE_BYTES);
        new DataView(b.buffer).setUint32(0, ++this.nonceCount);
        return b;
      },
      limits,
      cluster: opts.cluster,
    });
  }

  run(input: Parameters<Router['handle']>[0]): Action[] {
    const out = this.router.handle(input, this.now);
    for (const a of out) {
      if (a.kind === 'send') {
        const back = parseServerMessage(encode(a.msg));
        assert.ok(back.ok, `router sent a message that fails parseServerMessage: ${JSON.stringify(a.msg).slice(0, 200)}`);
      }
    }
    this.all.push(...out);
    return out;
  }
  /** `remote`: a socket of another node, proxied here. */
  open(conn: ConnId, addr = '198.51.100.7', remote = false): Action[] {
    const out = this.run(remote ? { kind: 'open', conn, addr, remote } : { kind: 'open', conn, addr });
    const hello = sent(out, conn).find((m) => m.type === 'hello');
    if (hello?.type === 'hello') this.nonces.set(conn, hello.nonce);
    return out;
  }
  /** `admission`: the cluster-wide buckets' verdict (none: the router's own buckets decide). */
  msg(conn: ConnId, msg: ClientMessage, admission?: Admission): Action[] {
    return this.run(admission === undefined ? { kind: 'message', conn, msg } : { kind: 'message', conn, msg, admission });
  }
  close(conn: ConnId): Action[] {
    return this.run({ kind: 'close', conn });
  }
  tick(): Action[] {
    return this.run({ kind: 'tick' });
  }
  register(conn: ConnId, room = TYPED, admission?: Admission): Action[] {
    return this.msg(conn, { type: 'register', v: PROTOCOL_VERSION, room }, admission);
  }
  join(conn: ConnId, room = TYPED, admission?: Admission): Action[] {
    return this.msg(conn, { type: 'join', v: PROTOCOL_VERSION, room }, admission);
  }
  /** A proof for `room` by `key` on `conn` (its own hello's nonce unless `nonceOf` names another socket). */
  proof(conn: ConnId, key: Key, room = deviceRoom(key.publicKey), nonceOf = conn): RegisterProof {
    return makeRegisterProof(key, this.nonces.get(nonceOf)!, room);
  }
  /** Registers `key`'s device room on `conn` with a valid proof (and `maxControllers`, if given). */
  registerHome(conn: ConnId, key: Key, maxControllers?: number): Action[] {
    const room = deviceRoom(key.publicKey);
    const cap = maxControllers === undefined ? {} : { maxControllers };
    return this.msg(conn, { type: 'register', v: PROTOCOL_VERSION, room, proof: this.proof(conn, key, room), ...cap });
  }
  admit(conn: ConnId, session: string): Action[] {
    return this.msg(conn, { type: 'admit', session });
  }
  /** A device on conn 1 and a controller on conn 2, paired. */
  pair(): void {
    this.open(1);
    this.open(2);
    this.register(1);
    this.join(2);
  }
}

export const sent = (out: Action[], conn: ConnId): ServerMessage[] =>
  out.filter((a): a is Extract<Action, { kind: 'send' }> => a.kind === 'send' && a.conn === conn).map((a) => a.msg);
export const closes = (out: Action[]): Extract<Action, { kind: 'close' }>[] => out.filter((a): a is Extract<Action, { kind: 'close' }> => a.kind === 'close');
export const logs = (out: Action[]): Extract<Action, { kind: 'log' }>[] => out.filter((a): a is Extract<Action, { kind: 'log' }> => a.kind === 'log');
export const errorCode = (out: Action[], conn: ConnId): string | undefined => {
  const e = sent(out, conn).find((m) => m.type === 'error');
  return e && e.type === 'error' ? e.code : undefined;
};
