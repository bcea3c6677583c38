// The report: medians over the rounds per server and mode, the ratio tables
// (tokend ÷ raw Node, tokend ÷ nginx), tokend's own figures, and each target
// of issue 8 checked against this run.

import type { ColdBurst } from './coalesce.ts';
import type { HotPath } from './hot-path.ts';
import type { SealRate } from './seal-rate.ts';
import type { StartupResult } from './startup.ts';
import { median } from './startup.ts';
import { DIAGNOSTICS, MODES, fmt } from './throughput.ts';
import type { Sample } from './throughput.ts';
import { SEMI2 } from './servers.ts';
import type { ServerKind } from './servers.ts';

/** Medians over the rounds of one server in one mode. */
export interface Cell {
  readonly rounds: number;
  readonly rps: number;
  readonly rpsMin: number;
  readonly rpsMax: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuUs: number;
  readonly cpuUsMin: number;
  readonly cpuUsMax: number;
  readonly serverCores: number;
  readonly loaderCpu: number;
  readonly otherCores: number;
  readonly errors: number;
  readonly resumed: number | undefined;
}

export type Summary = Partial<Record<ServerKind, Record<string, Cell>>>;

/** One target of the issue, checked. */
export interface Target {
  readonly what: string;
  readonly value: string;
  readonly met: boolean;
}

export interface Report {
  readonly summary: Summary;
  readonly tokend: TokendFigures;
  readonly targets: readonly Target[];
}

/** tokend's own figures over the throughput rounds. */
export interface TokendFigures {
  /** Requests answered in all warm windows (keep-alive and new-connection modes) and the provider calls meanwhile. */
  readonly warmRequests: number;
  readonly warmProviderCalls: number;
  readonly providerCallsPer10k: number;
  readonly cacheHits: number;
  readonly rssMiB: { readonly min: number; readonly max: number };
}

/** Medians per server and mode. */
export function summarize(samples: readonly Sample[]): Summary {
  const summary: Summary = {};
  const groups = new Map<string, Sample[]>();
  for (const s of samples) groups.set(`${s.server}|${s.mode}`, [...(groups.get(`${s.server}|${s.mode}`) ?? []), s]);
  for (const [key, group] of groups) {
    const [server, mode] = key.split('|') as [ServerKind, string];
    const m = (f: (s: Sample) => number) => median(group.map(f));
    const rps = group.map((s) => s.window.rps);
    const cpu = group.map((s) => s.window.cpuUsPerRequest);
    (summary[server] ??= {})[mode] = {
      rounds: group.length,
      rps: median(rps),
      rpsMin: Math.min(...rps),
      rpsMax: Math.max(...rps),
      p50: m((s) => s.window.p50),
      p99: m((s) => s.window.p99),
      cpuUs: median(cpu),
      cpuUsMin: Math.min(...cpu),
      cpuUsMax: Math.max(...cpu),
      serverCores: m((s) => s.window.serverCores),
      loaderCpu: m((s) => s.window.loaderCpu),
      otherCores: m((s) => s.window.otherCores),
      errors: group.reduce((a, s) => a + s.window.errors, 0),
      resumed: group[0]?.window.resumed === undefined ? undefined : m((s) => s.window.resumed as number),
    };
  }
  return summary;
}

/** tokend's counters summed over the headline windows. */
export function tokendFigures(samples: readonly Sample[]): TokendFigures {
  const mine = samples.filter((s) => s.server === 'tokend' && s.tokend);
  // Every mode after the first request of a run is warm; the counters span warm-up and window alike.
  const warmRequests = mine.reduce((a, s) => a + (s.tokend?.counters.requests ?? 0), 0);
  const warmProviderCalls = mine.reduce((a, s) => a + (s.tokend?.counters.kmsCalls ?? 0), 0);
  const rss = mine.flatMap((s) => [s.tokend?.rssBeforeMiB ?? Number.NaN, s.tokend?.rssAfterMiB ?? Number.NaN]).filter(Number.isFinite);
  return {
    warmRequests,
    warmProviderCalls,
    providerCallsPer10k: warmRequests > 0 ? (warmProviderCalls / warmRequests) * 10_000 : Number.NaN,
    cacheHits: mine.reduce((a, s) => a + (s.tokend?.counters.cacheHits ?? 0), 0),
    rssMiB: { min: Math.min(...rss), max: Math.max(...rss) },
  };
}

