// The Node platform's index must not load werift: only a direct path, or preloadDirect(), does.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

/** A resolve hook that refuses werift, so any load of it fails where it happens. */
const HOOK = `export async function resolve(s, c, next) { if (s === 'werift') throw new Error('werift was loaded'); return next(s, c); }`;

test('importing platform/node/index loads no werift; preloadDirect() does', () => {
  const index = new URL('../../platform/node/index.js', import.meta.url).href;
  const script = `
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}));
    const m = await import(${JSON.stringify(index)});
    console.log('imported', typeof m.weriftDialer, typeof m.preloadDirect);
    await m.preloadDirect().then(() => console.log('loaded'), (e) => console.log('refused:', e.message));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['imported function function', 'refused: werift was loaded']);
});
