// The real tokend binary with the aws provider, talking to the local KMS over
// the KMS wire protocol: seal, unseal, rewrap --to-key, check, and the exit
// codes operators script against.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tokend } from './support/cli.js';
import { startKmsServer } from './support/kms-server.js';
import type { KmsKey, KmsServer } from './support/kms-server.js';
import { tempDir } from './support/tmp.js';

let kms: KmsServer;
let keyA: KmsKey;
let keyB: KmsKey;
let dir: string;
const SECRET = 'correct horse battery staple';

/** Writes a tokend.json for the aws provider (baseline: alias/tokend-a at the test KMS) and returns its path. */
async function writeConfig(name: string, provider: Record<string, unknown> = {}): Promise<string> {
  const path = join(dir, name);
  const doc = {
    store: 'tokens',
    provider: { type: 'aws', keyId: 'alias/tokend-a', region: kms.region, endpoint: kms.endpoint, ...provider },
  };
  for (const [k, v] of Object.entries(doc.provider)) if (v === undefined) delete (doc.provider as Record<string, unknown>)[k];
  await writeFile(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  return path;
}

function run(args: readonly string[], options: { input?: string; env?: Record<string, string | undefined> } = {}) {
  return tokend(args, { input: options.input ?? '', env: { ...kms.env(), ...options.env } });
}

async function sealedFile(name: string): Promise<{ provider: string; keyId: string; version: number }> {
  return JSON.parse(await readFile(join(dir, 'tokens', `${name}.sealed`), 'utf8'));
}

beforeAll(async () => {
  kms = await startKmsServer({ region: 'us-east-2' });
  keyA = kms.createKey('fleet key A');
  keyB = kms.createKey('fleet key B');
  kms.createAlias('alias/tokend-a', keyA.keyId);
  kms.createAlias('alias/tokend-b', keyB.keyId);
  dir = await tempDir();
  await mkdir(join(dir, 'tokens'), { mode: 0o700 });
});

afterAll(async () => {
  await kms.close();
});

beforeEach(() => {
  Object.assign(kms.faults, { latencyMs: 0, throttle: 0, fail500: 0, drop: 0, wrongKey: 0, down: false });
  kms.resetCalls();
});

describe('tokend CLI with the aws provider', () => {
  it('seals and unseals a token; the sealed file records the key ARN', async () => {
    const config = await writeConfig('tokend.json');
    const sealed = await run(['seal', 'github-token', '--config', config], { input: SECRET });
    expect(sealed.stderr).toBe('');
    expect(sealed.code).toBe(0);
    expect(sealed.stdout.toString()).toBe(`${join(dir, 'tokens', 'github-token.sealed')}\n`);
    const file = await sealedFile('github-token');
    expect(file).toMatchObject({ provider: 'aws', keyId: keyA.arn, version: 1 });
    expect(JSON.stringify(file)).not.toContain(SECRET);

    const opened = await run(['unseal', 'github-token', '--config', config]);
    expect(opened.code).toBe(0);
    expect(opened.stdout.toString()).toBe(SECRET);
    expect(kms.calls).toEqual({ GenerateDataKey: 1, Decrypt: 1 });
  });

  it('rewraps every token to another key with ReEncrypt, and they still unseal', async () => {
    const config = await writeConfig('tokend.json');
    expect((await run(['seal', 'db-password', '--config', config], { input: 'pw-1' })).code).toBe(0);
    kms.resetCalls();

    const moved = await run(['rewrap', '--to-key', 'alias/tokend-b', '--json', '--config', config]);
    expect(moved.code).toBe(0);
    const report = JSON.parse(moved.stdout.toString()) as { rewrapped: string[]; failed: unknown[] };
    expect(report.rewrapped).toContain('db-password');
    expect(report.failed).toEqual([]);
    expect(kms.calls.Decrypt).toBeUndefined();
    expect(kms.calls.GenerateDataKey).toBeUndefined();
    expect((await sealedFile('db-password')).keyId).toBe(keyB.arn);

    const opened = await run(['unseal', 'db-password', '--config', config]);
    expect(opened.stdout.toString()).toBe('pw-1');

    kms.resetCalls();
    const again = JSON.parse((await run(['rewrap', '--to-key', 'alias/tokend-b', '--json', '--config', config])).stdout.toString());
    expect(again.rewrapped).toEqual([]);
    expect(again.unchanged).toContain('db-password');
    expect(kms.calls.ReEncrypt).toBeUndefined();
  });

  it('finds KMS through AWS_ENDPOINT_URL_KMS when the config names no endpoint', async () => {
    const config = await writeConfig('tokend-env-endpoint.json', { endpoint: undefined });
    const env = { AWS_ENDPOINT_URL_KMS: kms.endpoint };
    expect((await run(['seal', 'api-key', '--config', config], { input: 'k-123', env })).code).toBe(0);
    const opened = await run(['unseal', 'api-key', '--config', config], { env });
    expect(opened.code).toBe(0);
    expect(opened.stdout.toString()).toBe('k-123');
    expect(kms.calls.Decrypt).toBe(1);
  });

  it('passes check against an enabled key and fails naming a disabled one', async () => {
    const spare = kms.createKey('spare');
    const config = await writeConfig('tokend-check.json', { keyId: spare.arn });
    // This directory has no PKI (an operator's sealing setup), so only the provider check is asserted.
    const ok = await run(['check', '--json', '--config', config]);
    const provider = (JSON.parse(ok.stdout.toString()).results as { check: string; ok: boolean; message: string }[]).find((r) => r.check === 'provider');
    expect(provider).toEqual({ check: 'provider', ok: true, message: `aws provider ready, key '${spare.arn}'` });

    kms.disableKey(spare.keyId);
    const bad = await run(['check', '--config', config]);
    expect(bad.code).toBe(3);
    expect(bad.stdout.toString()).toContain(`FAIL provider: KMS key '${spare.arn}' is not enabled`);
  });

  it('exits 7 naming the key when KMS denies Decrypt', async () => {
    const locked = kms.createKey('locked');
    const config = await writeConfig('tokend-locked.json', { keyId: locked.arn });
    expect((await run(['seal', 'locked-token', '--config', config], { input: 'x' })).code).toBe(0);
    kms.deny(locked.keyId, 'kms:Decrypt');
    const denied = await run(['unseal', 'locked-token', '--config', config]);
    expect(denied.code).toBe(7);
    expect(denied.stderr).toContain(`KMS denied kms:Decrypt on KMS key '${locked.arn}'`);
    expect(denied.stdout.length).toBe(0);
  });

  it('exits 8 (KMS unavailable) when KMS is down', async () => {
    const config = await writeConfig('tokend-fast.json', { maxAttempts: 2, deadlineMs: 1_000 });
    expect((await run(['seal', 'outage-token', '--config', config], { input: 'y' })).code).toBe(0);
    kms.faults.down = true;
    const down = await run(['unseal', 'outage-token', '--config', config]);
    expect(down.code).toBe(8);
    expect(down.stderr).toContain('KMS is unavailable');
    expect(down.stderr).toContain(keyA.arn);
  });

  it('exits 3 when no region is configured anywhere', async () => {
    const config = await writeConfig('tokend-noregion.json', { region: undefined });
    const res = await run(['seal', 'nowhere', '--config', config], { input: 'z', env: { AWS_REGION: undefined } });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain('no AWS region');
  });
});
