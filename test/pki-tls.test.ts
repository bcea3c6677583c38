// Bundles and refusals proven with real TLS: a node:https server that demands a
// client certificate (as serve does) and real curl, as a container would call it.

import { execFile } from 'node:child_process';
import { request } from 'node:https';
import { promisify } from 'node:util';
import type { Agent as HttpsAgent } from 'node:https';
import { Agent } from 'node:https';
import { connect } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import type { PkiConfig } from '../src/config.js';
import { loadTlsMaterial, renewServerCertIfDue } from '../src/pki/index.js';
import { caFromFiles, mintCa, mintCert, mintServerCert } from './support/certs.js';
import type { MintedCa } from './support/certs.js';
import { tokend } from './support/cli.js';
import { curl, startMtlsServer } from './support/mtls-server.js';
import type { MtlsServer } from './support/mtls-server.js';
import { hasCommand, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';

const skip = missing({ curl: hasCommand('curl'), openssl: hasCommand('openssl') });
const DAY = 86_400_000;
const run = promisify(execFile);

describe.skipIf(skip)('client certificates over real mutual TLS', () => {
  let dir: string;
  let pki: PkiConfig;
  let ca: MintedCa;
  let server: MtlsServer;
  let server6: MtlsServer;
  const bundle = (identity: string) => {
    const b = join(pki.dir, 'clients', identity);
    return { cert: join(b, 'client.crt'), key: join(b, 'client.key'), cacert: join(b, 'ca.crt') };
  };
  const url = (host = '127.0.0.1', port = server.port) => `https://${host}:${port}/`;

  beforeAll(async () => {
    dir = await tempDir();
    expect((await tokend(['init', '--dir', dir])).code).toBe(0);
    pki = (await loadConfig(join(dir, 'tokend.json'))).pki;
    ca = await caFromFiles(join(pki.dir, 'ca.crt'), join(pki.dir, 'ca.key'), 'tokend-ca');
    const material = await loadTlsMaterial(pki);
    server = await startMtlsServer(material);
    server6 = await startMtlsServer(material, '::1');
  });
  afterAll(async () => {
    await server?.close();
    await server6?.close();
  });

  /** Asserts curl was refused during the handshake: nothing reached HTTP and the server logged why. */
  async function expectRefused(files: { cert: string; key: string; cacert: string }, reason: RegExp) {
    const before = { requests: server.requests, errors: server.handshakeErrors.length };
    const result = await curl(url(), files);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(server.requests).toBe(before.requests);
    expect(server.handshakeErrors.slice(before.errors).join('\n')).toMatch(reason);
  }

  it('accepts the demo bundle from tokend init with curl on 127.0.0.1, [::1] and localhost', async () => {
    const serial = await serialOfBundle('demo');
    for (const target of [url('127.0.0.1'), url('[::1]', server6.port), url('localhost')]) {
      const result = await curl(target, bundle('demo'));
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`hello demo ${serial}\n`);
    }
  });

  it('accepts a bundle from cert issue for a dotted identity (the CA does not constrain DNS names)', async () => {
    expect((await tokend(['cert', 'issue', 'billing.prod', '--dir', dir])).code).toBe(0);
    const result = await curl(url(), bundle('billing.prod'));
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^hello billing\.prod [0-9A-F]+\n$/);
  });

  it('accepts an ECDSA P-256 client certificate signed by the RSA CA', async () => {
    const ec = await mintCert(dir, ca, { identity: 'ec-client', keyType: 'ec' });
    const result = await curl(url(), { cert: ec.certPath, key: ec.keyPath, cacert: ca.certPath });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^hello ec-client /);
  });

  it('refuses an expired client certificate', async () => {
    const c = await mintCert(dir, ca, { identity: 'demo', name: 'expired', notBefore: new Date(Date.now() - 2 * DAY), notAfter: new Date(Date.now() - DAY) });
    await expectRefused({ cert: c.certPath, key: c.keyPath, cacert: ca.certPath }, /CERT_HAS_EXPIRED/);
  });

  it('refuses a client certificate that is not yet valid', async () => {
    const c = await mintCert(dir, ca, { identity: 'demo', name: 'future', notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 2 * DAY) });
    await expectRefused({ cert: c.certPath, key: c.keyPath, cacert: ca.certPath }, /CERT_NOT_YET_VALID/);
  });

  it('refuses a serverAuth-only certificate used as a client certificate', async () => {
    const c = await mintCert(dir, ca, { identity: 'demo', name: 'server-eku', eku: 'serverAuth' });
    await expectRefused({ cert: c.certPath, key: c.keyPath, cacert: ca.certPath }, /INVALID_PURPOSE/);
  });

  it('refuses a client certificate from another CA', async () => {
    const other = await mintCa(dir, { name: 'other-ca' });
    const c = await mintCert(dir, other, { identity: 'demo', name: 'other-ca-demo' });
    await expectRefused({ cert: c.certPath, key: c.keyPath, cacert: ca.certPath }, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY/);
  });

  it('refuses a certificate from the CA that names another trust domain (name constraints)', async () => {
    const c = await mintCert(dir, ca, { identity: 'demo', name: 'other-domain', trustDomain: 'evil.example' });
    // Node has no name for OpenSSL's error 47; openssl verify names it.
    await expectRefused({ cert: c.certPath, key: c.keyPath, cacert: ca.certPath }, /UNSPECIFIED/);
    const verify = await run('openssl', ['verify', '-CAfile', ca.certPath, '-purpose', 'sslclient', c.certPath]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${verify.stdout}${verify.stderr}`).toMatch(/permitted subtree violation/);
  });

  it('refuses a client that presents no certificate', async () => {
    const before = { requests: server.requests, errors: server.handshakeErrors.length };
    const result = await curl(url(), { cacert: ca.certPath });
    expect(result.code).not.toBe(0);
    expect(server.requests).toBe(before.requests);
    expect(server.handshakeErrors.length).toBeGreaterThan(before.errors);
  });

  it('gives 403 to a revoked certificate once the denylist is reloaded, by the serial Node reports', async () => {
    expect((await tokend(['cert', 'issue', 'to-revoke', '--dir', dir])).code).toBe(0);
    expect((await curl(url(), bundle('to-revoke'))).stdout).toMatch(/^hello to-revoke /);
    expect((await tokend(['cert', 'revoke', 'to-revoke', '--dir', dir])).code).toBe(0);
    server.reload(await loadTlsMaterial(pki));
    expect((await curl(url(), bundle('to-revoke'))).stdout).toBe('revoked\n');
    expect((await curl(url(), bundle('demo'))).stdout).toMatch(/^hello demo /);
  });

  it('renews a server certificate near expiry and swaps it in without dropping an open connection', async () => {
    // Replace the server certificate with one from the same CA that has 10 minutes of a day left.
    const old = await mintServerCert(pki.dir, ca, { notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 10 * 60_000) });
    server.reload(await loadTlsMaterial(pki));
    expect(await peerSerial(server.port)).toBe(old.serial.toUpperCase());

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await get(agent, server.port);
    expect(await renewServerCertIfDue(pki)).toBe(true);
    expect(await renewServerCertIfDue(pki)).toBe(false); // fresh now: not due
    const renewed = await loadTlsMaterial(pki);
    expect(renewed.certNotAfter.getTime()).toBeGreaterThan(Date.now() + 29 * DAY);
    server.reload(renewed);

    const second = await get(agent, server.port);
    expect(second.localPort).toBe(first.localPort); // the same TCP connection carried on
    expect(second.body).toBe(first.body);
    const fresh = await peerSerial(server.port);
    expect(fresh).not.toBe(old.serial.toUpperCase());
    agent.destroy();
  });

  async function serialOfBundle(identity: string): Promise<string> {
    const { X509Certificate } = await import('node:crypto');
    return new X509Certificate(await readFile(bundle(identity).cert)).serialNumber;
  }

  function clientTls(identity: string) {
    const files = bundle(identity);
    return { cert: files.cert, key: files.key, ca: files.cacert };
  }

  async function peerSerial(port: number): Promise<string> {
    const b = bundle('demo');
    const [cert, key, caPem] = await Promise.all([readFile(b.cert), readFile(b.key), readFile(b.cacert)]);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, cert, key, ca: caPem, servername: 'localhost' }, () => {
        const serial = socket.getPeerCertificate().serialNumber;
        socket.end();
        resolve(serial);
      });
      socket.on('error', reject);
    });
  }

  async function get(agent: HttpsAgent, port: number): Promise<{ body: string; localPort: number }> {
    const b = clientTls('demo');
    const [cert, key, caPem] = await Promise.all([readFile(b.cert), readFile(b.key), readFile(b.ca)]);
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent, cert, key, ca: caPem, servername: 'localhost' }, (res) => {
        let body = '';
        const localPort = res.socket.localPort as number;
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ body, localPort }));
      });
      req.on('error', reject);
      req.end();
    });
  }
});
