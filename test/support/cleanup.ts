// Cleanup for heavy test resources (containers, mounts, services): runs after the current test,
// or after the file when created in a hook, and, as a last resort, when the worker exits.

import { execFileSync } from 'node:child_process';
import { afterAll, onTestFinished } from 'vitest';

const afterFile = new Set<() => Promise<void>>();

// Registered when a test file first imports this module (collection time), so it runs after
// the file's own hooks; an afterAll() registered later, from inside a beforeAll, never runs.
afterAll(async () => {
  const errors: unknown[] = [];
  for (const dispose of [...afterFile].reverse()) {
    afterFile.delete(dispose);
    await dispose().catch((err: unknown) => errors.push(err));
  }
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
});

/** Runs `dispose` after the current test (inside a test) or after the test file (inside a hook). */
export function deferCleanup(dispose: () => Promise<void>): void {
  try {
    onTestFinished(dispose);
  } catch {
    afterFile.add(dispose);
  }
}

const lastResort = new Map<symbol, () => void>();
let hooked = false;

/**
 * Registers a synchronous, best-effort cleanup for when the worker exits before `dispose` ran
 * (a timed-out hook, a crash). Returns the function that unregisters it once disposed normally.
 */
export function onWorkerExit(cleanup: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const fn of lastResort.values()) {
        try {
          fn();
        } catch {
          // Best effort: the process is exiting anyway.
        }
      }
    });
  }
  const key = Symbol('cleanup');
  lastResort.set(key, cleanup);
  return () => lastResort.delete(key);
}

/** Runs a command synchronously, ignoring failure (for exit-time cleanup only). */
export function runQuietlySync(cmd: string, args: readonly string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // Best effort.
  }
}
