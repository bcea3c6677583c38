// `tokend serve`: run the mutual-TLS token endpoint until SIGTERM. `--dev` first
// prepares a development directory and prints the curl line to try.

import { join, resolve } from 'node:path';
import { setupDevDirectory, DEMO_TOKEN, DEMO_IDENTITY } from '../../dev-setup.js';
import { serve } from '../../serve.js';
import { createNotifier } from '../../systemd/notify.js';
import { configPath, DEV_DIR, note, str } from '../command.js';
import type { Command } from '../command.js';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve tokens over mutual TLS on localhost (foreground; SIGHUP reloads, SIGTERM stops)',
  usage: '[--config PATH | --dir DIR] [--dev]',
  help: `--dev prepares a development directory (default ./${DEV_DIR}: mock KMS keyfile, CA, server
certificate, a demo identity bundle and a demo token) when anything is missing, then serves it.
Logs are JSON lines on stdout, one audit line per request; tokens never appear in them.`,
  options: { dev: { type: 'boolean' } },
  async run(ctx) {
    let path = configPath(ctx);
    if (ctx.values.dev) {
      const dir = resolve(str(ctx.values.dir) ?? DEV_DIR);
      await setupDevDirectory(dir, { demoToken: true });
      path = str(ctx.values.config) ?? join(dir, 'tokend.json');
      const bundle = join(dir, 'pki', 'clients', DEMO_IDENTITY);
      note(ctx, `tokend dev mode: ${dir} (mock KMS keyfile: development only)`);
      note(ctx, `try: curl --cert ${bundle}/client.crt --key ${bundle}/client.key --cacert ${bundle}/ca.crt https://127.0.0.1:7443/v1/tokens/${DEMO_TOKEN}`);
    }
    // systemd (Type=notify) hands us NOTIFY_SOCKET and WATCHDOG_USEC; outside systemd this is a no-op.
    return serve({ configPath: path, env: ctx.env, signal: ctx.signal, notifier: createNotifier(process.env) });
  },
};
