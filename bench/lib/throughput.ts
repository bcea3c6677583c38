// The throughput rounds: in each round every server is started, run through
// every mode, and stopped, one after another; the start order rotates between
// rounds so drift on the machine does not always favour the same server.

import type { LoadJob } from '../load.ts';
import { measure } from './measure.ts';
import type { Window } from './measure.ts';
import { delta, get, scrape } from './scrape.ts';
import type { TokendCounters } from './scrape.ts';
import { startServer } from './servers.ts';
import type { ServerKind } from './servers.ts';
import { TOKEN_BYTES, TOKEN_PATH } from './workspace.ts';
import type { Workspace } from './workspace.ts';

/** One way of asking for a token. */
export interface Mode {
  readonly id: string;
  readonly label: string;
  readonly kind: LoadJob['kind'];
  readonly concurrency: number;
  readonly resume?: boolean;
  /** Open loop at this many requests/s (every server keeps up): CPU per request compared at equal load. */
  readonly rate?: number;
}

export const MODES: readonly Mode[] = [
  { id: 'keepalive-1', label: 'keep-alive, 1 connection', kind: 'keepalive', concurrency: 1 },
  { id: 'keepalive-64', label: 'keep-alive, 64 connections', kind: 'keepalive', concurrency: 64 },
  { id: 'keepalive-2k', label: 'keep-alive, 16 connections, fixed 2,000 requests/s', kind: 'keepalive', concurrency: 16, rate: 2_000 },
  { id: 'new-tls', label: 'new TLS connection per request, full handshake (8 in flight)', kind: 'connect', concurrency: 8 },
  { id: 'new-tls-resumed', label: 'new TLS connection per request, session resumption (8 in flight)', kind: 'connect', concurrency: 8, resume: true },
  { id: 'curl', label: 'curl per request (4 in flight)', kind: 'curl', concurrency: 4 },
];

/** The headline servers, and diagnostics with the modes they run. */
export const HEADLINE: readonly ServerKind[] = ['tokend', 'raw-node', 'nginx'];
export const DIAGNOSTICS: readonly { readonly kind: ServerKind; readonly modes: readonly string[] }[] = [
  { kind: 'tokend-warn', modes: ['keepalive-1', 'keepalive-64', 'keepalive-2k', 'new-tls'] },
  { kind: 'tokend-semi2', modes: ['keepalive-64', 'keepalive-2k'] },
  { kind: 'nginx-auto', modes: ['keepalive-64', 'new-tls'] },
];

/**
 * A window is measured once more when other work on the machine took more
 * than OTHER_LIMIT cores during it (the less disturbed one is kept), at most
 * RETRY_BUDGET times per run so that a busy machine cannot stretch the run.
 */
const OTHER_LIMIT = 0.25;
const RETRY_BUDGET = 12;

/** One server in one mode in one round. */
export interface Sample {
  readonly round: number;
  readonly server: ServerKind;
  readonly mode: string;
  readonly window: Window;
  /** Windows discarded because other work on the machine disturbed them (the least disturbed one is kept). */
  readonly retries: number;
  /** tokend only: counter changes over the whole mode (warm-up included) and RSS around it. */
  readonly tokend?: { readonly counters: TokendCounters; readonly rssBeforeMiB: number; readonly rssAfterMiB: number };
}

export interface RoundOptions {
  readonly rounds: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly say: (line: string) => void;
}

/** Runs every round; returns every sample. */
export async function runRounds(ws: Workspace, options: RoundOptions): Promise<Sample[]> {
  const samples: Sample[] = [];
  let budget = RETRY_BUDGET;
  const plan: { kind: ServerKind; modes: readonly Mode[] }[] = [
    ...HEADLINE.map((kind) => ({ kind, modes: MODES })),
    ...DIAGNOSTICS.map((d) => ({ kind: d.kind, modes: MODES.filter((m) => d.modes.includes(m.id)) })),
  ];
  for (let round = 1; round <= options.rounds; round++) {
    const shift = (round - 1) % HEADLINE.length;
    const headline = plan.slice(0, HEADLINE.length);
    const order = [...headline.slice(shift), ...headline.slice(0, shift), ...plan.slice(HEADLINE.length)];
    for (const { kind, modes } of order) {
      const server = await startServer(ws, kind);
      try {
        // Every server must answer the token before it is measured; for tokend this also warms the data-key cache.
        const first = await get(server.port, TOKEN_PATH, ws.client);
        if (first.status !== 200 || first.body.length !== TOKEN_BYTES) throw new Error(`${kind} answered ${first.status} with ${first.body.length} bytes`);
        for (const mode of modes) {
          const isTokend = kind.startsWith('tokend');
          const before = isTokend ? await scrape(server.port, ws.admin) : undefined;
          const rssBeforeMiB = server.rssMiB();
          const job: LoadJob = {
            kind: mode.kind,
            host: '127.0.0.1',
            port: server.port,
            path: TOKEN_PATH,
            concurrency: mode.concurrency,
            resume: mode.resume ?? false,
            ...(mode.rate ? { rate: mode.rate } : {}),
            warmupMs: options.warmupMs,
            durationMs: options.durationMs,
            ...ws.client,
            bodyBytes: TOKEN_BYTES,
          };
          let window = await measure(job, () => server.cpu());
          let retries = 0;
          if (window.otherCores > OTHER_LIMIT && budget > 0) {
            budget -= 1;
            retries += 1;
            options.say(`  (other work took ${fmt(window.otherCores, 2)} cores during ${kind} ${mode.id}; measuring again)`);
            const again = await measure(job, () => server.cpu());
            if (again.otherCores < window.otherCores) window = again;
          }
          const rssAfterMiB = server.rssMiB();
          const sample: Sample = {
            round,
            server: kind,
            mode: mode.id,
            window,
            retries,
            ...(before ? { tokend: { counters: delta(before, await scrape(server.port, ws.admin)), rssBeforeMiB, rssAfterMiB } } : {}),
          };
          samples.push(sample);
          options.say(
            `round ${round} ${kind.padEnd(11)} ${mode.id.padEnd(16)} ${fmt(window.rps, 0).padStart(7)} req/s  p50 ${fmt(window.p50, 2)} ms  p99 ${fmt(window.p99, 2)} ms  ` +
              `${fmt(window.cpuUsPerRequest, 1)} µs CPU/req  server ${fmt(window.serverCores, 2)} cores, loader ${fmt(window.loaderCpu, 2)}, others ${fmt(window.otherCores, 2)}` +
              (window.errors > 0 ? `  ERRORS ${window.errors}: ${window.firstError}` : '') +
              (window.resumed !== undefined ? `  resumed ${fmt(window.resumed * 100, 0)}%` : ''),
          );
        }
      } finally {
        await server.stop();
      }
    }
  }
  return samples;
}

/** A number with `digits` decimals. */
export function fmt(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}
