// `tokend check`: validate a configuration and everything it points at, without serving.

import { describeError, isTokendError } from './errors.js';
import type { Config } from './config.js';
import { createProvider } from './kms/create.js';
import { checkPki } from './pki/index.js';
import { globMatches, loadPolicy } from './policy.js';
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
      const policy = await loadPolicy(config.policy);
      const { tokens } = await new TokenStore(config.store).load().catch(() => ({ tokens: new Map() }));
      const unread = [...tokens.keys()].filter((name) => !policy.rules.some((r) => r.tokens.some((t) => globMatches(t, name))));
      const notes = [...policy.warnings.map((w) => w.replace(/^policy '[^']*': /, 'warning: '))];
      if (unread.length > 0) notes.push(`no rule names ${unread.length} token(s): ${unread.slice(0, 5).join(', ')}${unread.length > 5 ? ', …' : ''}`);
      return [`${policy.rules.length} rule(s) in '${config.policy}'`, ...notes].join('; ');
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
export async function runChecks(config: Config): Promise<CheckResult[]> {
  const results: CheckResult[] = [{ check: 'config', ok: true, message: `'${config.path}' is valid` }];
  for (const [check, run] of CHECKS) {
    try {
      results.push({ check, ok: true, message: await run(config) });
    } catch (err) {
      if (!isTokendError(err) && !(err instanceof Error)) throw err;
      results.push({ check, ok: false, message: describeError(err) });
    }
  }
  return results;
}
