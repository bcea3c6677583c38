// Start to READY: from spawning `tokend serve` to the first completed mutual-TLS
// handshake, with 1, 1,000 and 10,000 sealed tokens (keyfile provider), and
// resident memory then and after every one of 10,000 tokens was served once
// (10,000 data keys in the cache).

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { seal, serializeSealed } from '../../dist/envelope.js';
import { loadKeyfileProvider } from '../../dist/kms/keyfile.js';
import { clientContext, startServer } from './servers.ts';
import type { ServerKind } from './servers.ts';
import { writeTokendConfig } from './workspace.ts';
import type { Workspace } from './workspace.ts';

export interface StartupResult {
  /** tokend as shipped, or a diagnostic variant. */
  readonly kind: ServerKind;
  readonly tokens: number;
  /** Every start, in milliseconds. */
  readonly readyMs: readonly number[];
  readonly medianReadyMs: number;
  /** RSS right after READY (median over the starts). */
  readonly rssAtReadyMiB: number;
  /** RSS after every token was served once (measured on the last start). */
  readonly rssAfterServingAllMiB: number;
  /** Seconds to serve every token once (cold: one provider call each). */
  readonly serveAllSeconds: number;
}

/**
 * Seals `count` 64-byte tokens named bench-00000… into a fresh store. Sealed
 * in-process through the envelope module for speed; written with plain 0600
 * writes (the CLI's atomic write with fsync is measured in seal-rate).
 */
export async function sealStore(ws: Workspace, count: number): Promise<string> {
  const dir = join(ws.dir, `store-${count}`);
  if (existsSync(dir)) return dir; // sealed earlier in this run
  mkdirSync(dir, { mode: 0o700 });
  const provider = await loadKeyfileProvider(join(ws.tokendDir, 'keyfile.json'));
  try {
    for (let i = 0; i < count; i++) {
      const name = `bench-${String(i).padStart(5, '0')}`;
      const plaintext = Buffer.alloc(64, 0x61 + (i % 26));
      const token = await seal({ name, version: 1, plaintext, provider });
      writeFileSync(join(dir, `${name}.sealed`), serializeSealed(token), { mode: 0o600 });
    }
  } finally {
    provider.close();
  }
  return dir;
}

/** Measures `starts` starts of tokend (or a diagnostic variant) over a store of `count` tokens. */
export async function measureStartup(ws: Workspace, count: number, starts: number, kind: ServerKind = 'tokend'): Promise<StartupResult> {
  const store = await sealStore(ws, count);
  const readyMs: number[] = [];
  const rss: number[] = [];
  let rssAfterServingAllMiB = Number.NaN;
  let serveAllSeconds = Number.NaN;
  for (let i = 0; i < starts; i++) {
    const server = await startServer(ws, kind, { config: (port) => writeTokendConfig(ws, `startup-${count}`, port, { store }) });
    try {
      readyMs.push(server.readyMs);
      rss.push(server.rssMiB());
      if (i === starts - 1) {
        const t0 = performance.now();
        await serveAll(server.port, ws, count);
        serveAllSeconds = (performance.now() - t0) / 1000;
        rssAfterServingAllMiB = server.rssMiB();
      }
    } finally {
      await server.stop();
    }
  }
  return { kind, tokens: count, readyMs, medianReadyMs: median(readyMs), rssAtReadyMiB: median(rss), rssAfterServingAllMiB, serveAllSeconds };
}

/** GETs every bench-NNNNN token once over 8 keep-alive connections; throws on any answer but 200. */
async function serveAll(port: number, ws: Workspace, count: number): Promise<void> {
  const pool = new Pool(`https://127.0.0.1:${port}`, { connections: 8, allowH2: false, connect: { secureContext: clientContext(ws.client), rejectUnauthorized: true } });
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < count) {
          const name = `bench-${String(next++).padStart(5, '0')}`;
          const res = await pool.request({ path: `/v1/tokens/${name}`, method: 'GET' });
          await res.body.arrayBuffer();
          if (res.statusCode !== 200) throw new Error(`GET ${name} answered ${res.statusCode}`);
        }
      }),
    );
  } finally {
    await pool.close();
  }
}

/** The median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
