// The PKI's small JSON files (registry, denylist): a format tag, one list, 0600.

import { TokendError, isTokendError } from '../errors.js';
import { readPrivateFile } from '../private-files.js';

/**
 * Reads `{ format, <key>: [...] }` from a 0600 file (ERR_PERMISSIONS if it is
 * not: these files decide who is trusted), checking every item.
 */
export async function readJsonList<T>(
  path: string,
  what: string,
  format: string,
  key: string,
  isItem: (v: unknown) => v is T,
): Promise<T[]> {
  let raw: Buffer;
  try {
    raw = await readPrivateFile(path, what);
  } catch (err) {
    if (isTokendError(err, 'ERR_IO') && (err.cause as { code?: string } | undefined)?.code === 'ENOENT') return [];
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new TokendError('ERR_PKI', `${what} '${path}' is not valid JSON`);
  }
  const d = doc as Record<string, unknown>;
  if (typeof doc !== 'object' || doc === null || d.format !== format || !Array.isArray(d[key])) {
    throw new TokendError('ERR_PKI', `${what} '${path}' is not a ${format} file`);
  }
  const items = d[key] as unknown[];
  const bad = items.findIndex((item) => !isItem(item));
  if (bad >= 0) throw new TokendError('ERR_PKI', `${what} '${path}': entry ${bad + 1} is malformed`);
  return items as T[];
}
