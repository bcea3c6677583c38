// X.509 creation: RSA keys and certificates. The one importer of node-forge (the
// design card's rule for vendor libraries); everything else in tokend parses
// certificates with node:crypto's X509Certificate (OpenSSL), which also reads EC
// certificates from an external CA that node-forge cannot.

import { randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { TokendError } from '../errors.js';

/** RSA modulus sizes tokend makes: 2048 for leaves (the floor), 3072 for the CA. */
export type RsaBits = 2048 | 3072 | 4096;

/** What a certificate may be used for (extendedKeyUsage). */
export type Eku = 'clientAuth' | 'serverAuth';

/** Name constraints for a CA (RFC 5280 4.2.1.10): what its descendants may name. */
export interface PermittedNames {
  /** URI hosts, e.g. the SPIFFE trust domain `tokend.local` (matches `spiffe://tokend.local/...`). */
  readonly uriHosts: readonly string[];
  /** IP ranges as `address/prefix`, e.g. `127.0.0.1/32`, `::1/128`. */
  readonly ipRanges: readonly string[];
  /** DNS names (and their subdomains). */
  readonly dnsNames: readonly string[];
}

/** Everything that goes into one certificate. Profiles (CA, client, server) are built by the callers. */
export interface CertificateSpec {
  /** Positive hex serial without leading zeros (see randomSerial). */
  readonly serial: string;
  readonly commonName: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The subject's public key (PEM, RSA). */
  readonly publicKeyPem: string;
  /** The signer: its certificate and key, or 'self' with the subject's own private key. */
  readonly issuer: { readonly certPem: string; readonly keyPem: string } | { readonly self: string };
  /** Present for a CA certificate: basicConstraints CA:TRUE with this path length, keyCertSign + cRLSign. */
  readonly ca?: { readonly pathLen: number; readonly permitted?: PermittedNames };
  /** For leaves: extendedKeyUsage purposes (empty = no EKU extension at all). */
  readonly eku?: readonly Eku[];
  readonly san?: { readonly uris?: readonly string[]; readonly dns?: readonly string[]; readonly ips?: readonly string[] };
}

/** A PEM private key and the PEM public key that goes with it. */
export interface RsaKeyPair {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

/**
 * Generates an RSA key pair. node-forge hands this to Node's native
 * generateKeyPair when it can (it does on Node 24), so it takes milliseconds,
 * not the seconds pure JavaScript would.
 */
export function generateRsaKeyPair(bits: RsaBits): Promise<RsaKeyPair> {
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits, e: 0x10001, workers: -1 }, (err, keys) => {
      if (err) {
        reject(new TokendError('ERR_PKI', `could not generate an RSA-${bits} key`, { cause: err }));
        return;
      }
      resolve({ privateKeyPem: forge.pki.privateKeyToPem(keys.privateKey), publicKeyPem: forge.pki.publicKeyToPem(keys.publicKey) });
    });
  });
}

/**
 * A random certificate serial: 16 random bytes with the top bit cleared (DER
 * INTEGERs are signed) and the next one set, so it is positive, has no leading
 * zero byte (OpenSSL rejects padded INTEGERs) and always prints as 32 hex
 * digits. 126 random bits, well over the 64 the CA/Browser Forum asks for.
 */
