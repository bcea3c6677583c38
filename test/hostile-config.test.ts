// Hostile configuration, policy, keyfile, store and command lines, through the
// real binary: each is refused with a non-zero exit code and a one-line message
// that names the file and the key or entry, and nothing on disk changes (the
// whole directory is compared byte for byte, modes and links included).
// tokend's config and policy are JSON (not YAML): a YAML file is refused as invalid JSON.

import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../src/cli/exit-codes.js';
import { tokend } from './support/cli.js';
import { tempDir } from './support/tmp.js';
import { snapshot } from './support/tree.js';

const run = promisify(execFile);
let base: string;
let scratch: string;

beforeAll(async () => {
  scratch = await tempDir('tokend-hostile-config-');
  base = join(scratch, 'base');
  expect((await tokend(['init', '--dir', base])).code).toBe(0);
  expect((await tokend(['seal', 'db', '--dir', base], { input: 'hostile-config-secret' })).code).toBe(0);
  await writeFile(join(base, 'policy.json'), `${JSON.stringify({ rules: [{ identities: ['demo'], tokens: ['db'] }] }, null, 2)}\n`, { mode: 0o600 });
});

let copies = 0;
/** A fresh copy of the good baseline directory. */
async function fresh(): Promise<string> {
  const dir = join(scratch, `case-${(copies += 1)}`);
  await run('cp', ['-a', base, dir]);
  return dir;
}

const editJson = async (path: string, edit: (doc: any) => unknown) => {
  const doc = JSON.parse(await readFile(path, 'utf8'));
  await writeFile(path, `${JSON.stringify(edit(doc) ?? doc, null, 2)}\n`);
};

type Mutation = (dir: string) => Promise<void>;

interface Case {
  readonly mutate: Mutation;
  readonly args: readonly string[];
  readonly input?: string;
  readonly exit: number;
  /** The message, with DIR standing for the case directory. */
  readonly message: string | RegExp;
}

/** Runs one case: mutate a fresh copy, snapshot, run the real binary, and check exit, message and that nothing changed. */
async function refuses(c: Case): Promise<void> {
  const dir = await fresh();
  await c.mutate(dir);
  const before = await snapshot(dir);
  const r = await tokend(c.args.map((a) => a.replaceAll('DIR', dir)), { input: c.input ?? '', cwd: dir });
  expect(r.code, r.stderr).toBe(c.exit);
  const message = typeof c.message === 'string' ? c.message.replaceAll('DIR', dir) : c.message;
  if (typeof message === 'string') expect(r.stderr).toContain(message);
  else expect(r.stderr).toMatch(message);
  // One short message, safe for a terminal: no control characters from a hostile file.
  expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
  expect(r.stderr + r.stdout.toString('latin1')).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  expect(r.stderr).not.toContain('hostile-config-secret');
  expect(await snapshot(dir)).toEqual(before);
}

const SEAL = ['seal', 'db', '--dir', 'DIR'];
const CHECK = ['check', '--dir', 'DIR'];

