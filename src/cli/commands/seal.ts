// `tokend seal NAME`: seal a token read from stdin or --file as the next version of NAME.

import { TokenStore } from '../../store.js';
import { sealToken } from '../../secrets.js';
import { createProvider } from '../../kms/create.js';
import { assertValidName } from '../../names.js';
import { note, out, outJson, readConfig, str } from '../command.js';
import type { Command } from '../command.js';
import { readSecret, stripNewline } from '../secret-input.js';
import { warnIfKeyfile } from './shared.js';

export const sealCommand: Command = {
  name: 'seal',
  summary: 'seal a token (read from stdin or --file) into the token store',
  usage: 'NAME [--file PATH] [--strip-newline] [--json]',
  help: 'The token is read from stdin or --file, never from the command line. Sealing an existing\nname writes the next version. Prints the sealed file path.',
  options: { file: { type: 'string', short: 'f' }, 'strip-newline': { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx) {
    const name = assertValidName(ctx.positionals[0] as string);
    const config = await readConfig(ctx);
    const store = new TokenStore(config.store);
    await store.assertSafeDir();
    const raw = await readSecret(ctx.io.stdin, str(ctx.values.file), `token '${name}'`);
    const provider = await createProvider(config.provider);
    try {
      warnIfKeyfile(ctx, provider);
      const plaintext = ctx.values['strip-newline'] ? stripNewline(raw) : raw;
      if (plaintext.length > 0 && plaintext[plaintext.length - 1] === 0x0a) {
        note(ctx, `note: token '${name}' ends with a newline, which is sealed as part of it (--strip-newline drops it)`);
      }
      const result = await sealToken(store, provider, name, plaintext);
      if (ctx.values.json) outJson(ctx, result);
      else out(ctx, result.path);
    } finally {
      raw.fill(0);
      provider.close();
    }
  },
};
