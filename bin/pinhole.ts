#!/usr/bin/env node
/** Entry point of the `pinhole` bin: wires process I/O into main(). */
import { main } from '../cli/index.js';

const stop = new Promise<void>((resolve) => {
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => resolve());
});

const code = await main(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s + '\n'),
  stderr: (s) => process.stderr.write(s + '\n'),
  env: {
    PINHOLE_SERVER: process.env.PINHOLE_SERVER,
    PINHOLE_LIBMRAA: process.env.PINHOLE_LIBMRAA,
    XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME,
    HOME: process.env.HOME,
  },
  stopSignal: () => stop,
});
// Let stdout drain, then exit even if a library left a handle open.
process.stdout.write('', () => process.exit(code));
