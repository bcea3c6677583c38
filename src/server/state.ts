// The serving state: everything a request reads, built completely before it is
// used. A reload builds a new one and swaps it in; if building fails, the old one
// stays (all-or-nothing).

import type { Config } from '../config.js';
import type { SealedToken } from '../envelope.js';
import { createProvider } from '../kms/create.js';
import type { KeyProvider } from '../kms/provider.js';
import { loadPolicy } from '../policy.js';
import type { Policy } from '../policy.js';
import { TokenStore } from '../store.js';
import type { TlsMaterial } from '../pki/index.js';

export interface ServingState {
  /** Increases with every successful reload. */
  readonly generation: number;
  readonly config: Config;
  readonly tokens: ReadonlyMap<string, SealedToken>;
  readonly policy: Policy;
  readonly tls: TlsMaterial;
  readonly provider: KeyProvider;
}

export interface StateSources {
  readonly loadTls: (config: Config) => Promise<TlsMaterial>;
  readonly createProvider?: (config: Config) => Promise<KeyProvider>;
}

/**
 * Builds a complete state from `config`: policy, every sealed header (one bad
 * file fails the whole build, naming it), TLS material and the provider.
 * Nothing is half-applied: on error, whatever was opened is closed and the
 * error is thrown.
 */
export async function buildState(config: Config, generation: number, sources: StateSources): Promise<ServingState> {
  const policy = await loadPolicy(config.policy);
  const snapshot = await new TokenStore(config.store).load();
  if (snapshot.errors.length > 0) throw snapshot.errors[0];
  const tls = await sources.loadTls(config);
  const provider = await (sources.createProvider ?? ((c: Config) => createProvider(c.provider)))(config);
  return Object.freeze({ generation, config, tokens: snapshot.tokens, policy, tls, provider });
}
