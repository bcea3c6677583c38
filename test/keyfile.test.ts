import { chmod, chown, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSealed, seal, serializeSealed } from '../src/envelope.js';
import { createKeyfile, loadKeyfileProvider, retireKeyVersion, rotateKeyfile } from '../src/kms/keyfile.js';
import { rewrapAll, sealToken, unsealToken } from '../src/secrets.js';
import { TokenStore } from '../src/store.js';
import { ensurePrivateDir } from '../src/private-files.js';
import { isRoot } from './support/requirements.js';
import { tempDir } from './support/tmp.js';

async function newKeyfile(): Promise<string> {
  const path = join(await tempDir('tokend-kf-'), 'keyfile.json');
  await createKeyfile(path);
  return path;
}

describe('keyfile provider: file safety', () => {
  it('creates the keyfile 0600 with one primary 256-bit key', async () => {
    const path = await newKeyfile();
    const doc = JSON.parse(await readFile(path, 'utf8'));
    expect(doc.primary).toBe(1);
    expect(Buffer.from(doc.keys[0].key, 'base64')).toHaveLength(32);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('never overwrites an existing keyfile', async () => {
    const path = await newKeyfile();
    const before = await readFile(path);
    await expect(createKeyfile(path)).rejects.toMatchObject({ code: 'ERR_EXISTS' });
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it('refuses a 0644 keyfile and names the file and the fix', async () => {
    const path = await newKeyfile();
    await chmod(path, 0o644);
    await expect(loadKeyfileProvider(path)).rejects.toMatchObject({
      code: 'ERR_PERMISSIONS',
      message: expect.stringContaining(`keyfile '${path}' is accessible by group or others (mode 0644); run: chmod 600`),
    });
  });

  it('refuses a keyfile reached through a symbolic link', async () => {
    const path = await newKeyfile();
    const link = `${path}.link`;
    await symlink(path, link);
    await expect(loadKeyfileProvider(link)).rejects.toMatchObject({ code: 'ERR_PERMISSIONS', message: expect.stringContaining('symbolic link') });
  });

  it.skipIf(!isRoot())('refuses a keyfile owned by another user', async () => {
    const path = await newKeyfile();
    await chown(path, 4242, 4242);
    await expect(loadKeyfileProvider(path)).rejects.toMatchObject({ code: 'ERR_PERMISSIONS', message: expect.stringContaining('owned by uid 4242') });
  });

  it('rejects a malformed keyfile, naming the file and the field', async () => {
    const path = await newKeyfile();
    const doc = JSON.parse(await readFile(path, 'utf8'));
    doc.keys[0].key = 'c2hvcnQ=';
    await writeFile(path, JSON.stringify(doc), { mode: 0o600 });
    await expect(loadKeyfileProvider(path)).rejects.toMatchObject({
      code: 'ERR_KEYFILE',
      message: `keyfile '${path}' is malformed: keys[0].key is not 32 bytes of base64`,
    });
  });
});

describe('keyfile provider: rotation', () => {
  it('keeps v1 tokens opening after rotate; once v1 is retired without a rewrap they no longer open', async () => {
    const dir = await tempDir();
    const path = join(dir, 'keyfile.json');
    await createKeyfile(path);
    await ensurePrivateDir(join(dir, 'tokens'));
    const store = new TokenStore(join(dir, 'tokens'));
    const v1 = await loadKeyfileProvider(path);
    await sealToken(store, v1, 'db', Buffer.from('pw-1'));
    await sealToken(store, v1, 'api', Buffer.from('key-1'));
    expect((await store.header('db'))?.keyId).toMatch(/\/v1$/);

    expect(await rotateKeyfile(path)).toBe(2);
    const v2 = await loadKeyfileProvider(path);
    expect(v2.defaultKeyId).toMatch(/\/v2$/);
    expect((await unsealToken(store, v2, 'db')).toString()).toBe('pw-1');

    await expect(retireKeyVersion(path, 1, async () => undefined)).resolves.toBeUndefined();
    const withoutV1 = await loadKeyfileProvider(path);
    await expect(unsealToken(store, withoutV1, 'db')).rejects.toMatchObject({ code: 'ERR_DECRYPT_FAILED' });
  });

  it('rewrap moves every token to the primary key without changing its ciphertext', async () => {
    const dir = await tempDir();
    const path = join(dir, 'keyfile.json');
    await createKeyfile(path);
    await ensurePrivateDir(join(dir, 'tokens'));
    const store = new TokenStore(join(dir, 'tokens'));
    const v1 = await loadKeyfileProvider(path);
    await sealToken(store, v1, 'db', Buffer.from('pw-1'));
    await sealToken(store, v1, 'api', Buffer.from('key-1'));
    const before = await store.header('db');
    await rotateKeyfile(path);
    const v2 = await loadKeyfileProvider(path);

    const report = await rewrapAll(store, v2);
    expect(report).toEqual({ rewrapped: ['api', 'db'], unchanged: [], failed: [] });
    const after = await store.header('db');
    expect(after?.keyId).toMatch(/\/v2$/);
    expect(after?.ciphertext.equals(before?.ciphertext as Buffer)).toBe(true);
    expect(after?.version).toBe(before?.version);
    expect(await rewrapAll(store, v2)).toEqual({ rewrapped: [], unchanged: ['api', 'db'], failed: [] });

    await retireKeyVersion(path, 1);
    const only2 = await loadKeyfileProvider(path);
    expect((await unsealToken(store, only2, 'db')).toString()).toBe('pw-1');
    expect((await unsealToken(store, only2, 'api')).toString()).toBe('key-1');
  });

  it('refuses to retire the primary key and lets a guard stop the removal', async () => {
    const path = await newKeyfile();
    await expect(retireKeyVersion(path, 1)).rejects.toMatchObject({ code: 'ERR_USAGE', message: expect.stringContaining('primary') });
    await rotateKeyfile(path);
    const before = await readFile(path);
    await expect(
      retireKeyVersion(path, 1, async (keyId) => {
        throw new Error(`in use: ${keyId}`);
      }),
    ).rejects.toThrow(/in use: kf-[0-9a-f]{16}\/v1/);
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it('a data key wrapped for one context does not unwrap under another', async () => {
    const provider = await loadKeyfileProvider(await newKeyfile());
    const key = await provider.generateDataKey({ 'tokend:name': 'a', 'tokend:version': '1' });
    await expect(provider.unwrap(key.wrapped, key.keyId, { 'tokend:name': 'b', 'tokend:version': '1' })).rejects.toMatchObject({
      code: 'ERR_DECRYPT_FAILED',
    });
    const back = await provider.unwrap(key.wrapped, key.keyId, { 'tokend:version': '1', 'tokend:name': 'a' });
    expect(back.equals(key.plaintext)).toBe(true);
  });

  it('close() zeroes the keys held in memory', async () => {
    const provider = await loadKeyfileProvider(await newKeyfile());
    const token = serializeSealed(await seal({ name: 'db', version: 1, plaintext: Buffer.from('x'), provider }));
    provider.close();
    await expect(openSealed(token, 'db', provider)).rejects.toMatchObject({ code: 'ERR_DECRYPT_FAILED' });
  });
});
