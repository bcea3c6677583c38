// `tokend ca init`: create tokend's own CA and the loopback server certificate (internal mode).

import { createCa, pkiPaths, renewServerCertIfDue } from '../../pki/index.js';
import { out, outJson, readConfig } from '../command.js';
import type { Command } from '../command.js';

export const caInitCommand: Command = {
  name: 'ca init',
  summary: "create tokend's CA (RSA-3072, name-constrained) and the server certificate",
  usage: '[--json]',
  help: `Writes ca.key (0600) and ca.crt under pki.dir, then server.key (0600) and server.crt for
127.0.0.1, ::1 and localhost. Refuses when a CA already exists (a CA key is never replaced)
and in external mode (pki.mode "external": tokend only verifies).`,
  async run(ctx) {
    const config = await readConfig(ctx);
    const ca = await createCa(config.pki);
    await renewServerCertIfDue(config.pki);
    const paths = pkiPaths(config.pki);
    const result = {
      ca: paths.caCert,
      caKey: paths.caKey,
      fingerprint: ca.fingerprint256,
      notAfter: ca.validToDate.toISOString(),
      trustDomain: config.pki.trustDomain,
      serverCert: paths.serverCert,
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
