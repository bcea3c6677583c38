// The development directory: a keyfile (mock KMS), a token store, a config, a
// policy, and a PKI (CA, server certificate, client bundles for the demo and
// admin identities), created idempotently. Existing files are kept, never overwritten.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadConfig } from './config.js';
import { createKeyfile, loadKeyfileProvider } from './kms/keyfile.js';
import { ensureDevPki } from './pki/index.js';
import { sealToken } from './secrets.js';
import { TokenStore } from './store.js';
import { ensurePrivateDir, exists, writeFileAtomic } from './private-files.js';

/** What setup did to one path. */
export interface SetupStep {
  readonly path: string;
  readonly what: string;
  readonly action: 'created' | 'kept';
}

/** The demo identity and token the dev setup wires together. */
export const DEMO_IDENTITY = 'demo';
export const DEMO_TOKEN = 'demo-token';
/** The dev identity allowed to read /metrics. */
export const ADMIN_IDENTITY = 'admin';

/** The dev config: keyfile provider, store, policy and internal PKI beside it. */
export function devConfigDocument(): object {
  return {
    dev: true,
    store: 'tokens',
    policy: 'policy.json',
    provider: { type: 'keyfile', keyfile: 'keyfile.json' },
    pki: { mode: 'internal', dir: 'pki', trustDomain: 'tokend.local' },
    server: { listen: ['127.0.0.1:7443'], admins: [ADMIN_IDENTITY] },
  };
}

/** The dev policy: the demo identity may read the demo token, nothing else. */
export function devPolicyDocument(): object {
  return { rules: [{ identities: [DEMO_IDENTITY], tokens: [DEMO_TOKEN] }] };
}

/**
 * Creates `dir` (0700) with tokend.json, keyfile.json (0600), tokens/ (0700),
 * policy.json and the PKI of the config (internal mode: pki/ with the CA, the
 * server certificate and bundles for the demo identity and every admin),
 * keeping whatever already exists. Never replaces a key.
 */
export async function setupDevDirectory(dir: string, options: { demoToken?: boolean } = {}): Promise<SetupStep[]> {
  const steps: SetupStep[] = [];
  const step = async (path: string, what: string, create: () => Promise<void>) => {
    if (await exists(path)) {
      steps.push({ path, what, action: 'kept' });
      return;
    }
    await create();
    steps.push({ path, what, action: 'created' });
  };
  await ensurePrivateDir(dir);
  await step(join(dir, 'keyfile.json'), 'mock KMS keyfile', () => createKeyfile(join(dir, 'keyfile.json')));
  await step(join(dir, 'tokens'), 'token store', () => ensurePrivateDir(join(dir, 'tokens')));
  await step(join(dir, 'tokend.json'), 'config', () =>
    writeFileAtomic(join(dir, 'tokend.json'), `${JSON.stringify(devConfigDocument(), null, 2)}\n`, { overwrite: false }),
  );
  await step(join(dir, 'policy.json'), 'policy', () =>
    writeFileAtomic(join(dir, 'policy.json'), `${JSON.stringify(devPolicyDocument(), null, 2)}\n`, { overwrite: false }),
  );
  const config = await loadConfig(join(dir, 'tokend.json'));
  const identities = [...new Set([DEMO_IDENTITY, ...config.server.admins])];
  steps.push(...(await ensureDevPki(config.pki, identities)));
  if (options.demoToken) {
    const store = new TokenStore(join(dir, 'tokens'));
    await step(store.pathOf(DEMO_TOKEN), 'demo token', async () => {
      const provider = await loadKeyfileProvider(join(dir, 'keyfile.json'));
      const value = Buffer.from(`demo-${randomBytes(12).toString('hex')}`);
      try {
        await sealToken(store, provider, DEMO_TOKEN, value);
      } finally {
        value.fill(0);
        provider.close();
      }
    });
  }
  return steps;
}
