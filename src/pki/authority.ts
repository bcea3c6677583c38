// tokend's own small CA (internal mode): creating it, loading it (failing
// closed on anything odd), and signing leaves with tokend's two profiles,
// client (clientAuth, SPIFFE URI SAN) and server (serverAuth, loopback names).

import { randomBytes } from 'node:crypto';
import type { X509Certificate } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { PkiConfig } from '../config.js';
import { TokendError } from '../errors.js';
import { assertValidName } from '../names.js';
import { ensurePrivateDir, exists, readNamedFile, readPrivateFile, writeFileAtomic } from '../private-files.js';
import { assertCurrent, keyMatches, parseCertificate } from './certificate.js';
import { pkiPaths, spiffeId } from './layout.js';
import { BACKDATE_MS, daysToMs } from './lifetime.js';
import { normalizeSerial } from './serial.js';
import { createCertificate, generateRsaKeyPair, permittedUriHosts, randomSerial } from './x509.js';

/** RSA-3072 for the CA (it signs for years), RSA-2048 for leaves (the floor; see docs/benchmarks.md). */
export const CA_KEY_BITS = 3072;
export const LEAF_KEY_BITS = 2048;

/** The names every server certificate carries: tokend listens on loopback only. */
export const SERVER_NAMES = Object.freeze({ dns: ['localhost'], ips: ['127.0.0.1', '::1'] });

/** A loaded CA: its certificate and key (PEM) and what its name constraints permit. */
export interface Authority {
  readonly certPem: string;
  readonly keyPem: string;
  readonly cert: X509Certificate;
  /** URI hosts (trust domains) the CA's name constraints permit; undefined when unconstrained. */
  readonly trustDomains: readonly string[] | undefined;
}

/** A freshly signed leaf certificate and its new private key. */
export interface SignedLeaf {
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Throws ERR_PKI when `pki` is in external mode: tokend then only verifies, it never issues. */
export function assertInternal(pki: PkiConfig, action: string): void {
  if (pki.mode === 'external') {
    throw new TokendError(
      'ERR_PKI',
      `pki.mode is "external": tokend only verifies certificates from the CA bundle '${pki.caBundle}' and does not ${action}; issue certificates with that CA`,
    );
  }
}

/**
 * Creates the CA: an RSA-3072 key (ca.key, 0600) and a self-signed certificate
 * (ca.crt) with basicConstraints CA:TRUE pathlen:0, keyUsage keyCertSign and
 * cRLSign, and critical name constraints permitting only URI SANs in the trust
 * domain and the loopback IPs. DNS names are deliberately not constrained:
 * OpenSSL checks a dotted CN (identity `billing.prod`) as a DNS name, so a DNS
 * constraint would refuse valid client certificates. Never replaces an
 * existing CA (ERR_EXISTS).
 */
export async function createCa(pki: PkiConfig, now: Date = new Date()): Promise<X509Certificate> {
  assertInternal(pki, 'create a CA');
  const paths = pkiPaths(pki);
  await ensurePrivateDir(paths.dir);
  for (const path of [paths.caKey, paths.caCert]) {
    if (await exists(path)) throw new TokendError('ERR_EXISTS', `a CA already exists ('${path}'); tokend never replaces a CA key`);
  }
  const keys = await generateRsaKeyPair(CA_KEY_BITS);
  const certPem = createCertificate({
    serial: randomSerial(),
    commonName: `tokend CA ${pki.trustDomain} ${randomBytes(4).toString('hex')}`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + daysToMs(pki.caTtlDays)),
    publicKeyPem: keys.publicKeyPem,
    issuer: { self: keys.privateKeyPem },
    ca: { pathLen: 0, permitted: { uriHosts: [pki.trustDomain], ipRanges: ['127.0.0.1/32', '::1/128'], dnsNames: [] } },
  });
  await writeFileAtomic(paths.caKey, keys.privateKeyPem, { mode: 0o600, overwrite: false });
  try {
    await writeFileAtomic(paths.caCert, certPem, { mode: 0o644, overwrite: false });
  } catch (err) {
    await rm(paths.caKey, { force: true }); // no key without its certificate
    throw err;
  }
  return parseCertificate(certPem, paths.caCert, 'CA certificate');
}

