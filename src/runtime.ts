// The process tokend runs in: conditions the daemon cannot fix itself but must
// report at start. Core dumps (a crash would write its memory, cached data keys
// and tokens included, to disk; Node cannot call prctl or setrlimit, so the unit
// sets LimitCORE=0) and Node.js releases with a known defect that matters here.

import { readFileSync } from 'node:fs';

/** Node.js releases tokend should not run on, and why. */
const DEFECTIVE_NODE: Readonly<Record<string, string>> = {
  // Measured with a bare https server (docs/reliability.md): 24.20.0 and 22.23.3 stay flat.
  'v24.21.0': 'leaks native memory on every TLS handshake with a client certificate (several KB each, never freed); run Node 24.20.0 until a fixed release',
};

/**
 * The soft core-file size limit from the text of /proc/self/limits, in bytes
 * (Infinity for unlimited); undefined when the line is missing or unreadable.
 * Pure.
 * @example coreLimit('Max core file size        0        unlimited   bytes') === 0
 */
export function coreLimit(limits: string): number | undefined {
  const m = /^Max core file size\s+(\S+)/m.exec(limits);
  if (!m) return undefined;
  if (m[1] === 'unlimited') return Infinity;
  const n = Number(m[1]);
  return Number.isFinite(n) ? n : undefined;
}

/** What is wrong with this process for serving secrets; one line each, for the log. Never throws. */
export function runtimeWarnings(read: (path: string) => string = (p) => readFileSync(p, 'utf8'), version: string = process.version): string[] {
  const warnings: string[] = [];
  let limits: string | undefined;
  try {
    limits = read('/proc/self/limits');
  } catch {
    // not Linux, or no /proc: nothing to say
  }
  const core = limits === undefined ? undefined : coreLimit(limits);
  if (core !== undefined && core > 0) {
    warnings.push(
      `core dumps are enabled (RLIMIT_CORE ${core === Infinity ? 'unlimited' : core}): a crash would write tokend's memory, cached data keys included, to disk; set LimitCORE=0 in the unit, --ulimit core=0 for a container, or ulimit -c 0`,
    );
  }
  const defect = DEFECTIVE_NODE[version];
  if (defect) warnings.push(`Node.js ${version} ${defect}`);
  return warnings;
}
