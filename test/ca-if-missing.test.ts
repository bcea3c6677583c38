// `tokend ca init --if-missing`, as tokend.service runs it before every start: the first start
// makes the host's CA, later ones check and keep it, and a broken CA stops the start.

import { X509Certificate } from 'node:crypto';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tokend } from './support/cli.js';
import { tempDir } from './support/tmp.js';

async function freshDir(pki: Record<string, unknown> = {}): Promise<string> {
  const dir = await tempDir();
  await writeFile(join(dir, 'tokend.json'), JSON.stringify({ provider: { type: 'keyfile' }, pki: { dir: 'pki', ...pki } }), { mode: 0o600 });
  return dir;
}

describe('tokend ca init --if-missing', () => {
  it('creates the CA and server certificate on the first run, then keeps them', async () => {
    const dir = await freshDir();
    const first = await tokend(['ca', 'init', '--if-missing', '--dir', dir, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout.toString())).toMatchObject({ created: true, ca: join(dir, 'pki/ca.crt') });
    const ca = await readFile(join(dir, 'pki/ca.key'));
    const server = await readFile(join(dir, 'pki/server.crt'));

    const again = await tokend(['ca', 'init', '--if-missing', '--dir', dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.toString()).toBe(`kept the existing CA ${join(dir, 'pki/ca.crt')}\n`);
    expect(await readFile(join(dir, 'pki/ca.key'))).toEqual(ca);
    expect(await readFile(join(dir, 'pki/server.crt'))).toEqual(server);
  });

  it('replaces a missing server certificate from the kept CA', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--if-missing', '--dir', dir])).code).toBe(0);
    await rm(join(dir, 'pki/server.crt'));
    expect((await tokend(['ca', 'init', '--if-missing', '--dir', dir])).code).toBe(0);
    const server = new X509Certificate(await readFile(join(dir, 'pki/server.crt')));
    expect(server.checkIssued(new X509Certificate(await readFile(join(dir, 'pki/ca.crt'))))).toBe(true);
  });

  it('fails closed on a half-made CA or a CA key others can read', async () => {
    const dir = await freshDir();
    expect((await tokend(['ca', 'init', '--dir', dir])).code).toBe(0);
    await chmod(join(dir, 'pki/ca.key'), 0o640);
    const loose = await tokend(['ca', 'init', '--if-missing', '--dir', dir]);
    expect(loose.code).toBe(3);
    expect(loose.stderr).toMatch(/CA key '.*ca\.key' is accessible by group or others \(mode 0640\)/);

    await chmod(join(dir, 'pki/ca.key'), 0o600);
    await rm(join(dir, 'pki/ca.crt'));
    const half = await tokend(['ca', 'init', '--if-missing', '--dir', dir]);
    expect(half.code).toBe(3);
    expect(half.stderr).toMatch(/'.*ca\.crt' is missing but '.*ca\.key' exists/);
  });

  it('does nothing in external mode', async () => {
    const dir = await freshDir({ mode: 'external', caBundle: '/nonexistent/ca.crt', serverCert: '/x/s.crt', serverKey: '/x/s.key' });
    const r = await tokend(['ca', 'init', '--if-missing', '--dir', dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('pki.mode is "external": tokend has no CA of its own; nothing to do\n');
  });
});
