// `tokend ca init` and `tokend cert issue|list|revoke|renew`, through the real binary.

import { execFile, spawn } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../src/cli/exit-codes.js';
import { TOKEND_BIN, tokend } from './support/cli.js';
import { mintCa, mintServerCert } from './support/certs.js';
import { hasCommand, isRoot, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';

const run = promisify(execFile);
const DAY = 86_400_000;
const skip = missing({ openssl: hasCommand('openssl'), prlimit: hasCommand('prlimit') });

/** A tokend directory with a config whose PKI is internal and empty. */
async function freshDir(pki: Record<string, unknown> = {}): Promise<string> {
  const dir = await tempDir();
  await writeFile(join(dir, 'tokend.json'), JSON.stringify({ provider: { type: 'keyfile' }, pki: { dir: 'pki', ...pki } }), { mode: 0o600 });
  return dir;
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;
const json = (stdout: Buffer) => JSON.parse(stdout.toString('utf8')) as Record<string, unknown>;

/** Snapshot of a bundle's three files (through the symlinks, as a container reads them). */
async function snapshot(bundle: string): Promise<string[]> {
  return Promise.all(['ca.crt', 'client.crt', 'client.key'].map((f) => readFile(join(bundle, f), 'utf8')));
}

describe.skipIf(skip)('tokend ca init', () => {
  it('creates the CA key (0600), CA certificate and server certificate, and prints the fingerprint', async () => {
    const dir = await freshDir();
    const result = await tokend(['ca', 'init', '--dir', dir, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = json(result.stdout);
    const pki = join(dir, 'pki');
    expect(out).toMatchObject({ ca: join(pki, 'ca.crt'), caKey: join(pki, 'ca.key'), trustDomain: 'tokend.local', serverCert: join(pki, 'server.crt') });
    expect(out.fingerprint).toBe(new X509Certificate(await readFile(join(pki, 'ca.crt'))).fingerprint256);
    expect(await mode(pki)).toBe(0o700);
    expect(await mode(join(pki, 'ca.key'))).toBe(0o600);
    expect(await mode(join(pki, 'server.key'))).toBe(0o600);
    expect(await mode(join(pki, 'ca.crt'))).toBe(0o644);
    const verify = await run('openssl', ['verify', '-CAfile', join(pki, 'ca.crt'), '-purpose', 'sslserver', join(pki, 'server.crt')]);
    expect(verify.stdout).toMatch(/server\.crt: OK/);
  });

  it('refuses to replace an existing CA and leaves its key untouched', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    const key = await readFile(join(dir, 'pki', 'ca.key'));
    const again = await tokend(['ca', 'init', '--dir', dir]);
    expect(again.code).toBe(EXIT.exists);
    expect(again.stderr).toMatch(/a CA already exists \('.*ca\.key'\); tokend never replaces a CA key/);
    expect(await readFile(join(dir, 'pki', 'ca.key'))).toEqual(key);
  });
});

describe.skipIf(skip)('tokend cert issue', () => {
  let dir: string;
  let pki: string;

  beforeAll(async () => {
    dir = await freshDir({ trustDomain: 'fleet.example' });
    pki = join(dir, 'pki');
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
  });

  it('writes a bundle that openssl verifies for client use, with the stated modes', async () => {
    const result = await tokend(['cert', 'issue', 'billing', '--dir', dir, '--json']);
    expect(result.code).toBe(0);
    const out = json(result.stdout);
    const bundle = join(pki, 'clients', 'billing');
    expect(out).toMatchObject({ identity: 'billing', bundle, files: { ca: join(bundle, 'ca.crt'), cert: join(bundle, 'client.crt'), key: join(bundle, 'client.key') } });
    expect(await mode(bundle)).toBe(0o700);
    expect(await mode(join(bundle, 'client.key'))).toBe(0o600);
    expect(await mode(join(bundle, 'client.crt'))).toBe(0o644);
    expect(await mode(join(bundle, 'ca.crt'))).toBe(0o644);
    expect(await mode(join(bundle, await readlink(join(bundle, '..data'))))).toBe(0o700);
    const verify = await run('openssl', ['verify', '-CAfile', join(bundle, 'ca.crt'), '-purpose', 'sslclient', join(bundle, 'client.crt')]);
    expect(verify.stdout.trim()).toBe(`${join(bundle, 'client.crt')}: OK`);
    const cert = new X509Certificate(await readFile(join(bundle, 'client.crt')));
    expect(cert.subjectAltName).toBe('URI:spiffe://fleet.example/billing');
    expect(cert.serialNumber.toLowerCase()).toBe(out.serial);
    // Not usable as a server certificate: clientAuth only.
    await expect(run('openssl', ['verify', '-CAfile', join(bundle, 'ca.crt'), '-purpose', 'sslserver', join(bundle, 'client.crt')])).rejects.toThrow(/unsupported certificate purpose|unsuitable certificate purpose/);
  });

  it('takes --ttl and refuses a bad one', async () => {
    const result = await tokend(['cert', 'issue', 'short', '--ttl', '30d', '--dir', dir, '--json']);
    expect(result.code).toBe(0);
    const notAfter = new Date(json(result.stdout).notAfter as string).getTime();
    expect(Math.abs(notAfter - (Date.now() + 30 * DAY))).toBeLessThan(60_000);
    const bad = await tokend(['cert', 'issue', 'short2', '--ttl', '2y', '--dir', dir]);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.stderr).toMatch(/lifetime '2y' is not valid/);
  });

  it('refuses an invalid identity', async () => {
    const result = await tokend(['cert', 'issue', 'Billing/../x', '--dir', dir]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toMatch(/identity "Billing\/\.\.\/x" is not valid/);
  });

  it('refuses to overwrite a bundle without --force, and replaces it whole with --force', async () => {
    const bundle = join(pki, 'clients', 'api');
    expect((await tokend(['cert', 'issue', 'api', '--dir', dir])).code).toBe(0);
    const before = await snapshot(bundle);
    const refused = await tokend(['cert', 'issue', 'api', '--dir', dir]);
    expect(refused.code).toBe(EXIT.exists);
    expect(refused.stderr).toMatch(/a bundle already exists in '.*api'; pass --force/);
    expect(await snapshot(bundle)).toEqual(before);

    expect((await tokend(['cert', 'issue', 'api', '--force', '--dir', dir])).code).toBe(0);
    const after = await snapshot(bundle);
    expect(after[1]).not.toBe(before[1]);
    expect(after[2]).not.toBe(before[2]);
    expect(new X509Certificate(after[1] as string).checkPrivateKey(createPrivateKey(after[2] as string))).toBe(true);
    expect((await readdir(bundle)).sort()).toEqual(['..data', await readlink(join(bundle, '..data')), 'ca.crt', 'client.crt', 'client.key'].sort());
  });

  it('writes to --out (an empty directory is fine) and never into a directory that is not a bundle, even with --force', async () => {
    const parent = await tempDir();
    await mkdir(join(parent, 'empty'));
    expect((await tokend(['cert', 'issue', 'web', '--out', join(parent, 'empty'), '--dir', dir])).code).toBe(0);
    expect(await readFile(join(parent, 'empty', 'client.crt'), 'utf8')).toContain('BEGIN CERTIFICATE');

    await mkdir(join(parent, 'foreign'));
    await writeFile(join(parent, 'foreign', 'notes.txt'), 'mine');
    const refused = await tokend(['cert', 'issue', 'web', '--force', '--out', join(parent, 'foreign'), '--dir', dir]);
    expect(refused.code).toBe(EXIT.exists);
    expect(refused.stderr).toMatch(/is not a tokend bundle/);
    expect(await readdir(join(parent, 'foreign'))).toEqual(['notes.txt']);

    const noParent = await tokend(['cert', 'issue', 'web', '--out', join(parent, 'no', 'such'), '--dir', dir]);
    expect(noParent.code).toBe(EXIT.notFound);
  });

  it.skipIf(!isRoot())('hands the bundle to --owner so a container user can read its key', async () => {
    const out = join(await tempDir(), 'owned');
    expect((await tokend(['cert', 'issue', 'owned', '--owner', '1234:5678', '--out', out, '--dir', dir])).code).toBe(0);
    for (const p of [out, join(out, 'client.key'), join(out, 'client.crt'), join(out, await readlink(join(out, '..data')))]) {
      const st = await stat(p);
      expect([st.uid, st.gid]).toEqual([1234, 5678]);
    }
    expect((await lstat(join(out, 'client.key'))).uid).toBe(1234);
    const bad = await tokend(['cert', 'issue', 'owned2', '--owner', 'nobody', '--dir', dir]);
    expect(bad.code).toBe(EXIT.usage);
  });

  it('leaves no half bundle when a write fails midway (file size limit hits client.key)', async () => {
    // A PKI of its own, so that issued.json stays small. client.crt (~1.4 kB) fits under 1550 bytes, client.key (~1.7 kB) does not.
    dir = await freshDir();
    pki = join(dir, 'pki');
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    const result = await limited(1550, ['cert', 'issue', 'half', '--dir', dir]);
    expect(result.code).toBe(EXIT.error);
    expect(result.stderr).toMatch(/could not write .*client\.key/);
    expect(await registered(dir)).toEqual([]); // the certificate that never reached the disk is not listed
    const clients = await readdir(join(pki, 'clients'));
    expect(clients).not.toContain('half');
    expect(clients.filter((n) => n.startsWith('.'))).toEqual([]);
    expect((await tokend(['cert', 'issue', 'half', '--dir', dir])).code).toBe(0); // and a retry works
  });

  it('keeps the old bundle whole when a renewal fails midway', async () => {
    const bundle = join(pki, 'clients', 'half');
    const before = await snapshot(bundle);
    const link = await readlink(join(bundle, '..data'));
    const listed = await registered(dir);
    const result = await limited(1550, ['cert', 'renew', 'half', '--dir', dir]);
    expect(result.code).toBe(EXIT.error);
    expect(await registered(dir)).toEqual(listed);
    expect(await snapshot(bundle)).toEqual(before);
    expect(await readlink(join(bundle, '..data'))).toBe(link);
    expect((await readdir(bundle)).sort()).toEqual(['..data', link, 'ca.crt', 'client.crt', 'client.key'].sort());
  });
});

describe.skipIf(skip)('tokend cert renew', () => {
  it('switches the bundle atomically: a reader never sees a certificate beside a key from another version', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    expect((await tokend(['cert', 'issue', 'reader', '--dir', dir])).code).toBe(0);
    const bundle = join(dir, 'pki', 'clients', 'reader');
    const first = await snapshot(bundle);

    let stop = false;
    let samples = 0;
    const versions = new Set<string>();
    const reader = (async () => {
      while (!stop) {
        const v1 = await readlink(join(bundle, '..data'));
        const [cert, key] = await Promise.all([readFile(join(bundle, 'client.crt'), 'utf8'), readFile(join(bundle, 'client.key'), 'utf8')]);
        const v2 = await readlink(join(bundle, '..data'));
        expect(cert).toMatch(/^-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\s*$/);
        expect(key).toMatch(/^-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+-----END [A-Z ]*PRIVATE KEY-----\s*$/);
        if (v1 === v2) expect(new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))).toBe(true);
        versions.add(v1);
        samples += 1;
      }
    })();
    for (let i = 0; i < 3; i += 1) {
      const result = await tokend(['cert', 'renew', 'reader', '--dir', dir]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
    }
    stop = true;
    await reader;
    expect(samples).toBeGreaterThan(10);
    expect(versions.size).toBeGreaterThan(1);
    const last = await snapshot(bundle);
    expect(last[1]).not.toBe(first[1]);
    expect(last[0]).toBe(first[0]); // same CA
    expect((await readdir(bundle)).filter((n) => n.startsWith('..v-'))).toHaveLength(1); // old versions removed
  });

  it('renews only the certificates that are due with --due', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    // 2 minutes of a 7-minute lifetime (5 minutes backdated) is under the default 0.33: due at once.
    const soon = json((await tokend(['cert', 'issue', 'soon', '--ttl', '2m', '--dir', dir, '--json'])).stdout);
    const later = json((await tokend(['cert', 'issue', 'later', '--ttl', '1d', '--dir', dir, '--json'])).stdout);
    const result = await tokend(['cert', 'renew', '--due', '--dir', dir, '--json']);
    expect(result.code).toBe(0);
    const out = json(result.stdout) as { renewed: { identity: string; serial: string }[]; notDue: string[] };
    expect(out.renewed.map((r) => r.identity)).toEqual(['soon']);
    expect(out.renewed[0]?.serial).not.toBe(soon.serial);
    expect(out.notDue).toEqual(['later']);
    const cert = new X509Certificate(await readFile(join(dir, 'pki', 'clients', 'soon', 'client.crt')));
    expect(cert.serialNumber.toLowerCase()).toBe(out.renewed[0]?.serial);
    expect(later.serial).toBeTruthy();
  });

  it('says so when there is nothing to renew', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    const result = await tokend(['cert', 'renew', 'ghost', '--dir', dir]);
    expect(result.code).toBe(EXIT.notFound);
    expect(result.stderr).toMatch(/no certificate was issued for identity 'ghost'; run 'tokend cert issue ghost'/);
    expect((await tokend(['cert', 'renew', '--dir', dir])).code).toBe(EXIT.usage);
  });
});

