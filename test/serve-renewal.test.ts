import { X509Certificate } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { renewServerCertIfDue } from '../src/pki/index.js';
import { curl, makeFixture, startDaemon } from './support/daemon.js';

/** The serial of the certificate a fresh TLS connection to `port` is shown. */
function servedSerial(port: number, bundle: string): Promise<string> {
  return Promise.all([readFile(join(bundle, 'client.crt')), readFile(join(bundle, 'client.key')), readFile(join(bundle, 'ca.crt'))]).then(
    ([cert, key, ca]) =>
      new Promise((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port, cert, key, ca, servername: 'localhost' }, () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.end();
        });
        s.on('error', reject);
      }),
  );
}

describe('serve: server certificate renewal', () => {
  it('renews a server certificate that is due and keeps live connections working', async () => {
    const fx = await makeFixture();
    await fx.seal('db', 'renewal-secret');
    await fx.writePolicy([{ identities: ['demo'], tokens: ['db'] }]);
    await fx.editConfig((doc) => {
      doc.pki.serverTtlDays = 1 / 24; // one hour
      doc.pki.renewBeforeFraction = 0.9; // due once less than 90% of it remains
    });
    const pki = (await loadConfig(fx.configPath)).pki;
    await rm(join(fx.dir, 'pki', 'server.crt'));
    await renewServerCertIfDue(pki);
    const srv = await startDaemon(fx);
    const demo = fx.bundleDir('demo');
    const [cert, key, ca] = await Promise.all(['client.crt', 'client.key', 'ca.crt'].map((f) => readFile(join(demo, f))));
    const agent = new Agent({ keepAlive: true, maxSockets: 1, cert, key, ca });
    const get = () =>
      new Promise<{ status: number; reused: boolean; serial: string }>((resolve, reject) => {
        const req = request(`${srv.url}/v1/tokens/db`, { agent }, (res) => {
          res.resume();
          const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber;
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, serial }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const before = await get();
      expect(before.status).toBe(200);
      expect(await srv.daemon.renewServerCert(new Date())).toBe(false); // not due yet

      // Four minutes from now less than 90% of the 65-minute lifetime remains; the new certificate is
      // backdated five minutes, so it is already valid now.
      expect(await srv.daemon.renewServerCert(new Date(Date.now() + 4 * 60_000))).toBe(true);
      const onDisk = new X509Certificate(await readFile(join(fx.dir, 'pki', 'server.crt')));
      expect(onDisk.serialNumber).not.toBe(before.serial);
      expect(await servedSerial(srv.port, demo)).toBe(onDisk.serialNumber);

      const after = await get();
      expect(after).toEqual({ status: 200, reused: true, serial: before.serial });
      expect((await curl(`${srv.url}/v1/tokens/db`, { bundle: demo })).body.toString()).toBe('renewal-secret');
      expect(srv.logs.some((l) => l.msg === 'server certificate renewed')).toBe(true);
    } finally {
      agent.destroy();
      expect(await srv.stop()).toBe(0);
    }
  });
});
