// `tokend unseal NAME`: local admin access; writes the token's exact bytes to stdout.

import { TokenStore } from '../../store.js';
import { unsealToken } from '../../secrets.js';
import { createProvider } from '../../kms/create.js';
import { assertValidName } from '../../names.js';
import { readConfig } from '../command.js';
import type { Command } from '../command.js';

export const unsealCommand: Command = {
  name: 'unseal',
  summary: 'decrypt a sealed token and write its exact bytes to stdout (local admin)',
  usage: 'NAME',
  help: 'Needs the KMS permissions of the host (or the dev keyfile). Nothing is added: no newline.',
  positionals: { min: 1, max: 1 },
  async run(ctx) {
    const name = assertValidName(ctx.positionals[0] as string);
    const config = await readConfig(ctx);
    const provider = await createProvider(config.provider);
    try {
      const plaintext = await unsealToken(new TokenStore(config.store), provider, name);
      try {
        // Zero only once the stream is done with the buffer.
        await new Promise<void>((done, fail) => ctx.io.stdout.write(plaintext, (err) => (err ? fail(err) : done())));
      } finally {
        plaintext.fill(0);
      }
    } finally {
      provider.close();
    }
  },
};
