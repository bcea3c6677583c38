import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT } from '../src/cli/exit-codes.js';
import { TOKEND_BIN, tokend } from './support/cli.js';
import { curl, makeFixture } from './support/daemon.js';
import type { Fixture } from './support/daemon.js';
import { tempDir } from './support/tmp.js';

interface Proc {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

const procs: Proc[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) p.child.kill('SIGKILL');
});

function start(args: string[], cwd?: string): Proc {
  const child = spawn(process.execPath, [TOKEND_BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TOKEND_CONFIG: '' } });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout?.on('data', (c: Buffer) => stdout.push(c.toString()));
  child.stderr?.on('data', (c: Buffer) => stderr.push(c.toString()));
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  const p = { child, stdout, stderr, exited };
  procs.push(p);
  return p;
}

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const logLines = (p: Proc) => p.stdout.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
const readyAddress = (p: Proc) => (logLines(p).find((l) => l.msg === 'ready')?.addresses as string[] | undefined)?.[0];

async function fixtureWithToken(value: string): Promise<Fixture> {
  const fx = await makeFixture();
  await fx.seal('db', value);
  await fx.writePolicy([{ identities: ['demo'], tokens: ['db'] }]);
  return fx;
}

describe('serve as a process', () => {
  it('logs JSON lines, reloads on SIGHUP, stops on SIGTERM with exit 0, and keeps secrets out of argv, env and logs', async () => {
    const secret = 'process-level-secret-value';
    const fx = await fixtureWithToken(secret);
    const p = start(['serve', '--config', fx.configPath]);
    const address = await waitFor('ready', () => readyAddress(p));
    const url = `https://${address}`;
    const demo = fx.bundleDir('demo');

    const first = await curl(`${url}/v1/tokens/db`, { bundle: demo });
    expect(first.body.toString()).toBe(secret);

    const pid = p.child.pid as number;
    const cmdline = await readFile(`/proc/${pid}/cmdline`);
    const environ = await readFile(`/proc/${pid}/environ`);
    expect(cmdline.includes(secret)).toBe(false);
    expect(environ.includes(secret)).toBe(false);

    await fx.writePolicy([]);
    p.child.kill('SIGHUP');
    await waitFor('reloaded', () => logLines(p).find((l) => l.msg === 'reloaded'));
    expect((await curl(`${url}/v1/tokens/db`, { bundle: demo })).status).toBe(403);

    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    const logs = logLines(p);
    expect(logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['ready', 'request', 'reloaded', 'stopping', 'stopped']));
    expect(p.stdout.join('') + p.stderr.join('')).not.toContain(secret);
  });

  it('serves a bundle made by `tokend cert issue`, and refuses it after `tokend cert revoke` and SIGHUP', async () => {
    const fx = await fixtureWithToken('cli-bundle-secret');
    await fx.writePolicy([{ identities: ['web'], tokens: ['db'] }]);
    const p = start(['serve', '--config', fx.configPath]);
    const address = await waitFor('ready', () => readyAddress(p));
    const out = join(await tempDir(), 'web-bundle');
    const issued = await tokend(['cert', 'issue', 'web', '--out', out, '--config', fx.configPath]);
    expect(issued.code, issued.stderr).toBe(0);
    const ok = await curl(`https://${address}/v1/tokens/db`, { bundle: out });
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('cli-bundle-secret');

    const revoked = await tokend(['cert', 'revoke', 'web', '--config', fx.configPath]);
    expect(revoked.code, revoked.stderr).toBe(0);
    p.child.kill('SIGHUP');
    await waitFor('reloaded', () => logLines(p).find((l) => l.msg === 'reloaded'));
    const refused = await curl(`https://${address}/v1/tokens/db`, { bundle: out });
    expect(refused.status).toBe(0);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('listens on [::1] and on a unix socket when configured', async () => {
    const fx = await fixtureWithToken('socket-secret');
    const sock = join(await tempDir(), 'tokend.sock');
    await fx.editConfig((doc) => {
      doc.server.listen = ['[::1]:0', `unix:${sock}`];
    });
    const p = start(['serve', '--config', fx.configPath]);
    await waitFor('ready', () => readyAddress(p));
    const [v6] = logLines(p).find((l) => l.msg === 'ready')?.addresses as string[];
    const demo = fx.bundleDir('demo');
    const viaV6 = await curl(`https://${v6}/v1/tokens/db`, { bundle: demo });
    expect(viaV6.body.toString()).toBe('socket-secret');
    const viaSocket = await curl('https://localhost/v1/tokens/db', { bundle: demo, args: ['--unix-socket', sock] });
    expect(viaSocket.body.toString()).toBe('socket-secret');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('tokend health reports a running server healthy (handshake, and /healthz with a bundle) and a stopped one not', async () => {
    const fx = await fixtureWithToken('health-secret');
    const p = start(['serve', '--config', fx.configPath]);
    const address = await waitFor('ready', () => readyAddress(p));
    const plain = await tokend(['health', '--config', fx.configPath, '--address', address]);
    expect(plain.code, plain.stdout.toString()).toBe(0);
    expect(plain.stdout.toString()).toContain(`healthy: ${address} completes a TLS handshake`);
    const full = await tokend(['health', '--config', fx.configPath, '--address', address, '--bundle', fx.bundleDir('demo')]);
    expect(full.stdout.toString()).toContain('answers GET /healthz with 200');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    const down = await tokend(['health', '--config', fx.configPath, '--address', address]);
    expect(down.code).toBe(1);
    expect(down.stdout.toString()).toContain(`unhealthy: ${address}`);
  });

  it('refuses a non-loopback listen address unless the config allows it (exit 3, naming it)', async () => {
    const fx = await fixtureWithToken('x');
    await fx.editConfig((doc) => {
      doc.server.listen = ['0.0.0.0:0'];
    });
    const r = await tokend(['serve', '--config', fx.configPath]);
    expect(r.code).toBe(EXIT.config);
    expect(r.stderr).toContain("listen address '0.0.0.0:0' is not loopback; set server.allowNonLoopback");
  });

  it('refuses to start when a sealed file is corrupt, naming it', async () => {
    const fx = await fixtureWithToken('x');
    await (await import('node:fs/promises')).writeFile(join(fx.dir, 'tokens', 'bad.sealed'), '{}', { mode: 0o600 });
    const r = await tokend(['serve', '--config', fx.configPath]);
    expect(r.code).toBe(EXIT.decrypt);
    expect(r.stderr).toContain("sealed token 'bad' is corrupt");
  });

  it('serve --dev sets everything up and prints a curl line that works as printed', async () => {
    const cwd = await tempDir();
    const dir = join(cwd, 'dev');
    // Pre-create the dev config on an ephemeral port so the test never collides with a running tokend.
    const init = await tokend(['init', '--dir', dir]);
    expect(init.code, init.stderr).toBe(0);
    const cfg = JSON.parse(await readFile(join(dir, 'tokend.json'), 'utf8'));
    cfg.server.listen = ['127.0.0.1:0'];
    await (await import('node:fs/promises')).writeFile(join(dir, 'tokend.json'), JSON.stringify(cfg), { mode: 0o600 });
    const p = start(['serve', '--dev', '--dir', dir], cwd);
    const address = await waitFor('ready', () => readyAddress(p));
    const line = await waitFor('curl line', () => p.stderr.join('').split('\n').find((l) => l.startsWith('try: curl ')));
    const args = line.slice('try: curl '.length).split(' ');
    const url = (args.pop() as string).replace('127.0.0.1:7443', address);
    const r = await curl(url, { args });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toMatch(/^demo-[0-9a-f]{24}$/);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });
});
