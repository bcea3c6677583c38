// Crash safety: kill -9 the real binary at random points while it seals,
// rewraps, issues a certificate bundle and rotates the keyfile, in a loop
// (TOKEND_CRASH_ITERATIONS per command, default 60: 240 kills in all; the four
// loops run side by side, each in its own directory). Half the kill points are
// random over the run, half land a few milliseconds after the first temporary
// file appears (inotify), inside the write itself. After every kill each
// file is the old or the new version, whole; every sealed token still opens;
// and once the command has run again, no temporary file holding a secret
// (token, keyfile key, private key) is left anywhere.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { openSealed, parseSealed } from '../src/envelope.js';
import { loadKeyfileProvider } from '../src/kms/keyfile.js';
import { readRegistry } from '../src/pki/registry.js';
import { TOKEND_BIN, tokend } from './support/cli.js';
import { tempDir } from './support/tmp.js';

const ITERATIONS = Number(process.env.TOKEND_CRASH_ITERATIONS ?? 60);
/** A preload that makes every file write wait, like a slow disk (test-only fault injection). */
const SLOW_WRITES = fileURLToPath(new URL('./support/slow-writes.mjs', import.meta.url));
const TOKENS = ['alpha', 'bravo', 'charlie', 'delta', 'echo'];
const value = (name: string, version: number) => `crash-${name}-value-v${version}`;

let root: string;
beforeAll(async () => {
  root = await tempDir('tokend-crash-');
});

/** A dev directory with the five tokens sealed once. */
async function devDir(name: string): Promise<string> {
  const dir = join(root, name);
  expect((await tokend(['init', '--dir', dir])).code).toBe(0);
  for (const t of TOKENS) expect((await tokend(['seal', t, '--dir', dir], { input: value(t, 1) })).code).toBe(0);
  return dir;
}

interface Run {
  readonly killed: boolean;
  readonly code: number | null;
  readonly ms: number;
}

/**
 * Runs the real binary and kills it with SIGKILL after `killAfterMs` (if it is
 * still running), or, with `onWrite`, a few milliseconds (random, up to
 * `killAfterMs`) after it first creates a temporary file under `onWrite`: the
 * moment a random delay rarely hits (`trigger` picks which file counts).
 */
function runAndKill(args: readonly string[], killAfterMs: number, input = '', onWrite?: string, trigger = /(^|\/)(\.tmp-|\.\.v-)/, writeDelayMs = 0): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve) => {
    const node = writeDelayMs > 0 ? ['--import', SLOW_WRITES, TOKEND_BIN] : [TOKEND_BIN];
    const env = { ...process.env, TOKEND_CONFIG: '', TOKEND_TEST_WRITE_DELAY_MS: String(writeDelayMs) };
    const child = spawn(process.execPath, [...node, ...args], { stdio: ['pipe', 'ignore', 'ignore'], env });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    const kill = () => child.kill('SIGKILL');
    let timer: NodeJS.Timeout | undefined = onWrite ? setTimeout(kill, 30_000) : setTimeout(kill, killAfterMs);
    const watcher = onWrite
      ? watch(onWrite, { recursive: true }, (_event, file) => {
          if (typeof file !== 'string' || !trigger.test(file)) return;
          watcher?.close();
          clearTimeout(timer);
          timer = setTimeout(kill, Math.floor(Math.random() * killAfterMs));
        })
      : undefined;
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      watcher?.close();
      resolve({ killed: signal === 'SIGKILL', code, ms: performance.now() - started });
    });
  });
}

/** How long the command takes when nobody kills it (the first estimate for its KillClock). */
async function duration(args: readonly string[], input = ''): Promise<number> {
  let total = 0;
  for (let i = 0; i < 3; i += 1) total += (await runAndKill(args, 60_000, input)).ms;
  return total / 3;
}

