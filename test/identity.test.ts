import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { certificateFields, identityOf } from '../src/identity.js';

const base = { serialNumber: '00AB12', valid_to: 'Dec  2 12:00:00 2026 GMT', subject: { CN: 'billing' } } as unknown as PeerCertificate;
const cert = (over: Partial<Record<string, unknown>>) => ({ ...base, ...over }) as PeerCertificate;
const opts = { from: 'spiffe-then-cn' as const, trustDomain: 'tokend.local' };

describe('identity from a verified certificate', () => {
  it('takes the name from the SPIFFE ID in our trust domain', () => {
    expect(identityOf(cert({ subjectaltname: 'URI:spiffe://tokend.local/web, DNS:x' }), opts)).toMatchObject({
      name: 'web',
      source: 'spiffe',
      serial: 'ab12',
    });
  });

  it('falls back to the CN when there is no SPIFFE ID', () => {
    expect(identityOf(cert({ subjectaltname: 'DNS:x' }), opts)).toMatchObject({ name: 'billing', source: 'cn' });
  });

  it('does not fall back to the CN when the SPIFFE ID is from another trust domain', () => {
    expect(identityOf(cert({ subjectaltname: 'URI:spiffe://evil.example/billing' }), opts)).toMatchObject({
      error: "SPIFFE ID 'spiffe://evil.example/billing' is not in trust domain 'tokend.local'",
    });
  });

  it('refuses two SPIFFE IDs, a nested path, and an invalid CN', () => {
    expect(identityOf(cert({ subjectaltname: 'URI:spiffe://tokend.local/a, URI:spiffe://tokend.local/b' }), opts)).toHaveProperty('error');
    expect(identityOf(cert({ subjectaltname: 'URI:spiffe://tokend.local/a/b' }), opts)).toHaveProperty('error');
    expect(identityOf(cert({ subject: { CN: 'Bad Name' } }), opts)).toHaveProperty('error');
  });

  it('uses only the SPIFFE ID or only the CN when configured so', () => {
    const both = cert({ subjectaltname: 'URI:spiffe://tokend.local/web' });
    expect(identityOf(both, { ...opts, from: 'cn' })).toMatchObject({ name: 'billing', source: 'cn' });
    expect(identityOf(cert({}), { ...opts, from: 'spiffe' })).toHaveProperty('error');
  });
});

/** A throwaway self-signed certificate minted by the real openssl. */
function mint(subject: string, san?: string): X509Certificate {
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-days', '1', '-subj', subject];
  if (san) args.push('-addext', `subjectAltName=${san}`);
  return new X509Certificate(execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'ignore'] }));
}

describe('certificate fields from an X509Certificate', () => {
  it('gives identityOf what a PeerCertificate would: serial, SAN, expiry and the CN', () => {
    const x = mint('/O=acme/CN=billing', 'URI:spiffe://tokend.local/web, DNS:x');
    const fields = certificateFields(x);
    expect(fields).toEqual({ serialNumber: x.serialNumber, subjectaltname: 'URI:spiffe://tokend.local/web, DNS:x', valid_to: x.validTo, subject: { CN: 'billing' } });
    expect(identityOf(fields, opts)).toMatchObject({ name: 'web', source: 'spiffe', notAfter: x.validTo });
    expect(identityOf(fields, { ...opts, from: 'cn' })).toMatchObject({ name: 'billing', source: 'cn' });
  });

  it('refuses a certificate with two CNs, or none, when the CN is the identity', () => {
    expect(identityOf(certificateFields(mint('/CN=a/CN=b')), opts)).toHaveProperty('error');
    expect(identityOf(certificateFields(mint('/O=acme')), opts)).toMatchObject({ error: 'the certificate has neither a SPIFFE ID nor a single subject CN' });
  });

  it('yields no identity when there is no certificate at all', () => {
    expect(identityOf(certificateFields(undefined), opts)).toHaveProperty('error');
  });
});
