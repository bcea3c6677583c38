// `npm run soak -- --minutes N`: tokend under sustained, mixed, realistic load.
// A real `tokend serve` (the built binary) in a fresh dev directory; keep-alive,
// resumed and full-handshake clients reading random tokens as random identities
// (allowed and denied, and the odd missing or invalid name); a reload every
// --reload-every seconds and a `tokend cert renew` of an identity in use every
// --renew-every seconds (clients then read the new bundle files). Every few
// seconds: requests, unexpected answers, p99, RSS and open file descriptors of
// the daemon. At the end: SIGTERM, and every captured log and CLI output is
// searched for every token value. Exits 1 when anything unexpected happened,
// when RSS (after warm-up) leaves ±10% of its median, or descriptors other than
// sockets change (sockets come and go with the clients, within a bound).
// Run by Node directly (type stripping): node scripts/soak.ts --minutes 10 [--json] [--node PATH]

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { percentile, startLoad } from '../test/support/load.ts';
import type { Target } from '../test/support/load.ts';
import { leakForms, recordOutput, watchSecret } from '../test/support/leak-watch.ts';
import { startServeProcess } from '../test/support/serve-process.ts';

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    node: { type: 'string' },
    json: { type: 'boolean', default: false },
    'keep-alive': { type: 'string', default: '8' },
    fresh: { type: 'string', default: '2' },
    full: { type: 'string', default: '1' },
    'reload-every': { type: 'string', default: '15' },
    'renew-every': { type: 'string', default: '30' },
    'sample-every': { type: 'string', default: '5' },
    'no-rss-check': { type: 'boolean', default: false },
  },
});
const seconds = opts.seconds !== undefined ? Number(opts.seconds) : Number(opts.minutes ?? 1) * 60;
if (!(seconds > 0)) throw new Error('--minutes or --seconds must be a positive number');
const BIN = fileURLToPath(new URL('../bin/tokend', import.meta.url));
const node = opts.node ?? process.execPath;
const say = (line: string) => {
  if (!opts.json) process.stdout.write(`${line}\n`);
};

