// `tokend ignition` and ignition/: the renderer refuses what must never reach a host, the real
// ignition-validate accepts what it renders, and ignition/tokend.bu, ignition/tokend.ign and the
// renderer's output for ignition/example stay one and the same config.

import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { HOST, HOST_UNITS, renderIgnition } from '../src/ignition.js';
import type { HostFiles } from '../src/ignition.js';
import { tokend } from './support/cli.js';
import { validateIgnition } from './support/ignition.js';
import { startKmsServer } from './support/kms-server.js';
import type { KmsServer } from './support/kms-server.js';
import { REPO } from './support/rootfs.js';
import { hasCommand, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';

const EXAMPLE = join(REPO, 'ignition/example');
const EXAMPLE_ARGS = ['ignition', '--dir', EXAMPLE, '--client', 'billing=1000:1000', '--client', 'reports'];
const skipValidate = missing({ 'ignition-validate': hasCommand('ignition-validate') });

/** The text a `data:` URL carries (percent-encoded or base64, gzip when Butane compressed it). */
function decodeSource(source: string, compression?: string): string {
  const comma = source.indexOf(',');
  const meta = source.slice(5, comma);
  const raw = meta.endsWith(';base64') ? Buffer.from(source.slice(comma + 1), 'base64') : Buffer.from(decodeURIComponent(source.slice(comma + 1)), 'utf8');
  return (compression === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
}

type Json = Record<string, any>;

/** Every file's and unit's content decoded, so two configs compare by what they put on a host. */
function normalizeIgnition(ign: Json): Json {
  return {
    ...ign,
    storage: {
      ...ign.storage,
      files: (ign.storage?.files ?? []).map((f: Json) => {
        const { contents, ...rest } = f;
        return { ...rest, text: decodeSource(contents.source, contents.compression) };
      }),
    },
  };
}

/**
 * Butane (fcos 1.4.0) to Ignition 3.3.0 for the keys ignition/tokend.bu uses, as Butane's
 * documentation defines them; any other key fails, so the file cannot drift out of what this
 * translation (and so the test) understands. Butane itself is not installable here.
 */
function butaneToIgnition(bu: Json, filesDir: string): Json {
  const only = (obj: Json, keys: string[], where: string) => {
    for (const k of Object.keys(obj)) if (!keys.includes(k)) throw new Error(`${where}: key '${k}' is not handled by this test's Butane translation`);
  };
  only(bu, ['variant', 'version', 'passwd', 'storage', 'systemd'], 'top level');
  only(bu.storage, ['directories', 'files', 'links'], 'storage');
  expect([bu.variant, bu.version]).toEqual(['fcos', '1.4.0']);
  const owner = (o: Json) => ({ user: { name: o.user.name }, group: { name: o.group.name } });
  return {
    ignition: { version: '3.3.0' },
    passwd: {
      users: bu.passwd.users.map((u: Json) => {
        only(u, ['name', 'uid', 'primary_group', 'system', 'home_dir', 'no_create_home', 'shell'], 'passwd.users[]');
        return { name: u.name, uid: u.uid, primaryGroup: u.primary_group, system: u.system, homeDir: u.home_dir, noCreateHome: u.no_create_home, shell: u.shell };
      }),
      groups: bu.passwd.groups.map((g: Json) => {
        only(g, ['name', 'gid', 'system'], 'passwd.groups[]');
        return { name: g.name, gid: g.gid, system: g.system };
      }),
    },
    storage: {
      directories: bu.storage.directories.map((d: Json) => {
        only(d, ['path', 'mode', 'user', 'group'], 'storage.directories[]');
        return { path: d.path, mode: d.mode, ...owner(d) };
      }),
      files: bu.storage.files.map((f: Json) => {
        only(f, ['path', 'mode', 'user', 'group', 'overwrite', 'contents'], 'storage.files[]');
        only(f.contents, ['inline', 'local'], 'storage.files[].contents');
        const text = f.contents.inline ?? null;
        return { path: f.path, mode: f.mode, ...owner(f), overwrite: f.overwrite, text: text ?? `local:${f.contents.local}` };
      }),
      links: (bu.storage.links ?? []).map((l: Json) => {
        only(l, ['path', 'target', 'hard'], 'storage.links[]');
        return { path: l.path, target: l.target, hard: l.hard };
      }),
    },
    systemd: {
      units: bu.systemd.units.map((u: Json) => {
        only(u, ['name', 'enabled', 'contents', 'dropins'], 'systemd.units[]');
        return { name: u.name, ...(u.enabled === undefined ? {} : { enabled: u.enabled }), ...(u.contents === undefined ? {} : { contents: u.contents }), ...(u.dropins ? { dropins: u.dropins } : {}) };
      }),
    },
  };
}

describe('ignition/ (the Butane example and the Ignition JSON it stands for)', () => {
  it('tokend.ign is exactly what `tokend ignition` renders for ignition/example', async () => {
    const r = await tokend(EXAMPLE_ARGS);
    expect(r.stderr).toContain('2 sealed token(s), 2 client bundle(s) issued on first boot, pki.mode internal');
    expect(r.code).toBe(0);
    expect(r.stdout.toString('utf8')).toBe(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8'));
  });

  it('tokend.bu says what tokend.ign says, file by file and unit by unit', async () => {
    const bu = parseYaml(await readFile(join(REPO, 'ignition/tokend.bu'), 'utf8'), { version: '1.1' }) as Json;
    const fromButane = butaneToIgnition(bu, EXAMPLE);
    for (const f of fromButane.storage.files) {
      if (f.text.startsWith('local:')) f.text = await readFile(join(EXAMPLE, f.text.slice('local:'.length)), 'utf8');
    }
    const ign = normalizeIgnition(JSON.parse(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8')));
    expect(fromButane).toEqual(ign);
  });

  it('ships the units of units/ verbatim', async () => {
    const ign = JSON.parse(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8')) as Json;
    for (const name of HOST_UNITS) {
      const unit = ign.systemd.units.find((u: Json) => u.name === name);
      expect(unit?.contents, name).toBe(await readFile(join(REPO, 'units', name), 'utf8'));
    }
  });

  it('holds no private key and no keyfile, only sealed tokens', async () => {
    const texts = [await readFile(join(REPO, 'ignition/tokend.bu'), 'utf8'), ...normalizeIgnition(JSON.parse(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8'))).storage.files.map((f: Json) => f.text)];
    for (const text of texts) {
      expect(text).not.toMatch(/PRIVATE KEY|tokend-keyfile\/|"type":\s*"keyfile"/);
    }
    const sealed = normalizeIgnition(JSON.parse(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8'))).storage.files.filter((f: Json) => f.path.startsWith(`${HOST.tokens}/`));
    expect(sealed.map((f: Json) => f.path)).toEqual([`${HOST.tokens}/db-password.sealed`, `${HOST.tokens}/stripe-key.sealed`]);
    for (const f of sealed) expect(JSON.parse(f.text)).toMatchObject({ format: 'tokend-sealed/1', provider: 'aws' });
  });

  it.skipIf(skipValidate)('passes the real ignition-validate', async () => {
    expect(await validateIgnition(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8'))).toEqual({ ok: true, report: '' });
  });
});

describe('tokend ignition', () => {
  let kms: KmsServer;
  let dir: string;
  const SECRET = 'plaintext-that-must-never-reach-ignition';

  beforeAll(async () => {
    kms = await startKmsServer({ region: 'eu-west-1' });
    kms.createAlias('alias/fleet', kms.createKey('fleet').keyId);
    dir = await tempDir();
    await mkdir(join(dir, 'tokens'), { mode: 0o700 });
    await writeConfig({});
    await writeFile(join(dir, 'policy.json'), JSON.stringify({ rules: [{ identities: ['billing'], tokens: ['db-password'] }] }), { mode: 0o600 });
    const sealed = await tokend(['seal', 'db-password', '--dir', dir], { input: SECRET, env: kms.env() });
    expect(sealed.code, sealed.stderr).toBe(0);
    return () => kms.close();
  });

  async function writeConfig(extra: Json, file = 'tokend.json'): Promise<string> {
    const doc = { store: 'tokens', policy: 'policy.json', provider: { type: 'aws', keyId: 'alias/fleet', region: 'eu-west-1', endpoint: kms.endpoint }, ...extra };
    await writeFile(join(dir, file), JSON.stringify(doc), { mode: 0o600 });
    return join(dir, file);
  }

  const render = async (args: string[] = []) => {
    const r = await tokend(['ignition', '--dir', dir, ...args]);
    return { ...r, json: r.code === 0 ? (JSON.parse(r.stdout.toString('utf8')) as Json) : undefined };
  };

  it('puts the config with host paths, the policy and the sealed tokens under /etc/tokend, readable by tokend only', async () => {
    const r = await render(['--client', 'billing=1000:1000']);
    expect(r.code, r.stderr).toBe(0);
    const files = normalizeIgnition(r.json!).storage.files as Json[];
    expect(files.map((f) => [f.path, f.mode.toString(8), f.user.name, f.group.name])).toEqual([
      [HOST.config, '640', 'root', 'tokend'],
      [HOST.policy, '640', 'root', 'tokend'],
      [`${HOST.tokens}/db-password.sealed`, '640', 'root', 'tokend'],
    ]);
    expect(JSON.parse(files[0]!.text)).toEqual({
      store: HOST.tokens,
      policy: HOST.policy,
      provider: { type: 'aws', keyId: 'alias/fleet', region: 'eu-west-1', endpoint: kms.endpoint },
      pki: { dir: HOST.pki },
    });
    expect(files[2]!.text).toBe(await readFile(join(dir, 'tokens/db-password.sealed'), 'utf8'));
    expect(r.json!.systemd.units.map((u: Json) => [u.name, u.enabled ?? false])).toEqual([
      ['tokend.service', true],
      ['tokend-ca.service', false],
      ['tokend-client@.service', false],
      ['tokend-renew.service', false],
      ['tokend-renew.timer', true],
      ['tokend-client@billing.service', false],
    ]);
    expect(r.json!.systemd.units[5].dropins).toEqual([{ name: 'owner.conf', contents: '[Service]\nEnvironment=TOKEND_CLIENT_OWNER=1000:1000\n' }]);
    // Enabled as `systemctl enable tokend-client@billing.service` would: a wants link to the template.
    expect(r.json!.storage.links).toEqual([
      { path: '/etc/systemd/system/multi-user.target.wants/tokend-client@billing.service', target: '/etc/systemd/system/tokend-client@.service', hard: false },
    ]);
  });

  it('never carries a token in any form: not plain, not base64, not percent-encoded', async () => {
    const r = await render();
    const out = r.stdout.toString('utf8');
    for (const form of [SECRET, Buffer.from(SECRET).toString('base64'), encodeURIComponent(SECRET)]) expect(out).not.toContain(form);
    expect(JSON.stringify(normalizeIgnition(r.json!))).not.toContain(SECRET);
  });

  it.skipIf(skipValidate)('renders what the real ignition-validate accepts, in internal and external mode', async () => {
    expect(await validateIgnition((await render(['--client', 'billing'])).stdout.toString('utf8'))).toEqual({ ok: true, report: '' });
    const ca = await tokend(['ca', 'init', '--dir', await externalCaDir()]);
    expect(ca.code).toBe(0);
    const external = await tokend(['ignition', '--config', await writeConfig({ pki: { mode: 'external', caBundle: join(dir, 'ext/pki/ca.crt'), serverCert: '/x/server.crt', serverKey: '/x/server.key' } }, 'external.json')]);
    expect(external.code, external.stderr).toBe(0);
    expect(external.stderr).toContain(`provision ${HOST.pki}/server.crt and server.key`);
    expect(await validateIgnition(external.stdout.toString('utf8'))).toEqual({ ok: true, report: '' });
    const files = normalizeIgnition(JSON.parse(external.stdout.toString('utf8'))).storage.files as Json[];
    const bundle = files.find((f) => f.path === HOST.caBundle);
    expect(bundle?.text).toBe(await readFile(join(dir, 'ext/pki/ca.crt'), 'utf8'));
    expect(JSON.parse(files[0]!.text).pki).toEqual({ mode: 'external', caBundle: HOST.caBundle, serverCert: `${HOST.pki}/server.crt`, serverKey: `${HOST.pki}/server.key`, dir: HOST.pki });
  });

  async function externalCaDir(): Promise<string> {
    const ext = join(dir, 'ext');
    if (!existsSync(ext)) {
      await mkdir(ext, { mode: 0o700 });
      await writeFile(join(ext, 'tokend.json'), JSON.stringify({ provider: { type: 'keyfile' } }), { mode: 0o600 });
    }
    return ext;
  }

  it('refuses the development keyfile provider, and writes nothing', async () => {
    const init = await tokend(['init', '--dir', join(dir, 'dev')]);
    expect(init.code).toBe(0);
    const r = await tokend(['ignition', '--dir', join(dir, 'dev'), '--out', join(dir, 'dev.ign')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/the keyfile provider is a development mock KMS and is never provisioned onto a host/);
    expect(r.stdout.toString()).toBe('');
    expect(existsSync(join(dir, 'dev.ign'))).toBe(false);
  });

  it('refuses client bundles in external mode, and a malformed --client', async () => {
    const external = await tokend(['ignition', '--client', 'billing', '--config', await writeConfig({ pki: { mode: 'external', caBundle: join(dir, 'ext/pki/ca.crt'), serverCert: '/x/s.crt', serverKey: '/x/s.key' } }, 'external.json')]);
    expect(external.code).toBe(3);
    expect(external.stderr).toMatch(/tokend issues no client bundles; issue them with your CA/);
    const bad = await render(['--client', 'billing=1000']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--client 'billing=1000' is not IDENTITY or IDENTITY=UID:GID/);
    const badName = await render(['--client', '../etc']);
    expect(badName.code).toBe(2);
  });
});

describe('renderIgnition (pure)', () => {
  const units = Object.fromEntries(HOST_UNITS.map((n) => [n, `[Unit]\nDescription=${n}\n`]));
  const base: HostFiles = {
    config: { provider: { type: 'aws', keyId: 'alias/fleet', region: 'eu-west-1' } },
    policy: '{"rules":[]}\n',
    tokens: new Map(),
    units,
    clients: [],
  };

  it('refuses a private key wherever it hides (policy, CA bundle, a unit)', () => {
    // A PEM-shaped marker with no key in it, assembled here so no file of the repository looks like it holds a key.
    const pem = (label: string) => `-----BEGIN ${label}-----`;
    const key = `${pem('PRIVATE KEY')}\nMIIE\n-----END PRIVATE KEY-----\n`;
    expect(() => renderIgnition({ ...base, policy: key })).toThrow(/the policy holds a private key; refusing to put it into Ignition/);
    expect(() => renderIgnition({ ...base, units: { ...units, 'tokend.service': key } })).toThrow(/unit 'tokend.service' holds a private key/);
    const external = { ...base.config, pki: { mode: 'external', caBundle: '/ca', serverCert: '/s', serverKey: '/k' } };
    const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    expect(() => renderIgnition({ ...base, config: external, caBundle: `${cert}${pem('RSA PRIVATE KEY')}\n` })).toThrow(/the CA bundle holds a private key/);
    expect(() => renderIgnition({ ...base, config: external, caBundle: 'not a certificate' })).toThrow(/the CA bundle holds no PEM certificate/);
  });

  it('refuses a sealed token of another provider, or one that does not parse', async () => {
    const keyfileSealed = `${JSON.stringify({ ...JSON.parse(await readFile(join(EXAMPLE, 'tokens/db-password.sealed'), 'utf8')), provider: 'keyfile', keyId: '1' }, null, 2)}\n`;
    expect(() => renderIgnition({ ...base, tokens: new Map([['db-password', keyfileSealed]]) })).toThrow(
      /sealed token 'db-password' was sealed with the 'keyfile' provider, not 'aws'; seal it again for the host's KMS/,
    );
    expect(() => renderIgnition({ ...base, tokens: new Map([['a', 'not json']]) })).toThrow(/sealed token 'a' is corrupt/);
  });

  it('is deterministic and sorts tokens and clients', async () => {
    const sealed = await readFile(join(EXAMPLE, 'tokens/db-password.sealed'), 'utf8');
    const sealed2 = await readFile(join(EXAMPLE, 'tokens/stripe-key.sealed'), 'utf8');
    const a = renderIgnition({ ...base, tokens: new Map([['stripe-key', sealed2], ['db-password', sealed]]), clients: [{ identity: 'b' }, { identity: 'a' }] });
    const b = renderIgnition({ ...base, tokens: new Map([['db-password', sealed], ['stripe-key', sealed2]]), clients: [{ identity: 'a' }, { identity: 'b' }] });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(a.storage.files.map((f) => f.path).slice(2)).toEqual([`${HOST.tokens}/db-password.sealed`, `${HOST.tokens}/stripe-key.sealed`]);
    expect(() => renderIgnition({ ...base, clients: [{ identity: 'a' }, { identity: 'a' }] })).toThrow(/client identity 'a' is given twice/);
  });

  it('lists every unit it ships, and the example ships exactly those', async () => {
    expect((await readdir(join(REPO, 'units'))).filter((f) => HOST_UNITS.includes(f)).sort()).toEqual([...HOST_UNITS].sort());
  });
});