/** Checks every target of the issue against this run. */
export function checkTargets(summary: Summary, tokend: TokendFigures, startup: readonly StartupResult[], bursts: readonly ColdBurst[]): Target[] {
  const t = summary.tokend ?? {};
  const raw = summary['raw-node'] ?? {};
  const ngx = summary.nginx ?? {};
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : Number.NaN);
  const targets: Target[] = [];
  const add = (what: string, value: number, met: boolean, unit = '×') => targets.push({ what, value: `${fmt(value, 2)}${unit}`, met });
  for (const mode of ['keepalive-1', 'keepalive-64']) {
    const r = ratio(t[mode]?.rps, raw[mode]?.rps);
    add(`${mode}: throughput ≥ 0.85× raw Node`, r, r >= 0.85);
    const n = ratio(t[mode]?.rps, ngx[mode]?.rps);
    add(`${mode}: throughput ≥ 0.6× nginx`, n, n >= 0.6);
  }
  for (const mode of ['keepalive-1', 'keepalive-64', 'keepalive-2k']) {
    const c = ratio(t[mode]?.cpuUs, raw[mode]?.cpuUs);
    add(`${mode}: server CPU per request ≤ 1.2× raw Node`, c, c <= 1.2);
  }
  const nc = ratio(t['new-tls']?.rps, raw['new-tls']?.rps);
  add('new-tls: throughput ≥ 0.95× raw Node', nc, nc >= 0.95);
  const resumed = t['new-tls-resumed']?.resumed ?? Number.NaN;
  targets.push({ what: 'new-tls-resumed: session resumption working (share of resumed connections)', value: `${fmt(resumed * 100, 1)}%`, met: resumed >= 0.99 });
  targets.push({
    what: '0 provider calls per 10,000 warm requests',
    value: `${fmt(tokend.providerCallsPer10k, 2)} (${tokend.warmProviderCalls} calls in ${tokend.warmRequests} requests)`,
    met: tokend.warmProviderCalls === 0 && tokend.warmRequests >= 10_000,
  });
  for (const b of bursts) {
    targets.push({
      what: `100 concurrent cold requests → 1 provider call (${b.provider})`,
      value: `${b.counters.kmsCalls} call(s), ${b.counters.coalesced} coalesced, ${b.counters.cacheHits} hits, ${b.ok}/${b.requests} ok${b.kmsDecryptCalls === undefined ? '' : `, KMS saw ${b.kmsDecryptCalls} Decrypt`}`,
      met: b.counters.kmsCalls === 1 && b.ok === b.requests && (b.kmsDecryptCalls ?? 1) === 1,
    });
  }
  const s1000 = startup.find((s) => s.kind === 'tokend' && s.tokens === 1_000);
  if (s1000) targets.push({ what: 'start to READY ≤ 300 ms with 1,000 sealed tokens', value: `${fmt(s1000.medianReadyMs, 0)} ms`, met: s1000.medianReadyMs <= 300 });
  const s10k = startup.find((s) => s.kind === 'tokend' && s.tokens === 10_000);
  if (s10k) {
    const rss = Math.max(s10k.rssAtReadyMiB, s10k.rssAfterServingAllMiB);
    targets.push({ what: 'RSS ≤ 100 MB with 10,000 sealed tokens (at READY)', value: `${fmt(s10k.rssAtReadyMiB * 1.048576, 1)} MB`, met: s10k.rssAtReadyMiB * 1.048576 <= 100 });
    targets.push({ what: 'RSS ≤ 100 MB with 10,000 sealed tokens (after serving each once)', value: `${fmt(rss * 1.048576, 1)} MB`, met: rss * 1.048576 <= 100 });
  }
  return targets;
}

