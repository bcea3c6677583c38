// `npm run fuzz -- --runs N [--seed S]`: the sealed-file fuzzer of test/fuzz-sealed.test.ts at any
// size, against the built dist/. Prints cases per second and the refusal codes; exits 1 on the
// first violation (with fast-check's shrunk counterexample and the seed to replay it).
// Run by Node 24 directly (type stripping): node scripts/fuzz.ts --runs 1000000

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as envelope from '../dist/envelope.js';
import { TokendError } from '../dist/errors.js';
import { createKeyfile, loadKeyfileProvider } from '../dist/kms/keyfile.js';
import { fuzzSealed } from '../test/support/sealed-fuzz.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1000000' }, seed: { type: 'string' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs '${values.runs}' is not a positive integer`);

const dir = await mkdtemp(join(tmpdir(), 'tokend-fuzz-'));
try {
  await createKeyfile(join(dir, 'a.json'));
  await createKeyfile(join(dir, 'b.json'));
  const deps = { envelope, TokendError, provider: await loadKeyfileProvider(join(dir, 'a.json')), foreign: await loadKeyfileProvider(join(dir, 'b.json')) };
  process.stdout.write(`fuzz: ${runs} sealed-file cases…\n`);
  const result = await fuzzSealed(deps, { runs, ...(values.seed === undefined ? {} : { seed: Number(values.seed) }) });
  process.stdout.write(
    `${JSON.stringify({ cases: result.cases, seconds: Math.round(result.ms / 100) / 10, casesPerSecond: Math.round(result.cases / (result.ms / 1000)), seed: result.seed, accepted: result.accepted, refused: result.refusedByCode, families: result.byLabel }, null, 2)}\n`,
  );
  process.stdout.write('fuzz: 0 false accepts, 0 untyped errors\n');
} catch (err) {
  process.stderr.write(`fuzz: FAILED\n${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await rm(dir, { recursive: true, force: true });
}
