// TLS settings for the listener: mutual TLS only, TLS 1.3 preferred, 1.2 minimum, modern AEAD ciphers.

import type { SecureContextOptions, TlsOptions } from 'node:tls';
import type { TlsMaterial } from '../pki/index.js';

/** TLS 1.2 suites: ECDHE with AEAD only. TLS 1.3 suites are OpenSSL's defaults (all AEAD). */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** The secure-context part (what a reload swaps with setSecureContext). */
export function secureContextOptions(tls: TlsMaterial): SecureContextOptions {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    minVersion: 'TLSv1.2',
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    ecdhCurve: 'X25519:P-256:P-384',
    sessionTimeout: 300,
  };
}

/**
 * Server options: a client certificate is required and verified against the CA
 * during the handshake, so a connection without one never reaches HTTP.
 */
export function serverTlsOptions(tls: TlsMaterial, ticketKeys: Buffer): TlsOptions {
  return { ...secureContextOptions(tls), requestCert: true, rejectUnauthorized: true, ticketKeys };
}
