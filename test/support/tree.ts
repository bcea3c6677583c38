// A directory tree as data (paths, types, modes, content hashes, link targets),
// so a test can prove that a refused command wrote nothing at all.

import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** path (relative) → "type mode hash-or-target". */
export type Tree = Record<string, string>;

/** Every entry under `dir`, symlinks not followed. */
export async function snapshot(dir: string): Promise<Tree> {
  const tree: Tree = {};
  const walk = async (rel: string) => {
    const full = join(dir, rel);
    const st = await lstat(full);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) tree[rel] = `link ${mode} ${await readlink(full)}`;
    else if (st.isDirectory()) {
      tree[rel] = `dir ${mode}`;
      for (const name of (await readdir(full)).sort()) await walk(rel === '' ? name : join(rel, name));
    } else if (st.isFile()) tree[rel] = `file ${mode} ${createHash('sha256').update(await readFile(full)).digest('hex')}`;
    else tree[rel] = `other ${mode}`;
  };
  await walk('');
  return tree;
}