/** Every sealed token opens, with a value of a version we wrote, and the version the file claims. */
async function assertAllOpen(dir: string, versions: ReadonlyMap<string, readonly number[]> = new Map()): Promise<Map<string, number>> {
  const provider = await loadKeyfileProvider(join(dir, 'keyfile.json'));
  const seen = new Map<string, number>();
  try {
    for (const t of TOKENS) {
      const bytes = await readFile(join(dir, 'tokens', `${t}.sealed`));
      const { token, plaintext } = await openSealed(bytes, t, provider);
      const allowed = versions.get(t) ?? [1];
      expect(allowed, `${t} is at version ${token.version}`).toContain(token.version);
      expect(plaintext.toString()).toBe(value(t, token.version));
      seen.set(t, token.version);
    }
  } finally {
    provider.close();
  }
  return seen;
}

/** Files and directories a writer leaves only when it dies mid-write: `.tmp-*` and bundle versions `..data` does not point at. */
async function leftovers(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries = await readdir(d);
    const live = entries.includes('..data') ? await readlink(join(d, '..data')) : undefined;
    for (const e of entries) {
      const full = join(d, e);
      const st = await lstat(full);
      if (e.startsWith('.tmp-') || (e.startsWith('..v-') && e !== live)) out.push(full);
      else if (st.isDirectory()) await walk(full);
    }
  };
  await walk(dir);
  return out;
}

/** Every regular file under `path` (itself, if it is one). */
async function filesUnder(path: string): Promise<string[]> {
  const st = await lstat(path);
  if (st.isFile()) return [path];
  if (!st.isDirectory()) return [];
  const all = await Promise.all((await readdir(path)).map((e) => filesUnder(join(path, e))));
  return all.flat();
}

/**
 * Leftover files that hold a secret: a token value, keyfile key material, a
 * private key. Those of a writer whose pid now belongs to a live process (the
 * pid was reused) are kept by tokend on purpose, so they are not counted here.
 */
