// The daemon: build the serving state, listen, then live through reloads
// (SIGHUP: all-or-nothing), timers (ticket keys, cache sweep) and a graceful
// stop (abort signal from SIGTERM/SIGINT). Readiness is a small state machine
// — starting → ready ⇄ reloading → stopping — that drives systemd notifications.

import { randomBytes } from 'node:crypto';
import { loadConfig } from './config.js';
import type { Config, Env } from './config.js';
import { describeError } from './errors.js';
import { DataKeyCache } from './key-cache.js';
import { KEYFILE_WARNING } from './kms/keyfile.js';
import { Metrics } from './metrics.js';
import { createHandler } from './server/handler.js';
import { startListeners } from './server/listeners.js';
import type { Listeners } from './server/listeners.js';
import { createLogger, flushLogger } from './server/log.js';
import type { Logger } from './server/log.js';
import { buildState } from './server/state.js';
import type { ServingState, StateSources } from './server/state.js';
import { loadTlsMaterial, renewServerCertIfDue } from './pki/index.js';
import { runtimeWarnings } from './runtime.js';
import { createNotifier } from './systemd/notify.js';
import type { Notifier } from './systemd/notify.js';


export interface ServeOptions {
  readonly configPath: string;
  readonly env: Env;
  /** Aborted on SIGTERM/SIGINT: stop gracefully. */
  readonly signal: AbortSignal;
  readonly notifier?: Notifier;
  /** Where logs go (default: stdout). */
  readonly logger?: Logger;
  /** Test seams: TLS material and provider sources. */
  readonly sources?: Partial<StateSources>;
  /** Called once every listener accepts connections. */
  readonly onReady?: (daemon: Daemon) => void;
}

/** A running daemon, as seen by tests and benchmarks. */
export interface Daemon {
  readonly config: Config;
  readonly metrics: Metrics;
  readonly cache: DataKeyCache;
  readonly addresses: readonly string[];
  /** Reloads now; resolves true when the new state is in force. */
  reload(): Promise<boolean>;
  /** Internal PKI: renews the server certificate if due at `now` and reloads; true when it did. */
  renewServerCert(now?: Date): Promise<boolean>;
  state(): ServingState;
}

/**
 * Runs tokend until `signal` aborts. Resolves with the exit code (0 after a
 * graceful stop). Throws TokendError when the initial state cannot be built or
 * a listener cannot start.
 */
