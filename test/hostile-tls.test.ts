// Hostile TLS against serve, with the real openssl and raw sockets: plaintext on
// the TLS port, TLS 1.0/1.1 (really attempted: the client's security level is
// lowered), weak TLS 1.2 suites, renegotiation, and client certificates that
// verify against tokend's CA by signature but are not for client use — all
// minted at run time with openssl. Each is refused before HTTP (or, for a valid
// certificate without a usable identity, with 403); another client is served after each.

import { execFile, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { curl, makeFixture, startDaemon } from './support/daemon.js';
import type { Fixture, Running } from './support/daemon.js';
import { exchange, get } from './support/raw-http.js';

const SECRET = 'hostile-tls-secret-value-19e4';
const run = promisify(execFile);

let fx: Fixture;
let srv: Running;
let demo: string;
let certs: string;

beforeAll(async () => {
  fx = await makeFixture();
  await fx.seal('db', SECRET);
  await fx.writePolicy([{ identities: ['demo'], tokens: ['db'] }]);
  demo = fx.bundleDir('demo');
  certs = join(fx.dir, 'minted');
  await mkdir(certs, { mode: 0o700 });
  srv = await startDaemon(fx);
});

afterAll(async () => {
  expect(await srv.stop()).toBe(0);
  expect(srv.logText()).not.toContain(SECRET);
});

afterEach(async () => {
  const r = await curl(`${srv.url}/v1/tokens/db`, { bundle: demo });
  expect(r.status).toBe(200);
  expect(r.body.toString()).toBe(SECRET);
});

interface SClient {
  readonly code: number | null;
  readonly out: string;
}

/** Runs `openssl s_client` against serve; `script` is written to its stdin step by step (strings, or pauses in ms). */
function sClient(args: readonly string[], script: readonly (string | number)[] = [], timeoutMs = 8_000): Promise<SClient> {
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${srv.port}`, '-servername', 'localhost', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('latin1')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('latin1')));
    child.stdin.on('error', () => undefined);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    void (async () => {
      for (const step of script) {
        if (typeof step === 'number') await new Promise((r) => setTimeout(r, step));
        else if (!child.stdin.destroyed) child.stdin.write(step);
      }
      child.stdin.end();
    })();
  });
}

const withBundle = (bundle: string) => ['-cert', join(bundle, 'client.crt'), '-key', join(bundle, 'client.key'), '-CAfile', join(bundle, 'ca.crt')];

describe('protocol versions and suites', () => {
  it.each([
    ['TLS 1.0', '-tls1'],
    ['TLS 1.1', '-tls1_1'],
  ])('refuses %s with a protocol_version alert', async (_name, flag) => {
    const r = await sClient([flag, '-cipher', 'DEFAULT:@SECLEVEL=0', ...withBundle(demo)]);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/alert protocol version/);
    expect(r.out).toMatch(/Cipher is \(NONE\)/);
  });

  it('accepts TLS 1.2 with an ECDHE AEAD suite (the control)', async () => {
    const r = await sClient(['-tls1_2', ...withBundle(demo)], [500, get('/v1/tokens/db'), 500]);
    expect(r.out).toMatch(/Protocol\s*: TLSv1\.2/);
    expect(r.out).toContain(SECRET);
  });

  it('negotiates TLS 1.3 by default', async () => {
    const r = await sClient(withBundle(demo), [300]);
    expect(r.out).toMatch(/TLSv1\.3/);
  });

  it.each([
    ['RSA key exchange (no forward secrecy)', 'AES128-GCM-SHA256'],
    ['CBC mode', 'ECDHE-RSA-AES128-SHA'],
    ['3DES', 'DES-CBC3-SHA'],
    ['NULL encryption', 'NULL-SHA256'],
  ])('refuses a TLS 1.2 client offering only %s', async (_what, cipher) => {
    const r = await sClient(['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`, ...withBundle(demo)]);
    expect(r.code).not.toBe(0);
    expect(r.out).not.toMatch(/Verify return code: 0 \(ok\)[\s\S]*Cipher is (?!\(NONE\))/);
    expect(r.out).not.toContain(SECRET);
  });
});

describe('renegotiation', () => {
  it('refuses a client-initiated renegotiation (TLS 1.2) and answers nothing after it', async () => {
    const r = await sClient(['-tls1_2', ...withBundle(demo)], [500, 'R\n', 800, get('/v1/tokens/db'), 800]);
    expect(r.out).toContain('RENEGOTIATING');
    expect(r.out).not.toContain(SECRET);
    expect(r.out).not.toMatch(/HTTP\/1\.1 200/);
  });
});

describe('not TLS at all', () => {
  it('closes a plaintext HTTP request on the TLS port without an HTTP answer', async () => {
    const x = await exchange(srv.port, get('/v1/tokens/db'));
    expect(x.closed).toBe(true);
    expect(x.raw.toString('latin1')).not.toMatch(/HTTP\/1/);
  });

  it('closes a connection that sends random bytes instead of a ClientHello', async () => {
    const x = await exchange(srv.port, Buffer.from('deadbeef'.repeat(64), 'hex'));
    expect(x.closed).toBe(true);
    expect(x.raw.toString('latin1')).not.toMatch(/HTTP\/1/);
  });

  it('closes a connection that stops in the middle of a ClientHello record (handshake timeout)', async () => {
    const x = await exchange(srv.port, Buffer.from('160301020001', 'hex'), { waitMs: 15_000 });
    expect(x.closed).toBe(true);
    expect(x.ms).toBeLessThan(5_000 + 3_000); // headersTimeoutMs (default 5 s) bounds the handshake
  }, 20_000);

  it('refuses curl over plain http:// on the TLS port', async () => {
    const r = await curl(`http://127.0.0.1:${srv.port}/v1/tokens/db`);
    expect(r.status).toBe(0);
    expect(r.exit).not.toBe(0);
  });
});

