// Runs the real tokend binary (built into dist/) as a child process.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { recordOutput, watchSecret } from './leak-watch.js';

/** The tokend executable under test. */
export const TOKEND_BIN = fileURLToPath(new URL('../../bin/tokend', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface CliOptions {
  readonly input?: Buffer | string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

/** Runs `tokend ...args`, feeding `input` on stdin; resolves with exit code and output. */
export function tokend(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TOKEND_BIN, ...args], {
      cwd: options.cwd,
      env: { ...process.env, TOKEND_CONFIG: '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err).toString('utf8');
      // For the cross-suite leak scan: what `seal` is fed is a token; everything printed except `unseal`'s stdout is output.
      if (args[0] === 'seal' && options.input !== undefined) watchSecret(options.input);
      recordOutput(`cli-${args.slice(0, 2).join('-')}-stderr`, stderr);
      if (args[0] !== 'unseal') recordOutput(`cli-${args.slice(0, 2).join('-')}-stdout`, stdout);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}
