// The aws key provider, driven through the real @aws-sdk/client-kms over HTTP
// (SigV4 signing, JSON 1.1, `__type` errors, retries) against the local KMS.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import type { AwsProviderConfig } from '../src/config.js';
import { encryptionContext, openSealed, seal, serializeSealed, withWrappedKey } from '../src/envelope.js';
import { TokendError } from '../src/errors.js';
import { createProvider } from '../src/kms/create.js';
import type { KeyProvider } from '../src/kms/provider.js';
import { startKmsServer } from './support/kms-server.js';
import type { KmsKey, KmsServer } from './support/kms-server.js';
import { TEST_CREDENTIALS, signRequest } from './support/sigv4.js';

let kms: KmsServer;
let keyA: KmsKey;
let keyB: KmsKey;
const open: KeyProvider[] = [];
const saved = { ...process.env };

/** Sets (or, for undefined, unsets) environment variables of this test process. */
function setEnv(vars: Record<string, string | undefined>): void {
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}

/** The baseline aws provider config (alias/tokend-a, the test KMS endpoint), with `change` applied. */
function awsConfig(change: Record<string, unknown> = {}): AwsProviderConfig {
  const provider = { type: 'aws', keyId: 'alias/tokend-a', region: kms.region, endpoint: kms.endpoint, ...change };
  for (const [k, v] of Object.entries(provider)) if (v === undefined) delete (provider as Record<string, unknown>)[k];
  return parseConfig({ provider }, '/etc/tokend/tokend.json').provider as AwsProviderConfig;
}

async function provider(change: Record<string, unknown> = {}): Promise<KeyProvider> {
  const p = await createProvider(awsConfig(change));
  open.push(p);
  return p;
}

/** The rejection of `promise`, which must be a TokendError. */
async function failure(promise: Promise<unknown>): Promise<TokendError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokendError);
  return err as TokendError;
}

const CONTEXT = encryptionContext('db-password', 1);

beforeAll(async () => {
  kms = await startKmsServer({ region: 'eu-west-1' });
  setEnv(kms.env());
  keyA = kms.createKey('tokend fleet key A');
  keyB = kms.createKey('tokend fleet key B');
  kms.createAlias('alias/tokend-a', keyA.keyId);
  kms.createAlias('alias/tokend-b', keyB.keyId);
});

afterAll(async () => {
  for (const p of open) p.close();
  await kms.close();
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  Object.assign(process.env, saved);
});

beforeEach(() => {
  Object.assign(kms.faults, { latencyMs: 0, throttle: 0, fail500: 0, drop: 0, wrongKey: 0, down: false });
  kms.resetCalls();
});