describe.concurrent('config file (tokend.json)', () => {
  const config = (dir: string) => join(dir, 'tokend.json');
  it.each<[string, Mutation, string | RegExp]>([
    ['malformed JSON (a trailing comma)', async (d) => writeFile(config(d), '{"store": "tokens",}\n'), "config file 'DIR/tokend.json' is not valid JSON"],
    ['truncated JSON', async (d) => writeFile(config(d), (await readFile(config(d), 'utf8')).slice(0, 40)), "config file 'DIR/tokend.json' is not valid JSON"],
    ['YAML instead of JSON', async (d) => writeFile(config(d), 'store: tokens\nprovider:\n  type: keyfile\n'), "config file 'DIR/tokend.json' is not valid JSON"],
    ['an empty file', async (d) => writeFile(config(d), ''), "config file 'DIR/tokend.json' is not valid JSON"],
    ['a JSON list', async (d) => writeFile(config(d), '[]\n'), "config file 'DIR/tokend.json': the top level must be a JSON object"],
    ['an unknown top-level key', async (d) => editJson(config(d), (c) => ({ ...c, stor: 'x' })), "config file 'DIR/tokend.json': 'stor' is not a known setting"],
    ['an unknown nested key', async (d) => editJson(config(d), (c) => void (c.server.lisen = ['127.0.0.1:1'])), "config file 'DIR/tokend.json': 'server.lisen' is not a known setting"],
    ['a number as a string', async (d) => editJson(config(d), (c) => void (c.server.maxConnections = '10')), "'server.maxConnections' must be a number from 1 to 100000"],
    ['a boolean as a string', async (d) => editJson(config(d), (c) => void (c.cache = { enabled: 'yes' })), "'cache.enabled' must be true or false"],
    ['a string where a list belongs', async (d) => editJson(config(d), (c) => void (c.server.listen = '127.0.0.1:7443')), "'server.listen' must be a list of 1 to 16 non-empty strings"],
    ['a list where a section belongs', async (d) => editJson(config(d), (c) => void (c.pki = [])), "config file 'DIR/tokend.json': 'pki' must be a JSON object"],
    ['null where a section belongs', async (d) => editJson(config(d), (c) => void (c.server = null)), "config file 'DIR/tokend.json': 'server' must be a JSON object"],
    ['a value out of range', async (d) => editJson(config(d), (c) => void (c.cache = { ttlSeconds: 0 })), "'cache.ttlSeconds' must be a number from 1 to 86400"],
    ['a fractional integer', async (d) => editJson(config(d), (c) => void (c.server.maxConnections = 1.5)), "'server.maxConnections' must be an integer from 1 to 100000"],
    ['an unknown provider type', async (d) => editJson(config(d), (c) => void (c.provider = { type: 'kms' })), `'provider.type' must be one of "keyfile", "aws"`],
    ['AWS credentials in the config', async (d) => editJson(config(d), (c) => void (c.provider = { type: 'aws', keyId: 'alias/x', region: 'eu-west-1', secretAccessKey: 'abc' })), "'provider.secretAccessKey' is not allowed"],
    ['a config file others can write', async (d) => chmod(config(d), 0o666), "config file 'DIR/tokend.json' is writable by group or others (mode 0666)"],
    ['a missing config file', async (d) => rename(config(d), join(d, 'elsewhere.json')), "config file 'DIR/tokend.json' does not exist"],
  ])('refuses %s, naming the file and the key', async (_what, mutate, message) => {
    for (const args of [SEAL, CHECK]) await refuses({ mutate, args, input: 'x', exit: EXIT.config, message });
  });

  it('refuses an invalid TOKEND_LOG_LEVEL, naming the variable', async () => {
    const dir = await fresh();
    const before = await snapshot(dir);
    const r = await tokend(['seal', 'db', '--dir', dir], { input: 'x', env: { TOKEND_LOG_LEVEL: 'loud' } });
    expect(r.code).toBe(EXIT.config);
    expect(r.stderr).toContain("TOKEND_LOG_LEVEL 'loud' is not one of");
    expect(await snapshot(dir)).toEqual(before);
  });
});

