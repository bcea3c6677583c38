// The token store: a directory of sealed files, one per token, named <name>.sealed.

import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TokendError, isTokendError } from './errors.js';
import { parseSealed, serializeSealed } from './envelope.js';
import type { SealedToken } from './envelope.js';
import { assertValidName, isValidName } from './names.js';
import { errno, readNamedFile, readNamedFileSync, writeFileAtomic } from './private-files.js';

/** File-name suffix of sealed tokens. */
export const SEALED_SUFFIX = '.sealed';
/** Files load() reads between two yields to the event loop (about 5 ms of work). */
const LOAD_BATCH = 256;

/** The result of loading every header: good tokens, and one error per bad file (each naming it). */
export interface StoreSnapshot {
  readonly tokens: ReadonlyMap<string, SealedToken>;
  readonly errors: readonly TokendError[];
}

/** A directory of sealed tokens. Reads never decrypt; writes are atomic and 0600. */
export class TokenStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The file a token lives in; throws ERR_INVALID_NAME for a bad name. */
  pathOf(name: string): string {
    return join(this.dir, `${assertValidName(name)}${SEALED_SUFFIX}`);
  }

  /** Token names present, sorted. Ignores dotfiles (temp files) and files that are not `<valid name>.sealed`. */
  async names(): Promise<string[]> {
    await this.assertSafeDir();
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch (err) {
      throw storeError(this.dir, err);
    }
    return entries
      .filter((f) => f.endsWith(SEALED_SUFFIX) && !f.startsWith('.'))
      .map((f) => f.slice(0, -SEALED_SUFFIX.length))
      .filter(isValidName)
      .sort();
  }

  /** The raw sealed file of `name`; ERR_NOT_FOUND when there is none. */
  async read(name: string): Promise<Buffer> {
    return readNamedFile(this.pathOf(name), `sealed token '${name}' file`);
  }

  /** The parsed header of `name`, or undefined when there is no such token. Throws ERR_SEALED_CORRUPT. */
  async header(name: string): Promise<SealedToken | undefined> {
    try {
      return parseSealed(await this.read(name), name);
    } catch (err) {
      if (isTokendError(err, 'ERR_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /**
   * Parses every sealed file (headers only, no decryption). Bad files are
   * reported, not fatal. Files are read synchronously in batches, yielding to
   * the event loop between batches: start-up with thousands of tokens takes
   * tens of milliseconds instead of seconds, and a reload while serving stalls
   * requests for one batch at most.
   */
  async load(): Promise<StoreSnapshot> {
    const tokens = new Map<string, SealedToken>();
    const errors: TokendError[] = [];
    const names = await this.names();
    for (let i = 0; i < names.length; i++) {
      if (i > 0 && i % LOAD_BATCH === 0) await new Promise((resolve) => setImmediate(resolve));
      const name = names[i] as string;
      try {
        tokens.set(name, parseSealed(readNamedFileSync(this.pathOf(name), `sealed token '${name}' file`), name));
      } catch (err) {
        errors.push(isTokendError(err) ? err : new TokendError('ERR_IO', `sealed token '${name}' cannot be read`, { cause: err }));
      }
    }
    return { tokens, errors };
  }

  /** Writes a sealed token atomically (0600) and returns its path. */
  async write(token: SealedToken): Promise<string> {
    const path = this.pathOf(token.name);
    await writeFileAtomic(path, serializeSealed(token));
    return path;
  }

  /**
   * Fails closed when the store directory can be written by group or others:
   * anyone who can write it can swap or roll back sealed files.
   */
  async assertSafeDir(): Promise<void> {
    let st;
    try {
      st = await lstat(this.dir);
    } catch (err) {
      throw storeError(this.dir, err);
    }
    if (st.isSymbolicLink()) {
      throw new TokendError('ERR_CONFIG', `token store '${this.dir}' is a symbolic link; refusing to follow it (point 'store' in the config at the real directory)`);
    }
    if (!st.isDirectory()) throw new TokendError('ERR_CONFIG', `token store '${this.dir}' is not a directory`);
    if ((st.mode & 0o022) !== 0) {
      throw new TokendError(
        'ERR_PERMISSIONS',
        `token store '${this.dir}' is writable by group or others (mode 0${(st.mode & 0o777).toString(8)}); run: chmod 700 '${this.dir}'`,
      );
    }
  }
}

function storeError(dir: string, err: unknown): TokendError {
  if (errno(err) === 'ENOENT') {
    return new TokendError('ERR_NOT_FOUND', `token store '${dir}' does not exist (run 'tokend init' or fix 'store' in the config)`, { cause: err });
  }
  return new TokendError('ERR_IO', `token store '${dir}' cannot be read`, { cause: err });
}