describe('aws provider: sealing and opening', () => {
  it('seals and opens a token, and the sealed file records the key ARN KMS returned', async () => {
    const aws = await provider();
    const token = await seal({ name: 'db-password', version: 1, plaintext: Buffer.from('hunter2'), provider: aws });
    expect(token.provider).toBe('aws');
    expect(token.keyId).toBe(keyA.arn);

    const { plaintext } = await openSealed(serializeSealed(token), 'db-password', aws);
    expect(plaintext.toString()).toBe('hunter2');
  });

  it('asks for an AES_256 data key bound to the token name and version', async () => {
    const aws = await provider();
    await aws.generateDataKey(CONTEXT);
    const [req] = kms.requests;
    expect(req?.operation).toBe('GenerateDataKey');
    expect(req?.input).toEqual({ KeyId: 'alias/tokend-a', KeySpec: 'AES_256', EncryptionContext: CONTEXT });
  });

  it('pins Decrypt to the recorded key and sends the same encryption context', async () => {
    const aws = await provider();
    const key = await aws.generateDataKey(CONTEXT);
    kms.resetCalls();
    const back = await aws.unwrap(key.wrapped, key.keyId, CONTEXT);
    expect(back.equals(key.plaintext)).toBe(true);
    expect(back).toHaveLength(32);
    const [req] = kms.requests;
    expect(req?.operation).toBe('Decrypt');
    expect(req?.input.KeyId).toBe(keyA.arn);
    expect(req?.input.EncryptionContext).toEqual(CONTEXT);
  });

  it('does not unwrap under another encryption context, and says only that it failed', async () => {
    const aws = await provider();
    const key = await aws.generateDataKey(CONTEXT);
    const err = await failure(aws.unwrap(key.wrapped, key.keyId, encryptionContext('other-token', 1)));
    expect(err.code).toBe('ERR_DECRYPT_FAILED');
    expect(err.message).toBe('data key could not be unwrapped');
    const wrong = await failure(aws.unwrap(key.wrapped, key.keyId, encryptionContext('db-password', 2)));
    expect(wrong.code).toBe('ERR_DECRYPT_FAILED');
  });

  it('does not open a data key wrapped under key A when pinned to key B', async () => {
    const aws = await provider();
    const key = await aws.generateDataKey(CONTEXT);
    kms.resetCalls();
    const err = await failure(aws.unwrap(key.wrapped, keyB.arn, CONTEXT));
    expect(err.code).toBe('ERR_DECRYPT_FAILED');
    expect(err.detail).toContain('IncorrectKeyException');
    expect(kms.requests[0]?.input.KeyId).toBe(keyB.arn);
  });

  it('turns a sealed file whose recorded key was swapped into the opaque per-token failure', async () => {
    const aws = await provider();
    const token = await seal({ name: 'db-password', version: 1, plaintext: Buffer.from('hunter2'), provider: aws });
    const swapped = serializeSealed({ ...token, keyId: keyB.arn });
    const err = await failure(openSealed(swapped, 'db-password', aws));
    expect(err.code).toBe('ERR_DECRYPT_FAILED');
    expect(err.message).toBe("sealed token 'db-password' could not be decrypted");
  });

  it('never puts the wrapped key or the data key into an error', async () => {
    const aws = await provider();
    const key = await aws.generateDataKey(CONTEXT);
    const err = await failure(aws.unwrap(key.wrapped, key.keyId, encryptionContext('x', 1)));
    const text = JSON.stringify({ message: err.message, detail: err.detail, cause: String(err.cause) });
    expect(text).not.toContain(key.wrapped.toString('base64').slice(0, 24));
    expect(text).not.toContain(key.plaintext.toString('base64').slice(0, 24));
    expect(err.cause).toBeUndefined();
  });

  it('refuses an answer that claims another key, even when KMS returns a data key', async () => {
    const aws = await provider();
    const key = await aws.generateDataKey(CONTEXT);
    kms.faults.wrongKey = 2;
    const err = await failure(aws.unwrap(key.wrapped, key.keyId, CONTEXT));
    expect(err.code).toBe('ERR_DECRYPT_FAILED');
    expect(err.detail).toContain('not the pinned key');
    const moved = await failure(aws.rewrap(key.wrapped, key.keyId, CONTEXT, 'alias/tokend-b'));
    expect(moved.code).toBe('ERR_DECRYPT_FAILED');
    expect(kms.faults.wrongKey).toBe(0);
  });
});

describe('aws provider: rewrap with ReEncrypt', () => {
  it('moves the data key to another key without Decrypt, and the token then opens under it', async () => {
    const aws = await provider();
    const token = await seal({ name: 'db-password', version: 1, plaintext: Buffer.from('hunter2'), provider: aws });
    kms.resetCalls();
    const moved = await aws.rewrap(token.wrappedKey, token.keyId, CONTEXT, 'alias/tokend-b');
    expect(moved.keyId).toBe(keyB.arn);
    expect(kms.calls).toEqual({ ReEncrypt: 1 });
    expect(kms.requests[0]?.input).toMatchObject({
      SourceKeyId: keyA.arn,
      DestinationKeyId: 'alias/tokend-b',
      SourceEncryptionContext: CONTEXT,
      DestinationEncryptionContext: CONTEXT,
    });

    const rewrapped = withWrappedKey(token, moved.wrapped, moved.keyId);
    const { plaintext } = await openSealed(serializeSealed(rewrapped), 'db-password', aws);
    expect(plaintext.toString()).toBe('hunter2');
    const stale = await failure(aws.unwrap(moved.wrapped, keyA.arn, CONTEXT));
    expect(stale.code).toBe('ERR_DECRYPT_FAILED');
  });

  it('rewraps under the configured key when no target is given', async () => {
    const aws = await provider({ keyId: 'alias/tokend-b' });
    const fromA = await provider();
    const key = await fromA.generateDataKey(CONTEXT);
    const moved = await aws.rewrap(key.wrapped, key.keyId, CONTEXT);
    expect(moved.keyId).toBe(keyB.arn);
  });

  it('names both keys when the destination does not exist', async () => {
    const aws = await provider();
    const key = await aws.generateDataKey(CONTEXT);
    const err = await failure(aws.rewrap(key.wrapped, key.keyId, CONTEXT, 'alias/no-such-key'));
    expect(err.code).toBe('ERR_KMS_ACCESS');
    expect(err.message).toContain(keyA.arn);
    expect(err.message).toContain('alias/no-such-key');
  });
});

