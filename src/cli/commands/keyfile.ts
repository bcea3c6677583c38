// `tokend keyfile rotate|retire`: manage the development mock KMS keyfile.

import { TokendError } from '../../errors.js';
import { retireKeyVersion, rotateKeyfile } from '../../kms/keyfile.js';
import { tokensUsingKey } from '../../secrets.js';
import { TokenStore } from '../../store.js';
import type { Config } from '../../config.js';
import { out, outJson, readConfig } from '../command.js';
import type { Command } from '../command.js';

function keyfilePath(config: Config): string {
  if (config.provider.type !== 'keyfile') {
    throw new TokendError('ERR_USAGE', `config '${config.path}' uses the '${config.provider.type}' provider, not a keyfile`);
  }
  return config.provider.keyfile;
}

export const keyfileRotateCommand: Command = {
  name: 'keyfile rotate',
  summary: 'add a new primary key to the dev keyfile (older keys still unwrap)',
  usage: '[--json]',
  help: "New seals use the new key. Run 'tokend rewrap' to move existing tokens to it.",
  async run(ctx) {
    const path = keyfilePath(await readConfig(ctx));
    const version = await rotateKeyfile(path);
    if (ctx.values.json) outJson(ctx, { keyfile: path, primary: version });
    else out(ctx, `keyfile '${path}': key version ${version} is now primary; run 'tokend rewrap' to move tokens to it`);
  },
};

export const keyfileRetireCommand: Command = {
  name: 'keyfile retire',
  summary: 'remove an old key version from the dev keyfile',
  usage: 'VERSION [--force]',
  help: 'Refuses while any sealed token still uses that version (they would no longer open) unless --force.',
  options: { force: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx) {
    const config = await readConfig(ctx);
    const path = keyfilePath(config);
    const version = Number(ctx.positionals[0]);
    if (!Number.isInteger(version) || version < 1) {
      throw new TokendError('ERR_USAGE', `key version '${ctx.positionals[0]}' is not a positive integer`);
    }
    await retireKeyVersion(path, version, async (keyId) => {
      const users = await tokensUsingKey(new TokenStore(config.store), keyId);
      if (users.length > 0 && !ctx.values.force) {
        throw new TokendError(
          'ERR_USAGE',
          `key version ${version} still wraps ${users.length} token(s) (${users.slice(0, 5).join(', ')}${users.length > 5 ? ', …' : ''}); run 'tokend rewrap' first`,
        );
      }
    });
    if (ctx.values.json) outJson(ctx, { keyfile: path, retired: version });
    else out(ctx, `keyfile '${path}': key version ${version} removed`);
  },
};
