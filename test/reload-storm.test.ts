// Reload storms: SIGHUP 20 times a second to a real `tokend serve` process
// while keep-alive and new-connection clients read tokens (and the policy file
// keeps changing under it). No request may fail, no reload may fail, and memory
// does not grow from storm to storm: after each storm the daemon gets 32 s to
// settle (a reload keeps the previous provider 30 s for requests still using
// it), and the resident size it settles at must not trend upwards once the
// first storm has warmed it up.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../src/private-files.js';
import { makeFixture } from './support/daemon.js';
import type { Fixture } from './support/daemon.js';
import { recordOutput } from './support/leak-watch.js';
import { percentile, startLoad } from './support/load.js';
import type { Target } from './support/load.js';
import { startServeProcess } from './support/serve-process.js';
import type { ServeProcess } from './support/serve-process.js';

const TOKENS = Array.from({ length: 20 }, (_, i) => `storm-${String(i).padStart(2, '0')}`);
const value = (name: string) => `reload-storm-value-of-${name}`;
const STORMS = 4; // the first warms up: it is not compared
const STORM_MS = 5_000;
const SETTLE_MS = 32_000;
const HUP_EVERY_MS = 50; // 20 per second

let fx: Fixture;
let tokend: ServeProcess;

beforeAll(async () => {
  fx = await makeFixture();
  for (const t of TOKENS) await fx.seal(t, value(t));
  await policy(0);
  tokend = await startServeProcess(fx.configPath, process.env.TOKEND_TEST_SERVE_NODE ? { node: process.env.TOKEND_TEST_SERVE_NODE } : {});
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
  it(`serves every request through ${STORMS} storms of SIGHUP at 20/s, and settles at the same memory after each`, async () => {
    const demo = fx.bundleDir('demo');
    let i = 0;
    const next = (): Target => {
      const name = TOKENS[(i += 1) % TOKENS.length] as string;
      return { path: `/v1/tokens/${name}`, bundle: demo, status: 200, body: value(name) };
    };
    const load = startLoad({ url: tokend.url, next, keepAlive: 6, fresh: 2 });
    const rssAfter: number[] = [];
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
      }
      const failedReloads = tokend.logs().filter((l) => String(l.msg).startsWith('reload failed'));
      expect(failedReloads).toEqual([]);
      expect(load.stats.unexpected, load.stats.samples.join('\n')).toBe(0);
      expect(load.stats.ok).toBeGreaterThan(1_000);
      process.stdout.write(
        `reload-storm: ${hups} SIGHUPs in ${STORMS} storms, ${load.stats.ok} requests, ${load.stats.unexpected} failed, p99 ${percentile(load.stats.latencies, 99).toFixed(1)} ms; RSS ${mb(baseline)} before, settled after each storm at ${rssAfter.map(mb).join(', ')}\n`,
      );
      // No runaway growth: after the last storm the daemon settles within 20% of where it settled after the
      // second. The first storm is a warm-up. Resident size is a coarse measure: V8 and the allocator grow to
      // hold the up to a hundred states that reloads keep for 30 s and do not give all of it back, in steps
      // of up to ~30 MB that land in a random storm (settled levels seen: 208.9, 217.3, 245.1, 246.1 MB;
      // seven storms: +22, +9, +9, +2, +4, -0.4 MB), while with GC forced the heap returns exactly to its
      // pre-storm level (docs/reliability.md). 20% of ~220 MB over two storms of ~95 reloads fails on a
      // leak of about 230 KB per reload or more; smaller leaks are the soak's to find.
      expect(rssAfter.at(-1) as number).toBeLessThan((rssAfter[1] as number) * 1.2);
    } finally {
      await load.stop();
    }
  }, 300_000);
});

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
