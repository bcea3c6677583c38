// The soak in CI: `scripts/soak.ts` for 25 seconds (the long run is `npm run soak -- --minutes N`),
// asserting what a short run can show: no unexpected answer, no failed reload, a graceful stop,
// descriptors other than sockets constant, and no token value in any output. (RSS needs minutes
// to settle; the long run checks it.)

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { recordOutput } from './support/leak-watch.js';

const SOAK = fileURLToPath(new URL('../scripts/soak.ts', import.meta.url));

describe('soak (short)', () => {
  it('serves 25 s of mixed keep-alive, resumed and full-handshake clients with reloads and a renewal, without one unexpected answer', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [SOAK, '--seconds', '25', '--json', '--no-rss-check', '--reload-every', '5', '--renew-every', '10'], { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
        recordOutput('soak-stderr', stderr);
        if (err && !stdout) reject(new Error(`soak failed to run: ${stderr}`));
        else resolve(stdout);
      });
    });
    recordOutput('soak-report', out);
    const report = JSON.parse(out);
    expect(report.problems).toEqual([]);
    expect(report.unexpected).toBe(0);
    expect(report.requests).toBeGreaterThan(1_000);
    expect(report.reloads.failed).toBe(0);
    expect(report.reloads.applied).toBeGreaterThanOrEqual(3);
    expect(report.renewals).toBeGreaterThanOrEqual(2);
    expect(report.fds.flat).toBe(true);
    expect(report.leaks).toBe(0);
    expect(report.exitCode).toBe(0);
    process.stdout.write(`soak (25 s): ${report.requests} requests, ${report.unexpected} unexpected, worst p99 ${report.p99Ms.toFixed(1)} ms, RSS ${report.rssMb.warmMin.toFixed(0)}–${report.rssMb.warmMax.toFixed(0)} MB, other fds ${report.fds.filesMin}–${report.fds.filesMax}\n`);
  }, 180_000);
});
