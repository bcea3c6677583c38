// Helpers for tests that run units under real systemd: install unit files and the built tree.

import { access, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { REPO } from './rootfs.js';

/** Where the repository is bind-mounted (read-only) inside test machines. */
export const REPO_IN_MACHINE = '/opt/tokend';

/** The bind mount that makes the repository (dist/, test/fixtures/) visible in a machine. */
export const REPO_BIND: Readonly<Record<string, string>> = Object.freeze({ [REPO_IN_MACHINE]: REPO });

/** Fails with a clear message when dist/ is missing (tests in machines run the built code). */
export async function assertBuilt(): Promise<void> {
  await access(join(REPO, 'dist/systemd/notify.js')).catch(() => {
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
