// Identity: who a verified client certificate says the caller is. A SPIFFE ID
// (URI SAN spiffe://<trust-domain>/<name>) is preferred; the subject CN is the
// fallback when configured. Anything ambiguous yields no identity (fail closed).

import type { X509Certificate } from 'node:crypto';
import type { IdentitySource } from './config.js';
import { isValidName } from './names.js';
import { isSerial, normalizeSerial } from './pki/index.js';

/** The identity of one verified client certificate. */
export interface Identity {
  readonly name: string;
  readonly source: 'spiffe' | 'cn';
  /** The SPIFFE ID when the name came from one. */
  readonly spiffeId: string | undefined;
  /** Certificate serial in normalizeSerial form (the denylist's form). */
  readonly serial: string;
  readonly notAfter: string;
}

/** Why a verified certificate carries no usable identity. */
export interface NoIdentity {
  readonly error: string;
  readonly serial: string;
}

export interface IdentityOptions {
  readonly from: IdentitySource;
  readonly trustDomain: string;
}

/** The certificate fields identityOf reads, in the shape of Node's PeerCertificate (which has them all). */
export interface CertificateFields {
  readonly serialNumber: string;
  readonly subjectaltname?: string | undefined;
  readonly valid_to: string;
  readonly subject?: { readonly CN?: string | readonly string[] | undefined } | undefined;
}

/**
 * The fields of a peer's X509Certificate in PeerCertificate's shape. Reading
 * them from socket.getPeerX509Certificate() costs about 4 µs;
 * getPeerCertificate() builds a full object with three fingerprints and the
 * modulus in hex, about 70 µs, once per connection. Several CNs become a list
 * (refused by identityOf, as PeerCertificate's would be).
 */
export function certificateFields(cert: X509Certificate | undefined): CertificateFields {
  if (!cert) return { serialNumber: '', valid_to: '' };
  const cns = cert.subject
    .split('\n')
    .filter((line) => line.startsWith('CN='))
    .map((line) => line.slice(3));
  return {
    serialNumber: cert.serialNumber,
    subjectaltname: cert.subjectAltName,
    valid_to: cert.validTo,
    subject: { CN: cns.length === 0 ? undefined : cns.length === 1 ? cns[0] : cns },
  };
}

/**
 * Derives the identity from a certificate that TLS already verified.
 * Rules: exactly one `spiffe://` URI SAN, in our trust domain, with a single
 * valid name as its path; if the certificate has no SPIFFE URI at all and the
 * CN fallback is enabled, a valid CN. Anything else is refused.
 */
export function identityOf(cert: CertificateFields, options: IdentityOptions): Identity | NoIdentity {
  if (!isSerial(cert.serialNumber ?? '')) return { error: 'the certificate serial number cannot be read', serial: '' };
  const serial = normalizeSerial(cert.serialNumber);
  const spiffe = uriSans(cert.subjectaltname).filter((u) => u.toLowerCase().startsWith('spiffe://'));
  if (spiffe.length > 1) return { error: 'the certificate has more than one SPIFFE ID', serial };
  const notAfter = cert.valid_to;
  if (spiffe.length === 1 && options.from !== 'cn') {
    const id = spiffe[0] as string;
    const prefix = `spiffe://${options.trustDomain}/`;
    const name = id.startsWith(prefix) ? id.slice(prefix.length) : undefined;
    if (name === undefined) return { error: `SPIFFE ID '${id}' is not in trust domain '${options.trustDomain}'`, serial };
    if (!isValidName(name)) return { error: `SPIFFE ID '${id}' does not end in a valid identity name`, serial };
    return { name, source: 'spiffe', spiffeId: id, serial, notAfter };
  }
  if (options.from === 'spiffe') return { error: `the certificate has no SPIFFE ID (spiffe://${options.trustDomain}/<name>)`, serial };
  const cn = cert.subject?.CN;
  if (typeof cn !== 'string') return { error: 'the certificate has neither a SPIFFE ID nor a single subject CN', serial };
  if (!isValidName(cn)) return { error: `subject CN ${JSON.stringify(cn)} is not a valid identity name`, serial };
  return { name: cn, source: 'cn', spiffeId: undefined, serial, notAfter };
}

/** The URI entries of Node's `subjectaltname` string. Quoted entries (values with special characters) are dropped. */
function uriSans(altnames: string | undefined): string[] {
  if (!altnames) return [];
  const out: string[] = [];
  for (const entry of altnames.split(', ')) {
    if (entry.startsWith('URI:') && !entry.startsWith('URI:"')) out.push(entry.slice(4));
  }
  return out;
}