describe.concurrent('policy file (policy.json): tokend check and tokend serve refuse it', () => {
  const policy = (dir: string) => join(dir, 'policy.json');
  const rules = (r: unknown) => async (d: string) => writeFile(policy(d), `${JSON.stringify({ rules: r })}\n`);
  it.each<[string, Mutation, string, number?]>([
    ['malformed JSON', async (d) => writeFile(policy(d), '{"rules": [}'), "policy 'DIR/policy.json' is not valid JSON"],
    ['YAML instead of JSON', async (d) => writeFile(policy(d), 'rules:\n  - identities: [demo]\n'), "policy 'DIR/policy.json' is not valid JSON"],
    ['an unknown key', async (d) => writeFile(policy(d), '{"rules": [], "allow_all": true}'), "policy 'DIR/policy.json': 'allow_all' is not a known key"],
    ['rules that are not a list', async (d) => writeFile(policy(d), '{"rules": 5}'), "policy 'DIR/policy.json': 'rules' must be a list"],
    ['a rule that is a string', rules(['demo:db']), "policy 'DIR/policy.json': rules[0] must be an object"],
    ['an unknown rule key', rules([{ identities: ['demo'], tokens: ['db'], effect: 'allow' }]), "policy 'DIR/policy.json': rules[0].effect is not a known key"],
    ['an empty identity list', rules([{ identities: [], tokens: ['db'] }]), "policy 'DIR/policy.json': rules[0].identities must be a non-empty list"],
    ['identities as a string', rules([{ identities: 'demo', tokens: ['db'] }]), "policy 'DIR/policy.json': rules[0].identities must be a non-empty list"],
    ['a number as a pattern', rules([{ identities: ['demo'], tokens: [1] }]), "policy 'DIR/policy.json': rules[0].tokens[0] 1 is not a name or glob"],
    ['an upper-case pattern', rules([{ identities: ['Demo'], tokens: ['db'] }]), "policy 'DIR/policy.json': rules[0].identities[0] \"Demo\" is not a name or glob"],
    ['a path in a pattern', rules([{ identities: ['demo'], tokens: ['../db'] }]), "policy 'DIR/policy.json': rules[0].tokens[0] \"../db\" is not a name or glob"],
    ['a regular expression as a pattern', rules([{ identities: ['demo'], tokens: ['.*'] }]), "policy 'DIR/policy.json': rules[0].tokens[0] \".*\" is not a name or glob"],
    ['a policy others can write', async (d) => chmod(policy(d), 0o622), "policy 'DIR/policy.json' is writable by group or others (mode 0622)"],
    ['a missing policy', async (d) => rename(policy(d), join(d, 'policy.bak')), "policy 'DIR/policy.json' does not exist", EXIT.notFound],
  ])('refuses %s, naming the file and the entry', async (_what, mutate, message, serveExit = EXIT.config) => {
    const dir = await fresh();
    await mutate(dir);
    const before = await snapshot(dir);
    const check = await tokend(['check', '--dir', dir]);
    expect(check.code).toBe(EXIT.config);
    expect(check.stdout.toString()).toContain(`FAIL policy: ${message.replaceAll('DIR', dir)}`);
    const serve = await tokend(['serve', '--dir', dir]);
    expect(serve.code).toBe(serveExit);
    expect(serve.stderr).toContain(message.replaceAll('DIR', dir));
    expect(await snapshot(dir)).toEqual(before);
  });

  it.each([
    ['every token', { identities: ['demo'], tokens: ['*'] }, 'rules[0].tokens[0] is "*", which matches every token'],
    ['every identity', { identities: ['**'], tokens: ['db'] }, 'rules[0].identities[0] is "**", which matches every identity'],
  ])('warns (and still passes) for a glob that matches %s', async (_what, rule, warning) => {
    const dir = await fresh();
    await writeFile(join(dir, 'policy.json'), `${JSON.stringify({ rules: [rule] })}\n`);
    const check = await tokend(['check', '--dir', dir]);
    expect(check.code).toBe(EXIT.ok);
    expect(check.stdout.toString()).toContain(warning);
    const json = JSON.parse((await tokend(['check', '--json', '--dir', dir])).stdout.toString());
    expect(json.results.find((r: { check: string }) => r.check === 'policy')).toMatchObject({ ok: true, message: expect.stringContaining(warning) });
  });
});

