// The denylist (revoked.json): serials that serve refuses even though their
// certificate verifies. Serve reads it at start and on reload; both modes use it.

import { writeFileAtomic } from '../private-files.js';
import { readJsonList } from './json-file.js';
import { isSerial, normalizeSerial } from './serial.js';

const FORMAT = 'tokend-revoked/1';

/** One revoked certificate. `identity` is null when revoked by serial alone and not in the registry. */
export interface RevokedEntry {
  readonly serial: string;
  readonly identity: string | null;
  readonly revokedAt: string;
}

/** Every entry in `path`; [] when the file does not exist. Throws ERR_PKI/ERR_PERMISSIONS naming the file. */
export async function readDenylist(path: string): Promise<RevokedEntry[]> {
  return readJsonList(path, 'denylist', FORMAT, 'revoked', isRevokedEntry);
}

/** The revoked serials as a set, for serve (normalized, compare with isRevoked). */
export function revokedSerials(entries: readonly RevokedEntry[]): ReadonlySet<string> {
  return new Set(entries.map((e) => e.serial));
}

/**
 * Adds `entries` that are not already listed (the caller holds the PKI lock).
 * Returns the ones that were new. Idempotent: revoking twice changes nothing.
 */
export async function addToDenylist(path: string, entries: readonly RevokedEntry[]): Promise<RevokedEntry[]> {
  const current = await readDenylist(path);
  const known = revokedSerials(current);
  const added = entries.filter((e, i) => !known.has(e.serial) && entries.findIndex((x) => x.serial === e.serial) === i);
  if (added.length > 0) {
    await writeFileAtomic(path, `${JSON.stringify({ format: FORMAT, revoked: [...current, ...added] }, null, 2)}\n`);
  }
  return added;
}

function isRevokedEntry(v: unknown): v is RevokedEntry {
  const e = v as Record<string, unknown>;
  return (
    typeof v === 'object' && v !== null &&
    typeof e.serial === 'string' && isSerial(e.serial) && normalizeSerial(e.serial) === e.serial &&
    (e.identity === null || typeof e.identity === 'string') && typeof e.revokedAt === 'string'
  );
}