/** Mints a client certificate with openssl and returns a bundle directory for curl. */
async function mint(name: string, ext: string, options: { caCert?: string; caKey?: string; selfSigned?: boolean } = {}): Promise<string> {
  const dir = join(certs, name);
  await mkdir(dir, { mode: 0o700 });
  const key = join(dir, 'client.key');
  const crt = join(dir, 'client.crt');
  const extFile = join(dir, 'ext.cnf');
  await writeFile(extFile, `${ext}\n`);
  await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]);
  const caCert = options.caCert ?? join(fx.dir, 'pki', 'ca.crt');
  const caKey = options.caKey ?? join(fx.dir, 'pki', 'ca.key');
  if (options.selfSigned) {
    await run('openssl', ['req', '-x509', '-new', '-key', key, '-subj', `/CN=${name}`, '-days', '2', '-out', crt, '-extensions', 'ext', '-config', await reqConfig(dir, ext)]);
  } else {
    const csr = join(dir, 'client.csr');
    await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr]);
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', extFile, '-out', crt]);
  }
  await writeFile(join(dir, 'ca.crt'), await import('node:fs/promises').then((fs) => fs.readFile(join(fx.dir, 'pki', 'ca.crt'))));
  return dir;
}

async function reqConfig(dir: string, ext: string): Promise<string> {
  const path = join(dir, 'req.cnf');
  await writeFile(path, `[req]\ndistinguished_name = dn\n[dn]\n[ext]\n${ext}\n`);
  return path;
}

const SPIFFE_DEMO = 'subjectAltName=URI:spiffe://tokend.local/demo';
const CLIENT_OK = `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n${SPIFFE_DEMO}`;

describe("client certificates signed by tokend's CA but not for client use (or outside its name constraints)", () => {
  it('accepts a certificate minted with openssl for clientAuth (the control)', async () => {
    const bundle = await mint('control', CLIENT_OK);
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle });
    expect(r.status).toBe(200);
  });

  it.each([
    ['extendedKeyUsage serverAuth only', `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n${SPIFFE_DEMO}`],
    ['extendedKeyUsage codeSigning only', `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n${SPIFFE_DEMO}`],
    ['keyUsage keyEncipherment only', `basicConstraints=CA:FALSE\nkeyUsage=critical,keyEncipherment\nextendedKeyUsage=clientAuth\n${SPIFFE_DEMO}`],
    ['keyUsage keyCertSign only', `basicConstraints=CA:FALSE\nkeyUsage=critical,keyCertSign\nextendedKeyUsage=clientAuth\n${SPIFFE_DEMO}`],
    ['Netscape cert type server only', `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nnsCertType=server\n${SPIFFE_DEMO}`],
    ['a SPIFFE ID outside the CA name constraints', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://evil.example/demo'],
  ])('refuses a certificate with %s at the TLS level', async (name, ext) => {
    const bundle = await mint(name.replace(/\W+/g, '-').toLowerCase(), ext);
    const before = srv.logs.filter((l) => l.msg === 'request').length;
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle });
    expect(r.status).toBe(0);
    expect(r.exit).not.toBe(0);
    expect(srv.logs.filter((l) => l.msg === 'request').length).toBe(before);
  });

  it("refuses tokend's own CA certificate and key used as a client certificate", async () => {
    const dir = join(certs, 'ca-as-client');
    await mkdir(dir, { mode: 0o700 });
    const fs = await import('node:fs/promises');
    await fs.copyFile(join(fx.dir, 'pki', 'ca.crt'), join(dir, 'client.crt'));
    await fs.copyFile(join(fx.dir, 'pki', 'ca.key'), join(dir, 'client.key'));
    await fs.copyFile(join(fx.dir, 'pki', 'ca.crt'), join(dir, 'ca.crt'));
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle: dir });
    expect(r.status).toBe(0);
  });
});

describe('client certificates that do not chain to tokend\'s CA', () => {
  it('refuses a certificate from a forged CA with the same name as tokend\'s', async () => {
    const forged = join(certs, 'forged-ca');
    await mkdir(forged, { mode: 0o700 });
    const subject = (await run('openssl', ['x509', '-in', join(fx.dir, 'pki', 'ca.crt'), '-noout', '-subject', '-nameopt', 'compat'])).stdout.trim().replace(/^subject=/, '');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(forged, 'ca.key'), '-out', join(forged, 'ca.crt'), '-subj', subject, '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    const bundle = await mint('forged-leaf', CLIENT_OK, { caCert: join(forged, 'ca.crt'), caKey: join(forged, 'ca.key') });
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle });
    expect(r.status).toBe(0);
    expect(r.exit).not.toBe(0);
  });

  it('refuses a self-signed certificate that claims the demo SPIFFE ID', async () => {
    const bundle = await mint('self-signed', CLIENT_OK, { selfSigned: true });
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle });
    expect(r.status).toBe(0);
  });
});

describe('valid client certificates without a usable identity (403, audited)', () => {
  it.each([
    ['two SPIFFE IDs', 'subjectAltName=URI:spiffe://tokend.local/demo,URI:spiffe://tokend.local/admin'],
    ['a SPIFFE ID with a path that climbs', 'subjectAltName=URI:spiffe://tokend.local/x/../demo'],
    ['an upper-case SPIFFE scheme', 'subjectAltName=URI:SPIFFE://tokend.local/demo'],
  ])('answers a certificate with %s with 403 ERR_NO_IDENTITY and no token', async (name, san) => {
    const bundle = await mint(`id-${name.replace(/\W+/g, '-').toLowerCase()}`, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n${san}`);
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body.toString()).code).toBe('ERR_NO_IDENTITY');
  });
});
