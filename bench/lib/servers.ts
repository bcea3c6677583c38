// The three servers under test, each its own process on 127.0.0.1 with the
// same certificates: tokend (the real CLI), the raw Node https server, and
// nginx. Each one's stdout and stderr go to a file in the same way, and each
// counts as started once a full mutual-TLS handshake succeeds.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { nginxConfig, NGINX } from './nginx.ts';
import { rssMiB, treeCpuSeconds } from './proc.ts';
import { CLI, ROOT, freePort, writeTokendConfig } from './workspace.ts';
import type { Bundle, Workspace } from './workspace.ts';

/** Which server, and how it is set up. */
export type ServerKind = 'tokend' | 'tokend-warn' | 'tokend-semi2' | 'raw-node' | 'nginx' | 'nginx-auto';

export interface RunningServer {
  readonly kind: ServerKind;
  readonly pid: number;
  readonly port: number;
  /** Milliseconds from spawn to the first completed mutual-TLS handshake. */
  readonly readyMs: number;
  /** CPU seconds of the server's process tree so far. */
  cpu(): number;
  rssMiB(): number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** tokend: writes the config for the chosen port (default: the bench config). */
  readonly config?: (port: number) => string;
  /** tokend: extra environment (undefined removes a variable). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Starts one server and waits until it completes a handshake. Throws with its log when it dies or times out. */
export async function startServer(ws: Workspace, kind: ServerKind, options: StartOptions = {}): Promise<RunningServer> {
  const port = await freePort();
  const log = join(ws.logs, `${kind}.log`);
  let command: string;
  let args: string[];
  let env: NodeJS.ProcessEnv = process.env;
  if (kind.startsWith('tokend')) {
    const config = options.config ? options.config(port) : writeTokendConfig(ws, kind, port);
    command = process.execPath;
    args = [CLI, 'serve', '--config', config];
    // Diagnostics: tokend-warn without audit lines; tokend-semi2 with V8's young generation capped (RSS).
    env = { ...process.env, ...options.env, TOKEND_LOG_LEVEL: kind === 'tokend-warn' ? 'warn' : 'info' };
    if (kind === 'tokend-semi2') env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} ${SEMI2}`.trim();
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  } else if (kind === 'raw-node') {
    command = process.execPath;
    args = [join(ROOT, 'bench', 'raw-server.ts'), String(port), ws.server.ca, ws.server.cert, ws.server.key];
  } else {
    const prefix = nginxConfig(ws, port, kind === 'nginx-auto' ? 'auto' : 1);
    command = NGINX;
    args = ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')];
  }
  const fd = openSync(log, 'a');
  const started = performance.now();
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pid = child.pid as number;
  try {
    await waitForHandshake(port, ws.client, exited, 20_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${kind} did not start: ${(err as Error).message}\n${tail(log)}`);
  }
  const readyMs = performance.now() - started;
  return {
    kind,
    pid,
    port,
    readyMs,
    cpu: () => treeCpuSeconds(pid),
    rssMiB: () => rssMiB(pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The V8 flag of the tokend-semi2 diagnostic: semi-spaces of 2 MiB instead of Node 24's default (up to 16 MiB). */
export const SEMI2 = '--max-semi-space-size=2';

const contexts = new WeakMap<Bundle, SecureContext>();

/** One client secure context per bundle, reused for every connection. */
export function clientContext(bundle: Bundle): SecureContext {
  let c = contexts.get(bundle);
  if (!c) {
    c = createSecureContext({ ca: readFileSync(bundle.ca), cert: readFileSync(bundle.cert), key: readFileSync(bundle.key) });
    contexts.set(bundle, c);
  }
  return c;
}

/** Resolves once a mutual-TLS handshake with 127.0.0.1:`port` completes; retries every millisecond or so. */
export async function waitForHandshake(port: number, bundle: Bundle, exited: Promise<unknown>, timeoutMs: number): Promise<void> {
  const context = clientContext(bundle);
  let dead = false;
  void exited.then(() => (dead = true));
  const deadline = performance.now() + timeoutMs;
  let last = '';
  while (performance.now() < deadline) {
    if (dead) throw new Error('the process exited');
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port, secureContext: context, rejectUnauthorized: true });
      s.once('secureConnect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', (err) => {
        last = err.message;
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`no handshake within ${timeoutMs} ms (last error: ${last})`);
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}
