// Where the PKI lives on disk: one directory, one name per file, so that every
// module (and the docs) agree on the layout.

import { join } from 'node:path';
import type { PkiConfig } from '../config.js';
import { assertValidName } from '../names.js';

/** The files under `pki.dir` (and, in external mode, the configured server certificate and key). */
export interface PkiPaths {
  readonly dir: string;
  /** The CA's private key, 0600 (internal mode). */
  readonly caKey: string;
  /** The CA certificate clients and the server trust (internal mode). */
  readonly caCert: string;
  /** The server certificate and its 0600 key; in external mode the configured paths. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** Registry of issued client certificates (internal mode). */
  readonly issued: string;
  /** The denylist of revoked serials that serve enforces (both modes). */
  readonly revoked: string;
  /** Default parent of client bundles: clients/<identity>/. */
  readonly clients: string;
  /** Held while a command changes the CA, the registry or the denylist. */
  readonly lock: string;
}

/** The layout for `pki`. Pure. */
export function pkiPaths(pki: PkiConfig): PkiPaths {
  const dir = pki.dir;
  return {
    dir,
    caKey: join(dir, 'ca.key'),
    caCert: join(dir, 'ca.crt'),
    serverCert: pki.serverCert ?? join(dir, 'server.crt'),
    serverKey: pki.serverKey ?? join(dir, 'server.key'),
    issued: join(dir, 'issued.json'),
    revoked: join(dir, 'revoked.json'),
    clients: join(dir, 'clients'),
    lock: join(dir, '.lock'),
  };
}

/** The default bundle directory of `identity`: <pki.dir>/clients/<identity>. Throws ERR_INVALID_NAME. */
export function defaultBundleDir(pki: PkiConfig, identity: string): string {
  return join(pkiPaths(pki).clients, assertValidName(identity, 'identity'));
}

/** The SPIFFE ID tokend puts in a client certificate's URI SAN. */
export function spiffeId(trustDomain: string, identity: string): string {
  return `spiffe://${trustDomain}/${identity}`;
}
