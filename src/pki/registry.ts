// The registry of issued client certificates (issued.json): what `cert list`
// shows and what `cert revoke <identity>` and `cert renew` look up. Internal
// mode only; an external CA keeps its own records.

import { writeFileAtomic } from '../private-files.js';
import { readJsonList } from './json-file.js';

const FORMAT = 'tokend-issued/1';

/** One issued client certificate. Times are ISO 8601; `serial` is normalized (see normalizeSerial). */
export interface IssuedEntry {
  readonly serial: string;
  readonly identity: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** The bundle directory it was written to (absolute). */
  readonly bundle: string;
}

/** Every entry in `path`, oldest first; [] when the file does not exist yet. Throws ERR_PKI naming a corrupt file. */
export async function readRegistry(path: string): Promise<IssuedEntry[]> {
  return readJsonList(path, 'certificate registry', FORMAT, 'certificates', isIssuedEntry);
}

/** Appends `entry` (the caller holds the PKI lock). */
export async function appendIssued(path: string, entry: IssuedEntry): Promise<void> {
  const entries = await readRegistry(path);
  await writeFileAtomic(path, `${JSON.stringify({ format: FORMAT, certificates: [...entries, entry] }, null, 2)}\n`);
}

/** Removes the entry with `serial` (a bundle that failed to reach the disk; the caller holds the PKI lock). */
export async function removeIssued(path: string, serial: string): Promise<void> {
  const entries = await readRegistry(path);
  await writeFileAtomic(path, `${JSON.stringify({ format: FORMAT, certificates: entries.filter((e) => e.serial !== serial) }, null, 2)}\n`);
}

/** The newest entry for `identity`, or undefined. */
export function latestFor(entries: readonly IssuedEntry[], identity: string): IssuedEntry | undefined {
  return entries.filter((e) => e.identity === identity).at(-1);
}

function isIssuedEntry(v: unknown): v is IssuedEntry {
  const e = v as Record<string, unknown>;
  return (
    typeof v === 'object' && v !== null &&
    typeof e.serial === 'string' && typeof e.identity === 'string' &&
    typeof e.notBefore === 'string' && typeof e.notAfter === 'string' && typeof e.bundle === 'string'
  );
}