describe('aws provider: retries, deadline and outages', () => {
  it('retries throttling and succeeds', async () => {
    const aws = await provider({ maxAttempts: 3 });
    const key = await aws.generateDataKey(CONTEXT);
    kms.resetCalls();
    kms.faults.throttle = 2;
    const back = await aws.unwrap(key.wrapped, key.keyId, CONTEXT);
    expect(back.equals(key.plaintext)).toBe(true);
    expect(kms.calls.Decrypt).toBe(3);
  });

  it('retries a 500 and a dropped connection and succeeds', async () => {
    const aws = await provider({ maxAttempts: 3 });
    kms.faults.fail500 = 1;
    kms.faults.drop = 1;
    const key = await aws.generateDataKey(CONTEXT);
    expect(key.keyId).toBe(keyA.arn);
    expect(kms.calls.GenerateDataKey).toBe(3);
  });

  it('reports KMS unavailable once the attempts are used up, naming the key', async () => {
    const aws = await provider({ maxAttempts: 2 });
    kms.faults.throttle = 100;
    const err = await failure(aws.generateDataKey(CONTEXT));
    expect(err.code).toBe('ERR_KMS_UNAVAILABLE');
    expect(err.message).toContain("'alias/tokend-a'");
    expect(err.detail).toContain('ThrottlingException');
    expect(kms.calls.GenerateDataKey).toBe(2);
  });

  it('reports KMS unavailable within the configured deadline when KMS stops answering', async () => {
    const deadlineMs = 800;
    const aws = await provider({ maxAttempts: 10, requestTimeoutMs: 300, connectTimeoutMs: 300, deadlineMs });
    kms.faults.latencyMs = 60_000;
    const started = performance.now();
    const err = await failure(aws.generateDataKey(CONTEXT));
    const elapsed = performance.now() - started;
    expect(err.code).toBe('ERR_KMS_UNAVAILABLE');
    expect(err.detail).toContain(`${deadlineMs} ms deadline`);
    // The bound, not a benchmark: the call ends at the deadline, not after 10 attempts of 300 ms plus backoff.
    expect(elapsed).toBeLessThan(deadlineMs + 1_000);
  });

  it('reports KMS unavailable when every connection is dropped', async () => {
    const aws = await provider({ maxAttempts: 2 });
    kms.faults.down = true;
    const err = await failure(aws.generateDataKey(CONTEXT));
    expect(err.code).toBe('ERR_KMS_UNAVAILABLE');
    expect(err.message).toContain("'alias/tokend-a'");
  });

  it('reports KMS unavailable when nothing listens at the endpoint', async () => {
    const gone = await startKmsServer({ region: kms.region });
    const endpoint = gone.endpoint;
    await gone.close();
    const aws = await provider({ endpoint, maxAttempts: 2 });
    const err = await failure(aws.generateDataKey(CONTEXT));
    expect(err.code).toBe('ERR_KMS_UNAVAILABLE');
    expect(err.detail).toContain('ECONNREFUSED');
  });
});

describe('aws provider: access errors name the key', () => {
  it('reports access denied naming the key and the action, without retrying', async () => {
    const denied = kms.createKey('denied');
    kms.createAlias('alias/tokend-denied', denied.keyId);
    const aws = await provider({ keyId: 'alias/tokend-denied' });
    const key = await aws.generateDataKey(CONTEXT);
    kms.deny(denied.keyId, 'kms:Decrypt');
    kms.resetCalls();
    const err = await failure(aws.unwrap(key.wrapped, key.keyId, CONTEXT));
    expect(err.code).toBe('ERR_KMS_ACCESS');
    expect(err.message).toContain(denied.arn);
    expect(err.message).toContain('kms:Decrypt');
    expect(err.detail).toContain('AccessDeniedException');
    expect(kms.calls.Decrypt).toBe(1);
  });

  it('reports a disabled key by name, and check() fails on it', async () => {
    const off = kms.createKey('disabled');
    const aws = await provider({ keyId: off.arn });
    await aws.check();
    kms.disableKey(off.keyId);
    const err = await failure(aws.generateDataKey(CONTEXT));
    expect(err.code).toBe('ERR_KMS_ACCESS');
    expect(err.message).toBe(`KMS key '${off.arn}' is disabled`);
    const checked = await failure(aws.check());
    expect(checked.code).toBe('ERR_KMS_ACCESS');
    expect(checked.message).toContain(off.arn);
  });

  it('reports a key that does not exist by name and region', async () => {
    const aws = await provider({ keyId: 'alias/does-not-exist' });
    const err = await failure(aws.check());
    expect(err.code).toBe('ERR_KMS_ACCESS');
    expect(err.message).toBe("KMS key 'alias/does-not-exist' does not exist in region 'eu-west-1'");
  });

  it('is rejected by KMS when its requests are signed with the wrong secret', async () => {
    setEnv({ AWS_SECRET_ACCESS_KEY: `${TEST_CREDENTIALS.secretAccessKey}-wrong` });
    try {
      const aws = await provider();
      const err = await failure(aws.generateDataKey(CONTEXT));
      expect(err.code).toBe('ERR_KMS_ACCESS');
      expect(err.message).toContain("'alias/tokend-a'");
      expect(err.detail).toContain('InvalidSignatureException');
    } finally {
      setEnv(kms.env());
    }
  });

  it('passes check() for an enabled symmetric key', async () => {
    const aws = await provider();
    await expect(aws.check()).resolves.toBeUndefined();
    expect(aws.defaultKeyId).toBe('alias/tokend-a');
  });
});

