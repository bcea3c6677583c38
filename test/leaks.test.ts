// Leaks: a real `tokend serve` process and the CLI driven through every path
// that logs or fails (served, denied, missing, invalid, tampered, reloaded with a
// broken policy, KMS-less errors, rewrap, list, check), with recognizable token
// values; then every log line, error message and response is searched for every
// value in every encoding, and /proc/<pid>/cmdline and environ of the daemon are
// read. Core dumps: the daemon warns when they are enabled (it cannot turn them
// off: Node has no prctl/setrlimit; the unit sets LimitCORE=0).

import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coreLimit, runtimeWarnings } from '../src/runtime.js';
import { TOKEND_BIN, tokend } from './support/cli.js';
import { curl, makeFixture } from './support/daemon.js';
import type { Fixture } from './support/daemon.js';
import { leakForms, recordOutput, watchSecret } from './support/leak-watch.js';
import { hasCommand, missing } from './support/requirements.js';
import { startServeProcess } from './support/serve-process.js';
import type { ServeProcess } from './support/serve-process.js';

// Values with characters that change under each encoding (quotes, backslash, %, +, /, non-ASCII, control bytes).
const VALUES: Record<string, Buffer> = {
  plain: Buffer.from('leak-canary-plain-8c1f0e'),
  json: Buffer.from('leak "canary" \\ json/with+slash%25 ü 7a3d'),
  binary: Buffer.concat([Buffer.from('leak-canary-bin-'), Buffer.from([0, 1, 0x0a, 0xff, 0xfe, 0x7f]), Buffer.from('-e41b')]),
  rotated: Buffer.from('leak-canary-rotated-v2-51c9'),
  tampered: Buffer.from('leak-canary-tampered-9d02'),
};

let fx: Fixture;
let daemon: ServeProcess;
const captured: { label: string; text: Buffer }[] = [];
const capture = (label: string, text: Buffer | string) => captured.push({ label, text: Buffer.isBuffer(text) ? text : Buffer.from(text) });