describe.skipIf(skip)('tokend cert list and revoke', () => {
  it('lists issued certificates and revokes by serial (as printed anywhere) and by identity', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    const a = json((await tokend(['cert', 'issue', 'alpha', '--dir', dir, '--json'])).stdout);
    const b = json((await tokend(['cert', 'issue', 'beta', '--dir', dir, '--json'])).stdout);
    const b2 = json((await tokend(['cert', 'issue', 'beta', '--force', '--dir', dir, '--json'])).stdout);

    const list = json((await tokend(['cert', 'list', '--json', '--dir', dir])).stdout) as { certificates: Record<string, unknown>[] };
    expect(list.certificates.map((c) => [c.identity, c.serial, c.notAfter, c.revoked])).toEqual([
      ['alpha', a.serial, a.notAfter, false],
      ['beta', b.serial, b.notAfter, false],
      ['beta', b2.serial, b2.notAfter, false],
    ]);

    const colons = (a.serial as string).toUpperCase().match(/../g)?.join(':') as string;
    const bySerial = await tokend(['cert', 'revoke', colons, '--dir', dir]);
    expect(bySerial.code).toBe(0);
    expect(bySerial.stdout.toString()).toBe(`revoked ${a.serial} (alpha)\n`);
    expect(bySerial.stderr).toMatch(/after its next reload/);

    const byIdentity = await tokend(['cert', 'revoke', 'beta', '--dir', dir, '--json']);
    expect((json(byIdentity.stdout).revoked as { serial: string }[]).map((r) => r.serial)).toEqual([b.serial, b2.serial]);

    const text = (await tokend(['cert', 'list', '--dir', dir])).stdout.toString();
    expect(text.split('\n')[0]).toMatch(/^IDENTITY\s+SERIAL\s+NOT AFTER\s+STATUS$/);
    expect(text).toMatch(new RegExp(`alpha\\s+${a.serial as string}\\s+\\S+\\s+revoked`));

    const revoked = JSON.parse(await readFile(join(dir, 'pki', 'revoked.json'), 'utf8')) as { revoked: { serial: string }[] };
    expect(revoked.revoked.map((r) => r.serial)).toEqual([a.serial, b.serial, b2.serial]);
    expect(await mode(join(dir, 'pki', 'revoked.json'))).toBe(0o600);

    expect((await tokend(['cert', 'revoke', 'nobody', '--dir', dir])).code).toBe(EXIT.notFound);
    expect((await tokend(['cert', 'revoke', 'not a serial!', '--dir', dir])).code).toBe(EXIT.usage);
  });
});

