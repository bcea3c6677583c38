// The daemon's logger: pino JSON lines on stdout (journald and container logs read them).
// Redaction is structural: any Buffer or typed array in a log object is replaced, and
// fields that could name a secret are censored, so even a mistaken log call cannot
// print a token (tokens are only ever held as Buffers). One walk over the object does
// both, in a formatter: pino's path-based redaction with wildcards cost 8 µs per line,
// more than the rest of the audit line (docs/benchmarks.md).

import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { LogLevel } from '../config.js';

export type { Logger };

/** Fields censored wherever they appear (up to three levels deep), whatever their value. */
const CENSORED = new Set(['value', 'plaintext', 'secret', 'dataKey', 'key', 'password', 'authorization']);
const CENSOR = '[redacted]';

/**
 * Lines are written to stdout in batches: up to AUDIT_BATCH_BYTES, or every AUDIT_FLUSH_MS, whichever
 * comes first. One write per line costs a thread-pool round trip per request, about 40% of tokend's
 * CPU at moderate rates (docs/benchmarks.md); batching bounds what a SIGKILL can lose to 50 ms of lines.
 */
export const AUDIT_FLUSH_MS = 50;
const AUDIT_BATCH_BYTES = 8_192;

/** Creates the logger; `destination` defaults to stdout, batched (see AUDIT_FLUSH_MS); `flushLogger` drains it. */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tokend' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => scrub(obj, 0) as Record<string, unknown>,
      },
      // Errors pass the formatter whole; their serialized form is scrubbed like any object.
      serializers: { err: (err: Error) => scrub(pino.stdSerializers.err(err), 1) },
    },
    destination ?? batchedStdout(),
  );
}

function batchedStdout(): DestinationStream {
  const stream = pino.destination({ dest: 1, sync: false, minLength: AUDIT_BATCH_BYTES });
  setInterval(() => stream.flush(), AUDIT_FLUSH_MS).unref();
  return stream;
}

/** Writes out whatever the logger still holds (before exit). */
export function flushLogger(logger: Logger): void {
  try {
    logger.flush();
  } catch {
    // a closed stdout has nothing left to flush
  }
}

/**
 * Replaces binary data anywhere in a log object (three levels deep) with a
 * placeholder and censors the fields in CENSORED. Returns the object itself
 * when nothing changes (the usual case: no copy).
 */
function scrub(value: unknown, depth: number): unknown {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return '[bytes redacted]';
  if (depth > 3 || typeof value !== 'object' || value === null || value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const k in record) {
    if (!Object.hasOwn(record, k)) continue;
    const v = record[k];
    const s = v !== undefined && CENSORED.has(k) ? CENSOR : scrub(v, depth + 1);
    if (s !== v) {
      copy ??= { ...record };
      copy[k] = s;
    }
  }
  return copy ?? value;
}
