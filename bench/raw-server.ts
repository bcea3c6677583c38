// The runtime's ceiling: a minimal Node https server with tokend's exact TLS and
// HTTP server options (client certificate required and verified), answering
// every request with a fixed 64-byte body and tokend's response headers. No
// policy, no cache, no decryption, no log. Run as its own process by the bench:
//   node bench/raw-server.ts <port> <ca.crt> <server.crt> <server.key>

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { DEFAULTS } from '../dist/config.js';
import { serverTlsOptions } from '../dist/server/tls-options.js';

const [port, caPath, certPath, keyPath] = process.argv.slice(2) as [string, string, string, string];
const tls = { ca: readFileSync(caPath, 'utf8'), cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
const body = Buffer.from('r'.repeat(64));

// The same options src/server/listeners.ts gives tokend's listener.
const server = createServer(
  {
    ...serverTlsOptions(tls as Parameters<typeof serverTlsOptions>[0], randomBytes(48)),
    maxHeaderSize: DEFAULTS.maxHeaderBytes,
    headersTimeout: DEFAULTS.headersTimeoutMs,
    requestTimeout: DEFAULTS.requestTimeoutMs,
    keepAliveTimeout: DEFAULTS.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(1_000, DEFAULTS.headersTimeoutMs),
    requireHostHeader: true,
    joinDuplicateHeaders: false,
  },
  (_req, res) => {
    res.writeHead(200, {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'content-type': 'text/plain',
      'content-length': body.length,
      'x-token-version': '1',
    });
    res.end(body);
  },
);
server.maxConnections = DEFAULTS.maxConnections;
server.maxRequestsPerSocket = DEFAULTS.maxRequestsPerConnection;
server.listen({ host: '127.0.0.1', port: Number(port) });
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
