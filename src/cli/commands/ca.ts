// `tokend ca init`: create tokend's own CA and the loopback server certificate (internal mode).

import { isTokendError } from '../../errors.js';
import { createCa, pkiPaths, renewServerCertIfDue } from '../../pki/index.js';
import { note, out, outJson, readConfig } from '../command.js';
import type { Command } from '../command.js';

export const caInitCommand: Command = {
  name: 'ca init',
  summary: "create tokend's CA (RSA-3072, name-constrained) and the server certificate",
  usage: '[--if-missing] [--json]',
  help: `Writes ca.key (0600) and ca.crt under pki.dir, then server.key (0600) and server.crt for
127.0.0.1, ::1 and localhost. Refuses when a CA already exists (a CA key is never replaced)
and in external mode (pki.mode "external": tokend only verifies).
--if-missing (for a unit's ExecStartPre on first boot): an existing CA is checked and kept
(and the server certificate renewed if due) instead of refused; external mode is a no-op.`,
  options: { 'if-missing': { type: 'boolean' } },
  async run(ctx) {
    const config = await readConfig(ctx);
    const ifMissing = ctx.values['if-missing'] === true;
    const paths = pkiPaths(config.pki);
    if (ifMissing && config.pki.mode === 'external') {
      note(ctx, 'pki.mode is "external": tokend has no CA of its own; nothing to do');
      return;
    }
    let ca;
    try {
      ca = await createCa(config.pki);
    } catch (err) {
      if (!ifMissing || !isTokendError(err, 'ERR_EXISTS')) throw err;
      // Loading the CA to sign (or check) the server certificate fails closed on a half-made,
      // mismatched, expired or loosely protected CA.
      await renewServerCertIfDue(config.pki);
      if (ctx.values.json) outJson(ctx, { ca: paths.caCert, created: false });
      else out(ctx, `kept the existing CA ${paths.caCert}`);
      return;
    }
    await renewServerCertIfDue(config.pki);
    const result = {
      ca: paths.caCert,
      caKey: paths.caKey,
      fingerprint: ca.fingerprint256,
      notAfter: ca.validToDate.toISOString(),
      trustDomain: config.pki.trustDomain,
      serverCert: paths.serverCert,
      created: true,
    };
    if (ctx.values.json) {
      outJson(ctx, result);
      return;
    }
    out(ctx, `created CA ${result.ca} (key ${result.caKey}, 0600)`);
    out(ctx, `  trust domain ${result.trustDomain}, valid until ${result.notAfter}`);
    out(ctx, `  SHA-256 fingerprint ${result.fingerprint}`);
    out(ctx, `created server certificate ${result.serverCert}`);
    out(ctx, `next: tokend cert issue <identity>${ctx.values.dir ? ` --dir ${String(ctx.values.dir)}` : ''}`);
  },
};
