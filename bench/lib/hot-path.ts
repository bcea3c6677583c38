// The pieces of tokend's per-request work, timed alone in this process (CPU
// time, best of 7 batches, so other work on the machine disturbs it little):
// decrypting the token with its cached key (every request), deriving that key
// from the data key (once per cache miss), the audit log line, and the two
// metric increments. They explain part of the gap between tokend and the raw server.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { decryptWithTokenKey, deriveTokenKey, parseSealed, unwrapDataKey } from '../../dist/envelope.js';
import { loadKeyfileProvider } from '../../dist/kms/keyfile.js';
import { Metrics } from '../../dist/metrics.js';
import { createLogger } from '../../dist/server/log.js';
import { TOKEN } from './workspace.ts';
import type { Workspace } from './workspace.ts';

/** Microseconds of CPU per operation. */
export interface HotPath {
  /** Per request: AES-GCM with the token's cached key. */
  readonly decryptUs: number;
  /** Per cache miss: HKDF and the key-commitment check. */
  readonly deriveKeyUs: number;
  readonly auditLineUs: number;
  readonly plainPinoLineUs: number;
  readonly metricsUs: number;
}

/** Times each piece. */
export async function measureHotPath(ws: Workspace): Promise<HotPath> {
  const token = parseSealed(readFileSync(join(ws.tokendDir, 'tokens', `${TOKEN}.sealed`)), TOKEN);
  const provider = await loadKeyfileProvider(join(ws.tokendDir, 'keyfile.json'));
  const dataKey = await unwrapDataKey(token, provider);
  provider.close();
  const key = deriveTokenKey(token, dataKey);
  // The audit line exactly as the handler writes it, through tokend's logger, to /dev/null.
  const line = () => ({
    msg: 'request', method: 'GET', route: 'token', identity: 'demo', serial: '4ce7895d8b19077266de47209b41d033', token: TOKEN,
    decision: 'allow', status: 200, code: undefined, cache: 'hit', reason: undefined, ms: 0.12,
  });
  const log = createLogger('info', pino.destination({ dest: '/dev/null', sync: true }));
  const plain = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
  const metrics = new Metrics();
  metrics.define('tokend_requests_total', 'counter', 'requests');
  metrics.define('tokend_decisions_total', 'counter', 'decisions');
  try {
    return {
      decryptUs: cpuPerOp(20_000, () => decryptWithTokenKey(token, key).fill(0)),
      deriveKeyUs: cpuPerOp(20_000, () => deriveTokenKey(token, dataKey).fill(0)),
      auditLineUs: cpuPerOp(20_000, () => log.info(line())),
      plainPinoLineUs: cpuPerOp(20_000, () => plain.info(line())),
      metricsUs: cpuPerOp(100_000, () => {
        metrics.inc('tokend_requests_total', { route: 'token', status: '200' });
        metrics.inc('tokend_decisions_total', { decision: 'allow' });
      }),
    };
  } finally {
    key.fill(0);
    dataKey.fill(0);
  }
}

/** CPU microseconds per call of `fn`: best of 7 batches of `n` after a warm-up batch. */
function cpuPerOp(n: number, fn: () => void): number {
  for (let i = 0; i < n; i++) fn();
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 7; r++) {
    const c = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const u = process.cpuUsage(c);
    best = Math.min(best, (u.user + u.system) / n);
  }
  return best;
}
