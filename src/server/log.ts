// The daemon's logger: pino JSON lines on stdout (journald and container logs read them).
// Redaction is structural: any Buffer or typed array in a log object is replaced, and
// fields that could name a secret are censored, so even a mistaken log call cannot
// print a token (tokens are only ever held as Buffers).

import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { LogLevel } from '../config.js';

export type { Logger };

const REDACT = [
  'value', 'token.value', 'plaintext', 'secret', 'dataKey', 'key', 'password', 'authorization',
  '*.value', '*.plaintext', '*.secret', '*.dataKey', '*.key', '*.password', '*.authorization',
];

/** Creates the logger; `destination` defaults to an asynchronous stdout writer that `flushLogger` drains. */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tokend' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => scrub(obj, 0) as Record<string, unknown>,
      },
      serializers: { err: pino.stdSerializers.err },
    },
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 0 }),
  );
}

/** Writes out whatever the logger still holds (before exit). */
export function flushLogger(logger: Logger): void {
  try {
    logger.flush();
  } catch {
    // a closed stdout has nothing left to flush
  }
}

/** Replaces binary data anywhere in a log object (three levels deep) with a placeholder. */
function scrub(value: unknown, depth: number): unknown {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return '[bytes redacted]';
  if (depth > 3 || typeof value !== 'object' || value === null || value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  let copy: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const s = scrub(v, depth + 1);
    if (s !== v) {
      copy ??= { ...(value as Record<string, unknown>) };
      copy[k] = s;
    }
  }
  return copy ?? value;
}
