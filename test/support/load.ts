// A small mTLS load generator for reliability tests and the soak: keep-alive
// clients and new-connection clients hammering a tokend, counting every answer
// and every failure, with latencies. Plain erasable TypeScript (the soak script
// runs it with Node's type stripping).

import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';

/** What one request should get. */
export interface Target {
  readonly path: string;
  /** The bundle directory of the identity to use. */
  readonly bundle: string;
  readonly status: number;
  /** The exact body expected with a 200, if any. */
  readonly body?: string;
}

export interface LoadStats {
  ok: number;
  /** Answers other than expected (wrong status or body), connection errors, timeouts. */
  unexpected: number;
  /** The first few unexpected outcomes, for the report (never a body). */
  readonly samples: string[];
  /** Milliseconds per request (reset by the caller when it wants a window). */
  latencies: number[];
}

export interface LoadOptions {
  readonly url: string;
  /** Picks the next request. */
  readonly next: () => Target;
  /** Clients that reuse one connection each. */
  readonly keepAlive: number;
  /** Clients that open a new TLS connection for every request, resuming their TLS session (as Node, Go or a browser would). */
  readonly fresh: number;
  /** Clients that open a new connection with a full handshake for every request (as `curl` in a container does). */
  readonly full?: number;
  /** Pause between requests of one client (ms). */
  readonly pauseMs?: number;
}

export interface Load {
  readonly stats: LoadStats;
  /** Makes every client read its bundle files again for its next connection (after a renewal), as a container's next curl would. */
  refreshBundles(): void;
  /** Stops the clients and waits for the requests in flight. */
  stop(): Promise<void>;
}

const tlsCache = new Map<string, { cert: Buffer; key: Buffer; ca: Buffer }>();

/** The client files of a bundle, read once until refreshBundles(). */
export function bundleFiles(bundle: string): { cert: Buffer; key: Buffer; ca: Buffer } {
  let files = tlsCache.get(bundle);
  if (!files) {
    files = { cert: readFileSync(join(bundle, 'client.crt')), key: readFileSync(join(bundle, 'client.key')), ca: readFileSync(join(bundle, 'ca.crt')) };
    tlsCache.set(bundle, files);
  }
  return files;
}

/** Starts the clients. */
export function startLoad(options: LoadOptions): Load {
  const stats: LoadStats = { ok: 0, unexpected: 0, samples: [], latencies: [] };
  let running = true;
  let generation = 0;
  const allAgents: Agent[] = [];
  const fail = (what: string) => {
    stats.unexpected += 1;
    if (stats.samples.length < 20) stats.samples.push(what);
  };
  const once = (target: Target, agent: Agent | undefined) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const tls = agent ? { agent } : { agent: false as const, ...bundleFiles(target.bundle) };
      const req = request(`${options.url}${target.path}`, { ...tls, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          stats.latencies.push(performance.now() - started);
          const body = Buffer.concat(chunks);
          if (res.statusCode !== target.status) fail(`${target.path}: status ${res.statusCode}, expected ${target.status}`);
          else if (target.body !== undefined && !body.equals(Buffer.from(target.body))) fail(`${target.path}: wrong body`);
          else stats.ok += 1;
          body.fill(0);
          resolve();
        });
        res.on('error', (err) => {
          fail(`${target.path}: response error ${err.message}`);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err: Error & { code?: string }) => {
        fail(`${target.path}: ${err.code ?? err.message}`);
        resolve();
      });
      req.end();
    });
  const client = async (kind: 'keep-alive' | 'fresh' | 'full') => {
    // One agent per identity, as a container would hold: a keep-alive connection, or a TLS session to resume.
    const agents = new Map<string, Agent>();
    let seen = generation;
    const agentFor = (bundle: string) => {
      if (seen !== generation) {
        seen = generation;
        for (const a of agents.values()) a.destroy();
        agents.clear();
      }
      let agent = agents.get(bundle);
      if (!agent) {
        agent = new Agent({ keepAlive: kind === 'keep-alive', maxSockets: 1, maxCachedSessions: 4, ...bundleFiles(bundle) });
        agents.set(bundle, agent);
        allAgents.push(agent);
      }
      return agent;
    };
    while (running) {
      const target = options.next();
      await once(target, kind === 'full' ? undefined : agentFor(target.bundle));
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  };
  const clients = [
    ...Array.from({ length: options.keepAlive }, () => client('keep-alive')),
    ...Array.from({ length: options.fresh }, () => client('fresh')),
    ...Array.from({ length: options.full ?? 0 }, () => client('full')),
  ];
  return {
    stats,
    refreshBundles() {
      tlsCache.clear();
      generation += 1;
    },
    async stop() {
      running = false;
      await Promise.all(clients);
      for (const a of allAgents) a.destroy();
    },
  };
}

/** The p-th percentile (0..100) of `values`, in their unit; 0 when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
