// `tokend health`: is the local tokend up? For container HEALTHCHECKs and scripts.
// Without a client bundle it proves the listener completes a TLS handshake with a
// server certificate the CA vouches for (tokend then refuses the certificate-less
// client, as it should); with --bundle it also asks GET /healthz over mTLS.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'node:https';
import { connect } from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import { pkiPaths } from '../../pki/index.js';
import { parseListenAddress } from '../../server/listeners.js';
import { EXIT } from '../exit-codes.js';
import { out, readConfig, str } from '../command.js';
import type { Command } from '../command.js';

const TIMEOUT_MS = 3_000;

export const healthCommand: Command = {
  name: 'health',
  summary: 'check that the local tokend answers (TLS handshake; with --bundle, GET /healthz over mTLS)',
  usage: '[--bundle DIR] [--address HOST:PORT|unix:/path]',
  help: 'Exits 0 when healthy, 1 when not. Uses the first listen address of the config unless --address is given.',
  options: { bundle: { type: 'string' }, address: { type: 'string' } },
  async run(ctx) {
    const config = await readConfig(ctx);
    const address = parseListenAddress(str(ctx.values.address) ?? (config.server.listen[0] as string));
    const bundle = str(ctx.values.bundle);
    const caPath = bundle ? join(bundle, 'ca.crt') : config.pki.mode === 'external' ? (config.pki.caBundle as string) : pkiPaths(config.pki).caCert;
    const tls: ConnectionOptions = {
      ca: await readFile(caPath),
      servername: 'localhost',
      ...(address.kind === 'tcp' ? { host: address.host, port: address.port } : { path: address.path }),
      ...(bundle ? { cert: await readFile(join(bundle, 'client.crt')), key: await readFile(join(bundle, 'client.key')) } : {}),
    };
    try {
      const what = bundle ? await healthz(tls) : await handshake(tls);
      out(ctx, `healthy: ${address.text} ${what}`);
      return EXIT.ok;
    } catch (err) {
      out(ctx, `unhealthy: ${address.text}: ${err instanceof Error ? err.message : String(err)}`);
      return EXIT.error;
    }
  },
};

/** Completes a TLS handshake and verifies the server certificate; the server may then refuse us. */
function handshake(options: ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ ...options, timeout: TIMEOUT_MS }, () => {
      const notAfter = socket.getPeerCertificate().valid_to;
      socket.destroy();
      resolve(`completes a TLS handshake (server certificate valid until ${notAfter})`);
    });
    socket.once('timeout', () => socket.destroy(new Error('no TLS handshake within 3 s')));
    socket.once('error', reject);
  });
}

/** GET /healthz over mTLS; healthy on 200. */
function healthz(options: ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ ...options, path: '/healthz', method: 'GET', agent: false, timeout: TIMEOUT_MS }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve('answers GET /healthz with 200');
      else reject(new Error(`GET /healthz answered ${res.statusCode}`));
    });
    req.once('timeout', () => req.destroy(new Error('no answer within 3 s')));
    req.once('error', reject);
    req.end();
  });
}
