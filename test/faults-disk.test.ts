// A full or read-only disk under the real binary: seal, rewrap and keyfile rotate
// fail with one clear message naming the file and the cause, exit non-zero, and
// leave the old files intact and no temp file behind. The directory lives on a
// small tmpfs (needs root: skipped loudly locally, required in CI).

import { execFileSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT } from '../src/cli/exit-codes.js';
import { tokend } from './support/cli.js';
import { isRoot, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';
import { snapshot } from './support/tree.js';

const skip = missing({ root: isRoot() }) !== undefined;
const mounts: string[] = [];

afterEach(() => {
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
});

/** A dev directory with token 'db' sealed, on its own 4 MiB tmpfs. */
async function devOnTmpfs(): Promise<{ mnt: string; dir: string }> {
  const mnt = await tempDir('tokend-disk-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt]);
  mounts.push(mnt);
  const dir = join(mnt, 'dev');
  expect((await tokend(['init', '--dir', dir])).code).toBe(0);
  expect((await tokend(['seal', 'db', '--dir', dir], { input: 'disk-fault-old-value' })).code).toBe(0);
  return { mnt, dir };
}

function fill(mnt: string): void {
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=64k'], { stdio: 'ignore' });
  } catch {
    // dd stops with ENOSPC: the disk is full
  }
}

const readOnly = (mnt: string) => execFileSync('mount', ['-o', 'remount,ro', mnt]);

const unsealed = async (dir: string) => (await tokend(['unseal', 'db', '--dir', dir])).stdout.toString();
const temps = async (dir: string) => (await readdir(dir, { recursive: true })).filter((f) => f.split('/').some((p) => p.startsWith('.tmp-')));

describe.skipIf(skip)('a full or read-only disk', () => {
  it('seal on a full disk: exit 1 naming the file and ENOSPC, the old version intact, no temp file', async () => {
    const { mnt, dir } = await devOnTmpfs();
    fill(mnt);
    const before = await snapshot(dir);
    const r = await tokend(['seal', 'db', '--dir', dir], { input: 'disk-fault-new-value' });
    expect(r.code).toBe(EXIT.error);
    expect(r.stderr).toContain(`could not write '${join(dir, 'tokens', 'db.sealed')}': no space left on device`);
    expect(await snapshot(dir)).toEqual(before);
    expect(await temps(dir)).toEqual([]);
    expect(await unsealed(dir)).toBe('disk-fault-old-value');
  });

  it('seal on a read-only disk: exit 1 naming the file and the read-only file system, the old version intact', async () => {
    const { mnt, dir } = await devOnTmpfs();
    readOnly(mnt);
    const before = await snapshot(dir);
    const r = await tokend(['seal', 'db', '--dir', dir], { input: 'disk-fault-new-value' });
    expect(r.code).toBe(EXIT.error);
    expect(r.stderr).toContain(`could not write '${join(dir, 'tokens', 'db.sealed')}': read-only file system`);
    expect(await snapshot(dir)).toEqual(before);
    expect(await unsealed(dir)).toBe('disk-fault-old-value');
  });

  it('rewrap on a full disk: reports the token it could not rewrap, exit 1, every file intact', async () => {
    const { mnt, dir } = await devOnTmpfs();
    expect((await tokend(['keyfile', 'rotate', '--dir', dir])).code).toBe(0);
    fill(mnt);
    const before = await snapshot(dir);
    const r = await tokend(['rewrap', '--json', '--dir', dir]);
    expect(r.code).toBe(EXIT.error);
    const report = JSON.parse(r.stdout.toString()) as { failed: { name: string; error: string }[] };
    expect(report.failed).toEqual([{ name: 'db', code: 'ERR_IO', error: `could not write '${join(dir, 'tokens', 'db.sealed')}': no space left on device` }]);
    expect(await snapshot(dir)).toEqual(before);
    expect(await unsealed(dir)).toBe('disk-fault-old-value');
  });

  it('keyfile rotate on a read-only disk: exit 1 naming the keyfile, the keyfile unchanged', async () => {
    const { mnt, dir } = await devOnTmpfs();
    const keyfile = await readFile(join(dir, 'keyfile.json'));
    readOnly(mnt);
    const r = await tokend(['keyfile', 'rotate', '--dir', dir]);
    expect(r.code).toBe(EXIT.error);
    expect(r.stderr).toContain(`could not write '${join(dir, 'keyfile.json')}': read-only file system`);
    expect((await readFile(join(dir, 'keyfile.json'))).equals(keyfile)).toBe(true);
  });

  it('cert issue on a full disk: exit non-zero, the existing bundle intact and still matching', async () => {
    const { mnt, dir } = await devOnTmpfs();
    fill(mnt);
    const bundle = join(dir, 'pki', 'clients', 'demo');
    const cert = await readFile(join(bundle, 'client.crt'));
    const r = await tokend(['cert', 'issue', 'demo', '--force', '--dir', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no space left on device|ENOSPC/);
    expect((await readFile(join(bundle, 'client.crt'))).equals(cert)).toBe(true);
    expect(await temps(join(dir, 'pki'))).toEqual([]);
  });
});
