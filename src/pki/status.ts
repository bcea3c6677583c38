// The `pki` check of `tokend check`: the same loading serve does, plus the CA's
// own health, summarized in one line.

import type { PkiConfig } from '../config.js';
import { TokendError } from '../errors.js';
import { modeOf } from '../private-files.js';
import { loadAuthority } from './authority.js';
import { pkiPaths } from './layout.js';
import { loadTlsMaterial } from './server-tls.js';

/** A CA closer than this to its end fails the check: there must be time to roll out a new one. */
export const CA_EXPIRY_WARNING_DAYS = 30;

/**
 * Checks the PKI as serve would load it, plus (internal mode) the CA key's
 * permissions and the CA's remaining lifetime and that pki.dir is not
 * writable by others. Returns a one-line summary; throws ERR_PKI or
 * ERR_PERMISSIONS naming the file.
 */
export async function checkPki(pki: PkiConfig, now: Date = new Date()): Promise<string> {
  const paths = pkiPaths(pki);
  const dirMode = await modeOf(paths.dir);
  if (dirMode !== undefined && (dirMode & 0o022) !== 0) {
    throw new TokendError('ERR_PERMISSIONS', `pki directory '${paths.dir}' is writable by group or others (mode 0${dirMode.toString(8)}); run: chmod 700 '${paths.dir}'`);
  }
  const material = await loadTlsMaterial(pki, now);
  const server = `server certificate valid until ${material.certNotAfter.toISOString()}; ${material.revoked.size} revoked serial(s)`;
  if (pki.mode === 'external') return `external CA bundle '${pki.caBundle}'; ${server}`;
  const authority = await loadAuthority(pki, now);
  const daysLeft = Math.floor((authority.cert.validToDate.getTime() - now.getTime()) / 86_400_000);
  if (daysLeft < CA_EXPIRY_WARNING_DAYS) {
    throw new TokendError('ERR_PKI', `CA certificate '${paths.caCert}' expires in ${daysLeft} day(s) (${authority.cert.validToDate.toISOString()}); plan a new CA`);
  }
  return `internal CA valid until ${authority.cert.validToDate.toISOString()} (trust domain ${authority.trustDomains?.join(', ') ?? 'unconstrained'}); ${server}`;
}