/**
 * Loads the CA. Fails closed, naming the file: missing files, a key that is
 * not 0600 or not ours, a certificate that is not a CA, a key that does not
 * match, an expired CA.
 */
export async function loadAuthority(pki: PkiConfig, now: Date = new Date()): Promise<Authority> {
  assertInternal(pki, 'sign certificates');
  const paths = pkiPaths(pki);
  if (await caMissing(pki)) {
    throw new TokendError('ERR_PKI', `there is no CA in '${paths.dir}'; run 'tokend ca init' (or 'tokend init' in development)`);
  }
  const keyPem = (await readPrivateFile(paths.caKey, 'CA key')).toString('utf8');
  const certPem = (await readNamedFile(paths.caCert, 'CA certificate')).toString('utf8');
  const cert = parseCertificate(certPem, paths.caCert, 'CA certificate');
  if (!cert.ca) throw new TokendError('ERR_PKI', `CA certificate '${paths.caCert}' is not a CA certificate (basicConstraints CA:TRUE missing)`);
  if (!keyMatches(cert, keyPem)) {
    throw new TokendError('ERR_PKI', `CA key '${paths.caKey}' does not belong to CA certificate '${paths.caCert}'`);
  }
  assertCurrent(cert, now, paths.caCert, 'CA certificate');
  return { certPem, keyPem, cert, trustDomains: permittedUriHosts(certPem) };
}

/** What to sign: a client for `identity` in `trustDomain`, or the loopback server. */
export type LeafRequest =
  | { readonly profile: 'client'; readonly identity: string; readonly trustDomain: string; readonly ttlMs: number }
  | { readonly profile: 'server'; readonly ttlMs: number };

/**
 * Signs a new leaf with a fresh RSA-2048 key. Its lifetime is `ttlMs` from
 * now (started 5 minutes early for clock skew) and never outlives the CA.
 * A client identity must be a valid name and its trust domain one the CA's
 * name constraints permit (ERR_PKI otherwise: a certificate the CA could not
 * vouch for would fail every handshake).
 */
export async function signLeaf(authority: Authority, request: LeafRequest, now: Date = new Date()): Promise<SignedLeaf> {
  if (request.profile === 'client') {
    assertValidName(request.identity, 'identity');
    if (authority.trustDomains && !authority.trustDomains.includes(request.trustDomain)) {
      throw new TokendError(
        'ERR_PKI',
        `the CA only vouches for trust domain(s) ${authority.trustDomains.map((d) => `'${d}'`).join(', ')}, but pki.trustDomain is '${request.trustDomain}'`,
      );
    }
  }
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const wanted = new Date(now.getTime() + request.ttlMs);
  const notAfter = wanted > authority.cert.validToDate ? authority.cert.validToDate : wanted;
  if (notAfter <= now) throw new TokendError('ERR_PKI', `the CA expires at ${authority.cert.validToDate.toISOString()}; it cannot sign anything more`);
  const keys = await generateRsaKeyPair(LEAF_KEY_BITS);
  const serial = randomSerial();
  const certPem = createCertificate({
    serial,
    notBefore,
    notAfter,
    publicKeyPem: keys.publicKeyPem,
    issuer: { certPem: authority.certPem, keyPem: authority.keyPem },
    ...(request.profile === 'client'
      ? { commonName: request.identity, eku: ['clientAuth'], san: { uris: [spiffeId(request.trustDomain, request.identity)] } }
      : { commonName: 'localhost', eku: ['serverAuth'], san: SERVER_NAMES }),
  });
  return { certPem, keyPem: keys.privateKeyPem, serial: normalizeSerial(serial), notBefore, notAfter };
}

/** True when both CA files are absent; throws ERR_PKI when exactly one exists (a half-made CA is never completed silently). */
export async function caMissing(pki: PkiConfig): Promise<boolean> {
  const paths = pkiPaths(pki);
  const [key, cert] = [await exists(paths.caKey), await exists(paths.caCert)];
  if (key !== cert) {
    throw new TokendError('ERR_PKI', `'${key ? paths.caCert : paths.caKey}' is missing but '${key ? paths.caKey : paths.caCert}' exists; restore it or remove both and run 'tokend ca init'`);
  }
  return !key;
}