/** The text report. */
export function render(
  report: Report,
  extra: { startup: readonly StartupResult[]; bursts: readonly ColdBurst[]; seal: SealRate | undefined; hot: HotPath | undefined; header: string; disturbed: readonly string[]; windows: number },
): string {
  const { summary } = report;
  const out: string[] = [extra.header, ''];
  const get = (server: ServerKind, mode: string) => summary[server]?.[mode];
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? fmt(a / b, 2) : '-');

  out.push('Throughput (requests/s, median of rounds; min–max in brackets) and tokend ratios');
  out.push(
    table(
      ['mode', 'tokend', 'raw Node', 'nginx', 'tokend÷raw', 'tokend÷nginx'],
      MODES.map((m) => {
        const [t, r, n] = (['tokend', 'raw-node', 'nginx'] as const).map((s) => get(s, m.id));
        return [m.label, spread(t), spread(r), spread(n), ratio(t?.rps, r?.rps), ratio(t?.rps, n?.rps)];
      }),
    ),
  );
  out.push('', 'Server CPU per request (µs, from /proc, the server process tree; min–max in brackets) and ratios');
  out.push(
    table(
      ['mode', 'tokend', 'raw Node', 'nginx', 'tokend÷raw', 'tokend÷nginx'],
      MODES.map((m) => {
        const [t, r, n] = (['tokend', 'raw-node', 'nginx'] as const).map((s) => get(s, m.id));
        return [m.label, cpuSpread(t), cpuSpread(r), cpuSpread(n), ratio(t?.cpuUs, r?.cpuUs), ratio(t?.cpuUs, n?.cpuUs)];
      }),
    ),
  );
  out.push('', 'Latency p50 / p99 (ms), and how busy the machine was (cores: server / loader / everything else)');
  out.push(
    table(
      ['mode', 'tokend', 'raw Node', 'nginx', 'tokend cores', 'raw cores', 'nginx cores'],
      MODES.map((m) => {
        const cells = (['tokend', 'raw-node', 'nginx'] as const).map((s) => get(s, m.id));
        return [m.label, ...cells.map((c) => (c ? `${fmt(c.p50, 2)} / ${fmt(c.p99, 2)}` : '-')), ...cells.map((c) => (c ? `${fmt(c.serverCores, 2)}/${fmt(c.loaderCpu, 2)}/${fmt(c.otherCores, 2)}` : '-'))];
      }),
    ),
  );
  out.push('', `Diagnostics (not headline): tokend-warn = logging at warn (no audit lines); tokend-semi2 = NODE_OPTIONS=${SEMI2}; nginx-auto = worker_processes auto`);
  out.push(
    table(
      ['server', 'mode', 'req/s', 'CPU µs/req', 'p50 / p99 ms', 'vs headline req/s', 'vs headline CPU'],
      DIAGNOSTICS.flatMap((d) =>
        d.modes.map((mode) => {
          const c = get(d.kind, mode);
          const base = get(d.kind.startsWith('tokend') ? 'tokend' : 'nginx', mode);
          return [d.kind, mode, spread(c), cpuSpread(c), c ? `${fmt(c.p50, 2)} / ${fmt(c.p99, 2)}` : '-', ratio(c?.rps, base?.rps), ratio(c?.cpuUs, base?.cpuUs)];
        }),
      ),
    ),
  );
  out.push(
    '',
    extra.disturbed.length === 0
      ? `Other work on the machine stayed under 0.25 cores in all ${extra.windows} windows.`
      : `Windows where other work on the machine still took more than 0.25 cores (after one re-measurement): ${extra.disturbed.length} of ${extra.windows}: ${extra.disturbed.join(', ')}`,
  );
  const errors = Object.entries(summary).flatMap(([server, modes]) => Object.entries(modes ?? {}).filter(([, c]) => c.errors > 0).map(([mode, c]) => `${server} ${mode}: ${c.errors} failed requests`));
  if (errors.length > 0) out.push('', `FAILED REQUESTS: ${errors.join('; ')}`);
  const resumed = (['tokend', 'raw-node', 'nginx'] as const).map((s) => `${s} ${fmt((get(s, 'new-tls-resumed')?.resumed ?? Number.NaN) * 100, 1)}%`);
  out.push('', `Session resumption (share of resumed connections in the resumption mode): ${resumed.join(', ')}`);

  const tf = report.tokend;
  out.push(
    '',
    `tokend over the headline rounds: ${tf.warmRequests} requests, ${tf.warmProviderCalls} provider calls (${fmt(tf.providerCallsPer10k, 2)} per 10,000), ${tf.cacheHits} cache hits; RSS ${fmt(tf.rssMiB.min, 1)}–${fmt(tf.rssMiB.max, 1)} MiB`,
  );
  if (extra.startup.length > 0) {
    out.push('', 'Start to READY (spawn → first completed mutual-TLS handshake) and RSS');
    out.push(
      table(
        ['tokend', 'sealed tokens', 'READY median', 'each start (ms)', 'RSS at READY', 'RSS after serving each once', 'serving each once'],
        extra.startup.map((s) => [s.kind, String(s.tokens), `${fmt(s.medianReadyMs, 0)} ms`, s.readyMs.map((x) => fmt(x, 0)).join(' '), `${fmt(s.rssAtReadyMiB, 1)} MiB`, `${fmt(s.rssAfterServingAllMiB, 1)} MiB`, `${fmt(s.serveAllSeconds, 2)} s`]),
      ),
    );
  }
  for (const b of extra.bursts) {
    out.push(
      `Cold burst (${b.provider}): ${b.ok}/${b.requests} ok in ${fmt(b.seconds * 1000, 0)} ms; provider calls ${b.counters.kmsCalls}, coalesced ${b.counters.coalesced}, hits ${b.counters.cacheHits}` +
        (b.kmsDecryptCalls === undefined ? '' : `; the KMS received ${b.kmsDecryptCalls} Decrypt call(s)`),
    );
  }
  if (extra.seal) {
    out.push(`Seal (keyfile provider, 64-byte token): ${fmt(extra.seal.envelopePerSecond, 0)}/s in memory, ${fmt(extra.seal.storePerSecond, 0)}/s written atomically (fsync), ${fmt(extra.seal.cliMs, 0)} ms per \`tokend seal\` process`);
  }
  if (extra.hot) {
    out.push(
      `Per-request pieces alone (CPU µs): decrypt with the cached token key ${fmt(extra.hot.decryptUs, 2)} (deriving that key, once per miss: ${fmt(extra.hot.deriveKeyUs, 2)}), audit line ${fmt(extra.hot.auditLineUs, 2)} (plain pino ${fmt(extra.hot.plainPinoLineUs, 2)}), two metric increments ${fmt(extra.hot.metricsUs, 2)}`,
    );
  }
  out.push('', 'Targets (issue 8)');
  out.push(table(['', 'target', 'this run'], report.targets.map((t) => [t.met ? 'met' : 'MISS', t.what, t.value]), 3));
  return out.join('\n');
}

function spread(c: Cell | undefined): string {
  return c ? `${fmt(c.rps, 0)} [${fmt(c.rpsMin, 0)}–${fmt(c.rpsMax, 0)}]` : '-';
}

function cpuSpread(c: Cell | undefined): string {
  return c ? `${fmt(c.cpuUs, 1)} [${fmt(c.cpuUsMin, 0)}–${fmt(c.cpuUsMax, 0)}]` : '-';
}

/** A plain-text table: the first `left` columns left-aligned, the others right-aligned. */
function table(head: readonly string[], rows: readonly (readonly string[])[], left = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => (i < left ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
