// `tokend list`: the sealed tokens in the store, with version, key and creation time (no decryption).

import { TokenStore } from '../../store.js';
import { EXIT } from '../exit-codes.js';
import { note, out, outJson, readConfig } from '../command.js';
import type { Command } from '../command.js';

export const listCommand: Command = {
  name: 'list',
  summary: 'list sealed tokens (name, version, key, created) without decrypting',
  usage: '[--json]',
  async run(ctx) {
    const config = await readConfig(ctx);
    const { tokens, errors } = await new TokenStore(config.store).load();
    const rows = [...tokens.values()].map((t) => ({
      name: t.name,
      version: t.version,
      provider: t.provider,
      keyId: t.keyId,
      created: t.created,
    }));
    if (ctx.values.json) {
      outJson(ctx, { tokens: rows, errors: errors.map((e) => ({ code: e.code, message: e.message })) });
    } else {
      for (const r of rows) out(ctx, `${r.name}\tv${r.version}\t${r.provider}:${r.keyId}\t${r.created}`);
      for (const e of errors) note(ctx, `error: ${e.message}`);
    }
    return errors.length > 0 ? EXIT.decrypt : EXIT.ok;
  },
};
