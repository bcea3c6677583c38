// The process entry point: the only place that exits.

import { main } from './main.js';

const controller = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => controller.abort(signal));
}
const code = await main(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }, controller.signal);
process.exitCode = code;
