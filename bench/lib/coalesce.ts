// Cold requests: a freshly started tokend gets 100 concurrent requests for one
// token on 100 open connections, and must call its key provider once. With the
// keyfile provider the unwrap is instant; with the aws provider against the
// test KMS (the real SDK over the KMS wire protocol, 50 ms of latency per call)
// the 100 requests really overlap the one call.

import { mkdirSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { delta, scrape } from './scrape.ts';
import type { TokendCounters } from './scrape.ts';
import { clientContext, startServer } from './servers.ts';
import type { StartOptions } from './servers.ts';
import { ROOT, TOKEN, TOKEN_PATH, tokendCli, writeTokendConfig } from './workspace.ts';
import type { Workspace } from './workspace.ts';

export interface ColdBurst {
  readonly provider: string;
  readonly requests: number;
  readonly ok: number;
  /** Provider calls tokend counted during the burst. */
  readonly counters: TokendCounters;
  /** aws only: Decrypt calls the KMS received. */
  readonly kmsDecryptCalls: number | undefined;
  readonly seconds: number;
}

const CONCURRENT = 100;

/** The burst against tokend with the keyfile provider. */
export async function coldBurstKeyfile(ws: Workspace): Promise<ColdBurst> {
  return burst(ws, 'keyfile', {});
}

/** The burst against tokend with the aws provider and a KMS that answers after `latencyMs`. */
export async function coldBurstAws(ws: Workspace, latencyMs: number): Promise<ColdBurst> {
  // The test KMS lives in test/support (TypeScript with .js import specifiers, as vitest reads it).
  registerHooks({
    resolve(specifier, context, next) {
      if (context.parentURL?.includes('/test/support/') && specifier.startsWith('./') && specifier.endsWith('.js')) {
        return next(`${specifier.slice(0, -3)}.ts`, context);
      }
      return next(specifier, context);
    },
  });
  const { startKmsServer } = (await import(pathToFileURL(join(ROOT, 'test', 'support', 'kms-server.ts')).href)) as typeof import('../../test/support/kms-server.ts');
  const kms = await startKmsServer({ region: 'eu-west-1' });
  try {
    const key = kms.createKey('bench');
    kms.createAlias('alias/tokend-bench', key.keyId);
    const store = join(ws.dir, 'store-aws');
    mkdirSync(store, { mode: 0o700 });
    const config = (port: number) =>
      writeTokendConfig(ws, 'aws', port, {
        dev: false,
        store,
        provider: { type: 'aws', keyId: 'alias/tokend-bench', region: kms.region, endpoint: kms.endpoint },
      });
    await tokendCli(['seal', TOKEN, '--config', config(0)], 'a'.repeat(64), kms.env());
    kms.resetCalls();
    kms.faults.latencyMs = latencyMs;
    const result = await burst(ws, 'aws', { config, env: kms.env() });
    return { ...result, kmsDecryptCalls: kms.calls.Decrypt ?? 0 };
  } finally {
    await kms.close();
  }
}

async function burst(ws: Workspace, provider: string, options: StartOptions): Promise<ColdBurst> {
  const server = await startServer(ws, 'tokend', options);
  const pool = new Pool(`https://127.0.0.1:${server.port}`, {
    connections: CONCURRENT,
    allowH2: false,
    connect: { secureContext: clientContext(ws.client), rejectUnauthorized: true },
  });
  try {
    // Open the connections first (healthz needs no key), so the burst is requests, not handshakes.
    await Promise.all(Array.from({ length: CONCURRENT }, () => pool.request({ path: '/healthz', method: 'GET' }).then((r) => r.body.dump())));
    const before = await scrape(server.port, ws.admin);
    const t0 = performance.now();
    const statuses = await Promise.all(
      Array.from({ length: CONCURRENT }, async () => {
        const res = await pool.request({ path: TOKEN_PATH, method: 'GET' });
        await res.body.dump();
        return res.statusCode;
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const after = await scrape(server.port, ws.admin);
    return {
      provider,
      requests: CONCURRENT,
      ok: statuses.filter((s) => s === 200).length,
      counters: delta(before, after),
      kmsDecryptCalls: undefined,
      seconds,
    };
  } finally {
    await pool.close();
    await server.stop();
  }
}
