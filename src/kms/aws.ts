// The AWS KMS provider (placeholder until the aws provider lands).

import { TokendError } from '../errors.js';
import type { AwsProviderConfig } from '../config.js';
import type { KeyProvider } from './provider.js';

/** Creates the AWS KMS provider. */
export async function createAwsProvider(config: AwsProviderConfig): Promise<KeyProvider> {
  throw new TokendError('ERR_CONFIG', `the aws provider (key '${config.keyId}') is not available in this build`);
}
