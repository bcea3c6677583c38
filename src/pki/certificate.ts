// Reading certificates with node:crypto's X509Certificate (OpenSSL): PEM files
// and bundles, as RSA or EC, from tokend's CA or an external one.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { TokendError } from '../errors.js';
import { normalizeSerial } from './serial.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM file (a bundle or a chain). Throws ERR_PKI naming the file when there is none or one is bad. */
export function parseCertificates(pem: string, path: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new TokendError('ERR_PKI', `${what} '${path}' holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TokendError('ERR_PKI', `${what} '${path}': certificate ${i + 1} cannot be parsed`, { cause: err });
    }
  });
}

/** The first certificate of a PEM file (the leaf of a chain). */
export function parseCertificate(pem: string, path: string, what: string): X509Certificate {
  return parseCertificates(pem, path, what)[0] as X509Certificate;
}

/** True when the PEM private key `keyPem` belongs to `cert`. False for an unreadable key, never throws. */
export function keyMatches(cert: X509Certificate, keyPem: string | Buffer): boolean {
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** True when `cert` was signed by `issuer` (names and signature). */
export function isIssuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

/** The serial in tokend's canonical form. */
export function serialOf(cert: X509Certificate): string {
  return normalizeSerial(cert.serialNumber);
}

/** Throws ERR_PKI naming the file when `cert` is expired or not yet valid at `now`. */
export function assertCurrent(cert: X509Certificate, now: Date, path: string, what: string): void {
  if (now < cert.validFromDate) {
    throw new TokendError('ERR_PKI', `${what} '${path}' is not valid before ${cert.validFromDate.toISOString()} (check the clock)`);
  }
  if (now > cert.validToDate) {
    throw new TokendError('ERR_PKI', `${what} '${path}' expired at ${cert.validToDate.toISOString()}`);
  }
}
