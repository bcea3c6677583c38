// `tokend rewrap`: move every sealed token's data key to the current (or given) KMS key.

import { TokenStore } from '../../store.js';
import { rewrapAll } from '../../secrets.js';
import { createProvider } from '../../kms/create.js';
import { EXIT } from '../exit-codes.js';
import { note, out, outJson, readConfig, str } from '../command.js';
import type { Command } from '../command.js';
import { warnIfKeyfile } from './shared.js';

export const rewrapCommand: Command = {
  name: 'rewrap',
  summary: "re-wrap every sealed token's data key under the current key (or --to-key)",
  usage: '[--to-key KEY] [--json]',
  help: 'Token ciphertexts are not touched and no token is decrypted; with AWS KMS the data key\nmoves by ReEncrypt and is never returned in plaintext. Exits 1 if any token failed.',
  options: { 'to-key': { type: 'string' } },
  async run(ctx) {
    const config = await readConfig(ctx);
    const provider = await createProvider(config.provider);
    try {
      warnIfKeyfile(ctx, provider);
      const report = await rewrapAll(new TokenStore(config.store), provider, str(ctx.values['to-key']));
      if (ctx.values.json) outJson(ctx, report);
      else {
        out(ctx, `rewrapped ${report.rewrapped.length}, unchanged ${report.unchanged.length}, failed ${report.failed.length}`);
        for (const f of report.failed) note(ctx, `error: ${f.error}`);
      }
      return report.failed.length > 0 ? EXIT.error : EXIT.ok;
    } finally {
      provider.close();
    }
  },
};
