// Sealing throughput with the keyfile provider: the envelope alone, the store
// write (atomic: temp file, fsync, rename, fsync of the directory), and the
// real `tokend seal` command, one process per token as an operator runs it.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { seal } from '../../dist/envelope.js';
import { loadKeyfileProvider } from '../../dist/kms/keyfile.js';
import { sealToken } from '../../dist/secrets.js';
import { TokenStore } from '../../dist/store.js';
import { median } from './startup.ts';
import { tokendCli, writeTokendConfig } from './workspace.ts';
import type { Workspace } from './workspace.ts';

export interface SealRate {
  /** seal() per second, in memory. */
  readonly envelopePerSecond: number;
  /** sealToken() per second, each written atomically with fsync. */
  readonly storePerSecond: number;
  /** Milliseconds per `tokend seal` process (median). */
  readonly cliMs: number;
}

/** Measures for about `seconds` per in-process figure, plus `cliRuns` CLI runs. */
export async function measureSealRate(ws: Workspace, seconds: number, cliRuns: number): Promise<SealRate> {
  const provider = await loadKeyfileProvider(join(ws.tokendDir, 'keyfile.json'));
  const plaintext = Buffer.alloc(64, 0x62);
  try {
    const envelopePerSecond = await rate(seconds, (i) => seal({ name: `seal-${i}`, version: 1, plaintext, provider }));
    const dir = join(ws.dir, 'store-seal');
    mkdirSync(dir, { mode: 0o700 });
    const store = new TokenStore(dir);
    const storePerSecond = await rate(seconds, (i) => sealToken(store, provider, `seal-${i}`, plaintext));
    const config = writeTokendConfig(ws, 'seal-cli', 0, { store: dir });
    const cli: number[] = [];
    for (let i = 0; i < cliRuns; i++) {
      const t0 = performance.now();
      await tokendCli(['seal', `cli-${i}`, '--config', config], 'c'.repeat(64));
      cli.push(performance.now() - t0);
    }
    return { envelopePerSecond, storePerSecond, cliMs: median(cli) };
  } finally {
    provider.close();
  }
}

async function rate(seconds: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) await op(n++);
  return n / ((performance.now() - t0) / 1000);
}
