// Secrets: the operations on sealed tokens that the CLI and the server share
// (seal a new version, unseal, rewrap under another key).

import { TokendError, describeError, isTokendError } from './errors.js';
import { openSealed, seal, withWrappedKey, encryptionContext } from './envelope.js';
import type { KeyProvider } from './kms/provider.js';
import type { TokenStore } from './store.js';

export interface SealResult {
  readonly name: string;
  readonly version: number;
  readonly keyId: string;
  readonly path: string;
}

/**
 * Seals `plaintext` as the next version of token `name` (1 for a new token) and
 * writes it atomically. An existing file that does not parse is never
 * overwritten silently: the caller must remove it first.
 */
export async function sealToken(
  store: TokenStore,
  provider: KeyProvider,
  name: string,
  plaintext: Buffer,
  now: Date = new Date(),
): Promise<SealResult> {
  store.pathOf(name);
  let previous;
  try {
    previous = await store.header(name);
  } catch (err) {
    if (isTokendError(err, 'ERR_SEALED_CORRUPT')) {
      throw new TokendError(
        'ERR_SEALED_CORRUPT',
        `${err.message}; refusing to replace it (remove '${store.pathOf(name)}' to start again at version 1)`,
        { cause: err },
      );
    }
    throw err;
  }
  const version = (previous?.version ?? 0) + 1;
  const token = await seal({ name, version, plaintext, provider, now });
  const path = await store.write(token);
  return { name, version, keyId: token.keyId, path };
}

/** Opens token `name`. The returned buffer holds the secret: the caller zeroes it. */
export async function unsealToken(store: TokenStore, provider: KeyProvider, name: string): Promise<Buffer> {
  const { plaintext } = await openSealed(await store.read(name), name, provider);
  return plaintext;
}

export interface RewrapReport {
  readonly rewrapped: readonly string[];
  readonly unchanged: readonly string[];
  readonly failed: readonly { readonly name: string; readonly error: string; readonly code: string }[];
}

/**
 * Re-wraps every token's data key under `toKeyId` (default: the provider's
 * current key). The token ciphertext is not touched and no token plaintext is
 * produced; each file is replaced atomically. One bad file does not stop the rest.
 */
export async function rewrapAll(store: TokenStore, provider: KeyProvider, toKeyId?: string): Promise<RewrapReport> {
  // Resolve once (an alias becomes its ARN) so tokens already under the target count as unchanged.
  const target = await provider.resolveKeyId(toKeyId ?? provider.defaultKeyId);
  const rewrapped: string[] = [];
  const unchanged: string[] = [];
  const failed: { name: string; error: string; code: string }[] = [];
  for (const name of await store.names()) {
    try {
      const token = await store.header(name);
      if (!token) continue;
      if (token.keyId === target) {
        unchanged.push(name);
        continue;
      }
      if (token.provider !== provider.name) {
        throw new TokendError('ERR_PROVIDER_MISMATCH', `sealed token '${name}' was sealed with the '${token.provider}' provider, not '${provider.name}'`);
      }
      const next = await provider.rewrap(token.wrappedKey, token.keyId, encryptionContext(token.name, token.version), target);
      await store.write(withWrappedKey(token, next.wrapped, next.keyId));
      rewrapped.push(name);
    } catch (err) {
      failed.push({ name, error: describeError(err), code: isTokendError(err) ? err.code : 'ERR_IO' });
    }
  }
  return { rewrapped, unchanged, failed };
}

/** Names of tokens whose data key is wrapped under `keyId` (before retiring a key). */
export async function tokensUsingKey(store: TokenStore, keyId: string): Promise<string[]> {
  const { tokens } = await store.load();
  return [...tokens.values()].filter((t) => t.keyId === keyId).map((t) => t.name);
}
