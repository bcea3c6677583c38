// `tokend serve` as a real process (the built binary), for tests and the soak
// that watch it from outside: its log lines, its address, its memory and file
// descriptors in /proc, signals. Imports only node: modules, so the soak script
// can run it with Node's type stripping.

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/tokend', import.meta.url));

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** `https://127.0.0.1:PORT` of the first listen address. */
  readonly url: string;
  /** Everything written to stdout (JSON log lines; with `logFile`, all but the audit lines) and stderr, so far. */
  stdout(): string;
  stderr(): string;
  /** Parsed log lines so far. */
  logs(): Record<string, unknown>[];
  /** Resident set size in bytes (VmRSS). */
  rss(): Promise<number>;
  /** Open file descriptors: all of them, the sockets among them (connections, listeners), and the rest (files, pipes, epoll…). */
  fds(): Promise<{ total: number; sockets: number; other: number }>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/** Starts `tokend serve --config <configPath>` (with `node`, default this one) and resolves once it logs `ready`. */
export interface ServeProcessOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly nodeArgs?: readonly string[];
  /** The Node.js binary for the daemon (default: this one). */
  readonly node?: string;
  /**
   * Write stdout here and keep in memory only the lines that are not per-request audit lines
   * (a long soak writes gigabytes of them).
   */
  readonly logFile?: string;
}

export async function startServeProcess(configPath: string, options: ServeProcessOptions = {}): Promise<ServeProcess> {
  const child = spawn(options.node ?? process.execPath, [...(options.nodeArgs ?? []), BIN, 'serve', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TOKEND_CONFIG: '', ...options.env },
  });
  const out: string[] = [];
  const err: string[] = [];
  if (options.logFile) {
    const file = createWriteStream(options.logFile, { mode: 0o600 });
    let partial = '';
    child.stdout?.on('data', (c: Buffer) => {
      file.write(c);
      const lines = (partial + c.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (!line.includes('"msg":"request"')) out.push(`${line}\n`);
    });
    child.stdout?.on('end', () => file.end());
  } else {
    child.stdout?.on('data', (c: Buffer) => out.push(c.toString('utf8')));
  }
  child.stderr?.on('data', (c: Buffer) => err.push(c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const logs = () =>
    out
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const deadline = Date.now() + 20_000;
  let address: string | undefined;
  while (address === undefined) {
    address = (logs().find((l) => l.msg === 'ready')?.addresses as string[] | undefined)?.[0];
    if (address !== undefined) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`tokend serve did not become ready: ${err.join('').slice(0, 2_000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = child.pid as number;
  return {
    child,
    pid,
    url: `https://${address}`,
    stdout: () => out.join(''),
    stderr: () => err.join(''),
    logs,
    rss: async () => Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024,
    async fds() {
      const entries = await readdir(`/proc/${pid}/fd`);
      const targets = await Promise.all(entries.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
      // A descriptor closed between readdir and readlink reads as '' and counts as neither.
      return { total: entries.length, sockets: targets.filter((t) => t.startsWith('socket:')).length, other: targets.filter((t) => t !== '' && !t.startsWith('socket:')).length };
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
    exited,
  };
}
