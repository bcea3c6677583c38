// `tokend init`: create (or complete) a development directory; idempotent, never overwrites keys.

import { resolve } from 'node:path';
import { setupDevDirectory } from '../../dev-setup.js';
import { KEYFILE_WARNING } from '../../kms/keyfile.js';
import { DEV_DIR, note, out, outJson, str } from '../command.js';
import type { Command } from '../command.js';

export const initCommand: Command = {
  name: 'init',
  summary: 'create a development directory: mock KMS keyfile, token store, config, policy, CA and client bundles',
  usage: '[--dir DIR] [--json]',
  help: `DIR defaults to ./${DEV_DIR}. Running it again keeps every existing file and adds what is missing.`,
  async run(ctx) {
    const dir = resolve(str(ctx.values.dir) ?? DEV_DIR);
    const steps = await setupDevDirectory(dir);
    if (ctx.values.json) {
      outJson(ctx, { dir, steps });
      return;
    }
    for (const s of steps) out(ctx, `${s.action.padEnd(7)} ${s.what}: ${s.path}`);
    note(ctx, `warning: ${KEYFILE_WARNING}`);
    out(ctx, `next: printf %s 'my-secret' | tokend seal my-token --dir ${dir}`);
  },
};
