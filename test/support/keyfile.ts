// A real keyfile provider in a fresh temp directory, for tests that need one.

import { join } from 'node:path';
import { createKeyfile, loadKeyfileProvider } from '../../src/kms/keyfile.js';
import type { KeyProvider } from '../../src/kms/provider.js';
import { tempDir } from './tmp.js';

/** Creates a new keyfile in a temp dir and loads it. */
export async function freshKeyfile(): Promise<{ path: string; provider: KeyProvider }> {
  const path = join(await tempDir('tokend-kf-'), 'keyfile.json');
  await createKeyfile(path);
  return { path, provider: await loadKeyfileProvider(path) };
}
