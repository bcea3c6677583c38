// `tokend check`: validate a configuration and everything it points at, without serving.

import { describeError, isTokendError } from './errors.js';
import type { Config } from './config.js';
import { createProvider } from './kms/create.js';
import { checkPki } from './pki/index.js';
import { loadPolicy } from './policy.js';
import { TokenStore } from './store.js';

export interface CheckResult {
  readonly check: string;
  readonly ok: boolean;
  readonly message: string;
}

type Check = (config: Config) => Promise<string>;

/** The checks `tokend check` runs, in order. Each returns a summary or throws a TokendError. */
const CHECKS: readonly (readonly [string, Check])[] = [
  [
    'store',
    async (config) => {
      const { tokens, errors } = await new TokenStore(config.store).load();
      if (errors.length > 0) throw errors[0];
      return `${tokens.size} sealed token(s) in '${config.store}'`;
    },
  ],
  [
    'policy',
    async (config) => {
      // A policy that does not load would make serve refuse to start, or a reload fail.
      const policy = await loadPolicy(config.policy);
      const summary = `${policy.rules.length} rule(s) in '${config.policy}'`;
      return policy.warnings.length === 0 ? summary : `${summary}; warning: ${policy.warnings.join('; warning: ')}`;
    },
  ],
  ['pki', (config) => checkPki(config.pki)],
  [
    'provider',
    async (config) => {
      const provider = await createProvider(config.provider);
      try {
        await provider.check();
        return `${provider.name} provider ready, key '${provider.defaultKeyId}'`;
      } finally {
        provider.close();
      }
    },
  ],
];

/** Runs every check; never throws for a failing check (it is reported), only for bugs. */
export async function runChecks(config: Config, extra: readonly (readonly [string, Check])[] = []): Promise<CheckResult[]> {
  const results: CheckResult[] = [{ check: 'config', ok: true, message: `'${config.path}' is valid` }];
  for (const [check, run] of [...CHECKS, ...extra]) {
    try {
      results.push({ check, ok: true, message: await run(config) });
    } catch (err) {
      if (!isTokendError(err) && !(err instanceof Error)) throw err;
      results.push({ check, ok: false, message: describeError(err) });
    }
  }
  return results;
}
