// Private files: atomic writes, 0600/0700 modes, and the ssh-style refusal of loose permissions.

import { randomBytes } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TokendError } from './errors.js';

/** Prefix of temporary files; the store and listings ignore names that start with '.'. */
export const TEMP_PREFIX = '.tmp-';

export interface WriteOptions {
  /** File mode, default 0600. */
  readonly mode?: number;
  /** Replace an existing file (default true); false fails with ERR_EXISTS. */
  readonly overwrite?: boolean;
  /** Optional owner for the new file. */
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/**
 * Writes `data` to `path` so that readers see either the old file or the whole
 * new one, never a part: a temp file in the same directory, fsync, rename,
 * fsync of the directory. On any failure the temp file is removed and the old
 * file is untouched.
 */
export async function writeFileAtomic(path: string, data: Buffer | string, options: WriteOptions = {}): Promise<void> {
  const dir = dirname(path);
  const temp = tempPath(path);
  const mode = options.mode ?? 0o600;
  let handle;
  try {
    await removeStaleTemps(dir);
    handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    await handle.writeFile(data);
    await handle.chmod(mode); // the umask may have narrowed or (rarely) the mode argument been ignored
    if (options.owner) await handle.chown(options.owner.uid, options.owner.gid);
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (options.overwrite === false) {
      // link() fails atomically when the target exists; rename() would replace it.
      try {
        await link(temp, path);
      } catch (err) {
        if (errno(err) === 'EEXIST') throw new TokendError('ERR_EXISTS', `'${path}' already exists; refusing to overwrite it`);
        throw err;
      }
      await rm(temp);
    } else {
      await rename(temp, path);
    }
    await syncDir(dir);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
    if (err instanceof TokendError) throw err;
    throw ioError(`could not write '${path}'`, err);
  }
}

/**
 * A temporary name beside `path` for building its next version: hidden, and
 * tagged with our pid so that removeStaleTemps can tell a dead writer's file
 * from a live one's.
 */
export function tempPath(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}`);
}

/**
 * Removes what writers that died mid-write (kill -9, power loss) left in `dir`:
 * a temp file may hold a whole copy of a secret (a keyfile, a private key).
 * Only names tempPath makes are touched, and only those of processes that no
 * longer exist: a concurrent writer's file is kept.
 */
export async function removeStaleTemps(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return; // no directory, nothing left behind
  }
  for (const entry of entries) {
    const pid = STALE_TEMP.exec(entry)?.[1];
    if (pid === undefined || Number(pid) === process.pid || isAlive(Number(pid))) continue;
    await rm(join(dir, entry), { recursive: true, force: true });
  }
}

/** `.tmp-<name>.<pid>.<12 hex>`, as tempPath makes them. */
const STALE_TEMP = new RegExp(`^${TEMP_PREFIX.replace('.', '\\.')}.+\\.(\\d+)\\.[0-9a-f]{12}$`);

/** Whether a process with this pid exists (one of another user counts). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) !== 'ESRCH';
  }
}

/** Creates `path` (and parents) when missing and makes it 0700 (or `mode`). */
export async function ensurePrivateDir(path: string, mode = 0o700): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode });
    const st = await lstat(path);
    if (!st.isDirectory()) throw new TokendError('ERR_IO', `'${path}' exists and is not a directory`);
    if ((st.mode & 0o777) !== mode) await chmod(path, mode);
  } catch (err) {
    if (err instanceof TokendError) throw err;
    throw ioError(`could not create directory '${path}'`, err);
  }
}

/** Changes the owner of `path` (used for client bundles a container user must read). */
export async function setOwner(path: string, owner: { readonly uid: number; readonly gid: number }): Promise<void> {
  try {
    await chown(path, owner.uid, owner.gid);
  } catch (err) {
    throw ioError(`could not change the owner of '${path}'`, err);
  }
}

/**
 * Fails closed, like ssh, when a file that holds key material is a symlink,
 * not a regular file, readable or writable by group or others, or owned by
 * another user. The message names the file and the fix.
 */
export async function assertPrivateFile(path: string, what: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    throw ioError(`${what} '${path}' cannot be read`, err);
  }
  if (st.isSymbolicLink()) {
    throw new TokendError('ERR_PERMISSIONS', `${what} '${path}' is a symbolic link; refusing to follow it (point the configuration at the real file)`);
  }
  if (!st.isFile()) throw new TokendError('ERR_PERMISSIONS', `${what} '${path}' is not a regular file`);
  const uid = process.geteuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new TokendError(
      'ERR_PERMISSIONS',
      `${what} '${path}' is owned by uid ${st.uid}, not by the user tokend runs as (uid ${uid}); run: chown ${uid} '${path}'`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new TokendError(
      'ERR_PERMISSIONS',
      `${what} '${path}' is accessible by group or others (mode ${octal(st.mode)}); run: chmod 600 '${path}'`,
    );
  }
}

/**
 * Fails closed when a file that decides access (config, policy, CA bundle) can
 * be written by group or others, or is owned by someone other than tokend's
 * user or root: whoever can edit it can grant themselves access.
 */
export async function assertNotWritableByOthers(path: string, what: string): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') throw new TokendError('ERR_NOT_FOUND', `${what} '${path}' does not exist`, { cause: err });
    throw ioError(`${what} '${path}' cannot be read`, err);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new TokendError(
      'ERR_PERMISSIONS',
      `${what} '${path}' is writable by group or others (mode ${octal(st.mode)}); run: chmod go-w '${path}'`,
    );
  }
  const uid = process.geteuid?.();
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    throw new TokendError('ERR_PERMISSIONS', `${what} '${path}' is owned by uid ${st.uid}, neither root nor the user tokend runs as (uid ${uid})`);
  }
}

/** Reads a file that holds key material after assertPrivateFile, refusing to follow a symlink swapped in between. */
export async function readPrivateFile(path: string, what: string): Promise<Buffer> {
  await assertPrivateFile(path, what);
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    return await handle.readFile();
  } catch (err) {
    throw ioError(`${what} '${path}' cannot be read`, err);
  } finally {
    await handle?.close();
  }
}

/** True when `path` exists (without following a final symlink). */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw ioError(`could not inspect '${path}'`, err);
  }
}

/** Mode bits of `path` as a number, or undefined when missing. */
export async function modeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mode & 0o7777;
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw ioError(`could not inspect '${path}'`, err);
  }
}

/** Reads a file, mapping ENOENT to ERR_NOT_FOUND and other failures to ERR_IO, both naming the subject. */
export async function readNamedFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') throw new TokendError('ERR_NOT_FOUND', `${what} '${path}' does not exist`, { cause: err });
    throw ioError(`${what} '${path}' cannot be read`, err);
  }
}

/**
 * Reads a file synchronously, with readNamedFile's errors. For many small files
 * (the token store): each fs/promises read is four thread-pool round trips.
 */
export function readNamedFileSync(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') throw new TokendError('ERR_NOT_FOUND', `${what} '${path}' does not exist`, { cause: err });
    throw ioError(`${what} '${path}' cannot be read`, err);
  }
}

/** The errno code of a Node system error, if any. */
export function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** An ERR_IO error naming the subject, with the errno of `cause` explained. */
export function ioError(message: string, cause: unknown): TokendError {
  const code = errno(cause);
  const hint = code === 'ENOSPC' ? ': no space left on device' : code === 'EROFS' ? ': read-only file system' : code === 'EACCES' || code === 'EPERM' ? ': permission denied' : code === 'ENOENT' ? ': no such file or directory' : code === 'EISDIR' ? ': it is a directory' : code ? `: ${code}` : '';
  return new TokendError('ERR_IO', `${message}${hint}`, { cause });
}

/** fsyncs a directory so a rename in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}
