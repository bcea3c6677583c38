// Hostile sealed files: property-based fuzzing of the parser and the decrypter
// (≥ 100,000 cases in CI; TOKEND_FUZZ_RUNS sets the count, `npm run fuzz` runs more).
// Never a false accept; every refusal a TokendError with an expected code.

import { beforeAll, describe, expect, it } from 'vitest';
import * as envelope from '../src/envelope.js';
import { TokendError } from '../src/errors.js';
import { buildCorpus, checkCase, fuzzSealed } from './support/sealed-fuzz.js';
import type { Corpus, FuzzDeps } from './support/sealed-fuzz.js';
import { freshKeyfile } from './support/keyfile.js';

const RUNS = Number(process.env.TOKEND_FUZZ_RUNS ?? 100_000);

let deps: FuzzDeps;
let corpus: Corpus;

beforeAll(async () => {
  deps = { envelope, TokendError, provider: (await freshKeyfile()).provider, foreign: (await freshKeyfile()).provider };
  corpus = await buildCorpus(deps);
});

describe('sealed files under fuzzing', () => {
  it(`refuses ${RUNS} mutated, truncated, extended, re-encoded, spliced and type-confused files with typed errors`, async () => {
    const result = await fuzzSealed(deps, { runs: RUNS, corpus, ...(process.env.TOKEND_FUZZ_SEED ? { seed: Number(process.env.TOKEND_FUZZ_SEED) } : {}) });
    expect(result.cases).toBe(RUNS);
    // Every generator family ran, and the real files (and the exact text as a string) were accepted.
    for (const family of ['bytes', 'truncated', 'extended', 'layout', 'unicode-escape', 'key-order', 'duplicate-key', 'edit-rename', 'random-json']) {
      expect(result.byLabel[family] ?? 0, family).toBeGreaterThan(0);
    }
    expect(result.refusedByCode.ERR_DECRYPT_FAILED ?? 0).toBeGreaterThan(RUNS / 2);
    process.stdout.write(`fuzz-sealed: ${result.cases} cases in ${(result.ms / 1000).toFixed(1)} s (${Math.round(result.cases / (result.ms / 1000))}/s), seed ${result.seed}, accepted ${result.accepted} (byte-identical originals), refused ${JSON.stringify(result.refusedByCode)}\n`);
  }, 600_000);

  it('opens every corpus file as itself (the property has something to refuse against)', async () => {
    for (const s of corpus.samples.filter((x) => !x.foreign)) {
      await checkCase(deps, corpus, { label: 'original', input: s.bytes, expectedName: s.name });
      await checkCase(deps, corpus, { label: 'original-string', input: s.bytes.toString('utf8'), expectedName: s.name });
    }
  });

  it('flags a false accept and an untyped error (the harness is not hollow)', async () => {
    const sample = corpus.samples[0] as { name: string; bytes: Buffer };
    const compact = `${JSON.stringify(JSON.parse(sample.bytes.toString('utf8')))}\n`;
    const lenient: FuzzDeps = {
      ...deps,
      envelope: { ...envelope, openSealed: (b, n, p) => envelope.openSealed(Buffer.from(`${JSON.stringify(JSON.parse(b.toString()), null, 2)}\n`), n, p) },
    };
    await expect(checkCase(lenient, corpus, { label: 'compact', input: compact, expectedName: sample.name })).rejects.toThrow(/FALSE ACCEPT/);
    const crashing: FuzzDeps = { ...deps, envelope: { ...envelope, openSealed: async () => { throw new RangeError('boom'); } } };
    await expect(checkCase(crashing, corpus, { label: 'any', input: compact, expectedName: sample.name })).rejects.toThrow(/untyped error \(RangeError: boom\)/);
  });
});
