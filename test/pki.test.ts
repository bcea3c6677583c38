// The PKI's building blocks: serials, lifetimes, certificate profiles, the
// denylist, and the fail-closed loading serve relies on.

import { X509Certificate } from 'node:crypto';
import { chmod, cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import type { PkiConfig } from '../src/config.js';
import { isTokendError } from '../src/errors.js';
import {
  createCa,
  ensureDevPki,
  isRenewalDue,
  isRevoked,
  issueBundle,
  listCertificates,
  loadTlsMaterial,
  normalizeSerial,
  parseTtl,
  renewServerCertIfDue,
  revoke,
} from '../src/pki/index.js';
import { randomSerial } from '../src/pki/x509.js';
import { caFromFiles, mintCa, mintCert, mintServerCert } from './support/certs.js';
import { tempDir } from './support/tmp.js';

const DAY = 86_400_000;

/** A PkiConfig as the config file would give it, for a pki dir under `root`. */
function pkiConfig(root: string, pki: Record<string, unknown> = {}): PkiConfig {
  return parseConfig({ pki: { dir: 'pki', ...pki } }, join(root, 'tokend.json')).pki;
}

/** Expects `promise` to fail with `code` and a message matching `message`. */
async function rejects(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isTokendError(err), `expected a TokendError, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  expect((err as Error).message).toMatch(message);
}

describe('serials', () => {
  it.each([
    ['63:AA:08:09', '63aa0809'],
    ['00:6A:FF', '6aff'],
    ['0x00FF', 'ff'],
    ['7F', '7f'],
    ['0', '0'],
    ['000', '0'],
  ])('normalizes %j to %j', (input, expected) => {
    expect(normalizeSerial(input)).toBe(expected);
  });

  it.each(['', 'xyz', '-01', '12 34', 'demo'])('rejects %j with ERR_USAGE', (input) => {
    expect(() => normalizeSerial(input)).toThrow(/not a hexadecimal certificate serial/);
  });

  it('matches Node\'s upper-case serialNumber against the denylist', () => {
    const revoked = new Set([normalizeSerial('4a:bc:00:01')]);
    expect(isRevoked(revoked, '4ABC0001')).toBe(true);
    expect(isRevoked(revoked, '4ABC0002')).toBe(false);
  });

  it('counts a serial it cannot read as revoked (fails closed)', () => {
    expect(isRevoked(new Set(), '-01')).toBe(true);
    expect(isRevoked(new Set(), undefined)).toBe(true);
  });

  it('makes positive 16-byte serials without a leading zero byte', () => {
    for (let i = 0; i < 200; i += 1) {
      const s = randomSerial();
      expect(s).toMatch(/^[4-7][0-9a-f]{31}$/);
      expect(normalizeSerial(s)).toBe(s);
    }
    expect(randomSerial(() => Buffer.alloc(16, 0xff))).toBe(`7f${'ff'.repeat(15)}`);
    expect(randomSerial(() => Buffer.alloc(16, 0))).toBe(`40${'00'.repeat(15)}`);
  });
});

describe('lifetimes', () => {
  it.each([
    ['1m', 60_000],
    ['12h', 12 * 3_600_000],
    ['30d', 30 * DAY],
    ['397d', 397 * DAY],
  ])('parses %j', (text, ms) => {
    expect(parseTtl(text)).toBe(ms);
  });

  it.each(['', '0d', '398d', '30', '1y', '-1d', '1.5d', 'd'])('rejects %j and states the range', (text) => {
    expect(() => parseTtl(text)).toThrow(/from 1m to 397d/);
  });

  it('is due when less than the fraction of the lifetime remains', () => {
    const start = new Date('2030-01-01T00:00:00Z');
    const end = new Date('2030-01-31T00:00:00Z'); // 30 days
    expect(isRenewalDue(start, end, 0.33, new Date('2030-01-20T00:00:00Z'))).toBe(false); // 11 days left
    expect(isRenewalDue(start, end, 0.33, new Date('2030-01-22T00:00:00Z'))).toBe(true); // 9 days left
    expect(isRenewalDue(start, end, 0.33, new Date('2030-02-01T00:00:00Z'))).toBe(true); // expired
    expect(isRenewalDue(start, end, 0.33, new Date('2029-12-31T00:00:00Z'))).toBe(true); // not yet valid
  });
});

describe('certificate profiles', () => {
  let root: string;
  let pki: PkiConfig;
  let caCert: X509Certificate;

  beforeAll(async () => {
    root = await tempDir();
    pki = pkiConfig(root, { trustDomain: 'fleet.example' });
    await ensureDevPki(pki, ['billing']);
    caCert = new X509Certificate(await readFile(join(pki.dir, 'ca.crt')));
  });

  it('makes a CA with pathlen 0, keyCertSign and critical name constraints for the trust domain and loopback', async () => {
    const text = await opensslText(join(pki.dir, 'ca.crt'));
    expect(caCert.ca).toBe(true);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Name Constraints: critical\s+Permitted:\s+URI:fleet\.example\s+IP:127\.0\.0\.1\/255\.255\.255\.255\s+IP:0:0:0:0:0:0:0:1\//);
    expect(text).not.toMatch(/DNS:/);
    expect(text).toMatch(/Public-Key: \(3072 bit\)/);
  });

  it('makes client certificates with the SPIFFE URI, CN, clientAuth only and RSA-2048', async () => {
    const cert = new X509Certificate(await readFile(join(pki.dir, 'clients', 'billing', 'client.crt')));
    expect(cert.subject).toBe('CN=billing');
    expect(cert.subjectAltName).toBe('URI:spiffe://fleet.example/billing');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert) && cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const text = await opensslText(join(pki.dir, 'clients', 'billing', 'client.crt'));
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    const lifetime = cert.validToDate.getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(7 * DAY - 60_000); // the default, pki.clientTtlDays
    expect(lifetime).toBeLessThanOrEqual(7 * DAY);
  });

  it('makes a server certificate for 127.0.0.1, ::1 and localhost, serverAuth only', async () => {
    const cert = new X509Certificate(await readFile(join(pki.dir, 'server.crt')));
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkHost('example.com')).toBeUndefined();
  });

  it('never outlives the CA', async () => {
    const shortRoot = await tempDir();
    const shortPki = pkiConfig(shortRoot, { caTtlDays: 30 });
    await createCa(shortPki);
    const entry = await issueBundle(shortPki, 'long', { ttlMs: parseTtl('397d') });
    const ca = new X509Certificate(await readFile(join(shortPki.dir, 'ca.crt')));
    expect(new Date(entry.notAfter).getTime()).toBe(ca.validToDate.getTime());
  });

  it('refuses to issue for a trust domain the CA does not vouch for', async () => {
    const moved = pkiConfig(root, { trustDomain: 'other.example' });
    await rejects(issueBundle(moved, 'billing2'), 'ERR_PKI', /only vouches for trust domain\(s\) 'fleet\.example', but pki\.trustDomain is 'other\.example'/);
  });

  it('refuses an invalid identity', async () => {
    await rejects(issueBundle(pki, '../etc'), 'ERR_INVALID_NAME', /identity "\.\.\/etc" is not valid/);
  });
});

describe('loadTlsMaterial (fails closed, naming the file)', () => {
  let good: string;

  beforeAll(async () => {
    good = await tempDir();
    await ensureDevPki(pkiConfig(good), []);
  });

  /** A fresh copy of the good PKI to break one thing in. */
  async function copy(): Promise<PkiConfig> {
    const root = await tempDir();
    await cp(join(good, 'pki'), join(root, 'pki'), { recursive: true });
    return pkiConfig(root);
  }

  it('loads a good internal PKI', async () => {
    const pki = await copy();
    const m = await loadTlsMaterial(pki);
    expect(m.ca).toBe(await readFile(join(pki.dir, 'ca.crt'), 'utf8'));
    expect(m.cert).toContain('BEGIN CERTIFICATE');
    expect(m.key).toContain('PRIVATE KEY');
    expect(m.certNotAfter.getTime()).toBeGreaterThan(Date.now() + 29 * DAY);
    expect(m.revoked.size).toBe(0);
  });

  it('refuses a server key readable by others', async () => {
    const pki = await copy();
    await chmod(join(pki.dir, 'server.key'), 0o644);
    await rejects(loadTlsMaterial(pki), 'ERR_PERMISSIONS', /server key '.*server\.key' is accessible by group or others/);
  });

  it('refuses a missing server certificate and says how to make one', async () => {
    const pki = await copy();
    await rm(join(pki.dir, 'server.crt'));
    await rejects(loadTlsMaterial(pki), 'ERR_PKI', /server certificate '.*server\.crt' does not exist; run 'tokend ca init'/);
  });

  it('refuses a server key that does not belong to the certificate', async () => {
    const pki = await copy();
    const other = await tempDir();
    await ensureDevPki(pkiConfig(other), []);
    await cp(join(other, 'pki', 'server.key'), join(pki.dir, 'server.key'));
    await rejects(loadTlsMaterial(pki), 'ERR_PKI', /server key '.*' does not belong to server certificate/);
  });

  it('refuses an expired server certificate', async () => {
    const pki = await copy();
    const ca = await caFromFiles(join(pki.dir, 'ca.crt'), join(pki.dir, 'ca.key'));
    await mintServerCert(pki.dir, ca, { notBefore: new Date(Date.now() - 2 * DAY), notAfter: new Date(Date.now() - DAY) });
    await rejects(loadTlsMaterial(pki), 'ERR_PKI', /server certificate '.*server\.crt' expired at/);
  });

  it('refuses a server certificate another CA issued', async () => {
    const pki = await copy();
    await mintServerCert(pki.dir, await mintCa(await tempDir()));
    await rejects(loadTlsMaterial(pki), 'ERR_PKI', /was not issued by the CA/);
  });

  it('refuses a server certificate without serverAuth', async () => {
    const pki = await copy();
    const ca = await caFromFiles(join(pki.dir, 'ca.crt'), join(pki.dir, 'ca.key'));
    await mintServerCert(pki.dir, ca, { eku: 'clientAuth' });
    await rejects(loadTlsMaterial(pki), 'ERR_PKI', /is not for serverAuth/);
  });

  it('refuses a malformed denylist', async () => {
    const pki = await copy();
    await writeFile(join(pki.dir, 'revoked.json'), '{"format":"tokend-revoked/1","revoked":[{"serial":"XYZ"}]}', { mode: 0o600 });
    await rejects(loadTlsMaterial(pki), 'ERR_PKI', /denylist '.*revoked\.json': entry 1 is malformed/);
  });

  it('refuses a denylist others can write', async () => {
    const pki = await copy();
    await writeFile(join(pki.dir, 'revoked.json'), '{"format":"tokend-revoked/1","revoked":[]}', { mode: 0o666 });
    await chmod(join(pki.dir, 'revoked.json'), 0o666);
    await rejects(loadTlsMaterial(pki), 'ERR_PERMISSIONS', /denylist '.*revoked\.json' is accessible by group or others/);
  });

  it('loads an external CA bundle with an ECDSA server certificate, and never issues', async () => {
    const root = await tempDir();
    const ca = await mintCa(root, { name: 'corp-ca', keyType: 'ec' });
    const server = await mintServerCert(root, ca, { keyType: 'ec' });
    const pki = pkiConfig(root, { mode: 'external', caBundle: 'corp-ca.crt', serverCert: 'server.crt', serverKey: 'server.key' });
    const m = await loadTlsMaterial(pki);
    expect(m.ca).toBe(ca.certPem);
    expect(m.cert).toBe(server.certPem);
    expect(await renewServerCertIfDue(pki)).toBe(false);
    await rejects(issueBundle(pki, 'billing'), 'ERR_PKI', /pki\.mode is "external": tokend only verifies certificates from the CA bundle/);
    await rejects(createCa(pki), 'ERR_PKI', /does not create a CA/);
    expect(await ensureDevPki(pki, ['demo'])).toEqual([]);
  });

  it('revokes by serial in external mode, and refuses revoking by identity there', async () => {
    const root = await tempDir();
    const ca = await mintCa(root, { name: 'corp-ca' });
    await mintServerCert(root, ca);
    const leaf = await mintCert(root, ca, { identity: 'billing' });
    const pki = pkiConfig(root, { mode: 'external', caBundle: 'corp-ca.crt', serverCert: 'server.crt', serverKey: 'server.key' });
    const report = await revoke(pki, leaf.serial.toUpperCase());
    expect(report.revoked.map((r) => r.serial)).toEqual([leaf.serial]);
    expect((await loadTlsMaterial(pki)).revoked.has(leaf.serial)).toBe(true);
    expect((await revoke(pki, leaf.serial)).alreadyRevoked).toEqual([leaf.serial]);
    await rejects(revoke(pki, 'billing', 'identity'), 'ERR_USAGE', /in external mode revoke by serial/);
    expect((await listCertificates(pki)).map((r) => [r.serial, r.status])).toEqual([[leaf.serial, 'revoked']]);
  });
});

describe('renewServerCertIfDue', () => {
  it('keeps a fresh certificate and renews one with little lifetime left', async () => {
    const root = await tempDir();
    const pki = pkiConfig(root);
    await ensureDevPki(pki, []);
    expect(await renewServerCertIfDue(pki)).toBe(false);
    const ca = await caFromFiles(join(pki.dir, 'ca.crt'), join(pki.dir, 'ca.key'));
    const old = await mintServerCert(pki.dir, ca, { notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() + 5 * DAY) });
    expect(await renewServerCertIfDue(pki)).toBe(true);
    const now = new X509Certificate(await readFile(join(pki.dir, 'server.crt')));
    expect(normalizeSerial(now.serialNumber)).not.toBe(old.serial);
    await loadTlsMaterial(pki); // and the new pair loads
  });

  it('repairs a certificate and key that do not match (a crash between the two writes)', async () => {
    const root = await tempDir();
    const pki = pkiConfig(root);
    await ensureDevPki(pki, []);
    const other = await tempDir();
    await ensureDevPki(pkiConfig(other), []);
    await cp(join(other, 'pki', 'server.key'), join(pki.dir, 'server.key'));
    expect(await renewServerCertIfDue(pki)).toBe(true);
    await loadTlsMaterial(pki);
  });

  it('refuses, rather than replaces, a server key with loose permissions', async () => {
    const root = await tempDir();
    const pki = pkiConfig(root);
    await ensureDevPki(pki, []);
    await chmod(join(pki.dir, 'server.key'), 0o640);
    await rejects(renewServerCertIfDue(pki), 'ERR_PERMISSIONS', /server key/);
  });

  it('refuses without a CA and says how to make one', async () => {
    await rejects(renewServerCertIfDue(pkiConfig(await tempDir())), 'ERR_PKI', /there is no CA in '.*'; run 'tokend ca init'/);
  });
});

describe('registry and denylist', () => {
  it('records every one of many bundles issued at once (the lock serializes them)', async () => {
    const root = await tempDir();
    const pki = pkiConfig(root);
    await createCa(pki);
    const names = Array.from({ length: 6 }, (_, i) => `svc-${i}`);
    await Promise.all(names.map((n) => issueBundle(pki, n)));
    const listed = await listCertificates(pki);
    expect(listed.map((r) => r.identity).sort()).toEqual(names);
    expect(listed.every((r) => r.status === 'valid' && !r.revoked)).toBe(true);
  });

  it('revokes every unexpired certificate of an identity, once', async () => {
    const root = await tempDir();
    const pki = pkiConfig(root);
    await createCa(pki);
    const a = await issueBundle(pki, 'api');
    const b = await issueBundle(pki, 'api', { force: true });
    await issueBundle(pki, 'web');
    const report = await revoke(pki, 'api');
    expect(report.revoked.map((r) => r.serial).sort()).toEqual([a.serial, b.serial].sort());
    expect(report.revoked.every((r) => r.identity === 'api')).toBe(true);
    expect((await revoke(pki, 'api')).revoked).toEqual([]);
    const m = await listCertificates(pki);
    expect(m.filter((r) => r.revoked).map((r) => r.identity)).toEqual(['api', 'api']);
    await rejects(revoke(pki, 'nobody'), 'ERR_NOT_FOUND', /no certificate was issued for identity 'nobody'/);
  });
});

describe('config', () => {
  it('requires caBundle, serverCert and serverKey in external mode', () => {
    expect(() => parseConfig({ pki: { mode: 'external', caBundle: 'ca.pem', serverCert: 's.crt' } }, '/etc/tokend/tokend.json')).toThrow(
      /'pki\.serverKey' is required when mode is "external"/,
    );
  });

  it('rejects serverCert in internal mode (tokend manages it there)', () => {
    expect(() => parseConfig({ pki: { serverCert: 's.crt' } }, '/etc/tokend/tokend.json')).toThrow(/'pki\.serverCert' is only for mode "external"/);
  });

  it('resolves external paths against the config directory and bounds caTtlDays', () => {
    const pki = parseConfig({ pki: { mode: 'external', caBundle: 'ca.pem', serverCert: 's.crt', serverKey: 's.key' } }, '/etc/tokend/tokend.json').pki;
    expect([pki.caBundle, pki.serverCert, pki.serverKey]).toEqual(['/etc/tokend/ca.pem', '/etc/tokend/s.crt', '/etc/tokend/s.key']);
    expect(pki.caTtlDays).toBe(3650);
    expect(() => parseConfig({ pki: { caTtlDays: 10 } }, '/etc/tokend/tokend.json')).toThrow(/'pki\.caTtlDays' must be a number from 30 to 9125/);
  });
});

async function opensslText(path: string): Promise<string> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve, reject) =>
    execFile('openssl', ['x509', '-in', path, '-noout', '-text'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
}

describe('test support: minted certificates are what they say', () => {
  it.each(['rsa', 'ec'] as const)('mints a %s CA with name constraints and leaves with each EKU choice', async (keyType) => {
    const dir = await tempDir();
    const ca = await mintCa(dir, { keyType, trustDomain: 'tokend.local' });
    expect(await opensslText(ca.certPath)).toMatch(/Name Constraints: critical\s+Permitted:\s+URI:tokend\.local/);
    const cases = [
      ['clientAuth', ['1.3.6.1.5.5.7.3.2']],
      ['serverAuth', ['1.3.6.1.5.5.7.3.1']],
      ['both', ['1.3.6.1.5.5.7.3.2', '1.3.6.1.5.5.7.3.1']],
      ['none', undefined],
    ] as const;
    for (const [eku, oids] of cases) {
      const leaf = await mintCert(dir, ca, { identity: `svc-${eku.toLowerCase()}`, eku, keyType });
      const cert = new X509Certificate(leaf.certPem);
      expect(cert.keyUsage?.slice().sort()).toEqual(oids?.slice().sort());
      expect(cert.subjectAltName).toBe(`URI:spiffe://tokend.local/svc-${eku.toLowerCase()}`);
      expect(normalizeSerial(cert.serialNumber)).toBe(leaf.serial);
      expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
      expect(cert.publicKey.asymmetricKeyType).toBe(keyType);
    }
    const server = await mintServerCert(dir, ca, { keyType });
    expect(new X509Certificate(server.certPem).checkIP('::1')).toBe('::1');
  });
});
