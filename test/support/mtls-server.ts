// A minimal node:https server that demands a client certificate, standing in
// for `tokend serve` where a test needs only the handshake: it proves bundles
// and refusals with real TLS. Answers `hello <CN> <serial>`; 403 for a
// certificate whose serial is in `revoked` (as serve does with the denylist).

import { execFile } from 'node:child_process';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { isRevoked } from '../../src/pki/serial.js';

export interface Material {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly revoked?: ReadonlySet<string>;
}

export interface MtlsServer {
  readonly port: number;
  /** Requests that reached HTTP (a refused handshake never does). */
  readonly requests: number;
  /** TLS handshakes that failed, with OpenSSL's verify code (CERT_HAS_EXPIRED, INVALID_PURPOSE, …). */
  readonly handshakeErrors: readonly string[];
  /** Swaps certificates and CA for new connections; open connections keep going (what serve does on reload). */
  reload(material: Material): void;
  close(): Promise<void>;
  readonly server: Server;
}

/** Starts the server on 127.0.0.1 (or `host`) on a free port. */
export async function startMtlsServer(material: Material, host = '127.0.0.1'): Promise<MtlsServer> {
  let revoked = material.revoked ?? new Set<string>();
  let requests = 0;
  const handshakeErrors: string[] = [];
  const server = createServer(
    { ca: material.ca, cert: material.cert, key: material.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req, res) => {
      requests += 1;
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      if (isRevoked(revoked, peer.serialNumber)) {
        res.writeHead(403).end('revoked\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${peer.subject.CN} ${peer.serialNumber}\n`);
    },
  );
  // Node rejects an unauthorized client after the handshake and reports the reason on the socket, not the error.
  server.on('tlsClientError', (err, socket) => handshakeErrors.push(`${err.message} ${socket.authorizationError ?? ''}`.trim()));
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    server,
    get requests() {
      return requests;
    },
    handshakeErrors,
    reload(next) {
      server.setSecureContext({ ca: next.ca, cert: next.cert, key: next.key });
      revoked = next.revoked ?? new Set<string>();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface CurlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Real curl with a client certificate, the way a container calls tokend. */
export function curl(url: string, files: { cert?: string; key?: string; cacert: string }, extra: readonly string[] = []): Promise<CurlResult> {
  const identity = files.cert === undefined ? [] : ['--cert', files.cert, ...(files.key === undefined ? [] : ['--key', files.key])];
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-sS', '--max-time', '10', ...identity, '--cacert', files.cacert, ...extra, url],
      { env: { ...process.env, SSL_CERT_FILE: '/dev/null' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
