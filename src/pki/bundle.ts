// Client bundles on disk: the directory a container mounts read-only, holding
// ca.crt, client.crt and client.key.
//
// A bundle is swapped as a whole, never file by file. Renaming client.crt and
// client.key one after the other always leaves a moment where a new certificate
// sits beside an old key (or the reverse), whichever goes first. So, like the
// Kubernetes atomic writer, the real files live in a versioned subdirectory
// `..v-<serial>/`, `..data` is a symlink to the current one, and the three
// visible names are fixed symlinks through `..data`. Replacing a bundle writes
// a complete new version, then renames a new `..data` link over the old one:
// one atomic rename switches all three files. A directory bind-mounted into a
// container (podman -v) sees the switch, because the mounted directory itself
// never changes. A first bundle is built in a temp directory beside it and
// renamed into place, so there is never half a bundle either.

import { randomBytes } from 'node:crypto';
import { chmod, chown, lchown, lstat, mkdir, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TokendError } from '../errors.js';
import { TEMP_PREFIX, errno, ioError as sharedIoError, removeStaleTemps, syncDir, tempPath, writeFileAtomic } from '../private-files.js';

/** The file names a container sees. */
export const BUNDLE_FILES = Object.freeze({ ca: 'ca.crt', cert: 'client.crt', key: 'client.key' });

const DATA_LINK = '..data';
const VERSION_PREFIX = '..v-';

