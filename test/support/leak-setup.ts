// vitest globalSetup: a private directory where every suite registers its token
// values and captured output for the cross-suite leak scan (test/support/leak-watch.ts),
// which the summary reporter runs once all suites are done.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'tokend-leak-scan-'));
  process.env.TOKEND_LEAK_DIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
