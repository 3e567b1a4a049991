// Each threat in docs/security.md names the tests that show it is handled: those tests must exist.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : /\.(ts|mjs|sh)$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

test('issue 15: every threat in docs/security.md names tests that exist', () => {
  const doc = readFileSync(join(ROOT, 'docs/security.md'), 'utf8');
  const files = testFiles(join(ROOT, 'test'));
  const names = new Set(files.map((f) => basename(f).replace(/\.(ts|mjs|sh)$/, '')));
  const sources = files.map((f) => readFileSync(f, 'utf8')).join('\n');
  let rows = 0;
  let inTable = false;
  for (const line of doc.split('\n')) {
    if (!line.startsWith('|')) {
      inTable = false;
      continue;
    }
    const cells = line.slice(1, -1).split(' | ');
    for (let i = 0; i < cells.length; i++) cells[i] = cells[i]!.trim();
    if (cells.at(-1) === 'shown by') {
      inTable = true;
      continue;
    }
    if (!inTable || line.startsWith('|---')) continue;
    rows++;
    const shown = cells.at(-1)!;
    const cited = [...shown.matchAll(/`(?:[\w/.-]*\/)?([\w-]+\.test)(?:\.ts)?`/g)].map((m) => m[1]!);
    assert.ok(cited.length > 0, `a threat names no test file: ${cells[0]}`);
    for (const c of cited) assert.ok(names.has(c), `${c} (cited for: ${cells[0]}) is not a test file`);
    for (const m of shown.matchAll(/"([^"]+)"/g)) assert.ok(sources.includes(m[1]!), `no test is titled "${m[1]}"`);
  }
  assert.ok(rows >= 30, `only ${rows} threats found: has the table format changed?`);
});
