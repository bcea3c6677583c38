// Reload storms: SIGHUP 20 times a second to a real `tokend serve` process
// while keep-alive and new-connection clients read tokens (and the policy file
// keeps changing under it). No request may fail, no reload may fail, and memory
// does not grow from storm to storm: after each storm the daemon gets 32 s to
// settle (a reload keeps the previous provider 30 s for requests still using
// it), then its inspector collects garbage and reports what is still live.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../src/private-files.js';
import { makeFixture } from './support/daemon.js';
import type { Fixture } from './support/daemon.js';
import { heapAfterGc, inspectorUrl } from './support/inspector.js';
import type { HeapAfterGc } from './support/inspector.js';
import { recordOutput } from './support/leak-watch.js';
import { percentile, startLoad } from './support/load.js';
import type { Target } from './support/load.js';
import { startServeProcess } from './support/serve-process.js';
import type { ServeProcess } from './support/serve-process.js';

const TOKENS = Array.from({ length: 20 }, (_, i) => `storm-${String(i).padStart(2, '0')}`);
const value = (name: string) => `reload-storm-value-of-${name}`;
const STORMS = 3;
const STORM_MS = 5_000;
const SETTLE_MS = 32_000;
const HUP_EVERY_MS = 50; // 20 per second

let fx: Fixture;
let tokend: ServeProcess;

beforeAll(async () => {
  fx = await makeFixture();
  for (const t of TOKENS) await fx.seal(t, value(t));
  await policy(0);
  // --inspect on a random loopback port: the test asks the daemon for a full GC and its live memory.
  const node = process.env.TOKEND_TEST_SERVE_NODE ? { node: process.env.TOKEND_TEST_SERVE_NODE } : {};
  tokend = await startServeProcess(fx.configPath, { ...node, nodeArgs: ['--inspect=127.0.0.1:0'] });
}, 60_000);

afterAll(async () => {
  expect(await tokend.stop()).toBe(0);
  recordOutput('reload-storm-serve', tokend.stdout() + tokend.stderr());
  const out = tokend.stdout() + tokend.stderr();
  for (const t of TOKENS) expect(out).not.toContain(value(t));
});

/** The policy of reload `n`: demo may read every token throughout; a second rule comes and goes. */
async function policy(n: number): Promise<void> {
  const rules: { identities: string[]; tokens: string[] }[] = [{ identities: ['demo'], tokens: ['storm-*'] }];
  if (n % 2 === 1) rules.push({ identities: [`other-${n}`], tokens: ['storm-00'] });
  // Atomically, as an operator's tooling should: a reload must never see half a file (if it did, it would keep the old state).
  await writeFileAtomic(join(fx.dir, 'policy.json'), `${JSON.stringify({ rules }, null, 2)}\n`);
}

describe('reload storms', () => {
  it(`serves every request through ${STORMS} storms of SIGHUP at 20/s, and holds the same live memory after each`, async () => {
    const inspector = inspectorUrl(tokend.stderr());
    const demo = fx.bundleDir('demo');
    let i = 0;
    const next = (): Target => {
      const name = TOKENS[(i += 1) % TOKENS.length] as string;
      return { path: `/v1/tokens/${name}`, bundle: demo, status: 200, body: value(name) };
    };
    const load = startLoad({ url: tokend.url, next, keepAlive: 6, fresh: 2 });
    const rssAfter: number[] = [];
    const live: HeapAfterGc[] = [];
    let hups = 0;
    try {
      await new Promise((r) => setTimeout(r, 2_000));
      const baseline = await tokend.rss();
      for (let storm = 0; storm < STORMS; storm += 1) {
        const until = performance.now() + STORM_MS;
        while (performance.now() < until) {
          if (hups % 10 === 0) await policy(hups / 10);
          tokend.child.kill('SIGHUP');
          hups += 1;
          await new Promise((r) => setTimeout(r, HUP_EVERY_MS));
        }
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        rssAfter.push(await tokend.rss());
        live.push(await heapAfterGc(inspector));
      }
      const failedReloads = tokend.logs().filter((l) => String(l.msg).startsWith('reload failed'));
      expect(failedReloads).toEqual([]);
      expect(load.stats.unexpected, load.stats.samples.join('\n')).toBe(0);
      expect(load.stats.ok).toBeGreaterThan(1_000);
      process.stdout.write(
        `reload-storm: ${hups} SIGHUPs in ${STORMS} storms, ${load.stats.ok} requests, ${load.stats.unexpected} failed, p99 ${percentile(load.stats.latencies, 99).toFixed(1)} ms; RSS ${mb(baseline)} before, settled after each storm at ${rssAfter.map(mb).join(', ')}; after a full GC: heap ${live.map((l) => mb(l.heapUsed)).join(', ')}, external ${live.map((l) => mb(l.external)).join(', ')}, RSS ${live.map((l) => mb(l.rss)).join(', ')}\n`,
      );
      // No leak: what is live after a full GC (JS heap plus memory outside it: buffers, TLS objects' wrappers)
      // is the same after the last storm as after the first, within 2 MB, under the same load. Two storms of
      // ~95 reloads apart, that fails on a leak of about 10 KB per reload. Native memory (OpenSSL's) shows only
      // in the resident size, which right after the GC returns close to where it started (within 15% of the
      // first: about 100 KB per reload). The settled RSS before the GC is reported, not asserted: it holds
      // garbage V8 has not collected yet and varies by up to ~30 MB between runs. (Node 24.21.0's
      // per-handshake leak needs full handshakes with a certificate; these clients mostly resume: the soak
      // is what catches it.)
      const [first, last] = [live[0] as HeapAfterGc, live.at(-1) as HeapAfterGc];
      expect(last.heapUsed + last.external).toBeLessThan(first.heapUsed + first.external + 2 * 1024 * 1024);
      expect(last.rss).toBeLessThan(first.rss * 1.15);
    } finally {
      await load.stop();
    }
  }, 300_000);
});

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
