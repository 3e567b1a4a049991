// Loaded with `node --import` into a CLI process under test: appends the URL of every module
// the process resolves (static and dynamic imports alike) to the file named by
// PINHOLE_TEST_MODULE_LOG, one per line, so a test can tell which packages a command loaded.
import { register } from 'node:module';

const file = process.env.PINHOLE_TEST_MODULE_LOG;
if (!file) throw new Error('module-log: set PINHOLE_TEST_MODULE_LOG to the file to append to');

// The hooks run on the loader thread; they get the file through `data`.
const hooks = `
import { appendFileSync } from 'node:fs';
let file;
export function initialize(data) { file = data.file; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(file, r.url + '\\n');
  return r;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, { data: { file } });