/** What goes into a bundle (PEM). */
export interface BundleFiles {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** A uid:gid that should own a bundle (so a container user can read its key). */
export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

/** absent: nothing there; empty: an empty directory; bundle: a tokend bundle; foreign: anything else. */
export type BundleState = 'absent' | 'empty' | 'bundle' | 'foreign';

/** What is at `dir` now. */
export async function bundleState(dir: string): Promise<BundleState> {
  let st;
  try {
    st = await lstat(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return 'absent';
    throw ioError(`could not inspect '${dir}'`, err);
  }
  if (!st.isDirectory()) return 'foreign';
  const entries = await readdir(dir);
  if (entries.length === 0) return 'empty';
  try {
    return (await lstat(join(dir, DATA_LINK))).isSymbolicLink() ? 'bundle' : 'foreign';
  } catch {
    return 'foreign';
  }
}

export interface WriteBundleOptions {
  /** Replace an existing bundle (cert renew, cert issue --force). Without it an existing bundle is ERR_EXISTS. */
  readonly replace: boolean;
  /** Owner of the directory and files; on replace, defaults to the current owner of the bundle directory. */
  readonly owner?: Owner | undefined;
  /** Version label, the certificate serial: shows which certificate is live (`readlink ..data`). */
  readonly version: string;
}

/**
 * Writes a bundle at `dir` (whose parent must exist): directories 0700,
 * client.key 0600, ca.crt and client.crt 0644. Readers see the old bundle or
 * the new one, whole. Refuses (ERR_EXISTS) a directory that is not a tokend
 * bundle and is not empty, even when replacing: it might be anything.
 */
export async function writeBundle(dir: string, files: BundleFiles, options: WriteBundleOptions): Promise<void> {
  const state = await bundleState(dir);
  if (state === 'foreign') {
    throw new TokendError('ERR_EXISTS', `'${dir}' exists and is not a tokend bundle (nor an empty directory); refusing to write into it`);
  }
  if (state === 'bundle') {
    if (!options.replace) {
      throw new TokendError('ERR_EXISTS', `a bundle already exists in '${dir}'; pass --force to replace it, or use 'tokend cert renew'`);
    }
    const st = await stat(dir);
    await swapIn(dir, files, options.version, options.owner ?? { uid: st.uid, gid: st.gid });
    return;
  }
  await createNew(dir, files, options.version, options.owner);
}

/** Builds the whole bundle in a temp directory beside `dir`, then renames it into place. */
async function createNew(dir: string, files: BundleFiles, version: string, owner: Owner | undefined): Promise<void> {
  const parent = dirname(dir);
  const temp = tempPath(dir);
  try {
    await removeStaleTemps(parent); // half-built bundles (with their private keys) of killed runs
    await makeDir(temp, owner);
    const versionName = `${VERSION_PREFIX}${version}`;
    await writeVersion(join(temp, versionName), files, owner);
    await link(versionName, join(temp, DATA_LINK), owner);
    for (const name of Object.values(BUNDLE_FILES)) await link(join(DATA_LINK, name), join(temp, name), owner);
    await syncDir(temp);
    try {
      // rename(2) replaces an empty directory and fails on a non-empty one: a bundle made meanwhile wins.
      await rename(temp, dir);
    } catch (err) {
      if (errno(err) === 'ENOTEMPTY' || errno(err) === 'EEXIST') {
        throw new TokendError('ERR_EXISTS', `a bundle already exists in '${dir}'; pass --force to replace it, or use 'tokend cert renew'`);
      }
      throw err;
    }
    await syncDir(parent);
  } catch (err) {
    await rm(temp, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof TokendError) throw err;
    throw ioError(`could not write the bundle '${dir}'`, err);
  }
}

/** Writes a new version inside `dir`, switches `..data` to it in one rename, then removes the old versions. */
async function swapIn(dir: string, files: BundleFiles, version: string, owner: Owner): Promise<void> {
  const versionName = `${VERSION_PREFIX}${version}`;
  const tempLink = join(dir, `${TEMP_PREFIX}data.${randomBytes(6).toString('hex')}`);
  try {
    await rm(join(dir, versionName), { recursive: true, force: true }); // a leftover of an interrupted attempt
    await writeVersion(join(dir, versionName), files, owner);
    await link(versionName, tempLink, owner);
    await rename(tempLink, join(dir, DATA_LINK));
    await syncDir(dir);
  } catch (err) {
    await rm(tempLink, { force: true }).catch(() => undefined);
    if ((await readlink(join(dir, DATA_LINK)).catch(() => undefined)) !== versionName) {
      await rm(join(dir, versionName), { recursive: true, force: true }).catch(() => undefined);
    }
    if (err instanceof TokendError) throw err;
    throw ioError(`could not replace the bundle '${dir}'`, err);
  }
  // The switch is done; what follows only tidies up. Repair a visible link someone removed.
  for (const name of Object.values(BUNDLE_FILES)) {
    if ((await readlink(join(dir, name)).catch(() => undefined)) !== join(DATA_LINK, name)) {
      await rm(join(dir, name), { force: true });
      await link(join(DATA_LINK, name), join(dir, name), owner);
    }
  }
  for (const entry of await readdir(dir)) {
    if ((entry.startsWith(VERSION_PREFIX) && entry !== versionName) || entry.startsWith(TEMP_PREFIX)) {
      await rm(join(dir, entry), { recursive: true, force: true });
    }
  }
}

async function writeVersion(versionDir: string, files: BundleFiles, owner: Owner | undefined): Promise<void> {
  await makeDir(versionDir, owner);
  const own = owner ? { owner } : {};
  await writeFileAtomic(join(versionDir, BUNDLE_FILES.cert), files.certPem, { mode: 0o644, overwrite: false, ...own });
  await writeFileAtomic(join(versionDir, BUNDLE_FILES.key), files.keyPem, { mode: 0o600, overwrite: false, ...own });
  await writeFileAtomic(join(versionDir, BUNDLE_FILES.ca), files.caPem, { mode: 0o644, overwrite: false, ...own });
}

async function makeDir(path: string, owner: Owner | undefined): Promise<void> {
  await mkdir(path, { mode: 0o700 });
  await chmod(path, 0o700); // the umask may have narrowed it
  if (owner) await chown(path, owner.uid, owner.gid);
}

async function link(target: string, path: string, owner: Owner | undefined): Promise<void> {
  await symlink(target, path);
  if (owner) await lchown(path, owner.uid, owner.gid);
}

/** I/O errors name the bundle; changing an owner needs root, which the hint says. */
function ioError(message: string, cause: unknown): TokendError {
  const code = errno(cause);
  if (code === 'EPERM' || code === 'EACCES') {
    return new TokendError('ERR_IO', `${message}: permission denied (setting another owner needs root)`, { cause });
  }
  return sharedIoError(message, cause);
}