describe.concurrent('keyfile, store and sealed files', () => {
  it.each<[string, Mutation, readonly string[], number, string]>([
    ['a malformed keyfile', async (d) => writeFile(join(d, 'keyfile.json'), '{"format": "tokend-keyfile/1"}', { mode: 0o600 }), SEAL, EXIT.config, "keyfile 'DIR/keyfile.json' is malformed"],
    ['a keyfile with an unknown field', async (d) => editJson(join(d, 'keyfile.json'), (k) => ({ ...k, backup: true })), SEAL, EXIT.config, "keyfile 'DIR/keyfile.json' is malformed: unknown field 'backup'"],
    ['a keyfile readable by others', async (d) => chmod(join(d, 'keyfile.json'), 0o640), SEAL, EXIT.config, "keyfile 'DIR/keyfile.json' is accessible by group or others (mode 0640)"],
    ['a symlinked keyfile', async (d) => {
      await rename(join(d, 'keyfile.json'), join(d, 'real-keyfile.json'));
      await symlink('real-keyfile.json', join(d, 'keyfile.json'));
    }, SEAL, EXIT.config, "keyfile 'DIR/keyfile.json' is a symbolic link; refusing to follow it"],
    ['a symlinked keyfile (keyfile rotate)', async (d) => {
      await rename(join(d, 'keyfile.json'), join(d, 'real-keyfile.json'));
      await symlink('real-keyfile.json', join(d, 'keyfile.json'));
    }, ['keyfile', 'rotate', '--dir', 'DIR'], EXIT.config, "keyfile 'DIR/keyfile.json' is a symbolic link"],
    ['a missing keyfile', async (d) => rename(join(d, 'keyfile.json'), join(d, 'gone.json')), SEAL, EXIT.error, "keyfile 'DIR/keyfile.json' cannot be read: no such file or directory"],
    ['a store others can write', async (d) => chmod(join(d, 'tokens'), 0o777), SEAL, EXIT.config, "token store 'DIR/tokens' is writable by group or others (mode 0777)"],
    ['a symlinked store', async (d) => {
      await rename(join(d, 'tokens'), join(d, 'real-tokens'));
      await symlink('real-tokens', join(d, 'tokens'));
    }, SEAL, EXIT.config, "token store 'DIR/tokens' is a symbolic link"],
    ['a corrupt sealed file (seal refuses to replace it)', async (d) => writeFile(join(d, 'tokens', 'db.sealed'), '{"truncated": '), SEAL, EXIT.decrypt, "sealed token 'db' is corrupt: it is not valid JSON; refusing to replace it"],
    ['a sealed file with a terminal escape in its keyId (list)', async (d) => {
      const path = join(d, 'tokens', 'db.sealed');
      await writeFile(path, (await readFile(path, 'utf8')).replace(/"keyId": "[^"]*"/, '"keyId": "kf-0123456789abcdef/v1\\u001b[2J"'));
    }, ['list', '--dir', 'DIR'], EXIT.decrypt, "sealed token 'db' is corrupt: the keyId field is not 1 to 2048 visible ASCII characters"],
  ])('refuses %s', async (_what, mutate, args, exit, message) => {
    await refuses({ mutate, args, input: 'x', exit, message });
  });
});

describe.concurrent('command lines', () => {
  const none: Mutation = async () => undefined;
  it.each<[string, readonly string[], number, string | RegExp, string?]>([
    ['an invalid token name', ['seal', '../etc/passwd', '--dir', 'DIR'], EXIT.usage, 'token name "../etc/passwd" is not valid: it contains a path separator'],
    ['an upper-case token name', ['seal', 'DB', '--dir', 'DIR'], EXIT.usage, 'token name "DB" is not valid: it contains upper-case letters'],
    ['a secret on the command line', ['seal', 'db', 'hunter2', '--dir', 'DIR'], EXIT.usage, 'usage: tokend seal NAME'],
    ['an unknown option', ['seal', 'db', '--frobnicate', '--dir', 'DIR'], EXIT.usage, "Unknown option '--frobnicate'"],
    ['a missing token file', ['seal', 'db', '--file', 'DIR/nope.txt', '--dir', 'DIR'], EXIT.notFound, "token file 'DIR/nope.txt' does not exist"],
    ['a directory as the token file', ['seal', 'db', '--file', 'DIR/tokens', '--dir', 'DIR'], EXIT.error, "token file 'DIR/tokens' cannot be read"],
    ['a token over 1 MiB on stdin', ['seal', 'db', '--dir', 'DIR'], EXIT.usage, "token 'db' is larger than 1048576 bytes", 'x'.repeat(1024 * 1024 + 1)],
    ['an invalid identity', ['cert', 'issue', 'Bad/Name', '--dir', 'DIR'], EXIT.usage, 'identity "Bad/Name" is not valid'],
    ['an invalid lifetime', ['cert', 'issue', 'billing', '--ttl', '5y', '--dir', 'DIR'], EXIT.usage, "lifetime '5y' is not valid"],
    ['an invalid owner', ['cert', 'issue', 'billing', '--owner', 'root', '--dir', 'DIR'], EXIT.usage, "--owner 'root' is not UID:GID"],
    ['an existing bundle without --force', ['cert', 'issue', 'demo', '--dir', 'DIR'], EXIT.exists, 'a bundle already exists in'],
    ['revoking an unknown identity', ['cert', 'revoke', 'nobody', '--dir', 'DIR'], EXIT.notFound, "no certificate was issued for identity 'nobody'"],
    ['retiring a key version that is not a number', ['keyfile', 'retire', 'one', '--dir', 'DIR'], EXIT.usage, "key version 'one' is not a positive integer"],
    ['retiring the primary key', ['keyfile', 'retire', '1', '--dir', 'DIR'], EXIT.usage, 'key version 1 is the primary key'],
    ['rewrapping to a key that does not exist', ['rewrap', '--to-key', 'kf-0000000000000000/v9', '--dir', 'DIR'], EXIT.kmsAccess, "key 'kf-0000000000000000/v9' is not in this keyfile"],
    ['unsealing a token that does not exist', ['unseal', 'nope', '--dir', 'DIR'], EXIT.notFound, "sealed token 'nope' file 'DIR/tokens/nope.sealed' does not exist"],
    ['a config path that is a directory', ['check', '--config', 'DIR/tokens'], EXIT.error, "config file 'DIR/tokens' cannot be read: it is a directory"],
  ])('refuses %s', async (_what, args, exit, message, input) => {
    await refuses({ mutate: none, args, exit, message, ...(input === undefined ? {} : { input }) });
  });

  it('refuses init over a file, naming it', async () => {
    const dir = await fresh();
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'sub', 'file'), 'x');
    const before = await snapshot(dir);
    const r = await tokend(['init', '--dir', join(dir, 'sub', 'file')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(join(dir, 'sub', 'file'));
    expect(await snapshot(dir)).toEqual(before);
  });
});
