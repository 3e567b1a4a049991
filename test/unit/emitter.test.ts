// The core's event emitter: Node's EventEmitter semantics where Link and PeerSession rely on them.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { Emitter } from '../../transport/emitter.js';

interface Events {
  a: [n: number];
  b: [s: string, n: number];
}

/** Runs the same script against Node's EventEmitter and ours; both must log the same. */
function both(script: (e: EventEmitter, log: unknown[]) => void): void {
  const node: unknown[] = [];
  const ours: unknown[] = [];
  script(new EventEmitter(), node);
  script(new Emitter<Events>() as unknown as EventEmitter, ours);
  assert.deepEqual(ours, node);
  assert.ok(ours.length > 0, 'the script logged something');
}

test('listeners run in order with their arguments; emit says whether there were any', () => {
  both((e, log) => {
    log.push(e.emit('a', 1));
    e.on('b', (s: string, n: number) => log.push(`1:${s}${n}`));
    e.on('b', (s: string, n: number) => log.push(`2:${s}${n}`));
    log.push(e.emit('b', 'x', 2), e.listenerCount('b'));
  });
});

test('once fires once; off removes on and once registrations, the latest first', () => {
  both((e, log) => {
    const f = (n: number) => log.push(`f${n}`);
    e.once('a', (n: number) => log.push(`once${n}`));
    e.on('a', f);
    e.on('a', f);
    e.emit('a', 1);
    e.emit('a', 2);
    e.off('a', f);
    e.emit('a', 3);
    const g = (n: number) => log.push(`g${n}`);
    e.once('a', g);
    e.off('a', g);
    e.emit('a', 4);
    log.push(e.listenerCount('a'));
  });
});

test('an emit calls the listeners present when it started: one added meanwhile waits, one removed meanwhile still runs', () => {
  both((e, log) => {
    const late = () => log.push('late');
    const second = () => log.push('second');
    e.on('a', () => {
      log.push('first');
      e.on('a', late);
      e.off('a', second);
    });
    e.on('a', second);
    e.emit('a', 1);
    e.emit('a', 2);
  });
});

test('a listener that throws stops the emit and the exception reaches the caller', () => {
  both((e, log) => {
    e.on('a', () => log.push('before'));
    e.on('a', () => {
      throw new Error('boom');
    });
    e.on('a', () => log.push('after'));
    try {
      e.emit('a', 1);
    } catch (err) {
      log.push((err as Error).message);
    }
    e.once('b', () => {
      throw new Error('once-boom');
    });
    try {
      e.emit('b', 'x', 1);
    } catch (err) {
      log.push((err as Error).message);
    }
    log.push(e.listenerCount('b'), 'once is gone even though it threw');
  });
});

test('removeAllListeners clears one event or all', () => {
  both((e, log) => {
    e.on('a', () => log.push('a'));
    e.on('b', () => log.push('b'));
    e.removeAllListeners('a');
    e.emit('a', 1);
    e.emit('b', 'x', 1);
    e.removeAllListeners();
    log.push(e.emit('b', 'x', 1), e.listenerCount('a'), e.listenerCount('b'));
  });
});
