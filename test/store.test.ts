import { execFileSync } from 'node:child_process';
import { chmod, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensurePrivateDir, writeFileAtomic } from '../src/private-files.js';
import { sealToken } from '../src/secrets.js';
import { TokenStore } from '../src/store.js';
import type { KeyProvider } from '../src/kms/provider.js';
import { freshKeyfile } from './support/keyfile.js';
import { isRoot, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';

let provider: KeyProvider;
beforeAll(async () => {
  provider = (await freshKeyfile()).provider;
});

async function newStore(): Promise<TokenStore> {
  const dir = join(await tempDir(), 'tokens');
  await ensurePrivateDir(dir);
  return new TokenStore(dir);
}

describe('token store', () => {
  it('writes sealed files 0600 in a 0700 directory and lists them by name', async () => {
    const store = await newStore();
    await sealToken(store, provider, 'b', Buffer.from('2'));
    await sealToken(store, provider, 'a', Buffer.from('1'));
    expect(await store.names()).toEqual(['a', 'b']);
    expect((await stat(store.pathOf('a'))).mode & 0o777).toBe(0o600);
    expect((await stat(store.dir)).mode & 0o777).toBe(0o700);
  });

  it('ignores temp files, dotfiles and files that are not <valid name>.sealed', async () => {
    const store = await newStore();
    await sealToken(store, provider, 'good', Buffer.from('x'));
    for (const f of ['.tmp-good.sealed.abc', '.hidden.sealed', 'UPPER.sealed', 'notes.txt', 'a..b.sealed']) {
      await writeFile(join(store.dir, f), 'junk');
    }
    expect(await store.names()).toEqual(['good']);
  });

  it('reports a corrupt file by name without failing the others', async () => {
    const store = await newStore();
    await sealToken(store, provider, 'ok', Buffer.from('x'));
    await writeFile(store.pathOf('broken'), '{"truncated": ');
    const { tokens, errors } = await store.load();
    expect([...tokens.keys()]).toEqual(['ok']);
    expect(errors.map((e) => [e.code, e.message])).toEqual([["ERR_SEALED_CORRUPT", "sealed token 'broken' is corrupt: it is not valid JSON"]]);
  });

  it('loads a store larger than one read batch whole, reporting a bad file among them by name', async () => {
    const store = await newStore();
    const names = Array.from({ length: 300 }, (_, i) => `t-${String(i).padStart(3, '0')}`);
    for (const name of names) await sealToken(store, provider, name, Buffer.from(name));
    await writeFile(store.pathOf('t-150a'), 'garbage');
    const { tokens, errors } = await store.load();
    expect([...tokens.keys()]).toEqual(names);
    expect(errors.map((e) => e.message)).toEqual(["sealed token 't-150a' is corrupt: it is not valid JSON"]);
  });

  it('refuses to replace a corrupt file with a new version', async () => {
    const store = await newStore();
    await writeFile(store.pathOf('broken'), 'garbage');
    await expect(sealToken(store, provider, 'broken', Buffer.from('x'))).rejects.toMatchObject({
      code: 'ERR_SEALED_CORRUPT',
      message: expect.stringContaining('refusing to replace it'),
    });
  });

  it('refuses a store directory that group or others can write', async () => {
    const store = await newStore();
    await chmod(store.dir, 0o777);
    await expect(store.names()).rejects.toMatchObject({ code: 'ERR_PERMISSIONS', message: expect.stringContaining('chmod 700') });
  });

  it('names a missing store and the fix', async () => {
    const store = new TokenStore('/nonexistent/tokend/tokens');
    await expect(store.names()).rejects.toMatchObject({ code: 'ERR_NOT_FOUND', message: expect.stringContaining("run 'tokend init'") });
  });
});

describe('atomic writes', () => {
  it.skipIf(missing({ root: isRoot() }) !== undefined)(
    'on a full disk: a clear error, the old file intact, no temp file left',
    async () => {
      const mnt = await tempDir();
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
      try {
        const path = join(mnt, 'db.sealed');
        await writeFileAtomic(path, 'old-version');
        await writeFile(join(mnt, 'filler'), Buffer.alloc(60 * 1024)).catch(() => undefined);
        await expect(writeFileAtomic(path, Buffer.alloc(32 * 1024, 1))).rejects.toMatchObject({
          code: 'ERR_IO',
          message: `could not write '${path}': no space left on device`,
        });
        expect(await readFile(path, 'utf8')).toBe('old-version');
        expect((await readdir(mnt)).sort()).toEqual(['db.sealed', 'filler']);
      } finally {
        execFileSync('umount', [mnt]);
      }
    },
  );

  it('refuses to replace an existing file when overwrite is false, atomically', async () => {
    const dir = await tempDir();
    const path = join(dir, 'file');
    await writeFileAtomic(path, 'first', { overwrite: false });
    await expect(writeFileAtomic(path, 'second', { overwrite: false })).rejects.toMatchObject({ code: 'ERR_EXISTS' });
    expect(await readdir(dir)).toEqual(['file']);
  });
});
