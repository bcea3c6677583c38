// `tokend check`: validate config, files, permissions and KMS reachability.

import { runChecks } from '../../checks.js';
import { EXIT } from '../exit-codes.js';
import { out, outJson, readConfig } from '../command.js';
import type { Command } from '../command.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'validate the config, files, permissions and KMS reachability',
  usage: '[--json]',
  help: 'Exits 0 when every check passes, 3 otherwise (a config that does not load exits with its own code).',
  async run(ctx) {
    const results = await runChecks(await readConfig(ctx));
    if (ctx.values.json) outJson(ctx, { ok: results.every((r) => r.ok), results });
    else for (const r of results) out(ctx, `${r.ok ? 'ok  ' : 'FAIL'} ${r.check}: ${r.message}`);
    return results.every((r) => r.ok) ? EXIT.ok : EXIT.config;
  },
};