const root = mkdtempSync(join(tmpdir(), 'tokend-soak-'));
const captured: { label: string; text: Buffer }[] = [];
/** Runs the real CLI (with this Node); its output is kept for the leak scan. */
function cli(args: string[], input?: Buffer): string {
  const out = execFileSync(process.execPath, [BIN, ...args, '--dir', dir], { input: input ?? '', env: { ...process.env, TOKEND_CONFIG: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  captured.push({ label: `cli ${args.slice(0, 2).join(' ')}`, text: out });
  recordOutput(`soak-cli-${args.slice(0, 2).join('-')}`, out); // for the test suite's own scan, when run inside it
  return out.toString();
}
const dir = join(root, 'dev');

try {
  // --- a dev directory: 30 tokens, four identities, a policy where some reads are denied -------
  cli(['init']);
  const tokens = Array.from({ length: 30 }, (_, i) => `tok-${String(i).padStart(2, '0')}`);
  const values = new Map(tokens.map((t) => [t, Buffer.from(`soak-${t}-${randomBytes(12).toString('hex')}`)]));
  watchSecret(...values.values());
  for (const [t, v] of values) cli(['seal', t], v);
  const identities = ['svc-a', 'svc-b', 'svc-c'];
  for (const id of identities) cli(['cert', 'issue', id]);
  const config = JSON.parse(readFileSync(join(dir, 'tokend.json'), 'utf8'));
  config.server.listen = ['127.0.0.1:0'];
  config.cache = { ttlSeconds: 5, staleSeconds: 60 }; // short: data keys are unwrapped again and again
  writeFileSync(join(dir, 'tokend.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  const allowed: Record<string, (t: string) => boolean> = {
    demo: () => true,
    'svc-a': (t) => Number(t.slice(4)) < 10,
    'svc-b': (t) => Number(t.slice(4)) >= 10 && Number(t.slice(4)) < 20,
    'svc-c': () => false,
  };
  let policyGeneration = 0;
  const writePolicy = () => {
    // The rules for these identities never change; an unrelated rule comes and goes with each reload.
    const rules = [
      { identities: ['demo'], tokens: ['tok-*'] },
      { identities: ['svc-a'], tokens: tokens.slice(0, 10) },
      { identities: ['svc-b'], tokens: tokens.slice(10, 20) },
      ...(policyGeneration % 2 === 1 ? [{ identities: [`rotating-${policyGeneration}`], tokens: ['tok-00'] }] : []),
    ];
    const path = join(dir, 'policy.json');
    writeFileSync(`${path}.new`, `${JSON.stringify({ rules }, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${path}.new`, path); // atomically, as tooling should
    policyGeneration += 1;
  };
  writePolicy();

  // --- the daemon and the clients ------------------------------------------------------------
  const logFile = join(root, 'serve.log');
  const daemon = await startServeProcess(join(dir, 'tokend.json'), { node, logFile });
  const bundles = Object.fromEntries(['demo', ...identities].map((id) => [id, join(dir, 'pki', 'clients', id)]));
  const next = (): Target => {
    const id = (['demo', ...identities] as const)[Math.floor(Math.random() * 4)] as string;
    const roll = Math.random();
    if (roll < 0.01) return { path: '/v1/tokens/NOT..VALID', bundle: bundles[id] as string, status: 400 };
    if (roll < 0.02 && id === 'demo') return { path: '/v1/tokens/tok-missing', bundle: bundles[id] as string, status: 404 };
    const t = tokens[Math.floor(Math.random() * tokens.length)] as string;
    const ok = (allowed[id] as (t: string) => boolean)(t);
    return { path: `/v1/tokens/${t}`, bundle: bundles[id] as string, status: ok ? 200 : 403, ...(ok ? { body: (values.get(t) as Buffer).toString() } : {}) };
  };
  const load = startLoad({ url: daemon.url, next, keepAlive: Number(opts['keep-alive']), fresh: Number(opts.fresh), full: Number(opts.full) });
  say(`soak: ${seconds} s against ${daemon.url} (pid ${daemon.pid}, ${node === process.execPath ? `node ${process.version}` : node}); keep-alive ${opts['keep-alive']}, resumed ${opts.fresh}, full-handshake ${opts.full} clients`);

  const started = performance.now();
  const samples: { t: number; requests: number; unexpected: number; p99: number; rssMb: number; fds: number; sockets: number; otherFds: number }[] = [];
  let reloads = 0;
  let renewals = 0;
  let lastReload = started;
  let lastRenew = started;
  let lastSample = started;
  let renewTurn = 0;
  while (performance.now() - started < seconds * 1000) {
    await new Promise((r) => setTimeout(r, 250));
    const now = performance.now();
    if (now - lastReload >= Number(opts['reload-every']) * 1000) {
      writePolicy();
      daemon.child.kill('SIGHUP');
      reloads += 1;
      lastReload = now;
    }
    if (now - lastRenew >= Number(opts['renew-every']) * 1000) {
      cli(['cert', 'renew', identities[renewTurn++ % identities.length] as string]);
      load.refreshBundles();
      renewals += 1;
      lastRenew = now;
    }
    if (now - lastSample >= Number(opts['sample-every']) * 1000) {
      const window = load.stats.latencies.splice(0);
      const fd = await daemon.fds();
      const sample = { t: Math.round((now - started) / 1000), requests: load.stats.ok + load.stats.unexpected, unexpected: load.stats.unexpected, p99: percentile(window, 99), rssMb: (await daemon.rss()) / 1048576, fds: fd.total, sockets: fd.sockets, otherFds: fd.other };
      samples.push(sample);
      say(`  t=${String(sample.t).padStart(4)}s  requests ${String(sample.requests).padStart(8)}  unexpected ${sample.unexpected}  p99 ${sample.p99.toFixed(1)} ms  rss ${sample.rssMb.toFixed(1)} MB  fds ${sample.fds} (${sample.sockets} sockets, ${sample.otherFds} other)`);
      lastSample = now;
    }
  }
  const latencies = load.stats.latencies.splice(0);
  await load.stop();
  const exitCode = await daemon.stop();
  captured.push({ label: 'daemon stderr', text: Buffer.from(daemon.stderr()) });
  if (process.env.TOKEND_LEAK_DIR) recordOutput('soak-serve', readFileSync(logFile)); // inside npm test: the suite's own scan too

  // --- the verdict ------------------------------------------------------------------------------
  const logs = daemon.logs();
  const failedReloads = logs.filter((l) => String(l.msg).startsWith('reload failed')).length;
  const appliedReloads = logs.filter((l) => l.msg === 'reloaded').length;
  const warm = samples.filter((s) => s.t >= Math.min(60, seconds * 0.2));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const rssMedian = median(warm.map((s) => s.rssMb));
  const rssDeviation = warm.length === 0 ? 0 : Math.max(...warm.map((s) => Math.abs(s.rssMb - rssMedian) / rssMedian));
  // Sockets come and go with the clients (a keep-alive client holds one per identity); every other descriptor must stay put.
  const files = warm.map((s) => s.otherFds);
  const sockets = warm.map((s) => s.sockets);
  const maxSockets = Number(opts['keep-alive']) * 4 + Number(opts.fresh) + Number(opts.full) + 8;
  const fdDrift = files.length === 0 ? 0 : Math.max(...files) - Math.min(...files);
  const fdsFlat = fdDrift <= 2 && (sockets.length === 0 || Math.max(...sockets) <= maxSockets);
  const leaks: string[] = [];
  const patterns = [...values].flatMap(([t, v]) => leakForms(v).map((f) => ({ ...f, token: t })));
  for (const { token, form, text } of patterns) for (const c of captured) if (c.text.includes(Buffer.from(text))) leaks.push(`${c.label}: ${token} (${form})`);
  // The daemon's whole log (every audit line) is on disk: the real grep reads it.
  writeFileSync(join(root, 'patterns'), `${patterns.map((p) => p.text).join('\n')}\n`, { mode: 0o600 });
  try {
    const found = execFileSync('grep', ['-F', '-a', '-o', '-f', join(root, 'patterns'), logFile], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    for (const hit of new Set(found.split('\n').filter(Boolean))) leaks.push(`serve log: ${patterns.find((p) => p.text === hit)?.token ?? '?'} (${patterns.find((p) => p.text === hit)?.form ?? '?'})`);
  } catch (err) {
    if ((err as { status?: number }).status !== 1) throw err; // 1: no match
  }
  const logBytes = statSync(logFile).size;
  const total = load.stats.ok + load.stats.unexpected;
  const allLatencies = samples.length > 0 ? [] : latencies;
  const report = {
    seconds,
    node: node === process.execPath ? process.version : node,
    requests: total,
    requestsPerSecond: Math.round(total / seconds),
    unexpected: load.stats.unexpected,
    unexpectedSamples: load.stats.samples,
    p99Ms: Math.max(0, ...samples.map((s) => s.p99), percentile(allLatencies, 99)),
    p99MedianMs: median(samples.map((s) => s.p99)),
    reloads: { sent: reloads, applied: appliedReloads, failed: failedReloads },
    renewals,
    rssMb: { first: samples[0]?.rssMb ?? 0, warmMedian: rssMedian, warmMin: Math.min(...warm.map((s) => s.rssMb)), warmMax: Math.max(...warm.map((s) => s.rssMb)), maxDeviation: rssDeviation },
    fds: { filesMin: Math.min(...files), filesMax: Math.max(...files), socketsMax: Math.max(...sockets), flat: fdsFlat },
    exitCode,
    leaks: leaks.length,
    logMb: Math.round(logBytes / 1e5) / 10,
    samples,
  };
  const problems = [
    ...(report.unexpected > 0 ? [`${report.unexpected} unexpected answers`] : []),
    ...(failedReloads > 0 ? [`${failedReloads} failed reloads`] : []),
    ...(exitCode !== 0 ? [`serve exited with ${exitCode}`] : []),
    ...(leaks.length > 0 ? [`token values in output: ${leaks.join('; ')}`] : []),
    ...(!fdsFlat ? ['file descriptors are not flat'] : []),
    ...(!opts['no-rss-check'] && rssDeviation > 0.1 ? [`RSS left ±10% of its median after warm-up (max deviation ${(rssDeviation * 100).toFixed(1)}%)`] : []),
  ];
  if (opts.json) process.stdout.write(`${JSON.stringify({ ...report, ok: problems.length === 0, problems }, null, 2)}\n`);
  else {
    say(`soak: ${total} requests (${report.requestsPerSecond}/s), ${report.unexpected} unexpected, p99 (worst 5-s window) ${report.p99Ms.toFixed(1)} ms, median window p99 ${report.p99MedianMs.toFixed(1)} ms`);
    say(`soak: reloads ${reloads} sent / ${appliedReloads} applied / ${failedReloads} failed; renewals ${renewals}`);
    say(`soak: RSS after warm-up ${report.rssMb.warmMin.toFixed(1)}–${report.rssMb.warmMax.toFixed(1)} MB (median ${rssMedian.toFixed(1)}, max deviation ${(rssDeviation * 100).toFixed(1)}%); non-socket fds ${report.fds.filesMin}–${report.fds.filesMax}, sockets at most ${report.fds.socketsMax}`);
    say(`soak: leak scan ${values.size} values × ${captured.length} CLI outputs and the ${(logBytes / 1e6).toFixed(0)} MB serve log: ${leaks.length} hit(s); serve exit ${exitCode}`);
    say(problems.length === 0 ? 'soak: OK' : `soak: FAILED: ${problems.join('; ')}`);
  }
  process.exitCode = problems.length === 0 ? 0 : 1;
} finally {
  rmSync(root, { recursive: true, force: true });
}
