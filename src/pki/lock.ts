// A lock file under pki.dir, so that two commands that change the CA, the
// registry or the denylist at once (a script issuing bundles in parallel, serve
// renewing its certificate) cannot lose each other's updates.

import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { TokendError } from '../errors.js';
import { errno, ioError, isAlive, tempPath } from '../private-files.js';

const RETRY_MS = 25;
const WAIT_MS = 10_000;

/**
 * Runs `fn` while holding the lock file `path` (created atomically, holding
 * our pid). Waits up to 10 s for another holder; a lock left by a process
 * that no longer exists is taken over. Throws ERR_PKI naming the file on timeout.
 * Limits: the liveness test sees only this PID namespace, and two waiters that
 * both find the same stale lock may race to take it over; stale locks exist only
 * after a crash, so both are rare, and the cost is one lost registry update.
 */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (await tryLock(path)) break;
    const holder = await holderPid(path);
    if (holder !== undefined && !isAlive(holder)) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new TokendError(
        'ERR_PKI',
        `lock file '${path}' is held by process ${holder ?? '?'}; wait for that tokend command to finish (or remove the file if none is running)`,
      );
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}

/**
 * Creates the lock file with our pid already in it: written to a temp file,
 * then link()ed into place (which fails if the lock exists). Creating it empty
 * and writing the pid afterwards left, when killed in between, an empty lock
 * that named no holder and so was never taken over.
 */
async function tryLock(path: string): Promise<boolean> {
  const temp = tempPath(path);
  try {
    await writeFile(temp, `${process.pid}\n`, { mode: 0o600, flag: 'wx' });
    await link(temp, path);
    return true;
  } catch (err) {
    if (errno(err) === 'EEXIST') return false;
    throw ioError(`could not create lock file '${path}'`, err);
  } finally {
    await rm(temp, { force: true });
  }
}

async function holderPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
