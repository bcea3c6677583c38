// `tokend ignition`: render the Ignition fragment that provisions tokend on a host, from a
// tokend directory (config, policy, sealed tokens, an external CA bundle) and the shipped units.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TokendError } from '../../errors.js';
import { HOST, HOST_UNITS, renderIgnition } from '../../ignition.js';
import type { HostClient } from '../../ignition.js';
import { loadPolicy } from '../../policy.js';
import { readNamedFile, writeFileAtomic } from '../../private-files.js';
import { TokenStore } from '../../store.js';
import { configPath, note, out, readConfig, str } from '../command.js';
import type { Command } from '../command.js';

export const ignitionCommand: Command = {
  name: 'ignition',
  summary: 'render the Ignition config (spec 3.3.0) that provisions tokend on a host',
  usage: '[--client IDENTITY[=UID:GID]]... [--out FILE] [--units DIR]',
  help: `Puts the tokend user, ${HOST.etc} (the config with host paths, the policy, the sealed tokens and,
in external mode, the CA bundle) and the units into one Ignition config; merge it into your
own Butane with \`ignition: config: merge: [{local: tokend.ign}]\`. It never holds a secret:
the host makes its own CA and keys on first boot and uses its instance role for KMS, and the
development keyfile provider is refused. --client issues IDENTITY's bundle on first boot into
${HOST.clients}/IDENTITY, owned by UID:GID (default root). --units: the unit files to ship
(default: the units/ that came with tokend). Output: stdout, or FILE.`,
  options: { client: { type: 'string', multiple: true }, out: { type: 'string', short: 'o' }, units: { type: 'string' } },
  async run(ctx) {
    const config = await readConfig(ctx);
    const document = JSON.parse((await readNamedFile(configPath(ctx), 'config file')).toString('utf8')) as Record<string, unknown>;
    await loadPolicy(config.policy); // refuses a policy serve would refuse
    const policy = (await readNamedFile(config.policy, 'policy file')).toString('utf8');
    const store = new TokenStore(config.store);
    const tokens = new Map<string, string>();
    for (const name of await store.names()) tokens.set(name, (await store.read(name)).toString('utf8'));
    const caBundle = config.pki.mode === 'external' ? (await readNamedFile(config.pki.caBundle as string, 'CA bundle')).toString('utf8') : undefined;
    const unitsDir = str(ctx.values.units) ?? shippedUnits();
    const units: Record<string, string> = {};
    for (const name of HOST_UNITS) units[name] = (await readNamedFile(join(unitsDir, name), 'unit file')).toString('utf8');
    const clients = ((ctx.values.client as string[] | undefined) ?? []).map(parseClient);

    const rendered = `${JSON.stringify(renderIgnition({ config: document, policy, tokens, caBundle, units, clients }), null, 2)}\n`;
    const file = str(ctx.values.out);
    if (file === undefined) ctx.io.stdout.write(rendered);
    else {
      await writeFileAtomic(file, rendered, { mode: 0o644 });
      out(ctx, `wrote ${file}`);
    }
    note(ctx, `${tokens.size} sealed token(s), ${clients.length} client bundle(s) issued on first boot, pki.mode ${config.pki.mode}`);
    if (config.pki.mode === 'external') {
      note(ctx, `external mode: provision ${HOST.pki}/server.crt and server.key (0600, owned by ${HOST.user}) from your CA on the host; they are never put into Ignition`);
    }
  },
};

/** `billing` or `billing=1000:1000`. */
function parseClient(text: string): HostClient {
  const match = /^([^=]+)(?:=(\d{1,10}):(\d{1,10}))?$/.exec(text);
  if (!match) throw new TokendError('ERR_USAGE', `--client '${text}' is not IDENTITY or IDENTITY=UID:GID`);
  const [, identity, uid, gid] = match;
  return { identity: identity as string, owner: uid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) } };
}

/** The units/ directory shipped beside tokend: found upwards from this module (dist/ or the bundle). */
function shippedUnits(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'units', 'tokend.service'))) return join(dir, 'units');
    dir = dirname(dir);
  }
  throw new TokendError('ERR_NOT_FOUND', "the units/ directory shipped with tokend was not found; pass --units DIR");
}
