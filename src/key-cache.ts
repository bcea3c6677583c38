// The data-key cache: keys that came from the provider held in memory for a
// bounded time and count, so KMS is not called on every request. Concurrent
// misses for one key share one provider call; every provider call is counted.
// While the provider is unavailable, a key past its TTL may still serve up to
// the stale bound, and cold requests fail fast instead of piling up. What is
// held is whatever `load` returns for one sealed token: the server keeps the
// token's own key, derived from its unwrapped data key (envelope.deriveTokenKey).

import { TokendError, isTokendError } from './errors.js';
import type { SealedToken } from './envelope.js';

export interface KeyCacheOptions {
  /** Off: every request unwraps (concurrent misses still share one call). */
  readonly enabled: boolean;
  readonly ttlMs: number;
  /** How long past its TTL an entry may serve while the provider is unavailable. */
  readonly staleMs: number;
  readonly maxEntries: number;
  /** At most this many distinct provider calls in flight; more fail fast as unavailable. */
  readonly maxInFlight?: number;
  readonly now?: () => number;
}

/** Where a request's data key came from. */
export type KeySource = 'hit' | 'miss' | 'stale';

/** Counters for /metrics and the benchmarks. Monotonic except `size`. */
export interface KeyCacheStats {
  hits: number;
  misses: number;
  stale: number;
  coalesced: number;
  providerCalls: number;
  providerErrors: number;
  rejected: number;
  size: number;
}

interface Entry {
  readonly key: Buffer;
  readonly expiresAt: number;
  readonly staleUntil: number;
}

interface Flight {
  readonly promise: Promise<Buffer>;
  waiters: number;
}

const COOLDOWN_MIN_MS = 1_000;
const COOLDOWN_MAX_MS = 30_000;

export class DataKeyCache {
  readonly stats: KeyCacheStats = { hits: 0, misses: 0, stale: 0, coalesced: 0, providerCalls: 0, providerErrors: 0, rejected: 0, size: 0 };
  readonly #options: Required<KeyCacheOptions>;
  readonly #entries = new Map<string, Entry>();
  readonly #flights = new Map<string, Flight>();
  readonly #ids = new WeakMap<SealedToken, string>();
  #unavailableUntil = 0;
  #cooldownMs = COOLDOWN_MIN_MS;

  constructor(options: KeyCacheOptions) {
    this.#options = { maxInFlight: 64, now: Date.now, ...options };
  }

  /**
   * Runs `fn` with the token's data key and returns its result. `fn` is called
   * synchronously with a buffer that is zeroed afterwards by its owner: it must
   * not keep the key. `load` asks the provider (called at most once per key at
   * a time). Throws what `load` throws, or ERR_KMS_UNAVAILABLE when failing fast.
   */
  async use<T>(token: SealedToken, load: () => Promise<Buffer>, fn: (key: Buffer) => T): Promise<{ value: T; source: KeySource }> {
    const id = this.#idOf(token);
    const now = this.#options.now();
    const entry = this.#entries.get(id);
    if (entry && now < entry.expiresAt) {
      this.stats.hits += 1;
      this.#entries.delete(id); // keep LRU order: most recent last
      this.#entries.set(id, entry);
      return { value: fn(entry.key), source: 'hit' };
    }
    let flight = this.#flights.get(id);
    if (flight) this.stats.coalesced += 1;
    else {
      const failFast = this.#failFastReason(now);
      if (failFast) return this.#stale(entry, now, fn, failFast);
      flight = { promise: this.#load(id, load), waiters: 0 };
      this.#flights.set(id, flight);
    }
    this.stats.misses += 1;
    flight.waiters += 1;
    let key: Buffer | undefined;
    try {
      key = await flight.promise;
    } catch (err) {
      flight.waiters -= 1;
      if (isTokendError(err, 'ERR_KMS_UNAVAILABLE')) return this.#stale(this.#entries.get(id), this.#options.now(), fn, err);
      throw err;
    }
    try {
      return { value: fn(key), source: 'miss' };
    } finally {
      flight.waiters -= 1;
      if (flight.waiters === 0) key.fill(0); // the cache keeps its own copy
    }
  }

  /** Seconds a client should wait before retrying while the provider is unavailable (at least 1). */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil((this.#unavailableUntil - this.#options.now()) / 1000));
  }

  /** Drops entries past their stale bound, zeroing them. Call periodically. */
  sweep(): void {
    const now = this.#options.now();
    for (const [id, entry] of this.#entries) {
      if (now >= entry.staleUntil) this.#drop(id, entry);
    }
  }

  /** Zeroes and forgets every cached key. */
  clear(): void {
    for (const [id, entry] of this.#entries) this.#drop(id, entry);
  }

  #failFastReason(now: number): TokendError | undefined {
    if (now < this.#unavailableUntil) {
      return new TokendError('ERR_KMS_UNAVAILABLE', 'KMS is unavailable (recent failures; not retrying yet)');
    }
    if (this.#flights.size >= this.#options.maxInFlight) {
      this.stats.rejected += 1;
      return new TokendError('ERR_KMS_UNAVAILABLE', `KMS is not keeping up (${this.#flights.size} calls pending)`);
    }
    return undefined;
  }

  /** Serves a stale entry within its bound, or throws `err`. */
  #stale<T>(entry: Entry | undefined, now: number, fn: (key: Buffer) => T, err: TokendError): { value: T; source: KeySource } {
    if (entry && now < entry.staleUntil) {
      this.stats.stale += 1;
      return { value: fn(entry.key), source: 'stale' };
    }
    throw err;
  }

  async #load(id: string, load: () => Promise<Buffer>): Promise<Buffer> {
    this.stats.providerCalls += 1;
    try {
      const key = await load();
      this.#cooldownMs = COOLDOWN_MIN_MS;
      this.#unavailableUntil = 0;
      if (this.#options.enabled) this.#store(id, Buffer.from(key));
      return key;
    } catch (err) {
      this.stats.providerErrors += 1;
      if (isTokendError(err, 'ERR_KMS_UNAVAILABLE')) {
        this.#unavailableUntil = this.#options.now() + this.#cooldownMs;
        this.#cooldownMs = Math.min(this.#cooldownMs * 2, COOLDOWN_MAX_MS);
      }
      throw err;
    } finally {
      this.#flights.delete(id);
    }
  }

  #store(id: string, key: Buffer): void {
    const now = this.#options.now();
    const old = this.#entries.get(id);
    if (old) this.#drop(id, old);
    while (this.#entries.size >= this.#options.maxEntries) {
      const [oldestId, oldest] = this.#entries.entries().next().value as [string, Entry];
      this.#drop(oldestId, oldest);
    }
    this.#entries.set(id, { key, expiresAt: now + this.#options.ttlMs, staleUntil: now + this.#options.ttlMs + this.#options.staleMs });
    this.stats.size = this.#entries.size;
  }

  #drop(id: string, entry: Entry): void {
    entry.key.fill(0);
    this.#entries.delete(id);
    this.stats.size = this.#entries.size;
  }

  /**
   * A token's cache identity: its wrapping key, wrapped key and nonce (a
   * rewrapped or resealed token is a new entry, and a key derived for one
   * token's nonce is never handed to another).
   */
  #idOf(token: SealedToken): string {
    let id = this.#ids.get(token);
    if (id === undefined) {
      id = `${token.keyId}\n${token.wrappedKey.toString('base64')}\n${token.nonce.toString('base64')}`;
      this.#ids.set(token, id);
    }
    return id;
  }
}
