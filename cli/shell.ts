/** `pinhole control ... shell`: an interactive prompt over one session. */
import { createInterface } from 'node:readline';
import type { Device } from '../controller/index.js';
import { PinholeError } from '../protocol/index.js';
import { type Output, parseShellLine, runCommand } from './commands.js';
import { EXIT, exitCodeFor } from './exit.js';
import type { Io } from './main.js';
import { sanitizeForTerminal as safe } from './sanitize.js';

const SHELL_HELP = `commands: write PIN 0|1 | read PIN | blink PIN [--times N] [--interval MS] | watch PIN [--count N] | info | path | help | quit
(watch runs until --count edges or Ctrl-C)`;

/** Runs the prompt until `quit`, end of input or a lost connection. Resolves with the exit code. */
export async function runShell(dev: Device, out: Output, io: Io): Promise<number> {
  const tty = process.stdin.isTTY === true;
  // No prompt when input is piped: every output line then stays one JSON object or one result.
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: tty ? 'pinhole> ' : '' });
  let lost = false;
  dev.on('path', (p, prev) => out.line({ event: 'path', path: p, previous: prev }, `[path: ${prev} -> ${p}]`));
  dev.once('close', () => {
    lost = true;
    rl.close();
  });
  let stopWatch: (() => void) | undefined;
  rl.on('SIGINT', () => (stopWatch ? stopWatch() : rl.close()));
  if (!out.json && tty) io.stdout(SHELL_HELP);
  rl.prompt();
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === 'quit' || line === 'exit') break;
    if (line === '' || line.startsWith('#')) {
      rl.prompt();
      continue;
    }
    if (line === 'help') io.stdout(SHELL_HELP);
    else if (line === 'path') out.line({ ok: true, cmd: 'path', path: dev.path }, `path: ${dev.path}`);
    else {
      try {
        const c = parseShellLine(line);
        if (c.cmd === 'shell') throw new PinholeError('usage', 'already in the shell');
        const stop = new Promise<void>((r) => (stopWatch = r));
        await runCommand(dev, c, out, stop);
      } catch (e) {
        const msg = e instanceof PinholeError ? `${e.code}: ${e.message}` : String(e);
        // The message may carry the device's or the server's words.
        out.line({ ok: false, error: e instanceof PinholeError ? e.code : 'internal-error', message: msg, path: dev.path }, `error: ${safe(msg)}`);
        if (exitCodeFor(e) === EXIT.unreachable && dev.path === 'none') lost = true;
      } finally {
        stopWatch = undefined;
      }
    }
    if (lost) break;
    rl.prompt();
  }
  rl.close();
  if (lost) {
    io.stderr('pinhole: connection to the device was lost');
    return EXIT.unreachable;
  }
  return EXIT.ok;
}
