// The run's workspace: a temp directory with one dev PKI minted by the real
// `tokend init` (RSA CA, server certificate, client bundles), the sealed
// 64-byte bench token, and the files the three servers read. All three
// servers use the same CA, server certificate and key; the load generator
// uses the same client bundle against each.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The repository root (bench/ is one level down). */
export const ROOT = resolve(import.meta.dirname, '..', '..');
/** The built CLI. */
export const CLI = join(ROOT, 'dist', 'cli', 'bin.js');
/** The token every server answers with, and its size. */
export const TOKEN = 'bench-token';
export const TOKEN_BYTES = 64;
export const TOKEN_PATH = `/v1/tokens/${TOKEN}`;

/** A client bundle: the files a container mounts. */
export interface Bundle {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface Workspace {
  readonly dir: string;
  /** tokend's dev directory (config, keyfile, tokens, policy, pki). */
  readonly tokendDir: string;
  readonly config: string;
  /** The server side of the PKI, shared by all three servers. */
  readonly server: { readonly ca: string; readonly cert: string; readonly key: string };
  /** The identity allowed to read bench-* tokens. */
  readonly client: Bundle;
  /** The identity allowed to read /metrics. */
  readonly admin: Bundle;
  /** nginx's document root (world-readable: its workers run as nobody). */
  readonly docroot: string;
  readonly logs: string;
}

/** Runs the real CLI; `input` goes to stdin (secrets never travel in argv); `env` adds to (undefined: removes from) the environment. */
export function tokendCli(args: readonly string[], input = '', extraEnv: Readonly<Record<string, string | undefined>> = {}): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [CLI, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tokend ${args[0]} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    child.stdin?.end(input);
  });
}

/** Creates the workspace. */
export async function makeWorkspace(): Promise<Workspace> {
  const dir = mkdtempSync(join(tmpdir(), 'tokend-bench-'));
  chmodSync(dir, 0o711); // nginx workers (nobody) must reach the docroot below; everything private stays 0700/0600
  const tokendDir = join(dir, 'tokend');
  await tokendCli(['init', '--dir', tokendDir, '--json']);
  const value = Buffer.from(randomBytes(TOKEN_BYTES / 2).toString('hex'));
  await tokendCli(['seal', TOKEN, '--dir', tokendDir], value.toString());
  const policy = { rules: [{ identities: ['demo'], tokens: ['bench-*'] }] };
  writeFileSync(join(tokendDir, 'policy.json'), `${JSON.stringify(policy, null, 2)}\n`, { mode: 0o600 });

  const docroot = join(dir, 'www');
  mkdirSync(join(docroot, 'v1', 'tokens'), { recursive: true, mode: 0o755 });
  writeFileSync(join(docroot, TOKEN_PATH), value, { mode: 0o644 });
  value.fill(0);
  const logs = join(dir, 'logs');
  mkdirSync(logs, { mode: 0o700 });

  const pki = join(tokendDir, 'pki');
  const bundle = (identity: string): Bundle => {
    const b = join(pki, 'clients', identity);
    return { ca: join(b, 'ca.crt'), cert: join(b, 'client.crt'), key: join(b, 'client.key') };
  };
  return {
    dir,
    tokendDir,
    config: join(tokendDir, 'tokend.json'),
    server: { ca: join(pki, 'ca.crt'), cert: join(pki, 'server.crt'), key: join(pki, 'server.key') },
    client: bundle('demo'),
    admin: bundle('admin'),
    docroot,
    logs,
  };
}

/** Writes a tokend config for `port` based on the dev config; returns its path. */
export function writeTokendConfig(ws: Workspace, name: string, port: number, overrides: Record<string, unknown> = {}): string {
  const doc = {
    dev: true,
    store: join(ws.tokendDir, 'tokens'),
    policy: join(ws.tokendDir, 'policy.json'),
    provider: { type: 'keyfile', keyfile: join(ws.tokendDir, 'keyfile.json') },
    pki: { mode: 'internal', dir: join(ws.tokendDir, 'pki'), trustDomain: 'tokend.local' },
    server: { listen: [`127.0.0.1:${port}`], admins: ['admin'] },
    ...overrides,
  };
  const path = join(ws.tokendDir, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  return path;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolvePort(port));
    });
  });
}