describe.skipIf(skip)('external CA mode', () => {
  it('refuses to create a CA or issue, but revokes by serial', async () => {
    const dir = await freshDir({ mode: 'external', caBundle: 'corp-ca.crt', serverCert: 'server.crt', serverKey: 'server.key' });
    const ca = await mintCa(dir, { name: 'corp-ca' });
    await mintServerCert(dir, ca);
    for (const args of [['ca', 'init'], ['cert', 'issue', 'billing'], ['cert', 'renew', 'billing']]) {
      const result = await tokend([...args, '--dir', dir]);
      expect(result.code).toBe(EXIT.config);
      expect(result.stderr).toMatch(/pki\.mode is "external": tokend only verifies certificates from the CA bundle '.*corp-ca\.crt'/);
    }
    const revoked = await tokend(['cert', 'revoke', '0A:BC:DE', '--dir', dir]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout.toString()).toBe('revoked abcde\n');
    const check = await tokend(['check', '--dir', dir, '--json']);
    const pkiCheck = (json(check.stdout).results as { check: string; ok: boolean; message: string }[]).find((r) => r.check === 'pki');
    expect(pkiCheck).toMatchObject({ ok: true });
    expect(pkiCheck?.message).toMatch(/external CA bundle .*; server certificate valid until .*; 1 revoked serial/);
  });
});

