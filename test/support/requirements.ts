// Suites that need root, podman, systemd-nspawn or Ignition declare it here.
// Locally a missing requirement skips the suite with a loud reason; in CI
// (TOKEND_TEST_STRICT=1) it fails instead, so nothing is skipped silently.

import { execFileSync } from 'node:child_process';

/** True when `cmd` is on PATH. */
export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** True when running as root. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Returns undefined when every requirement holds, else the reason to skip.
 * Throws in strict mode (CI) so that a missing requirement is a failure.
 */
export function missing(requirements: Readonly<Record<string, boolean>>): string | undefined {
  const absent = Object.entries(requirements)
    .filter(([, ok]) => !ok)
    .map(([what]) => what);
  if (absent.length === 0) return undefined;
  const reason = `needs ${absent.join(', ')}`;
  if (process.env.TOKEND_TEST_STRICT === '1') throw new Error(`${reason} (TOKEND_TEST_STRICT=1: CI must provide it)`);
  process.stderr.write(`\n*** SKIPPING: ${reason} — run .ci/run or install it to test this ***\n`);
  return reason;
}
