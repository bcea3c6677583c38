// The cross-suite leak scan: every suite registers the token values it seals
// and the output it captures (daemon logs, CLI stderr, error bodies); after the
// whole run the summary reporter greps all captured output for every value, in
// every encoding a log might use, with the real grep. Zero hits, or the run fails.
// Without TOKEND_LEAK_DIR (set by test/support/leak-setup.ts) registering is a no-op.
// Imports only node: modules (the soak script uses it too).

import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Values shorter than this are too common to grep for ("one", "x"): tests keep their secrets longer. */
const MIN_SECRET = 8;
let outputs = 0;

function dir(): string | undefined {
  return process.env.TOKEND_LEAK_DIR || undefined;
}

/** Registers token values that must never appear in any output. */
export function watchSecret(...values: readonly (Buffer | string)[]): void {
  const d = dir();
  if (!d) return;
  const lines = values.map((v) => (typeof v === 'string' ? Buffer.from(v) : v)).filter((v) => v.length >= MIN_SECRET).map((v) => `${v.toString('hex')}\n`);
  if (lines.length > 0) appendFileSync(join(d, `secrets-${process.pid}`), lines.join(''), { mode: 0o600 });
}

/** Records output (logs, stderr, error bodies) for the final scan. */
export function recordOutput(label: string, data: Buffer | string): void {
  const d = dir();
  if (!d || data.length === 0) return;
  outputs += 1;
  writeFileSync(join(d, `out-${process.pid}-${outputs}-${label.replace(/[^a-z0-9-]+/gi, '_').slice(0, 60)}`), data, { mode: 0o600 });
}

/** The ways a value could show up in text: raw, hex, base64, base64url, JSON-escaped, URL-encoded. Single-line forms only. */
export function leakForms(value: Buffer): { form: string; text: string }[] {
  const forms = [
    { form: 'raw', text: value.toString('utf8') },
    { form: 'hex', text: value.toString('hex') },
    { form: 'base64', text: value.toString('base64').replace(/=+$/, '') },
    { form: 'base64url', text: value.toString('base64url') },
    { form: 'json', text: JSON.stringify(value.toString('utf8')).slice(1, -1) },
    { form: 'url', text: encodeURIComponent(value.toString('utf8')) },
  ];
  // grep -F patterns are lines: a form with a line break or NUL cannot be one (its hex and base64 forms still are).
  return forms.filter((f, i) => f.text.length >= MIN_SECRET && !/[\n\r\0]/.test(f.text) && forms.findIndex((g) => g.text === f.text) === i);
}

export interface LeakReport {
  readonly secrets: number;
  readonly outputs: number;
  readonly bytes: number;
  /** Output files with a hit, and which form of which secret (by index, never the value). */
  readonly hits: readonly string[];
}

/** Greps every recorded output in `leakDir` for every registered secret. */
export function scanForLeaks(leakDir: string): LeakReport {
  const files = readdirSync(leakDir);
  const secrets = [...new Set(files.filter((f) => f.startsWith('secrets-')).flatMap((f) => readFileSync(join(leakDir, f), 'utf8').split('\n').filter(Boolean)))];
  const outs = files.filter((f) => f.startsWith('out-')).map((f) => join(leakDir, f));
  const bytes = outs.reduce((n, f) => n + readFileSync(f).length, 0);
  const patterns = secrets.flatMap((hex, i) => leakForms(Buffer.from(hex, 'hex')).map((f) => ({ ...f, secret: i })));
  if (patterns.length === 0 || outs.length === 0) return { secrets: secrets.length, outputs: outs.length, bytes, hits: [] };
  const patternFile = join(leakDir, 'patterns');
  writeFileSync(patternFile, `${patterns.map((p) => p.text).join('\n')}\n`, { mode: 0o600 });
  let listed = '';
  try {
    listed = execFileSync('grep', ['-F', '-a', '-l', '-f', patternFile, '--', ...outs], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    if ((err as { status?: number }).status !== 1) throw err; // 1: no match
  }
  const hits: string[] = [];
  for (const file of listed.split('\n').filter(Boolean)) {
    const text = readFileSync(file).toString('latin1');
    for (const p of patterns) if (text.includes(Buffer.from(p.text, 'utf8').toString('latin1'))) hits.push(`${file.slice(leakDir.length + 1)}: secret #${p.secret} (${p.form})`);
  }
  return { secrets: secrets.length, outputs: outs.length, bytes, hits };
}