describe('aws provider: configuration', () => {
  it('honours AWS_ENDPOINT_URL_KMS when the config names no endpoint', async () => {
    setEnv({ AWS_ENDPOINT_URL_KMS: kms.endpoint });
    try {
      const aws = await provider({ endpoint: undefined });
      const key = await aws.generateDataKey(CONTEXT);
      expect(key.keyId).toBe(keyA.arn);
    } finally {
      setEnv(kms.env());
    }
  });

  it('fails at start with a config error when no region is set anywhere', async () => {
    setEnv({ AWS_REGION: undefined });
    try {
      const err = await failure(createProvider(awsConfig({ region: undefined })));
      expect(err.code).toBe('ERR_CONFIG');
      expect(err.message).toContain("KMS key 'alias/tokend-a'");
    } finally {
      setEnv(kms.env());
    }
  });

  it('has named defaults for timeouts, attempts and the deadline', () => {
    const config = awsConfig();
    expect(config).toMatchObject({ connectTimeoutMs: 1_000, requestTimeoutMs: 3_000, maxAttempts: 3, deadlineMs: 5_000 });
  });

  it.each([
    [{ secretAccessKey: 'x' }, 'default provider chain'],
    [{ accessKeyId: 'AKIA' }, 'default provider chain'],
    [{ region: 'Europe' }, "'provider.region'"],
    [{ keyId: 'my key' }, "'provider.keyId'"],
    [{ endpoint: 'kms.local' }, 'not an http(s) URL'],
    [{ maxAttempts: 0 }, "'provider.maxAttempts'"],
    [{ deadlineMs: 10 }, "'provider.deadlineMs'"],
    [{ retries: 3 }, "'provider.retries' is not a known setting"],
  ])('rejects provider setting %j', (change, why) => {
    expect(() => awsConfig(change)).toThrow(why);
  });
});

describe('docs/aws-kms.md stays true to the code', () => {
  const guide = readFileSync(new URL('../docs/aws-kms.md', import.meta.url), 'utf8');
  const blocks = [...guide.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1] as string) as Record<string, unknown>);

  it('shows tokend configs that load', () => {
    const configs = blocks.filter((b) => 'provider' in b);
    expect(configs.length).toBeGreaterThanOrEqual(2);
    for (const doc of configs) expect(parseConfig(doc, '/etc/tokend/tokend.json').provider.type).toBe('aws');
  });

  it('conditions its policies on the encryption context tokend really sends', () => {
    const keys = Object.keys(encryptionContext('x', 1));
    const named = [...guide.matchAll(/kms:EncryptionContext:([a-z:]+)/g)].map((m) => m[1]);
    expect(named.length).toBeGreaterThan(0);
    for (const k of named) expect(keys).toContain(k);
    expect(guide).toContain(`"kms:EncryptionContextKeys": [${keys.map((k) => JSON.stringify(k)).join(', ')}]`);
  });
});

describe('test KMS: SigV4 is enforced', () => {
  const body = Buffer.from('{}');
  const base = { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.CreateKey' };

  async function post(headers: Record<string, string>): Promise<{ status: number; type: unknown }> {
    const res = await fetch(kms.endpoint, { method: 'POST', headers, body });
    const doc = (await res.json()) as { __type?: unknown };
    return { status: res.status, type: doc.__type };
  }

  function signed(secret: string): Record<string, string> {
    const host = new URL(kms.endpoint).host;
    const req = { method: 'POST', path: '/', headers: { ...base, host }, body };
    return signRequest(req, { ...TEST_CREDENTIALS, secretAccessKey: secret }, kms.region, 'kms');
  }

  it('accepts a correctly signed request', async () => {
    const res = await post(signed(TEST_CREDENTIALS.secretAccessKey));
    expect(res.status).toBe(200);
  });

  it('rejects an unsigned request with MissingAuthenticationTokenException', async () => {
    expect(await post(base)).toEqual({ status: 403, type: 'MissingAuthenticationTokenException' });
  });

  it('rejects a request signed with another secret', async () => {
    expect(await post(signed('not-the-secret'))).toEqual({ status: 400, type: 'InvalidSignatureException' });
  });

  it('rejects a signed request whose target was changed afterwards', async () => {
    const headers = signed(TEST_CREDENTIALS.secretAccessKey);
    headers['x-amz-target'] = 'TrentService.DescribeKey';
    expect(await post(headers)).toEqual({ status: 400, type: 'InvalidSignatureException' });
  });
});