export function randomSerial(random: (n: number) => Buffer = randomBytes): string {
  const bytes = random(16);
  bytes[0] = ((bytes[0] as number) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** Creates and signs a certificate (SHA-256 with RSA); returns it as PEM. Throws ERR_PKI on a bad spec. */
export function createCertificate(spec: CertificateSpec): string {
  try {
    const cert = forge.pki.createCertificate();
    cert.version = 2; // X.509 v3
    cert.serialNumber = spec.serial;
    cert.validity.notBefore = spec.notBefore;
    cert.validity.notAfter = spec.notAfter;
    cert.publicKey = forge.pki.publicKeyFromPem(spec.publicKeyPem);
    cert.setSubject([{ name: 'commonName', value: spec.commonName }]);

    let signingKey: forge.pki.rsa.PrivateKey;
    let issuerCert: forge.pki.Certificate | undefined;
    if ('self' in spec.issuer) {
      signingKey = forge.pki.privateKeyFromPem(spec.issuer.self);
      cert.setIssuer(cert.subject.attributes);
    } else {
      signingKey = forge.pki.privateKeyFromPem(spec.issuer.keyPem);
      issuerCert = forge.pki.certificateFromPem(spec.issuer.certPem);
      cert.setIssuer(issuerCert.subject.attributes);
    }

    const extensions: object[] = [];
    if (spec.ca) {
      extensions.push({ name: 'basicConstraints', critical: true, cA: true, pathLenConstraint: spec.ca.pathLen });
      extensions.push({ name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true });
      if (spec.ca.permitted) extensions.push(nameConstraints(spec.ca.permitted));
    } else {
      extensions.push({ name: 'basicConstraints', critical: true, cA: false });
      // keyEncipherment only matters for RSA key transport (TLS 1.2 RSA kx); harmless and expected for RSA keys.
      extensions.push({ name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true });
      const eku = spec.eku ?? [];
      if (eku.length > 0) {
        extensions.push({ name: 'extKeyUsage', ...Object.fromEntries(eku.map((p) => [p, true])) });
      }
    }
    const altNames = [
      ...(spec.san?.uris ?? []).map((value) => ({ type: 6, value })),
      ...(spec.san?.dns ?? []).map((value) => ({ type: 2, value })),
      ...(spec.san?.ips ?? []).map((ip) => ({ type: 7, ip })),
    ];
    if (altNames.length > 0) extensions.push({ name: 'subjectAltName', altNames });
    extensions.push({ name: 'subjectKeyIdentifier' });
    extensions.push({
      name: 'authorityKeyIdentifier',
      keyIdentifier: (issuerCert ?? cert).generateSubjectKeyIdentifier().getBytes(),
    });
    cert.setExtensions(extensions);
    cert.sign(signingKey, forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
  } catch (err) {
    if (err instanceof TokendError) throw err;
    throw new TokendError('ERR_PKI', `could not create the certificate for '${spec.commonName}': ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The URI hosts a CA's name constraints permit (its trust domains), or
 * undefined when the CA has no name constraints. Used to refuse issuing an
 * identity the CA would not vouch for (after a trustDomain change).
 */
export function permittedUriHosts(caCertPem: string): readonly string[] | undefined {
  let cert: forge.pki.Certificate;
  try {
    cert = forge.pki.certificateFromPem(caCertPem);
  } catch (err) {
    throw new TokendError('ERR_PKI', `the CA certificate cannot be parsed: ${(err as Error).message}`, { cause: err });
  }
  const ext = cert.getExtension('nameConstraints') as { permittedSubtrees?: { type: number; value: unknown }[] } | undefined;
  if (!ext?.permittedSubtrees) return undefined;
  return ext.permittedSubtrees.filter((s) => s.type === 6 && typeof s.value === 'string').map((s) => s.value as string);
}

/**
 * The nameConstraints extension, built by hand: node-forge parses it but has no
 * builder. Critical, as RFC 5280 requires. Only permitted subtrees: a name type
 * that is listed is confined to the list; a type that is not listed is not
 * constrained.
 */
function nameConstraints(permitted: PermittedNames): object {
  const { asn1 } = forge;
  const subtree = (tag: number, value: string) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, false, value)]);
  const trees = [
    ...permitted.uriHosts.map((h) => subtree(6, h)),
    ...permitted.ipRanges.map((r) => subtree(7, ipRangeBytes(r))),
    ...permitted.dnsNames.map((d) => subtree(2, d)),
  ];
  const value = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, trees)]);
  return { id: '2.5.29.30', name: 'nameConstraints', critical: true, value };
}

/** `address/prefix` → address bytes followed by mask bytes, as a binary string (forge's byte representation). */
function ipRangeBytes(range: string): string {
  const [address, prefixText] = range.split('/');
  const bytes = (forge.util as unknown as { bytesFromIP(ip: string): string | null }).bytesFromIP(address ?? '');
  const prefix = Number(prefixText);
  if (!bytes || !Number.isInteger(prefix) || prefix < 0 || prefix > bytes.length * 8) {
    throw new TokendError('ERR_PKI', `'${range}' is not an IP range (address/prefix)`);
  }
  let mask = '';
  for (let i = 0; i < bytes.length; i += 1) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    mask += String.fromCharCode((0xff << (8 - bits)) & 0xff);
  }
  return bytes + mask;
}