describe.skipIf(skip)('tokend check (pki)', () => {
  it('passes on a fresh dev directory and fails, naming the file, on a loose CA key', async () => {
    const dir = await tempDir();
    expect((await tokend(['init', '--dir', dir])).code).toBe(0);
    const good = await tokend(['check', '--dir', dir]);
    expect(good.stdout.toString()).toMatch(/^ok {3}pki: internal CA valid until/m);
    await run('chmod', ['644', join(dir, 'pki', 'ca.key')]);
    const bad = await tokend(['check', '--dir', dir]);
    expect(bad.code).toBe(EXIT.config);
    expect(bad.stdout.toString()).toMatch(/^FAIL pki: CA key '.*ca\.key' is accessible by group or others/m);
  });
});

/** Serials in the registry, via cert list. */
async function registered(dir: string): Promise<string[]> {
  const list = json((await tokend(['cert', 'list', '--json', '--dir', dir])).stdout) as { certificates: { serial: string }[] };
  return list.certificates.map((c) => c.serial);
}

/** Runs tokend under a file-size limit (prlimit), so a write fails with EFBIG at a known file. */
function limited(bytes: number, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('prlimit', [`--fsize=${bytes}`, process.execPath, TOKEND_BIN, ...args], {
      env: { ...process.env, TOKEND_CONFIG: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}