async function secretLeftovers(dir: string): Promise<string[]> {
  const hits: string[] = [];
  for (const l of await leftovers(dir)) {
    const pid = /\.tmp-.+\.(\d+)\.[0-9a-f]{12}$/.exec(l)?.[1];
    if (pid !== undefined && isAlive(Number(pid))) continue;
    for (const f of await filesUnder(l)) {
      const text = (await readFile(f)).toString('latin1');
      if (/crash-[a-z]+-value-v\d+/.test(text) || text.includes('tokend-keyfile/1') || text.includes('PRIVATE KEY')) hits.push(f);
    }
  }
  return hits;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Kill points spread over a run: uniform in 0..1.25 × the run time, which is
 * learned as the loops go (the four loops share two cores, so a run takes
 * longer than alone). Some runs complete; most die somewhere inside.
 */
class KillClock {
  #ms: number;
  constructor(initialMs: number) {
    this.#ms = initialMs;
  }
  next(): number {
    return Math.floor(Math.random() * this.#ms * 1.25);
  }
  saw(run: Run): void {
    if (!run.killed) this.#ms = 0.7 * this.#ms + 0.3 * run.ms;
    else if (run.ms > this.#ms) this.#ms = 0.9 * this.#ms + 0.1 * run.ms;
  }
}

interface LoopResult {
  readonly command: string;
  readonly iterations: number;
  readonly killed: number;
  readonly completed: number;
  /** Distinct temporary entries found after kills (before the next run tidied up). */
  readonly leftoversSeen: number;
}

async function sealLoop(): Promise<LoopResult> {
  const dir = await devDir('seal');
  const args = ['seal', 'alpha', '--dir', dir];
  let version = 1;
  const clock = new KillClock(await duration(args, value('alpha', 99)));
  // duration() sealed three more versions with a value we do not check; start over from a known one.
  await tokend(['seal', 'alpha', '--dir', dir], { input: value('alpha', 5) });
  version = 5;
  let killed = 0;
  const leftoversSeen = new Set<string>();
  for (let i = 0; i < ITERATIONS; i += 1) {
    const r = i % 2 === 0 ? await runAndKill(args, clock.next(), value('alpha', version + 1)) : await runAndKill(args, 6, value('alpha', version + 1), join(dir, 'tokens'));
    clock.saw(r);
    if (r.killed) killed += 1;
    const seen = await assertAllOpen(dir, new Map([['alpha', [version, version + 1]]]));
    version = seen.get('alpha') as number;
    for (const l of await leftovers(dir)) leftoversSeen.add(l);
  }
  return { command: 'seal', iterations: ITERATIONS, killed, completed: ITERATIONS - killed, leftoversSeen: leftoversSeen.size };
}

async function rewrapLoop(): Promise<LoopResult> {
  const dir = await devDir('rewrap');
  expect((await tokend(['keyfile', 'rotate', '--dir', dir])).code).toBe(0);
  const keyfile = JSON.parse(await readFile(join(dir, 'keyfile.json'), 'utf8')) as { id: string };
  const keys = [`${keyfile.id}/v1`, `${keyfile.id}/v2`];
  const before = new Map(await Promise.all(TOKENS.map(async (t) => [t, parseSealed(await readFile(join(dir, 'tokens', `${t}.sealed`)), t)] as const)));
  const args = (to: string) => ['rewrap', '--to-key', to, '--dir', dir];
  const clock = new KillClock(await duration(args(keys[1] as string)));
  let killed = 0;
  const leftoversSeen = new Set<string>();
  for (let i = 0; i < ITERATIONS; i += 1) {
    const to = keys[Math.floor(i / 2) % 2] as string;
    const r = i % 2 === 0 ? await runAndKill(args(to), clock.next()) : await runAndKill(args(to), 6, '', join(dir, 'tokens'));
    clock.saw(r);
    if (r.killed) killed += 1;
    await assertAllOpen(dir);
    for (const t of TOKENS) {
      const now = parseSealed(await readFile(join(dir, 'tokens', `${t}.sealed`)), t);
      expect(keys).toContain(now.keyId);
      const was = before.get(t);
      // Only the key-wrapping fields may change: the ciphertext is never touched.
      expect(now.ciphertext.equals(was?.ciphertext as Buffer)).toBe(true);
      expect(now.nonce.equals(was?.nonce as Buffer)).toBe(true);
    }
    for (const l of await leftovers(dir)) leftoversSeen.add(l);
  }
  return { command: 'rewrap', iterations: ITERATIONS, killed, completed: ITERATIONS - killed, leftoversSeen: leftoversSeen.size };
}

async function keyfileLoop(): Promise<LoopResult> {
  const dir = await devDir('keyfile');
  const path = join(dir, 'keyfile.json');
  const args = ['keyfile', 'rotate', '--dir', dir];
  const clock = new KillClock(await duration(args));
  let killed = 0;
  const leftoversSeen = new Set<string>();
  let previous = JSON.parse(await readFile(path, 'utf8')) as { primary: number; keys: { version: number; key: string }[] };
  for (let i = 0; i < ITERATIONS; i += 1) {
    const r = i % 2 === 0 ? await runAndKill(args, clock.next()) : await runAndKill(args, 6, '', dir);
    clock.saw(r);
    if (r.killed) killed += 1;
    const now = JSON.parse(await readFile(path, 'utf8')) as typeof previous;
    expect([previous.keys.length, previous.keys.length + 1]).toContain(now.keys.length);
    expect(now.primary).toBe(Math.max(...now.keys.map((k) => k.version)));
    // Old keys are never changed or lost.
    expect(now.keys.slice(0, previous.keys.length)).toEqual(previous.keys);
    await assertAllOpen(dir);
    previous = now;
    for (const l of await leftovers(dir)) leftoversSeen.add(l);
  }
  return { command: 'keyfile rotate', iterations: ITERATIONS, killed, completed: ITERATIONS - killed, leftoversSeen: leftoversSeen.size };
}

/** A bundle is whole: its certificate and key belong together and chain to the CA. */
async function assertBundle(dir: string, bundle: string): Promise<string> {
  const cert = new X509Certificate(await readFile(join(bundle, 'client.crt')));
  const ca = new X509Certificate(await readFile(join(dir, 'pki', 'ca.crt')));
  expect(cert.checkPrivateKey(createPrivateKey(await readFile(join(bundle, 'client.key'))))).toBe(true);
  expect(cert.verify(ca.publicKey)).toBe(true);
  expect((await readFile(join(bundle, 'ca.crt'))).equals(await readFile(join(dir, 'pki', 'ca.crt')))).toBe(true);
  return cert.serialNumber;
}

async function certLoop(): Promise<LoopResult> {
  const dir = await devDir('cert');
  const demo = join(dir, 'pki', 'clients', 'demo');
  const args = (identity: string) => ['cert', 'issue', identity, '--force', '--dir', dir];
  const clock = new KillClock(await duration(args('demo')));
  let killed = 0;
  const leftoversSeen = new Set<string>();
  for (let i = 0; i < ITERATIONS; i += 1) {
    // Mostly a replacement (renewal path); every fourth a first bundle for a new identity.
    const identity = i % 4 >= 2 && i % 8 >= 6 ? `new-${i}` : 'demo';
    const r = i % 2 === 0 ? await runAndKill(args(identity), clock.next()) : await runAndKill(args(identity), 6, '', join(dir, 'pki'), /\.tmp-client\.key\./);
    clock.saw(r);
    if (r.killed) killed += 1;
    await assertBundle(dir, demo);
    const fresh = join(dir, 'pki', 'clients', identity);
    const present = await lstat(fresh).then(() => true, () => false);
    if (identity !== 'demo' && present) await assertBundle(dir, fresh);
    await readRegistry(join(dir, 'pki', 'issued.json')); // parses: old or new, never torn
    for (const l of await leftovers(dir)) leftoversSeen.add(l);
  }
  return { command: 'cert issue', iterations: ITERATIONS, killed, completed: ITERATIONS - killed, leftoversSeen: leftoversSeen.size };
}

describe('crash safety under kill -9', () => {
  it(`keeps every file old-or-new and every token openable across ${4 * ITERATIONS} kills (seal, rewrap, cert issue, keyfile rotate)`, async () => {
    const results = await Promise.all([sealLoop(), rewrapLoop(), certLoop(), keyfileLoop()]);
    for (const r of results) {
      expect(r.killed, `${r.command} was rarely killed mid-run`).toBeGreaterThan(ITERATIONS / 3);
      expect(r.completed, `${r.command} never completed`).toBeGreaterThan(0);
      process.stdout.write(`crash-safety: ${r.command}: ${r.iterations} runs, ${r.killed} killed mid-run, ${r.completed} completed, ${r.leftoversSeen} distinct temporary files or directories left by kills\n`);
    }
    // Once the commands have run again to completion (the cert directory gets a renewal and a new
    // bundle: the temp bundles of killed first issues live beside the bundles), no temporary file with a secret is left.
    const reruns: Record<string, readonly (readonly string[])[]> = {
      seal: [['seal', 'alpha']],
      rewrap: [['rewrap']],
      cert: [['cert', 'issue', 'demo', '--force'], ['cert', 'issue', 'after-the-crashes']],
      keyfile: [['keyfile', 'rotate']],
    };
    for (const [name, runs] of Object.entries(reruns)) {
      const dir = join(root, name);
      for (const args of runs) {
        const finalRun = await tokend([...args, '--dir', dir], { input: value('alpha', 1000) });
        expect(finalRun.code, finalRun.stderr).toBe(0);
      }
      const hits = await secretLeftovers(dir);
      expect(hits, `${name}: leftover temporary files holding a secret: ${hits.map((h) => h.slice(dir.length)).join(', ')}`).toEqual([]);
    }
  }, 600_000);

  it('never leaves a PKI lock that wedges later commands, however soon after taking it the command dies', async () => {
    const dir = join(root, 'lock');
    expect((await tokend(['init', '--dir', dir])).code).toBe(0);
    let killed = 0;
    for (let i = 0; i < 8; i += 1) {
      // Writes take 300 ms (a slow disk): the kill lands while the lock is being taken.
      const r = await runAndKill(['cert', 'issue', 'demo', '--force', '--dir', dir], 100, '', join(dir, 'pki'), /(^|\/)\.lock$|\.tmp-\.lock\./, 300);
      if (r.killed) killed += 1;
      const next = await tokend(['cert', 'list', '--dir', dir]);
      const after = await tokend(['cert', 'issue', 'demo', '--force', '--dir', dir], { timeoutMs: 20_000 });
      expect(after.code, after.stderr).toBe(0);
      expect(next.code).toBe(0);
    }
    expect(killed).toBeGreaterThan(4);
  }, 300_000);
});
