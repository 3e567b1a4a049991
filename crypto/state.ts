/**
 * Where the core keeps its few persistent records (the identity key, the
 * trusted controllers, the known devices): small named texts, injected so
 * the core never touches a filesystem. On Node it is the state dir
 * (platform/node/state-files.ts: 0600 files, atomic replace); a browser
 * shell brings its own.
 */
import { PinholeError, utf8ByteLength } from '../protocol/index.js';

/** Named texts that survive a restart. Implementations throw PinholeError for a record they cannot use. */
export interface StateStore {
  /** The text stored under `name`, or undefined if there is none. Longer than `maxBytes` bytes is refused. `label` names it in messages. */
  read(name: string, maxBytes: number, label?: string): string | undefined;
  /** Stores `text` under `name`, replacing what was there atomically: a reader, or a crash, sees the old or the new text, never a mix. */
  write(name: string, text: string, label?: string): void;
  /**
   * Stores `text` under `name` only if nothing is there yet; false, writing
   * nothing, if something was. Of two writers creating at once, one wins.
   * A store without it gets write() after a read() that found nothing.
   */
  create?(name: string, text: string, label?: string): boolean;
  /** Where `name` lives, for messages and PinholeError.path (on Node, the file's path). */
  where(name: string): string;
}

/**
 * StateStore.read's size check for a store that holds its texts in memory:
 * `text`, read from `where`, unless it is longer than `maxBytes` bytes (UTF-8),
 * which is PinholeError `state-corrupt`.
 */
export function checkedText(text: string | undefined, maxBytes: number, where: string, label = 'state record'): string | undefined {
  if (text !== undefined && utf8ByteLength(text) > maxBytes) {
    throw new PinholeError('state-corrupt', `${label} ${where} is more than the ${maxBytes} bytes allowed`, where);
  }
  return text;
}

/** A StateStore in memory: nothing survives the process. For a page that keeps no state, and for tests. */
export class MemoryStateStore implements StateStore {
  readonly #texts = new Map<string, string>();

  read(name: string, maxBytes: number, label?: string): string | undefined {
    return checkedText(this.#texts.get(name), maxBytes, this.where(name), label);
  }

  write(name: string, text: string): void {
    this.#texts.set(name, text);
  }

  create(name: string, text: string): boolean {
    if (this.#texts.has(name)) return false;
    this.#texts.set(name, text);
    return true;
  }

  where(name: string): string {
    return `memory:${name}`;
  }
}
