// Certificates minted at test time (no key material is ever checked in).
// RSA certificates are made by tokend's own src/pki/x509.ts, so tests exercise
// the code that ships; anything with an EC key goes through the real openssl
// CLI (`openssl ca`, which can set any start and end date), since node-forge
// cannot make EC certificates.

import { execFile } from 'node:child_process';
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { normalizeSerial } from '../../src/pki/serial.js';
import { createCertificate, randomSerial } from '../../src/pki/x509.js';
import type { Eku } from '../../src/pki/x509.js';

const run = promisify(execFile);
const DAY = 86_400_000;

export type KeyType = 'rsa' | 'ec';
export type EkuOption = 'clientAuth' | 'serverAuth' | 'both' | 'none';

/** A minted certificate: where its PEM files are, their contents and its serial (normalized, see normalizeSerial). */
export interface MintedCert {
  readonly certPath: string;
  readonly keyPath: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
  readonly keyType: KeyType;
}

/** A minted CA (issuer for mintCert). */
export interface MintedCa extends MintedCert {
  readonly name: string;
}

export interface CaOptions {
  /** File stem and CN suffix; default 'ca'. */
  readonly name?: string;
  readonly keyType?: KeyType;
  /** Add name constraints like tokend's CA: URI hosts in this trust domain, loopback IPs. */
  readonly trustDomain?: string;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** Mints a self-signed CA (basicConstraints CA:TRUE pathlen:0) into `dir` as <name>.crt / <name>.key (0600). */
export async function mintCa(dir: string, options: CaOptions = {}): Promise<MintedCa> {
  const name = options.name ?? 'ca';
  const keyType = options.keyType ?? 'rsa';
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + 365 * DAY);
  const keyPem = newKey(keyType);
  const serial = randomSerial();
  const subject = `test CA ${name}`;
  let certPem: string;
  if (keyType === 'rsa') {
    certPem = createCertificate({
      serial,
      commonName: subject,
      notBefore,
      notAfter,
      publicKeyPem: publicOf(keyPem),
      issuer: { self: keyPem },
      ca: {
        pathLen: 0,
        ...(options.trustDomain ? { permitted: { uriHosts: [options.trustDomain], ipRanges: ['127.0.0.1/32', '::1/128'], dnsNames: [] } } : {}),
      },
    });
  } else {
    const ext = [
      'basicConstraints = critical, CA:TRUE, pathlen:0',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      ...(options.trustDomain ? [`nameConstraints = critical, permitted;URI:${options.trustDomain}, permitted;IP:127.0.0.1/255.255.255.255, permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff`] : []),
    ];
    certPem = await opensslSign({ subject, keyPem, serial, notBefore, notAfter, ext, issuer: undefined });
  }
  return { name, ...(await save(dir, name, certPem, keyPem)), serial: normalizeSerial(serial), keyType };
}

export interface CertOptions {
  /** File stem; default the identity, else 'leaf'. */
  readonly name?: string;
  /** Adds URI SAN spiffe://<trustDomain>/<identity> and CN=<identity>. */
  readonly identity?: string;
  readonly trustDomain?: string;
  /** CN when there is no identity (or to override it). */
  readonly cn?: string;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** Default 'clientAuth'. */
  readonly eku?: EkuOption;
  readonly keyType?: KeyType;
  /** Add the server names: IP 127.0.0.1, IP ::1, DNS localhost. */
  readonly loopbackNames?: boolean;
}

/** Mints a leaf signed by `issuer` into `dir` as <name>.crt / <name>.key (0600). */
export async function mintCert(dir: string, issuer: MintedCa, options: CertOptions = {}): Promise<MintedCert> {
  const keyType = options.keyType ?? 'rsa';
  const name = options.name ?? options.identity ?? 'leaf';
  const trustDomain = options.trustDomain ?? 'tokend.local';
  const cn = options.cn ?? options.identity ?? name;
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + 7 * DAY);
  const eku: Eku[] = { clientAuth: ['clientAuth' as const], serverAuth: ['serverAuth' as const], both: ['clientAuth' as const, 'serverAuth' as const], none: [] }[
    options.eku ?? 'clientAuth'
  ];
  const uris = options.identity ? [`spiffe://${trustDomain}/${options.identity}`] : [];
  const dns = options.loopbackNames ? ['localhost'] : [];
  const ips = options.loopbackNames ? ['127.0.0.1', '::1'] : [];
  const keyPem = newKey(keyType);
  const serial = randomSerial();
  let certPem: string;
  if (keyType === 'rsa' && issuer.keyType === 'rsa') {
    certPem = createCertificate({
      serial,
      commonName: cn,
      notBefore,
      notAfter,
      publicKeyPem: publicOf(keyPem),
      issuer: { certPem: issuer.certPem, keyPem: issuer.keyPem },
      eku,
      san: { uris, dns, ips },
    });
  } else {
    const sans = [...uris.map((u) => `URI:${u}`), ...dns.map((d) => `DNS:${d}`), ...ips.map((i) => `IP:${i}`)];
    const ext = [
      'basicConstraints = critical, CA:FALSE',
      `keyUsage = critical, ${keyType === 'rsa' ? 'digitalSignature, keyEncipherment' : 'digitalSignature'}`,
      ...(eku.length > 0 ? [`extendedKeyUsage = ${eku.join(', ')}`] : []),
      ...(sans.length > 0 ? [`subjectAltName = ${sans.join(', ')}`] : []),
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
    ];
    certPem = await opensslSign({ subject: cn, keyPem, serial, notBefore, notAfter, ext, issuer });
  }
  return { ...(await save(dir, name, certPem, keyPem)), serial: normalizeSerial(serial), keyType };
}

