// `npm run bench`: where tokend stands against the raw Node https server (the
// runtime's ceiling) and nginx, on this machine, in one run. Prints the ratio
// table and writes every figure to bench/results/<timestamp>.json.
//   node bench/run.ts [--rounds N] [--seconds S] [--quick] [--keep]
//   node bench/run.ts --combine a.json --combine b.json …
// --quick: one short round and fewer starts (a smoke test, not a result).
// --keep: leave the temp workspace (PKI, configs, server logs) for a look.
// --combine: no measuring; the tables over the windows of earlier runs where
//   other work on the machine took at most 0.25 cores (for a busy machine).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { coldBurstAws, coldBurstKeyfile } from './lib/coalesce.ts';
import type { ColdBurst } from './lib/coalesce.ts';
import { measureHotPath } from './lib/hot-path.ts';
import type { HotPath } from './lib/hot-path.ts';
import { ensureNginx } from './lib/nginx.ts';
import { checkTargets, render, summarize, tokendFigures } from './lib/report.ts';
import { measureSealRate } from './lib/seal-rate.ts';
import type { SealRate } from './lib/seal-rate.ts';
import { measureStartup } from './lib/startup.ts';
import type { StartupResult } from './lib/startup.ts';
import type { ServerKind } from './lib/servers.ts';
import { runRounds } from './lib/throughput.ts';
import type { Sample } from './lib/throughput.ts';
import { ROOT, makeWorkspace } from './lib/workspace.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    combine: { type: 'string', multiple: true },
  },
});
if (values.combine) {
  process.stdout.write(`${combine(values.combine)}\n`);
  process.exit(0);
}
const quick = values.quick === true;
const rounds = quick ? 1 : Number(values.rounds);
const durationMs = (quick ? 1 : Number(values.seconds)) * 1000;
const say = (line: string) => process.stderr.write(`${line}\n`);
const began = performance.now();

const nginxVersion = ensureNginx(say);
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: execFileSync('uname', ['-sr'], { encoding: 'utf8' }).trim(),
  node: process.version,
  nodeOpenssl: process.versions.openssl,
  nginx: nginxVersion,
  systemOpenssl: execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim(),
  loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  date: new Date().toISOString(),
};
say(`machine: ${JSON.stringify(machine)}`);

const ws = await makeWorkspace();
say(`workspace ${ws.dir}`);
try {
  say('per-request pieces alone…');
  const hot = await measureHotPath(ws);
  say('throughput rounds…');
  const samples = await runRounds(ws, { rounds, warmupMs: quick ? 300 : 1000, durationMs, say });
  say('start to READY…');
  const startup = [];
  const plan: [number, number, ServerKind][] = quick
    ? [[1, 2, 'tokend'], [1_000, 2, 'tokend'], [10_000, 1, 'tokend'], [10_000, 1, 'tokend-semi2']]
    : [[1, 5, 'tokend'], [1_000, 5, 'tokend'], [10_000, 3, 'tokend'], [10_000, 3, 'tokend-semi2']];
  for (const [count, starts, kind] of plan) {
    const s = await measureStartup(ws, count, starts, kind);
    say(`  ${kind} ${count} tokens: READY ${s.readyMs.map((x) => x.toFixed(0)).join(' ')} ms; RSS ${s.rssAtReadyMiB.toFixed(1)} MiB, after serving each once ${s.rssAfterServingAllMiB.toFixed(1)} MiB`);
    startup.push(s);
  }
  say('cold bursts…');
  const bursts = [await coldBurstKeyfile(ws), await coldBurstAws(ws, 50)];
  say('seal rate…');
  const seal = await measureSealRate(ws, quick ? 0.5 : 2, quick ? 2 : 5);

  const summary = summarize(samples);
  const tokend = tokendFigures(samples);
  const targets = checkTargets(summary, tokend, startup, bursts);
  const header =
    `tokend benchmark — ${machine.date}\n` +
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}; load average at start ${machine.loadAverageAtStart.join(' ')}\n` +
    `software: Node ${machine.node} (OpenSSL ${machine.nodeOpenssl}), nginx ${machine.nginx} (${machine.systemOpenssl})\n` +
    `method: ${rounds} round(s) × ${durationMs / 1000} s per mode after ${quick ? 0.3 : 1} s warm-up; servers one after another, start order rotating; medians`;
  const disturbed = samples.filter((s) => s.window.otherCores > 0.25).map((s) => `${s.server} ${s.mode} (round ${s.round}, ${s.window.otherCores.toFixed(2)})`);
  const text = render({ summary, tokend, targets }, { startup, bursts, seal, hot, header, disturbed, windows: samples.length });
  process.stdout.write(`${text}\n`);

  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${machine.date.replace(/[:.]/g, '-')}.json`);
  const seconds = (performance.now() - began) / 1000;
  writeFileSync(file, `${JSON.stringify({ machine, options: { rounds, durationMs, quick }, seconds, summary, tokend, targets, startup, bursts, seal, hot, samples }, null, 2)}\n`);
  say(`wrote ${file} (${seconds.toFixed(0)} s)`);
} finally {
  if (!values.keep) rmSync(ws.dir, { recursive: true, force: true });
}

/** The report over the undisturbed windows of earlier runs (startup, bursts, seal and pieces from the last file). */
function combine(files: readonly string[]): string {
  const docs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as ResultFile);
  const all = docs.flatMap((d) => d.samples);
  const kept: Sample[] = [];
  for (const key of new Set(all.map((s) => `${s.server}|${s.mode}`))) {
    const group = all.filter((s) => `${s.server}|${s.mode}` === key);
    const quiet = group.filter((s) => s.window.otherCores <= 0.25);
    kept.push(...(quiet.length > 0 ? quiet : [group.reduce((a, b) => (a.window.otherCores <= b.window.otherCores ? a : b))]));
  }
  const last = docs[docs.length - 1] as ResultFile;
  const summary = summarize(kept);
  const tokend = tokendFigures(kept);
  const targets = checkTargets(summary, tokend, last.startup, last.bursts);
  const m = last.machine;
  const header =
    `tokend benchmark — ${files.length} runs combined (${docs.map((d) => d.machine.date).join(', ')})\n` +
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.kernel}\n` +
    `software: Node ${m.node} (OpenSSL ${m.nodeOpenssl}), nginx ${m.nginx} (${m.systemOpenssl})\n` +
    `method: every window of these runs where other work on the machine took at most 0.25 cores (${kept.length} of ${all.length}; a server and mode with none keeps its least disturbed window); medians over them`;
  const disturbed = kept.filter((s) => s.window.otherCores > 0.25).map((s) => `${s.server} ${s.mode} (${s.window.otherCores.toFixed(2)})`);
  return render({ summary, tokend, targets }, { startup: last.startup, bursts: last.bursts, seal: last.seal, hot: last.hot, header, disturbed, windows: kept.length });
}

/** What a results file holds (the parts combine reads). */
interface ResultFile {
  readonly machine: { date: string; cpu: string; cores: number; memoryGiB: number; kernel: string; node: string; nodeOpenssl: string; nginx: string; systemOpenssl: string };
  readonly samples: Sample[];
  readonly startup: StartupResult[];
  readonly bursts: ColdBurst[];
  readonly seal: SealRate;
  readonly hot: HotPath;
}
