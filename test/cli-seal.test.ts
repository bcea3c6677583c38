import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../src/cli/exit-codes.js';
import { TOKEND_BIN, tokend } from './support/cli.js';
import { tempDir } from './support/tmp.js';

let dir: string;
const run = (args: string[], input?: Buffer | string) => tokend([...args, '--dir', dir], input === undefined ? {} : { input });

beforeAll(async () => {
  dir = join(await tempDir(), 'dev');
  const init = await tokend(['init', '--dir', dir]);
  expect(init.code, init.stderr).toBe(0);
});

/** Every way the plaintext could show up in a file: raw, hex, base64, base64url. */
function traces(secret: Buffer): Buffer[] {
  return [secret, Buffer.from(secret.toString('hex')), Buffer.from(secret.toString('base64')), Buffer.from(secret.toString('base64url'))];
}

describe('CLI: init → seal → unseal with the mock KMS keyfile', () => {
  it('returns the exact bytes and leaves no trace of the plaintext on disk', async () => {
    const secret = Buffer.concat([Buffer.from('s3cr3t-'), randomBytes(24), Buffer.from([0, 0xff, 0x0a])]);
    const sealed = await run(['seal', 'github-token'], secret);
    expect(sealed.code, sealed.stderr).toBe(EXIT.ok);
    const path = sealed.stdout.toString('utf8').trim();
    expect(path).toBe(join(dir, 'tokens', 'github-token.sealed'));
    expect((await stat(path)).mode & 0o777).toBe(0o600);

    const opened = await run(['unseal', 'github-token']);
    expect(opened.code, opened.stderr).toBe(EXIT.ok);
    expect(opened.stdout.equals(secret)).toBe(true);

    for (const file of await readdir(dir, { recursive: true })) {
      const full = join(dir, file);
      if (!(await stat(full)).isFile()) continue;
      const content = await readFile(full);
      for (const t of traces(secret.subarray(0, 31))) expect(content.includes(t), `${file} contains the token`).toBe(false);
    }
    expect(sealed.stderr + opened.stderr).not.toContain(secret.subarray(0, 31).toString('base64'));
  });

  it('init is idempotent and keeps the existing keyfile', async () => {
    const before = await readFile(join(dir, 'keyfile.json'));
    const again = await tokend(['init', '--dir', dir, '--json']);
    expect(again.code).toBe(0);
    const report = JSON.parse(again.stdout.toString());
    expect(report.steps.every((s: { action: string }) => s.action === 'kept')).toBe(true);
    expect((await readFile(join(dir, 'keyfile.json'))).equals(before)).toBe(true);
  });

  it('seals the next version over an existing token and reports it with --json', async () => {
    await run(['seal', 'rotating'], 'one');
    const second = await run(['seal', 'rotating', '--json'], 'two');
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout.toString())).toMatchObject({ name: 'rotating', version: 2 });
    expect((await run(['unseal', 'rotating'])).stdout.toString()).toBe('two');
  });

  it('reads the token from --file and can strip one trailing newline', async () => {
    const file = join(dir, 'token.txt');
    await (await import('node:fs/promises')).writeFile(file, 'from-file\n');
    const kept = await run(['seal', 'with-newline', '--file', file]);
    expect(kept.stderr).toContain("token 'with-newline' ends with a newline");
    expect((await run(['unseal', 'with-newline'])).stdout.toString()).toBe('from-file\n');
    await run(['seal', 'stripped', '--file', file, '--strip-newline']);
    expect((await run(['unseal', 'stripped'])).stdout.toString()).toBe('from-file');
  });

  it('lists tokens without decrypting them', async () => {
    const list = await run(['list', '--json']);
    expect(list.code).toBe(0);
    const names = JSON.parse(list.stdout.toString()).tokens.map((t: { name: string }) => t.name);
    expect(names).toContain('github-token');
  });

  it('exits 4 for an unknown token and 2 for an invalid name, naming it', async () => {
    const missing = await run(['unseal', 'nope']);
    expect(missing.code).toBe(EXIT.notFound);
    expect(missing.stderr).toContain("sealed token 'nope' file");
    const bad = await run(['seal', '../etc/passwd'], 'x');
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.stderr).toContain('token name "../etc/passwd" is not valid');
  });

  it('refuses extra arguments, so a secret can never be passed on the command line', async () => {
    const r = await run(['seal', 'db', 'hunter2']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).not.toContain('hunter2');
  });

  it('exits 6 when a sealed file was tampered with, without printing any plaintext', async () => {
    await run(['seal', 'tampered'], 'do-not-print-me');
    const path = join(dir, 'tokens', 'tampered.sealed');
    const doc = JSON.parse(await readFile(path, 'utf8'));
    const ct = Buffer.from(doc.ciphertext, 'base64');
    ct[0] = (ct[0] as number) ^ 1;
    doc.ciphertext = ct.toString('base64');
    await (await import('node:fs/promises')).writeFile(path, `${JSON.stringify(doc, null, 2)}\n`);
    const r = await run(['unseal', 'tampered']);
    expect(r.code).toBe(EXIT.decrypt);
    expect(r.stderr).toContain("sealed token 'tampered' could not be decrypted");
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).not.toContain('do-not-print-me');
  });

  it('refuses a keyfile with loose permissions (exit 3), naming the file', async () => {
    const other = join(await tempDir(), 'dev');
    await tokend(['init', '--dir', other]);
    await chmod(join(other, 'keyfile.json'), 0o644);
    const r = await tokend(['seal', 'db', '--dir', other], { input: 'x' });
    expect(r.code).toBe(EXIT.config);
    expect(r.stderr).toContain(`keyfile '${join(other, 'keyfile.json')}' is accessible by group or others (mode 0644)`);
    expect(await readdir(join(other, 'tokens'))).toEqual([]);
  });

  it('rotates the keyfile, rewraps, retires v1, and every token still opens', async () => {
    const d = join(await tempDir(), 'dev');
    await tokend(['init', '--dir', d]);
    const r = (args: string[], input?: string) => tokend([...args, '--dir', d], input === undefined ? {} : { input });
    await r(['seal', 'a'], 'alpha');
    await r(['seal', 'b'], 'bravo');
    expect((await r(['keyfile', 'rotate'])).code).toBe(0);
    const refused = await r(['keyfile', 'retire', '1']);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.stderr).toContain('still wraps 2 token(s) (a, b)');
    const rewrap = await r(['rewrap', '--json']);
    expect(JSON.parse(rewrap.stdout.toString())).toEqual({ rewrapped: ['a', 'b'], unchanged: [], failed: [] });
    expect((await r(['keyfile', 'retire', '1'])).code).toBe(0);
    expect((await r(['unseal', 'a'])).stdout.toString()).toBe('alpha');
    expect((await r(['unseal', 'b'])).stdout.toString()).toBe('bravo');
  });

  it('check passes on a dev directory and points out tokens no policy rule names', async () => {
    const r = await run(['check', '--json']);
    expect(r.code, r.stdout.toString()).toBe(0);
    const results = JSON.parse(r.stdout.toString()).results as { check: string; ok: boolean; message: string }[];
    expect(results.map((x) => [x.check, x.ok])).toEqual([
      ['config', true],
      ['store', true],
      ['policy', true],
      ['pki', true],
      ['provider', true],
    ]);
    expect(results.find((x) => x.check === 'policy')?.message).toMatch(/no rule names \d+ token\(s\): .*github-token/);
  });

  it('prints help with the exit codes', async () => {
    const help = await tokend(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout.toString()).toContain('Exit codes:');
    expect((await tokend(['frobnicate'])).code).toBe(EXIT.usage);
  });
});

