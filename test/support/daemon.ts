// A real tokend daemon for tests: a dev directory (keyfile, CA, server cert,
// bundles), tokens and a policy, served in-process on an ephemeral loopback
// port with real TLS; plus real curl against it.

import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { devConfigDocument, setupDevDirectory } from '../../src/dev-setup.js';
import { ensurePrivateDir, writeFileAtomic } from '../../src/private-files.js';
import { loadKeyfileProvider } from '../../src/kms/keyfile.js';
import { sealToken } from '../../src/secrets.js';
import { serve } from '../../src/serve.js';
import type { Daemon, ServeOptions } from '../../src/serve.js';
import { createLogger } from '../../src/server/log.js';
import { TokenStore } from '../../src/store.js';
import { createCa, issueBundle } from '../../src/pki/index.js';
import { loadConfig } from '../../src/config.js';
import { recordOutput, watchSecret } from './leak-watch.js';
import { tempDir } from './tmp.js';

export interface Fixture {
  readonly dir: string;
  readonly configPath: string;
  /** Client bundle directory of an identity made with `bundle()`. */
  bundleDir(identity: string): string;
  /** Issues a bundle for `identity` (into `out`, default the identity's directory) and returns its path. */
  bundle(identity: string, options?: { now?: Date; ttlMs?: number; out?: string }): Promise<string>;
  seal(name: string, value: Buffer | string): Promise<void>;
  writePolicy(rules: readonly { identities: string[]; tokens: string[] }[]): Promise<void>;
  /** Rewrites tokend.json through `edit`. */
  editConfig(edit: (doc: Record<string, any>) => void): Promise<void>;
}

/** A dev directory listening on an ephemeral port, with bundles for `demo` and `admin`. */
export async function makeFixture(): Promise<Fixture> {
  const dir = join(await tempDir('tokend-serve-'), 'dev');
  const configPath = join(dir, 'tokend.json');
  // The CA is backdated 30 days so tests can issue certificates that have already expired.
  await ensurePrivateDir(dir);
  await writeFileAtomic(configPath, `${JSON.stringify(devConfigDocument(), null, 2)}\n`);
  await createCa((await loadConfig(configPath)).pki, new Date(Date.now() - 30 * 86_400_000));
  await setupDevDirectory(dir);
  const fixture: Fixture = {
    dir,
    configPath,
    bundleDir: (identity) => join(dir, 'pki', 'clients', identity),
    async bundle(identity, options = {}) {
      const config = await loadConfig(configPath);
      await issueBundle(config.pki, identity, { force: true, ...options });
      return options.out ?? fixture.bundleDir(identity);
    },
    async seal(name, value) {
      watchSecret(value);
      const provider = await loadKeyfileProvider(join(dir, 'keyfile.json'));
      try {
        await sealToken(new TokenStore(join(dir, 'tokens')), provider, name, Buffer.from(value));
      } finally {
        provider.close();
      }
    },
    async writePolicy(rules) {
      await writeFile(join(dir, 'policy.json'), `${JSON.stringify({ rules }, null, 2)}\n`, { mode: 0o600 });
    },
    async editConfig(edit) {
      const doc = JSON.parse(await readFile(configPath, 'utf8'));
      edit(doc);
      await writeFile(configPath, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
    },
  };
  await fixture.editConfig((doc) => {
    doc.server.listen = ['127.0.0.1:0'];
  });
  return fixture;
}

export interface Running {
  readonly daemon: Daemon;
  /** `https://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The raw log text so far. */
  logText(): string;
  /** Stops gracefully; resolves with serve()'s exit code. */
  stop(): Promise<number>;
}

/** Starts serve() in-process for `fixture`, capturing its logs. */
export async function startDaemon(fixture: Fixture, extra: Partial<ServeOptions> = {}): Promise<Running> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const controller = new AbortController();
  let ready!: (d: Daemon) => void;
  const readyP = new Promise<Daemon>((res) => (ready = res));
  const exited = serve({
    configPath: fixture.configPath,
    env: { configPath: undefined, logLevel: 'debug' },
    signal: controller.signal,
    logger: createLogger('debug', sink),
    onReady: ready,
    ...extra,
  });
  const daemon = await Promise.race([readyP, exited.then((code) => Promise.reject(new Error(`serve exited early with ${code}`)))]);
  const address = daemon.addresses[0] as string;
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return {
    daemon,
    port,
    url: `https://127.0.0.1:${port}`,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    logText: () => lines.join('\n'),
    async stop() {
      controller.abort();
      const code = await exited;
      recordOutput('daemon-log', lines.join('\n'));
      return code;
    },
  };
}

export interface CurlResult {
  /** curl's exit code (0 = an HTTP response arrived). */
  readonly exit: number;
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  readonly stderr: string;
}

/** Runs the real curl with a client bundle (or none) against `url`. */
export function curl(url: string, options: { bundle?: string; cacert?: string; args?: readonly string[] } = {}): Promise<CurlResult> {
  const args = ['-sS', '--max-time', '10', '-D', '-', '-o', '-', '--noproxy', '*'];
  if (options.bundle) args.push('--cert', join(options.bundle, 'client.crt'), '--key', join(options.bundle, 'client.key'));
  const cacert = options.cacert ?? (options.bundle ? join(options.bundle, 'ca.crt') : undefined);
  if (cacert) args.push('--cacert', cacert);
  args.push(...(options.args ?? []), url);
  return new Promise((resolve) => {
    execFile('curl', args, { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const exit = err ? Number((err as { code?: number }).code ?? 1) : 0;
      const split = stdout.indexOf('\r\n\r\n');
      const head = split >= 0 ? stdout.subarray(0, split).toString('latin1') : '';
      const lines = head.split('\r\n');
      const status = Number(/^HTTP\/\S+ (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const body = split >= 0 ? stdout.subarray(split + 4) : Buffer.alloc(0);
      recordOutput('curl-stderr', stderr);
      recordOutput('curl-headers', head);
      if (status < 200 || status >= 300) recordOutput('curl-error-body', body);
      resolve({ exit, status, headers, body, stderr: stderr.toString('utf8') });
    });
  });
}
