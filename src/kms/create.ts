// Builds the configured key provider. The AWS SDK is loaded only when the aws provider is configured.

import type { ProviderConfig } from '../config.js';
import { loadKeyfileProvider } from './keyfile.js';
import type { KeyProvider } from './provider.js';

/** Creates the provider `config` names. Throws TokendError when its files or settings are unusable. */
export async function createProvider(config: ProviderConfig): Promise<KeyProvider> {
  switch (config.type) {
    case 'keyfile':
      return loadKeyfileProvider(config.keyfile);
    case 'aws': {
      const { createAwsProvider } = await import('./aws.js');
      return createAwsProvider(config);
    }
  }
}
