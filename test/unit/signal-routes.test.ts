// routeServerMessage / routeSignal: the one place server messages reach a role's handlers.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { routeServerMessage, routeSignal, type ServerRoutes, type SignalClient } from '../../platform/node/signal-client.js';
import type { ServerMessage } from '../../protocol/signaling.js';

function recorder(): { routes: Required<ServerRoutes>; calls: unknown[][] } {
  const calls: unknown[][] = [];
  const rec =
    (name: string) =>
    (...args: unknown[]): void =>
      void calls.push([name, ...args]);
  return {
    calls,
    routes: {
      relay: rec('relay'),
      peer: rec('peer'),
      peerLeft: rec('peerLeft'),
      error: rec('error'),
      invalid: rec('invalid'),
      closed: rec('closed'),
      goaway: rec('goaway'),
    },
  };
}

const EVERY: ServerMessage[] = [
  { type: 'hello', v: 2, nonce: 'n' },
  { type: 'registered', room: 'ABCD', ttlMs: 1, stunPort: 0 },
  { type: 'joined', session: 's', waiting: false, stunPort: 0 },
  { type: 'peer', session: 's1' },
  { type: 'peer-left', session: 's1' },
  { type: 'relay', data: 'xyz' },
  { type: 'error', code: 'expired', message: 'gone' },
  { type: 'goaway', reconnectMs: 500 },
];

test('each server message goes to its route; answers awaited with next() go nowhere', () => {
  const { routes, calls } = recorder();
  for (const m of EVERY) routeServerMessage(m, routes);
  assert.deepEqual(calls, [
    ['peer', 's1'],
    ['peerLeft', 's1'],
    ['relay', { type: 'relay', data: 'xyz' }],
    ['error', 'expired', 'gone'],
    ['goaway', 500],
  ]);
});

test('a route left out drops its messages; relay is always routed', () => {
  const relayed: ServerMessage[] = [];
  for (const m of EVERY) routeServerMessage(m, { relay: (r) => void relayed.push(r) });
  assert.deepEqual(relayed, [{ type: 'relay', data: 'xyz' }]);
});

test('routeSignal routes messages, invalid frames and the close until it is undone', () => {
  const signal = new EventEmitter();
  const { routes, calls } = recorder();
  const unroute = routeSignal(signal as unknown as SignalClient, routes);
  signal.emit('message', { type: 'peer', session: 'a' });
  signal.emit('invalid', 'plain signal');
  signal.emit('close', 1006, '');
  assert.deepEqual(calls, [['peer', 'a'], ['invalid', 'plain signal'], ['closed']]);
  unroute();
  signal.emit('message', { type: 'peer', session: 'b' });
  signal.emit('close', 1000, '');
  assert.equal(calls.length, 3);
  assert.deepEqual([signal.listenerCount('message'), signal.listenerCount('invalid'), signal.listenerCount('close')], [0, 0, 0]);
});
