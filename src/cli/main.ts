// The CLI: finds the command, parses its arguments, runs it, and turns errors into exit codes.
// It never exits the process itself (bin.ts does), so tests can run it in-process.

import { isTokendError } from '../errors.js';
import { readEnv } from '../config.js';
import { parseCommandArgs } from './command.js';
import type { Command, Io } from './command.js';
import { EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js';
import { caInitCommand } from './commands/ca.js';
import { certIssueCommand, certListCommand, certRenewCommand, certRevokeCommand } from './commands/cert.js';
import { checkCommand } from './commands/check.js';
import { initCommand } from './commands/init.js';
import { keyfileRetireCommand, keyfileRotateCommand } from './commands/keyfile.js';
import { listCommand } from './commands/list.js';
import { rewrapCommand } from './commands/rewrap.js';
import { sealCommand } from './commands/seal.js';
import { unsealCommand } from './commands/unseal.js';
import { serveCommand } from './commands/serve.js';
import { healthCommand } from './commands/health.js';
import { ignitionCommand } from './commands/ignition.js';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [
  initCommand,
  sealCommand,
  unsealCommand,
  listCommand,
  rewrapCommand,
  keyfileRotateCommand,
  keyfileRetireCommand,
  caInitCommand,
  certIssueCommand,
  certListCommand,
  certRevokeCommand,
  certRenewCommand,
  checkCommand,
  serveCommand,
  healthCommand,
  ignitionCommand,
];

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: Io, signal: AbortSignal = new AbortController().signal): Promise<number> {
  const command = find(argv);
  if (!command) {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      io.stdout.write(usage());
      return EXIT.ok;
    }
    if (argv[0] === '--version') {
      io.stdout.write(`tokend ${VERSION}\n`);
      return EXIT.ok;
    }
    io.stderr.write(`tokend: unknown command '${argv.slice(0, 2).join(' ')}'\n\n${usage()}`);
    return EXIT.usage;
  }
  const rest = argv.slice(command.name.split(' ').length);
  try {
    const parsed = parseCommandArgs(command, rest);
    if (parsed.values.help) {
      io.stdout.write(commandHelp(command));
      return EXIT.ok;
    }
    const code = await command.run({ io, env: readEnv(), values: parsed.values, positionals: parsed.positionals, signal });
    return code ?? EXIT.ok;
  } catch (err) {
    return report(io, err);
  }
}

const VERSION = '0.1.0';

function find(argv: readonly string[]): Command | undefined {
  const two = argv.slice(0, 2).join(' ');
  return COMMANDS.find((c) => c.name === two) ?? COMMANDS.find((c) => c.name === argv[0]);
}

/** Prints an error in one line and returns its exit code. Unexpected errors print a short message, not a stack. */
function report(io: Io, err: unknown): number {
  if (isTokendError(err)) {
    // The local operator may see the detail; it never holds a secret.
    const detail = err.detail && !err.message.includes(err.detail) ? ` (${err.detail})` : '';
    io.stderr.write(`tokend: ${err.message}${detail}\n`);
    return exitCodeFor(err.code);
  }
  const message = err instanceof Error ? err.message : String(err);
  io.stderr.write(`tokend: unexpected error: ${message}\n`);
  if (process.env.TOKEND_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
  return EXIT.error;
}

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `tokend — sealed tokens, served to containers over mutual TLS on localhost

Usage: tokend <command> [options]

Commands:
${lines.join('\n')}

Options for every command:
  -c, --config PATH  config file (default: $TOKEND_CONFIG, else DIR/tokend.json with --dir, else /etc/tokend/tokend.json)
  -d, --dir DIR      a tokend directory (as made by 'tokend init')
      --json         machine-readable output where offered
  -h, --help         help for a command

Secrets are read from stdin or a file, never from the command line.

${EXIT_CODES_HELP}
`;
}

function commandHelp(c: Command): string {
  return `Usage: tokend ${c.name} ${c.usage}\n\n${c.summary}\n${c.help ? `\n${c.help}\n` : ''}\n${EXIT_CODES_HELP}\n`;
}

