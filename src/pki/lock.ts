// A lock file under pki.dir, so that two commands that change the CA, the
// registry or the denylist at once (a script issuing bundles in parallel, serve
// renewing its certificate) cannot lose each other's updates.

import { constants } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { TokendError } from '../errors.js';
import { errno } from '../private-files.js';

const RETRY_MS = 25;
const WAIT_MS = 10_000;

/**
 * Runs `fn` while holding the lock file `path` (created with O_EXCL, holding
 * our pid). Waits up to 10 s for another holder; a lock left by a process
 * that no longer exists is taken over. Throws ERR_PKI naming the file on timeout.
 * Limits: the liveness test sees only this PID namespace, and two waiters that
 * both find the same stale lock may race to take it over; stale locks exist only
 * after a crash, so both are rare, and the cost is one lost registry update.
 */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw new TokendError('ERR_IO', `could not create lock file '${path}'`, { cause: err });
    }
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

async function holderPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) !== 'ESRCH';
  }
}
