import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { SealedToken } from '../src/envelope.js';
import { TokendError } from '../src/errors.js';
import { DataKeyCache } from '../src/key-cache.js';

const token = (n: number): SealedToken => ({ keyId: 'k', wrappedKey: Buffer.from([n]), nonce: Buffer.alloc(12) }) as unknown as SealedToken;
const unavailable = () => new TokendError('ERR_KMS_UNAVAILABLE', 'down');

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('data-key cache', () => {
  it('shares one provider call among 100 concurrent misses for one key', async () => {
    const cache = new DataKeyCache({ enabled: true, ttlMs: 60_000, staleMs: 0, maxEntries: 10 });
    let calls = 0;
    const load = async () => {
      calls += 1;
      await new Promise((r) => setTimeout(r, 20));
      return randomBytes(32);
    };
    const t = token(1);
    const results = await Promise.all(Array.from({ length: 100 }, () => cache.use(t, load, (k) => Buffer.from(k))));
    expect(calls).toBe(1);
    expect(new Set(results.map((r) => r.value.toString('hex'))).size).toBe(1);
    expect(cache.stats).toMatchObject({ providerCalls: 1, coalesced: 99 });
  });

  it('serves hits without calling the provider until the TTL passes', async () => {
    const c = clock();
    const cache = new DataKeyCache({ enabled: true, ttlMs: 1_000, staleMs: 0, maxEntries: 10, now: c.now });
    let calls = 0;
    const load = async () => (calls++, randomBytes(32));
    for (let i = 0; i < 5; i += 1) await cache.use(token(1), load, () => 0);
    expect(calls).toBe(1);
    c.advance(1_001);
    expect((await cache.use(token(1), load, () => 0)).source).toBe('miss');
    expect(calls).toBe(2);
  });

  it('calls the provider every time when disabled', async () => {
    const cache = new DataKeyCache({ enabled: false, ttlMs: 1_000, staleMs: 0, maxEntries: 10 });
    let calls = 0;
    const load = async () => (calls++, randomBytes(32));
    for (let i = 0; i < 3; i += 1) await cache.use(token(1), load, () => 0);
    expect(calls).toBe(3);
  });

  it('evicts the least recently used entry beyond maxEntries and zeroes it', async () => {
    const cache = new DataKeyCache({ enabled: true, ttlMs: 60_000, staleMs: 0, maxEntries: 2 });
    const keys: Buffer[] = [];
    const capture = (k: Buffer) => keys.push(k);
    await cache.use(token(1), async () => randomBytes(32), () => 0);
    await cache.use(token(1), async () => randomBytes(32), capture); // the cached copy of key 1
    await cache.use(token(2), async () => randomBytes(32), () => 0);
    await cache.use(token(3), async () => randomBytes(32), () => 0);
    expect(cache.stats.size).toBe(2);
    expect(keys[0]?.every((b) => b === 0)).toBe(true);
  });

  it('serves a stale key while the provider is unavailable, only within the stale bound', async () => {
    const c = clock();
    const cache = new DataKeyCache({ enabled: true, ttlMs: 1_000, staleMs: 5_000, maxEntries: 10, now: c.now });
    await cache.use(token(1), async () => randomBytes(32), () => 0);
    c.advance(2_000);
    const stale = await cache.use(token(1), async () => Promise.reject(unavailable()), () => 'ok');
    expect(stale).toEqual({ value: 'ok', source: 'stale' });
    c.advance(10_000);
    await expect(cache.use(token(1), async () => Promise.reject(unavailable()), () => 'ok')).rejects.toMatchObject({ code: 'ERR_KMS_UNAVAILABLE' });
  });

  it('does not serve stale keys when access is denied (only when unavailable)', async () => {
    const c = clock();
    const cache = new DataKeyCache({ enabled: true, ttlMs: 1_000, staleMs: 5_000, maxEntries: 10, now: c.now });
    await cache.use(token(1), async () => randomBytes(32), () => 0);
    c.advance(2_000);
    const denied = new TokendError('ERR_KMS_ACCESS', 'denied');
    await expect(cache.use(token(1), async () => Promise.reject(denied), () => 0)).rejects.toBe(denied);
  });

  it('fails cold requests fast after an outage, without calling the provider, until the cooldown ends', async () => {
    const c = clock();
    const cache = new DataKeyCache({ enabled: true, ttlMs: 1_000, staleMs: 0, maxEntries: 10, now: c.now });
    let calls = 0;
    const failing = async () => {
      calls += 1;
      throw unavailable();
    };
    await expect(cache.use(token(1), failing, () => 0)).rejects.toMatchObject({ code: 'ERR_KMS_UNAVAILABLE' });
    for (let i = 2; i < 50; i += 1) await expect(cache.use(token(i), failing, () => 0)).rejects.toMatchObject({ code: 'ERR_KMS_UNAVAILABLE' });
    expect(calls).toBe(1);
    expect(cache.retryAfterSeconds()).toBe(1);
    c.advance(1_001);
    expect((await cache.use(token(1), async () => randomBytes(32), () => 'back')).value).toBe('back');
  });

  it('keeps tokens that share a wrapped key but not a nonce apart (a key derived for one is never handed to the other)', async () => {
    const cache = new DataKeyCache({ enabled: true, ttlMs: 60_000, staleMs: 0, maxEntries: 10 });
    const a = { keyId: 'k', wrappedKey: Buffer.from([1]), nonce: Buffer.alloc(12, 1) } as unknown as SealedToken;
    const b = { keyId: 'k', wrappedKey: Buffer.from([1]), nonce: Buffer.alloc(12, 2) } as unknown as SealedToken;
    let calls = 0;
    const load = async () => (calls++, randomBytes(32));
    const first = await cache.use(a, load, (k) => Buffer.from(k));
    const second = await cache.use(b, load, (k) => Buffer.from(k));
    expect([first.source, second.source, calls]).toEqual(['miss', 'miss', 2]);
    expect(first.value.equals(second.value)).toBe(false);
  });

  it('zeroes every cached key on clear()', async () => {
    const cache = new DataKeyCache({ enabled: true, ttlMs: 60_000, staleMs: 0, maxEntries: 10 });
    let held: Buffer | undefined;
    await cache.use(token(1), async () => randomBytes(32), () => 0);
    await cache.use(token(1), async () => randomBytes(32), (k) => (held = k));
    cache.clear();
    expect(held?.every((b) => b === 0)).toBe(true);
  });
});
