// The shape of a CLI command and the helpers every command shares (config lookup, output).

import { parseArgs } from 'node:util';
import type { ParseArgsOptionsConfig } from 'node:util';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { loadConfig } from '../config.js';
import type { Config, Env } from '../config.js';
import { DEFAULTS } from '../config.js';
import { TokendError } from '../errors.js';

/** Where a command reads and writes. Tests pass their own streams; the binary passes the process's. */
export interface Io {
  readonly stdin: Readable & { isTTY?: boolean };
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable;
}

export interface CommandContext {
  readonly io: Io;
  readonly env: Env;
  readonly values: Readonly<Record<string, unknown>>;
  readonly positionals: readonly string[];
  /** A signal that aborts long-running commands (serve) on SIGTERM/SIGINT. */
  readonly signal: AbortSignal;
}

export interface Command {
  /** One or two words: `seal`, `keyfile rotate`. */
  readonly name: string;
  readonly summary: string;
  /** Arguments after the command name, e.g. `NAME [--file PATH] [--json]`. */
  readonly usage: string;
  /** Longer help, a few lines. */
  readonly help?: string;
  readonly options?: ParseArgsOptionsConfig;
  readonly positionals?: { readonly min: number; readonly max: number };
  /** Returns the exit code (0 when undefined). Throws TokendError for failures. */
  run(ctx: CommandContext): Promise<number | void>;
}

/** Options every command accepts. */
export const COMMON_OPTIONS: ParseArgsOptionsConfig = {
  config: { type: 'string', short: 'c' },
  dir: { type: 'string', short: 'd' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** The dev directory `init` and `serve --dev` use when none is given. */
export const DEV_DIR = '.tokend-dev';

/** Parses `argv` for `command`, turning parse failures into ERR_USAGE. */
export function parseCommandArgs(command: Command, argv: readonly string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...COMMON_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new TokendError('ERR_USAGE', `${(err as Error).message.replace(/\. To specify.*$/s, '')}; usage: tokend ${command.name} ${command.usage}`);
  }
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (!parsed.values.help && (parsed.positionals.length < min || parsed.positionals.length > max)) {
    throw new TokendError('ERR_USAGE', `usage: tokend ${command.name} ${command.usage}`);
  }
  return parsed;
}

/**
 * The config file a command uses: --config, else TOKEND_CONFIG, else
 * <--dir>/tokend.json, else /etc/tokend/tokend.json.
 */
export function configPath(ctx: CommandContext): string {
  const explicit = str(ctx.values.config) ?? ctx.env.configPath;
  if (explicit) return resolve(explicit);
  const dir = str(ctx.values.dir);
  return dir ? resolve(join(dir, 'tokend.json')) : DEFAULTS.configPath;
}

/** Loads the config for this command (see configPath). */
export function readConfig(ctx: CommandContext): Promise<Config> {
  return loadConfig(configPath(ctx), ctx.env);
}

/** A string option's value, or undefined. */
export function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Writes one line to stdout. */
export function out(ctx: CommandContext, line: string): void {
  ctx.io.stdout.write(`${line}\n`);
}

/** Writes one line to stderr (notes and warnings, never secrets). */
export function note(ctx: CommandContext, line: string): void {
  ctx.io.stderr.write(`${line}\n`);
}

/** Writes a JSON document to stdout. */
export function outJson(ctx: CommandContext, value: unknown): void {
  ctx.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