describe('CLI: crash safety', () => {
  it('kill -9 during seal leaves the old or the new file, never a partial one (30 runs)', async () => {
    const d = join(await tempDir(), 'dev');
    await tokend(['init', '--dir', d]);
    const big = (n: number) => Buffer.alloc(256 * 1024, n);
    await tokend(['seal', 'big', '--dir', d], { input: big(1) });
    let killedMidway = 0;
    for (let i = 0; i < 30; i += 1) {
      const child = spawn(process.execPath, [TOKEND_BIN, 'seal', 'big', '--dir', d], { stdio: ['pipe', 'ignore', 'ignore'] });
      child.stdin.on('error', () => undefined); // the child may die before reading stdin
      child.stdin.end(big(i + 2));
      const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
      setTimeout(() => child.kill('SIGKILL'), 20 + Math.floor(Math.random() * 200));
      if ((await exited) === null) killedMidway += 1;
      const opened = await tokend(['unseal', 'big', '--dir', d]);
      expect(opened.code, opened.stderr).toBe(0);
      expect(opened.stdout.length).toBe(256 * 1024);
      const fill = opened.stdout[0] as number;
      expect(opened.stdout.every((b) => b === fill)).toBe(true);
    }
    expect(killedMidway).toBeGreaterThan(0);
    const leftovers = (await readdir(join(d, 'tokens'))).filter((f) => f !== 'big.sealed');
    for (const f of leftovers) {
      expect(f.startsWith('.tmp-')).toBe(true);
      const content = await readFile(join(d, 'tokens', f));
      expect(content.includes(Buffer.alloc(64, content[0]))).toBe(false);
    }
  }, 120_000);
});
