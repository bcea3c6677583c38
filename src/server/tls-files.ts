// TLS material from the PKI directory (placeholder reader until the pki module lands).

import { join } from 'node:path';
import { TokendError } from '../errors.js';
import type { PkiConfig } from '../config.js';
import { normalizeSerialHex } from '../identity.js';
import { readNamedFile, readPrivateFile } from '../private-files.js';

/** What the listener needs: trust bundle, server chain and key, and the revoked serials. */
export interface TlsMaterial {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly certNotAfter: Date;
  readonly revoked: ReadonlySet<string>;
}

/** Reads ca.crt, server.crt, server.key (0600) and revoked.json from the PKI directory. */
export async function loadTlsMaterial(pki: PkiConfig): Promise<TlsMaterial> {
  const { X509Certificate } = await import('node:crypto');
  const ca = (await readNamedFile(pki.caBundle ?? join(pki.dir, 'ca.crt'), 'CA certificate')).toString('utf8');
  const cert = (await readNamedFile(join(pki.dir, 'server.crt'), 'server certificate')).toString('utf8');
  const key = (await readPrivateFile(join(pki.dir, 'server.key'), 'server key')).toString('utf8');
  let revoked: string[] = [];
  try {
    const doc = JSON.parse((await readNamedFile(join(pki.dir, 'revoked.json'), 'denylist')).toString('utf8')) as { serial: string }[];
    revoked = doc.map((r) => normalizeSerialHex(r.serial));
  } catch (err) {
    if (!(err instanceof TokendError && err.code === 'ERR_NOT_FOUND')) throw err;
  }
  return { ca, cert, key, certNotAfter: new Date(new X509Certificate(cert).validTo), revoked: new Set(revoked) };
}
