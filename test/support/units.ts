// Installing tokend into test machines: the repository (bind-mounted read-only), a
// /usr/local/bin/tokend that runs its built CLI, units/tokend.service and the tokend user.

import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { REPO } from './rootfs.js';
import { run } from './run.js';

/** Where the repository is bind-mounted (read-only) inside test machines. */
export const REPO_IN_MACHINE = '/opt/tokend';

/** The bind mount that makes the repository (dist/, node_modules/, test/fixtures/) visible in a machine. */
export const REPO_BIND: Readonly<Record<string, string>> = Object.freeze({ [REPO_IN_MACHINE]: REPO });

/** Fails with a clear message when dist/ is missing (tests in machines run the built code). */
export async function assertBuilt(): Promise<void> {
  await access(join(REPO, 'dist/cli/bin.js')).catch(() => {
    throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  });
}

/** Writes `files` (path inside the root → content) into a root before boot. */
export async function writeIntoRoot(root: string, files: Readonly<Record<string, string>>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const target = join(root, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content);
  }
}

/** Installs /usr/local/bin/tokend, running the repository's built CLI (needs REPO_BIND at boot). */
export async function installTokend(root: string): Promise<void> {
  await assertBuilt();
  // exec: the unit's main PID is node itself, so signals and sd_notify attribution work.
  await writeIntoRoot(root, { 'usr/local/bin/tokend': `#!/bin/sh\nexec /usr/local/bin/node ${REPO_IN_MACHINE}/bin/tokend "$@"\n` });
  await chmod(join(root, 'usr/local/bin/tokend'), 0o755);
}

/** The tokend user's ids inside a root. */
export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

/**
 * Installs units/tokend.service (plus an optional drop-in), the tokend-ca.service it requires
 * and units/tokend.sysusers, and creates
 * the tokend user offline (systemd-sysusers --root), so files can be chowned to it before boot.
 */
export async function installTokendUnit(root: string, dropIn?: string): Promise<Owner> {
  await writeIntoRoot(root, {
    'etc/systemd/system/tokend.service': await readFile(join(REPO, 'units/tokend.service'), 'utf8'),
    'etc/systemd/system/tokend-ca.service': await readFile(join(REPO, 'units/tokend-ca.service'), 'utf8'),
    'etc/sysusers.d/tokend.conf': await readFile(join(REPO, 'units/tokend.sysusers'), 'utf8'),
    ...(dropIn ? { 'etc/systemd/system/tokend.service.d/test.conf': dropIn } : {}),
  });
  await run('systemd-sysusers', [`--root=${root}`, join(root, 'etc/sysusers.d/tokend.conf')]);
  const line = /^tokend:x:(\d+):(\d+):/m.exec(await readFile(join(root, 'etc/passwd'), 'utf8'));
  if (!line) throw new Error('systemd-sysusers did not create the tokend user');
  return { uid: Number(line[1]), gid: Number(line[2]) };
}