export async function serve(options: ServeOptions): Promise<number> {
  const config = await loadConfig(options.configPath, options.env);
  const log = options.logger ?? createLogger(config.logLevel);
  const notifier = options.notifier ?? createNotifier({});
  const metrics = defineMetrics(new Metrics());
  const sources: StateSources = { loadTls: (c) => loadTlsMaterial(c.pki), ...options.sources };
  const cache = new DataKeyCache({
    enabled: config.cache.enabled,
    ttlMs: config.cache.ttlSeconds * 1000,
    staleMs: config.cache.staleSeconds * 1000,
    maxEntries: config.cache.maxEntries,
  });

  // Internal PKI: a server certificate that is due (or missing) is renewed before anything is served.
  if (config.pki.mode === 'internal') {
    await renewServerCertIfDue(config.pki).catch((err: unknown) => log.warn({ msg: 'server certificate renewal failed at start', reason: describeError(err) }));
  }
  let state = await buildState(config, 1, sources);
  for (const w of runtimeWarnings()) log.warn({ msg: w });
  if (state.provider.name === 'keyfile') log.warn({ msg: KEYFILE_WARNING });
  for (const w of state.policy.warnings) log.warn({ msg: w });
  let listeners: Listeners;
  try {
    listeners = await startListeners(
      config.server,
      { state: () => state, handler: createHandler({ state: () => state, cache, metrics, log }), metrics, log },
      () => randomBytes(48),
    );
  } catch (err) {
    state.provider.close();
    throw err;
  }
  metrics.collect(() => {
    metrics.set('tokend_cache_hits_total', cache.stats.hits);
    metrics.set('tokend_cache_misses_total', cache.stats.misses);
    metrics.set('tokend_cache_stale_total', cache.stats.stale);
    metrics.set('tokend_cache_coalesced_total', cache.stats.coalesced);
    metrics.set('tokend_cache_entries', cache.stats.size);
    metrics.set('tokend_kms_calls_total', cache.stats.providerCalls);
    metrics.set('tokend_kms_errors_total', cache.stats.providerErrors);
    metrics.set('tokend_tokens', state.tokens.size);
    metrics.set('tokend_connections', listeners.connections());
    metrics.set('tokend_cert_expiry_timestamp_seconds', Math.floor(state.tls.certNotAfter.getTime() / 1000), { cert: 'server' });
  });

  const status = () =>
    `serving ${state.tokens.size} token(s) to ${new Set(state.policy.rules.flatMap((r) => r.identities)).size} identity pattern(s) via the ${state.provider.name} provider on ${listeners.addresses.join(', ')}`;

  // Reloads are serialized: a SIGHUP during a reload schedules one more afterwards.
  let reloading: Promise<boolean> | undefined;
  let again = false;
  const reloadOnce = async (): Promise<boolean> => {
    notifier.reloading();
    const previous = state;
    try {
      const fresh = await loadConfig(options.configPath, options.env);
      const changed = restartOnly(previous.config, fresh);
      if (changed.length > 0) log.warn({ msg: 'reload: these settings need a restart and keep their old values', settings: changed });
      const next = await buildState({ ...fresh, server: previous.config.server }, previous.generation + 1, sources);
      listeners.applyTls(next);
      state = next;
      setTimeout(() => previous.provider.close(), 30_000).unref(); // requests that started before the swap may still use it
      metrics.inc('tokend_reloads_total', { result: 'ok' });
      log.info({ msg: 'reloaded', generation: next.generation, tokens: next.tokens.size });
      for (const w of next.policy.warnings) log.warn({ msg: w });
      notifier.ready(status());
      return true;
    } catch (err) {
      metrics.inc('tokend_reloads_total', { result: 'failed' });
      log.error({ msg: 'reload failed; still serving the previous state', reason: describeError(err) });
      notifier.ready(`reload failed (${describeError(err)}); ${status()}`);
      return false;
    }
  };
  const reload = async (): Promise<boolean> => {
    if (reloading) {
      again = true;
      return reloading;
    }
    reloading = (async () => {
      let ok = await reloadOnce();
      while (again) {
        again = false;
        ok = await reloadOnce();
      }
      return ok;
    })().finally(() => {
      reloading = undefined;
    });
    return reloading;
  };
  const onHup = () => void reload();
  process.on('SIGHUP', onHup);

  /** Renews the internal server certificate when due, then reloads so new connections use it; live ones continue. */
  const renewServerCert = async (now: Date = new Date()): Promise<boolean> => {
    const pki = state.config.pki;
    if (pki.mode !== 'internal') return false;
    try {
      if (!(await renewServerCertIfDue(pki, now))) return false;
    } catch (err) {
      metrics.inc('tokend_cert_renewals_total', { result: 'failed' });
      log.error({ msg: 'server certificate renewal failed; will retry', reason: describeError(err) });
      return false;
    }
    metrics.inc('tokend_cert_renewals_total', { result: 'ok' });
    log.info({ msg: 'server certificate renewed' });
    return reload();
  };

  const timers = [
    setInterval(() => listeners.rotateTicketKeys(), config.server.ticketRotationSeconds * 1000),
    setInterval(() => cache.sweep(), 30_000),
    setInterval(() => void renewServerCert(), renewalCheckMs(config)),
  ];
  for (const t of timers) t.unref();

  log.info({ msg: 'ready', addresses: listeners.addresses, tokens: state.tokens.size, provider: state.provider.name, systemd: notifier.enabled, watchdogMs: notifier.watchdogIntervalMs });
  notifier.ready(status());
  options.onReady?.({ config, metrics, cache, addresses: listeners.addresses, reload, renewServerCert, state: () => state });

  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    else options.signal.addEventListener('abort', () => resolve(), { once: true });
  });

  notifier.stopping();
  log.info({ msg: 'stopping', connections: listeners.connections() });
  process.off('SIGHUP', onHup);
  for (const t of timers) clearInterval(t);
  await reloading;
  await listeners.close(config.server.shutdownGraceMs);
  cache.clear();
  state.provider.close();
  log.info({ msg: 'stopped' });
  await notifier.close();
  flushLogger(log);
  return 0;
}

/** How often to look at the server certificate: a quarter of its renewal window, between 10 s and 1 h. */
function renewalCheckMs(config: Config): number {
  const windowMs = config.pki.serverTtlDays * 86_400_000 * config.pki.renewBeforeFraction;
  return Math.min(3_600_000, Math.max(10_000, Math.floor(windowMs / 4)));
}

/** Settings a reload cannot change (the listeners are bound once). */
function restartOnly(before: Config, after: Config): string[] {
  return JSON.stringify(before.server) === JSON.stringify(after.server) ? [] : ['server'];
}

function defineMetrics(m: Metrics): Metrics {
  m.define('tokend_requests_total', 'counter', 'HTTP requests by route and status');
  m.define('tokend_decisions_total', 'counter', 'policy decisions by result');
  m.define('tokend_kms_calls_total', 'counter', 'calls to the key provider (KMS)');
  m.define('tokend_kms_errors_total', 'counter', 'failed calls to the key provider');
  m.define('tokend_cache_hits_total', 'counter', 'data-key cache hits');
  m.define('tokend_cache_misses_total', 'counter', 'data-key cache misses');
  m.define('tokend_cache_stale_total', 'counter', 'requests served from a stale cache entry while KMS was unavailable');
  m.define('tokend_cache_coalesced_total', 'counter', 'misses that joined a KMS call already in flight');
  m.define('tokend_cache_entries', 'gauge', 'data keys in the cache');
  m.define('tokend_tokens', 'gauge', 'sealed tokens loaded');
  m.define('tokend_connections', 'gauge', 'open TLS connections');
  m.define('tokend_reloads_total', 'counter', 'reloads by result');
  m.define('tokend_tls_refused_total', 'counter', 'TLS connections refused, by reason');
  m.define('tokend_http_refused_total', 'counter', 'malformed HTTP requests refused by the parser');
  m.define('tokend_cert_renewals_total', 'counter', 'server certificate renewals by result');
  m.define('tokend_cert_expiry_timestamp_seconds', 'gauge', 'not-after time of the server certificate (unix seconds)');
  return m;
}
