// Reads tokend's /metrics with the admin bundle (over mutual TLS, like any client).

import { request } from 'node:https';
import { clientContext } from './servers.ts';
import type { Bundle } from './workspace.ts';

/** The counters the bench follows. */
export interface TokendCounters {
  readonly kmsCalls: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly coalesced: number;
  readonly requests: number;
}

/** GETs `path` on 127.0.0.1:`port` with `bundle`; resolves with status and body. */
export function get(port: number, path: string, bundle: Bundle): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'GET', secureContext: clientContext(bundle), rejectUnauthorized: true, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.once('error', reject);
    req.end();
  });
}

/** Scrapes tokend's counters. */
export async function scrape(port: number, admin: Bundle): Promise<TokendCounters> {
  const { status, body } = await get(port, '/metrics', admin);
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  const sum = (name: string) =>
    body
      .split('\n')
      .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return {
    kmsCalls: sum('tokend_kms_calls_total'),
    cacheHits: sum('tokend_cache_hits_total'),
    cacheMisses: sum('tokend_cache_misses_total'),
    coalesced: sum('tokend_cache_coalesced_total'),
    requests: sum('tokend_requests_total'),
  };
}

/** Counter differences `after - before`. */
export function delta(before: TokendCounters, after: TokendCounters): TokendCounters {
  return {
    kmsCalls: after.kmsCalls - before.kmsCalls,
    cacheHits: after.cacheHits - before.cacheHits,
    cacheMisses: after.cacheMisses - before.cacheMisses,
    coalesced: after.coalesced - before.coalesced,
    requests: after.requests - before.requests,
  };
}
