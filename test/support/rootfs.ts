// Root filesystems that boot systemd, for tests under systemd-nspawn: one debootstrap tree
// (Debian bookworm, systemd, Node 24 at /usr/local/bin/node) built once and cached outside the
// clone, and a fresh overlay of it for each test, so tests never share state.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deferCleanup, onWorkerExit, runQuietlySync } from './cleanup.js';
import { run } from './run.js';

/** The repository root (for scripts/ and dist/). */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** Where heavy artifacts are cached between runs (TOKEND_CACHE, default /var/cache/tokend-test). */
export const CACHE_DIR = process.env.TOKEND_CACHE || '/var/cache/tokend-test';

let base: Promise<string> | undefined;

/**
 * The cached base rootfs, built on first use by scripts/build-rootfs (about a minute, under a
 * lock shared with other builders). Never write into it: use freshRoot().
 */
export function baseRootfs(): Promise<string> {
  base ??= run(join(REPO, 'scripts/build-rootfs'), [process.execPath], { timeoutMs: 600_000 }).then((r) => r.stdout.trim());
  return base;
}

/** A writable root of its own for one test: an overlay over the base rootfs. */
export interface FreshRoot {
  /** The merged tree: write units and config here, apply Ignition here, boot it. */
  readonly path: string;
  /** Unmounts the overlay and removes everything the test wrote. Idempotent. */
  dispose(): Promise<void>;
}

/** Mounts a fresh overlay root; it is disposed after the current test (or file, from a hook). */
export async function freshRoot(): Promise<FreshRoot> {
  const lower = await baseRootfs();
  await mkdir(join(CACHE_DIR, 'overlays'), { recursive: true });
  // Overlay upper and work dirs must live on a filesystem that supports them (not tmpfs on some
  // kernels, not another overlay); the cache directory is on the same disk as the base.
  const dir = await mkdtemp(join(process.env.TOKEND_OVERLAY_DIR || join(CACHE_DIR, 'overlays'), 'root-'));
  const path = join(dir, 'root');
  await Promise.all(['upper', 'work', 'root'].map((d) => mkdir(join(dir, d))));
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, path]);
  const forget = onWorkerExit(() => {
    runQuietlySync('umount', ['-l', path]);
    runQuietlySync('rm', ['-rf', '--one-file-system', dir]);
  });
  let disposed: Promise<void> | undefined;
  const root: FreshRoot = {
    path,
    dispose: () => {
      disposed ??= (async () => {
        await run('umount', [path], { allowFailure: true }).then((r) =>
          r.code === 0 ? r : run('umount', ['-l', path], { allowFailure: true }),
        );
        await rm(dir, { recursive: true, force: true });
        forget();
      })();
      return disposed;
    },
  };
  deferCleanup(root.dispose);
  return root;
}

/** A scratch directory on the host for one test file (not inside any root). */
export async function scratchDir(prefix = 'tokend-infra-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  deferCleanup(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