beforeAll(async () => {
  fx = await makeFixture();
  for (const [name, value] of Object.entries(VALUES)) if (name !== 'rotated') await fx.seal(`t-${name}`, value);
  await fx.seal('t-rotated', 'leak-canary-rotated-v1-0b77');
  watchSecret('leak-canary-rotated-v1-0b77');
  await fx.writePolicy([
    { identities: ['demo'], tokens: ['t-*'] },
    { identities: ['other'], tokens: ['nothing-here'] },
  ]);
  await fx.bundle('other');
  // A ciphertext bit flip keeps the file canonical: it loads, and fails only when opened.
  const path = join(fx.dir, 'tokens', 't-tampered.sealed');
  const doc = JSON.parse(await readFile(path, 'utf8'));
  const ct = Buffer.from(doc.ciphertext, 'base64');
  ct[0] = (ct[0] as number) ^ 1;
  doc.ciphertext = ct.toString('base64');
  await writeFile(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  daemon = await startServeProcess(fx.configPath, { env: { TOKEND_LOG_LEVEL: 'debug' } });
}, 60_000);

afterAll(async () => {
  if (daemon.child.exitCode === null) await daemon.stop();
});

describe('no token value anywhere but in its own 200 response', () => {
  it('drives every path, then finds no value in logs, errors, responses, cmdline or environ', async () => {
    const demo = fx.bundleDir('demo');
    const other = fx.bundleDir('other');
    const admin = fx.bundleDir('admin');
    const req = async (label: string, path: string, bundle: string, args: string[] = []) => {
      const r = await curl(`${daemon.url}${path}`, { bundle, args });
      if (r.status !== 200 || !path.startsWith('/v1/tokens/t-')) capture(`${label} ${r.status}`, r.body);
      capture(`${label} headers`, JSON.stringify(r.headers));
      return r;
    };
    // Served (text and JSON): the value appears only in these bodies, which are not scanned.
    for (const name of Object.keys(VALUES).filter((n) => n !== 'tampered' && n !== 'rotated')) {
      expect((await req('text', `/v1/tokens/t-${name}`, demo)).body.equals(VALUES[name] as Buffer)).toBe(true);
      expect((await req('json', `/v1/tokens/t-${name}`, demo, ['-H', 'Accept: application/json'])).status).toBe(200);
    }
    expect((await req('denied', '/v1/tokens/t-plain', other)).status).toBe(403);
    expect((await req('missing', '/v1/tokens/t-nothing', demo)).status).toBe(404);
    expect((await req('invalid', '/v1/tokens/T-PLAIN', demo)).status).toBe(400);
    expect((await req('tampered', '/v1/tokens/t-tampered', demo)).status).toBe(500);
    expect((await req('list', '/v1/tokens', demo)).status).toBe(200);
    expect((await req('whoami', '/v1/whoami', demo)).status).toBe(200);
    expect((await req('metrics', '/metrics', admin)).status).toBe(200);
    expect((await req('method', '/v1/tokens/t-plain', demo, ['-X', 'POST'])).status).toBe(405);

    // While serving: the process's command line and environment hold no value.
    const cmdline = await readFile(`/proc/${daemon.pid}/cmdline`);
    const environ = await readFile(`/proc/${daemon.pid}/environ`);
    capture('cmdline', cmdline);
    capture('environ', environ);

    // A reload with a broken policy (logged with its reason), a rotation (seal v2 + reload), then SIGTERM.
    await writeFile(join(fx.dir, 'policy.json'), '{"rules": [ {"identities": ["demo"], "tokens": [] } ]}', { mode: 0o600 });
    daemon.child.kill('SIGHUP');
    await waitForLog(daemon, 'reload failed; still serving the previous state');
    await fx.writePolicy([{ identities: ['demo'], tokens: ['t-*'] }]);
    const sealed = await tokend(['seal', 't-rotated', '--config', fx.configPath], { input: VALUES.rotated as Buffer });
    capture('cli seal', sealed.stdout);
    capture('cli seal stderr', sealed.stderr);
    daemon.child.kill('SIGHUP');
    await waitForLog(daemon, 'reloaded');
    expect((await req('rotated', '/v1/tokens/t-rotated', demo)).body.equals(VALUES.rotated as Buffer)).toBe(true);
    expect(await daemon.stop()).toBe(0);
    capture('daemon stdout', daemon.stdout());
    capture('daemon stderr', daemon.stderr());
    recordOutput('leaks-serve', daemon.stdout() + daemon.stderr());

    // The CLI's own failure and report paths.
    for (const args of [['unseal', 't-tampered'], ['list'], ['list', '--json'], ['check'], ['check', '--json'], ['rewrap'], ['rewrap', '--json'], ['seal', 'T-BAD']]) {
      const r = await tokend([...args, '--config', fx.configPath], { input: VALUES.plain as Buffer });
      capture(`cli ${args.join(' ')}`, r.stderr);
      capture(`cli ${args.join(' ')} stdout`, r.stdout);
    }

    const hits: string[] = [];
    for (const [name, value] of [...Object.entries(VALUES), ['rotated-v1', Buffer.from('leak-canary-rotated-v1-0b77')] as const]) {
      for (const { form, text } of leakForms(value)) {
        for (const c of captured) if (c.text.includes(Buffer.from(text))) hits.push(`${c.label}: ${name} (${form})`);
      }
      // Binary values: look for the raw bytes too (leakForms keeps only single-line forms).
      for (const c of captured) if (c.text.includes(value)) hits.push(`${c.label}: ${name} (raw bytes)`);
    }
    expect(hits).toEqual([]);
    // The scan has teeth: the audit log does carry the token names and the tamper detail.
    const log = daemon.stdout();
    expect(log).toContain('"token":"t-tampered"');
    expect(log).toMatch(/authentication tag does not verify|could not be decrypted/);
    expect(captured.length).toBeGreaterThan(40);
  }, 120_000);
});

describe('core dumps', () => {
  it('reads the soft core limit from /proc/self/limits', () => {
    const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax core file size        ${soft}                    unlimited            bytes\n`;
    expect(coreLimit(limits('0'))).toBe(0);
    expect(coreLimit(limits('unlimited'))).toBe(Infinity);
    expect(coreLimit(limits('1048576'))).toBe(1_048_576);
    expect(coreLimit('nothing useful')).toBeUndefined();
  });

  it('warns when core dumps are enabled or Node.js has a known defect, and says nothing otherwise', () => {
    const with0 = () => 'Max core file size        0        unlimited   bytes\n';
    const withOn = () => 'Max core file size        unlimited        unlimited   bytes\n';
    expect(runtimeWarnings(with0, 'v24.20.0')).toEqual([]);
    expect(runtimeWarnings(withOn, 'v24.20.0')).toEqual([expect.stringContaining('core dumps are enabled (RLIMIT_CORE unlimited)')]);
    expect(runtimeWarnings(with0, 'v24.21.0')).toEqual([expect.stringContaining('Node.js v24.21.0 leaks native memory')]);
    expect(runtimeWarnings(() => { throw new Error('no /proc'); }, 'v24.20.0')).toEqual([]);
  });

  it.skipIf(missing({ prlimit: hasCommand('prlimit') }) !== undefined)('the daemon logs the warning when started with core dumps on, and not with LimitCORE=0', async () => {
    const runWith = async (core: string) => {
      const child = spawn('prlimit', [`--core=${core}`, process.execPath, TOKEND_BIN, 'serve', '--config', fx.configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TOKEND_CONFIG: '' } });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      const deadline = Date.now() + 15_000;
      while (!out.includes('"msg":"ready"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGTERM');
      await new Promise((r) => child.on('close', r));
      return out;
    };
    await fx.editConfig((doc) => void (doc.server.listen = ['127.0.0.1:0']));
    expect(await runWith('unlimited')).toContain('core dumps are enabled (RLIMIT_CORE unlimited)');
    expect(await runWith('0')).not.toContain('core dumps are enabled');
  }, 40_000);
});

async function waitForLog(p: ServeProcess, msg: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!p.logs().some((l) => l.msg === msg)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for log '${msg}'`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
