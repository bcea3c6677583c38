// The development PKI: what `tokend init` and `serve --dev` need to work out
// of the box, created when missing and otherwise left alone.

import type { PkiConfig } from '../config.js';
import { caMissing, createCa } from './authority.js';
import { bundleState } from './bundle.js';
import { issueBundle } from './clients.js';
import { defaultBundleDir, pkiPaths } from './layout.js';
import { renewServerCertIfDue } from './server-tls.js';

/** What setup did to one path (the same shape as dev-setup's SetupStep). */
export interface PkiStep {
  readonly path: string;
  readonly what: string;
  readonly action: 'created' | 'kept';
}

/**
 * Creates the CA, the server certificate and a client bundle (default
 * directory) for each of `identities` when missing; renews the server
 * certificate when due. Never replaces a CA or an existing bundle. External
 * mode: does nothing (returns []).
 */
export async function ensureDevPki(pki: PkiConfig, identities: readonly string[], now: Date = new Date()): Promise<PkiStep[]> {
  if (pki.mode === 'external') return [];
  const paths = pkiPaths(pki);
  const steps: PkiStep[] = [];
  const made = await caMissing(pki);
  if (made) await createCa(pki, now);
  steps.push({ path: paths.caCert, what: 'CA', action: made ? 'created' : 'kept' });
  const renewed = await renewServerCertIfDue(pki, now);
  steps.push({ path: paths.serverCert, what: 'server certificate', action: renewed ? 'created' : 'kept' });
  for (const identity of identities) {
    const dir = defaultBundleDir(pki, identity);
    const present = (await bundleState(dir)) === 'bundle';
    if (!present) await issueBundle(pki, identity, { now });
    steps.push({ path: dir, what: `client bundle '${identity}'`, action: present ? 'kept' : 'created' });
  }
  return steps;
}
