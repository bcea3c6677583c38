// The TLS material serve needs: the CA that verifies clients, the server
// certificate and key, and the denylist. Loaded whole or not at all, and the
// internal server certificate renewed before it expires.

import type { X509Certificate } from 'node:crypto';
import type { PkiConfig } from '../config.js';
import { TokendError, isTokendError } from '../errors.js';
import { assertPrivateFile, exists, readNamedFile, readPrivateFile, writeFileAtomic } from '../private-files.js';
import { loadAuthority, signLeaf } from './authority.js';
import { assertCurrent, isIssuedBy, keyMatches, parseCertificate, parseCertificates } from './certificate.js';
import { readDenylist, revokedSerials } from './denylist.js';
import { pkiPaths } from './layout.js';
import { daysToMs, isRenewalDue } from './lifetime.js';
import { withLock } from './lock.js';

/** Everything serve hands to tls.createSecureContext, plus what it needs to decide on reloads. */
export interface TlsMaterial {
  /** PEM of the CA certificate(s) client certificates must chain to (`ca` option). */
  readonly ca: string;
  /** PEM of the server certificate (chain, in external mode). */
  readonly cert: string;
  /** PEM of the server's private key. */
  readonly key: string;
  readonly certNotAfter: Date;
  /** Revoked serials, normalized; test a peer with isRevoked(revoked, peer.serialNumber). */
  readonly revoked: ReadonlySet<string>;
}

const EXT_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/**
 * Loads the CA (internal ca.crt or the external caBundle), the server
 * certificate and key, and the denylist. Fails closed with ERR_PKI or
 * ERR_PERMISSIONS naming the file: a missing file, a key that is not 0600 (or
 * is a symlink, or not ours), a key that does not match the certificate, a
 * server certificate that is expired, not yet valid, not for serverAuth, or
 * (internal mode) not issued by tokend's CA; a malformed denylist.
 */
export async function loadTlsMaterial(pki: PkiConfig, now: Date = new Date()): Promise<TlsMaterial> {
  const paths = pkiPaths(pki);
  const caPath = pki.mode === 'external' ? (pki.caBundle as string) : paths.caCert;
  const caWhat = pki.mode === 'external' ? 'CA bundle' : 'CA certificate';
  const ca = (await readNamedFile(caPath, caWhat).catch(missingAsPki(pki))).toString('utf8');
  const caCerts = parseCertificates(ca, caPath, caWhat);
  for (const c of caCerts) {
    if (!c.ca) throw new TokendError('ERR_PKI', `${caWhat} '${caPath}' holds a certificate that is not a CA (${c.subject.replaceAll('\n', ', ')})`);
  }

  const cert = (await readNamedFile(paths.serverCert, 'server certificate').catch(missingAsPki(pki))).toString('utf8');
  const leaf = parseCertificate(cert, paths.serverCert, 'server certificate');
  assertCurrent(leaf, now, paths.serverCert, 'server certificate');
  if (!allowsServerAuth(leaf)) throw new TokendError('ERR_PKI', `server certificate '${paths.serverCert}' is not for serverAuth (extendedKeyUsage)`);
  if (pki.mode === 'internal' && !isIssuedBy(leaf, caCerts[0] as X509Certificate)) {
    throw new TokendError('ERR_PKI', `server certificate '${paths.serverCert}' was not issued by the CA '${paths.caCert}'`);
  }

  const key = (await readPrivateFile(paths.serverKey, 'server key')).toString('utf8');
  if (!keyMatches(leaf, key)) {
    throw new TokendError('ERR_PKI', `server key '${paths.serverKey}' does not belong to server certificate '${paths.serverCert}'`);
  }
  const revoked = revokedSerials(await readDenylist(paths.revoked));
  return { ca, cert, key, certNotAfter: leaf.validToDate, revoked };
}

/**
 * Internal mode: issues a new server certificate and key when the current one
 * is missing, unreadable, expired or not yet valid, not issued by the current
 * CA, does not match its key, or has less than pki.renewBeforeFraction of its
 * lifetime left. Returns true when it wrote new files. External mode: false,
 * always (the external CA renews). A server key with loose permissions is
 * refused (ERR_PERMISSIONS), not silently replaced: it may have leaked.
 * The key is written before the certificate; a crash in between leaves a pair
 * that does not match, which the next call repairs.
 */
export async function renewServerCertIfDue(pki: PkiConfig, now: Date = new Date()): Promise<boolean> {
  if (pki.mode === 'external') return false;
  const paths = pkiPaths(pki);
  await loadAuthority(pki, now); // fail with the CA's own message before taking a lock in a directory that may not exist
  return withLock(paths.lock, async () => {
    const authority = await loadAuthority(pki, now);
    if (!(await serverCertDue(pki, authority.cert, now))) return false;
    const leaf = await signLeaf(authority, { profile: 'server', ttlMs: daysToMs(pki.serverTtlDays) }, now);
    await writeFileAtomic(paths.serverKey, leaf.keyPem, { mode: 0o600 });
    await writeFileAtomic(paths.serverCert, leaf.certPem, { mode: 0o644 });
    return true;
  });
}

async function serverCertDue(pki: PkiConfig, caCert: X509Certificate, now: Date): Promise<boolean> {
  const paths = pkiPaths(pki);
  if (!(await exists(paths.serverCert)) || !(await exists(paths.serverKey))) return true;
  await assertPrivateFile(paths.serverKey, 'server key');
  let leaf: X509Certificate;
  try {
    leaf = parseCertificate((await readNamedFile(paths.serverCert, 'server certificate')).toString('utf8'), paths.serverCert, 'server certificate');
  } catch (err) {
    if (isTokendError(err, 'ERR_PKI')) return true; // unparsable: replace it
    throw err;
  }
  if (!isIssuedBy(leaf, caCert)) return true;
  if (!keyMatches(leaf, await readPrivateFile(paths.serverKey, 'server key'))) return true;
  return isRenewalDue(leaf.validFromDate, leaf.validToDate, pki.renewBeforeFraction, now);
}

function allowsServerAuth(cert: X509Certificate): boolean {
  const eku = cert.keyUsage as string[] | undefined; // Node names the EKU list `keyUsage`; undefined when absent (any use)
  return eku === undefined || eku.includes(EXT_SERVER_AUTH);
}

function missingAsPki(pki: PkiConfig) {
  return (err: unknown): never => {
    if (isTokendError(err, 'ERR_NOT_FOUND') && pki.mode === 'internal') {
      throw new TokendError('ERR_PKI', `${err.message}; run 'tokend ca init' (or 'tokend init' in development)`, { cause: err });
    }
    if (isTokendError(err, 'ERR_NOT_FOUND')) throw new TokendError('ERR_PKI', err.message, { cause: err });
    throw err;
  };
}
