// `tokend cert issue|list|revoke|renew`: client certificates and their bundles.

import { TokendError } from '../../errors.js';
import { BUNDLE_FILES, issueBundle, listCertificates, normalizeSerial, parseTtl, renewBundle, renewDue, revoke } from '../../pki/index.js';
import type { IssuedEntry, Owner, RevokeBy } from '../../pki/index.js';
import { EXIT } from '../exit-codes.js';
import { note, out, outJson, readConfig, str } from '../command.js';
import type { Command, CommandContext } from '../command.js';

export const certIssueCommand: Command = {
  name: 'cert issue',
  summary: 'issue a client certificate and write its ready-to-mount bundle',
  usage: 'IDENTITY [--ttl 7d] [--out DIR] [--owner UID:GID] [--force] [--json]',
  help: `Writes DIR/ca.crt, DIR/client.crt and DIR/client.key (0600; DIR 0700), default
DIR = <pki.dir>/clients/IDENTITY. The certificate names spiffe://<trust domain>/IDENTITY
(URI SAN) and CN=IDENTITY, for clientAuth only. --ttl takes m, h or d (default
pki.clientTtlDays). --owner hands the bundle to the user a container runs as.
Refuses an existing bundle without --force; never leaves half a bundle.`,
  options: { ttl: { type: 'string' }, out: { type: 'string', short: 'o' }, owner: { type: 'string' }, force: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx) {
    const config = await readConfig(ctx);
    const ttl = str(ctx.values.ttl);
    const entry = await issueBundle(config.pki, ctx.positionals[0] as string, {
      ttlMs: ttl === undefined ? undefined : parseTtl(ttl),
      out: str(ctx.values.out),
      owner: parseOwner(str(ctx.values.owner)),
      force: ctx.values.force === true,
    });
    report(ctx, 'issued', entry);
  },
};

export const certRenewCommand: Command = {
  name: 'cert renew',
  summary: 're-issue a client certificate into its bundle, atomically (or every due one with --due)',
  usage: '(IDENTITY | --due) [--ttl 7d] [--json]',
  help: `Writes a new key and certificate into the same bundle directory in one atomic switch;
a container reads the new files on its next request. Keeps the previous lifetime unless
--ttl is given. The old certificate stays valid until it expires (revoke it to stop it now).
--due renews every identity with less than pki.renewBeforeFraction of its lifetime left
(run it from a timer).`,
  options: { ttl: { type: 'string' }, due: { type: 'boolean' } },
  positionals: { min: 0, max: 1 },
  async run(ctx) {
    const config = await readConfig(ctx);
    const identity = ctx.positionals[0];
    if ((identity === undefined) === (ctx.values.due !== true)) {
      throw new TokendError('ERR_USAGE', `usage: tokend cert renew ${certRenewCommand.usage} (an identity or --due, not both)`);
    }
    if (identity !== undefined) {
      const ttl = str(ctx.values.ttl);
      report(ctx, 'renewed', await renewBundle(config.pki, identity, { ttlMs: ttl === undefined ? undefined : parseTtl(ttl) }));
      return;
    }
    if (ctx.values.ttl !== undefined) throw new TokendError('ERR_USAGE', '--ttl is not used with --due (each certificate keeps its lifetime)');
    const result = await renewDue(config.pki);
    if (ctx.values.json) {
      outJson(ctx, result);
      return;
    }
    for (const e of result.renewed) out(ctx, `renewed ${e.identity}: serial ${e.serial}, valid until ${e.notAfter}`);
    out(ctx, `${result.renewed.length} renewed, ${result.notDue.length} not due`);
  },
};

export const certListCommand: Command = {
  name: 'cert list',
  summary: 'list issued and revoked client certificates (identity, serial, not-after, revoked)',
  usage: '[--json]',
  async run(ctx) {
    const config = await readConfig(ctx);
    const rows = await listCertificates(config.pki);
    if (ctx.values.json) {
      outJson(ctx, { certificates: rows });
      return;
    }
    if (rows.length === 0) {
      note(ctx, config.pki.mode === 'external' ? 'no revoked certificates (external mode: the external CA keeps the list of issued ones)' : 'no certificates issued yet');
      return;
    }
    const table = [['IDENTITY', 'SERIAL', 'NOT AFTER', 'STATUS'], ...rows.map((r) => [r.identity ?? '-', r.serial, r.notAfter ?? '-', r.status])];
    const widths = [0, 1, 2].map((i) => Math.max(...table.map((row) => (row[i] as string).length)));
    for (const row of table) out(ctx, row.map((cell, i) => (i < 3 ? cell.padEnd(widths[i] as number) : cell)).join('  '));
  },
};

export const certRevokeCommand: Command = {
  name: 'cert revoke',
  summary: 'add a certificate (by serial) or all of an identity\'s certificates to the denylist',
  usage: '(SERIAL | IDENTITY) [--serial | --identity] [--json]',
  help: `serve refuses a revoked certificate after its next reload (systemctl reload tokend, or SIGHUP).
By identity: every unexpired certificate issued to it. In external mode only by serial.
An argument that is both a known identity and a known serial needs --serial or --identity.`,
  options: { serial: { type: 'boolean' }, identity: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx) {
    if (ctx.values.serial && ctx.values.identity) throw new TokendError('ERR_USAGE', 'pass --serial or --identity, not both');
    const by: RevokeBy = ctx.values.serial ? 'serial' : ctx.values.identity ? 'identity' : 'auto';
    const config = await readConfig(ctx);
    const target = ctx.positionals[0] as string;
    const result = await revoke(config.pki, by === 'serial' ? normalizeSerial(target) : target, by);
    if (ctx.values.json) {
      outJson(ctx, result);
      return EXIT.ok;
    }
    for (const r of result.revoked) out(ctx, `revoked ${r.serial}${r.identity ? ` (${r.identity})` : ''}`);
    for (const s of result.alreadyRevoked) out(ctx, `already revoked ${s}`);
    if (result.revoked.length === 0 && result.alreadyRevoked.length === 0) note(ctx, 'nothing to revoke: every certificate of that identity has expired');
    if (result.revoked.length > 0) note(ctx, 'serve enforces this after its next reload (systemctl reload tokend)');
    return EXIT.ok;
  },
};

function report(ctx: CommandContext, verb: string, entry: IssuedEntry): void {
  if (ctx.values.json) {
    outJson(ctx, { ...entry, files: Object.fromEntries(Object.entries(BUNDLE_FILES).map(([k, f]) => [k, `${entry.bundle}/${f}`])) });
    return;
  }
  out(ctx, `${verb} ${entry.identity}: serial ${entry.serial}, valid until ${entry.notAfter}`);
  out(ctx, `bundle ${entry.bundle}/ (${Object.values(BUNDLE_FILES).join(', ')})`);
  if (verb === 'issued') out(ctx, `mount the directory read-only, e.g. podman run -v ${entry.bundle}:/run/tokend-client:ro,Z ...`);
}

/** Parses `--owner UID:GID` (numbers: the ids as the host sees them). */
function parseOwner(text: string | undefined): Owner | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d{1,10}):(\d{1,10})$/.exec(text);
  const [uid, gid] = match ? [Number(match[1]), Number(match[2])] : [NaN, NaN];
  if (!(uid <= 0xffffffff && gid <= 0xffffffff)) {
    throw new TokendError('ERR_USAGE', `--owner '${text}' is not UID:GID (numbers, as the host sees them)`);
  }
  return { uid, gid };
}