/** Mints a server certificate for 127.0.0.1, ::1 and localhost (serverAuth) as <name ?? 'server'>.crt/.key. */
export function mintServerCert(dir: string, issuer: MintedCa, options: Omit<CertOptions, 'loopbackNames'> = {}): Promise<MintedCert> {
  return mintCert(dir, issuer, { name: 'server', cn: 'localhost', eku: 'serverAuth', ...options, loopbackNames: true });
}

/** The serial of a PEM certificate as Node's TLS socket reports it (upper-case hex). */
export function nodeSerialOf(certPem: string): string {
  return new X509Certificate(certPem).serialNumber;
}

function newKey(keyType: KeyType): string {
  const { privateKey } =
    keyType === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

function publicOf(keyPem: string): string {
  return createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }) as string;
}

async function save(dir: string, name: string, certPem: string, keyPem: string) {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await writeFile(certPath, certPem, { mode: 0o644 });
  await writeFile(keyPath, keyPem, { mode: 0o600 });
  return { certPath, keyPath, certPem, keyPem };
}

/** Signs with `openssl ca` (self-signed when there is no issuer): any dates, extensions from `ext`. */
async function opensslSign(spec: {
  subject: string;
  keyPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  ext: readonly string[];
  issuer: MintedCa | undefined;
}): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'tokend-mint-'));
  try {
    const f = (n: string) => join(work, n);
    await writeFile(f('key.pem'), spec.keyPem, { mode: 0o600 });
    await writeFile(f('index.txt'), '');
    await writeFile(f('serial'), `${spec.serial}\n`);
    await writeFile(
      f('ca.cnf'),
      [
        '[ca]',
        'default_ca = tca',
        '[tca]',
        `database = ${f('index.txt')}`,
        `new_certs_dir = ${work}`,
        `serial = ${f('serial')}`,
        'default_md = sha256',
        'policy = any',
        'unique_subject = no',
        'email_in_dn = no',
        '[any]',
        'commonName = supplied',
        '[v3]',
        ...spec.ext,
        '',
      ].join('\n'),
    );
    await run('openssl', ['req', '-new', '-key', f('key.pem'), '-subj', `/CN=${spec.subject}`, '-out', f('req.csr')]);
    const signer = spec.issuer
      ? ['-cert', spec.issuer.certPath, '-keyfile', spec.issuer.keyPath]
      : ['-selfsign', '-keyfile', f('key.pem')];
    await run('openssl', [
      'ca', '-batch', '-notext', '-config', f('ca.cnf'), '-extensions', 'v3', '-in', f('req.csr'), '-out', f('cert.pem'),
      '-startdate', opensslTime(spec.notBefore), '-enddate', opensslTime(spec.notAfter), ...signer,
    ]);
    return await readFile(f('cert.pem'), 'utf8');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** YYYYMMDDHHMMSSZ, which `openssl ca -startdate/-enddate` accepts. */
function opensslTime(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** An existing CA (e.g. tokend's own pki/ca.crt + ca.key) as an issuer for mintCert. */
export async function caFromFiles(certPath: string, keyPath: string, name = 'ca'): Promise<MintedCa> {
  const certPem = await readFile(certPath, 'utf8');
  const keyPem = await readFile(keyPath, 'utf8');
  const keyType: KeyType = createPublicKey(keyPem).asymmetricKeyType === 'ec' ? 'ec' : 'rsa';
  return { name, certPath, keyPath, certPem, keyPem, keyType, serial: normalizeSerial(new X509Certificate(certPem).serialNumber) };
}
