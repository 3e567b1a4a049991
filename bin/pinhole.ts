#!/usr/bin/env node
/** Entry point of the `pinhole` bin. */
import { runProcess } from '../cli/index.js';

const code = await runProcess();
// Let stdout drain, then exit even if a library left a handle open.
process.stdout.write('', () => process.exit(code));
