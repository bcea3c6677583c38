// Property-based fuzzing of the sealed-file parser and decrypter, shared by the
// CI-sized suite (test/fuzz-sealed.test.ts) and `npm run fuzz -- --runs N`
// (scripts/fuzz.ts). Real sealed files are mutated, truncated, extended,
// re-encoded (JSON layout, unicode escapes, base64 variants), spliced with
// each other and type-confused; every result must be refused with a clean
// TokendError of an expected code unless it is byte-identical to a real file.
// The envelope module is passed in so the script can use the built dist/.
// Plain erasable TypeScript: Node runs it with type stripping.

import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type * as EnvelopeModule from '../../src/envelope.js';
import type { TokendError as TokendErrorClass } from '../../src/errors.js';
import type { KeyProvider } from '../../src/kms/provider.js';

export interface FuzzDeps {
  readonly envelope: Pick<typeof EnvelopeModule, 'seal' | 'serializeSealed' | 'parseSealed' | 'openSealed' | 'decryptSealed'>;
  readonly TokendError: typeof TokendErrorClass;
  /** Opens the corpus. */
  readonly provider: KeyProvider;
  /** Another keyfile: files sealed under it must never open under `provider`. */
  readonly foreign: KeyProvider;
}

/** One real sealed file and what it holds. */
export interface Sample {
  readonly name: string;
  readonly bytes: Buffer;
  readonly plaintext: Buffer;
  readonly foreign: boolean;
}

export interface Corpus {
  readonly samples: readonly Sample[];
}

/** A fuzz input: bytes (or a string) to open as token `expectedName`. */
export interface Case {
  readonly label: string;
  readonly input: Buffer | string;
  readonly expectedName: string;
}

/** What a run saw, for the report. */
export interface FuzzStats {
  cases: number;
  accepted: number;
  refusedByCode: Record<string, number>;
  byLabel: Record<string, number>;
}

const FIELDS = ['format', 'name', 'version', 'created', 'provider', 'keyId', 'wrappedKey', 'nonce', 'commitment', 'ciphertext'] as const;
type Field = (typeof FIELDS)[number];
const BINARY: readonly Field[] = ['wrappedKey', 'nonce', 'commitment', 'ciphertext'];
/** Codes openSealed may fail with for a bad file; anything else (or any other error type) is a bug. */
export const EXPECTED_OPEN_CODES: readonly string[] = ['ERR_DECRYPT_FAILED', 'ERR_PROVIDER_MISMATCH'];
/** An error message that echoes attacker-sized input is a bug too (logs, terminals). */
export const MAX_MESSAGE_CHARS = 512;

/** Seals a small corpus: several names, versions and sizes, and one file under a foreign keyfile. */
export async function buildCorpus(deps: FuzzDeps): Promise<Corpus> {
  const { seal, serializeSealed } = deps.envelope;
  const specs: readonly [string, number, Buffer, KeyProvider][] = [
    ['db', 1, Buffer.from('hunter2-fuzz-secret'), deps.provider],
    ['db', 2, Buffer.from('hunter3-fuzz-secret'), deps.provider],
    ['api-key', 7, Buffer.concat([Buffer.from('k-'), randomBytes(40)]), deps.provider],
    ['x', 2147483647, Buffer.alloc(0), deps.provider],
    ['a.b_c-d', 1, Buffer.from('ünïcødé fuzz secret ✓', 'utf8'), deps.provider],
    ['big', 1, randomBytes(3000), deps.provider],
    ['db', 1, Buffer.from('foreign-fuzz-secret'), deps.foreign],
  ];
  const samples: Sample[] = [];
  for (const [name, version, plaintext, provider] of specs) {
    const bytes = serializeSealed(await seal({ name, version, plaintext, provider }));
    samples.push({ name, bytes, plaintext, foreign: provider === deps.foreign });
  }
  return { samples };
}

// ---------------------------------------------------------------------------
// Rendering: the canonical layout, with any value's text replaceable, so that
// re-encodings and type confusions change exactly one thing.

type Doc = Record<Field, unknown>;

function docOf(sample: Sample): Doc {
  return JSON.parse(sample.bytes.toString('utf8')) as Doc;
}

interface Layout {
  readonly keys?: readonly string[];
  /** Raw JSON text per key (default: JSON.stringify of the value). */
  readonly raw?: Readonly<Partial<Record<string, string>>>;
  readonly indent?: string;
  readonly newline?: string;
  readonly colon?: string;
  readonly ending?: string;
}

function render(doc: Readonly<Record<string, unknown>>, layout: Layout = {}): string {
  const nl = layout.newline ?? '\n';
  const indent = layout.indent ?? '  ';
  const colon = layout.colon ?? ': ';
  const keys = layout.keys ?? Object.keys(doc);
  const lines = keys.map((k) => `${indent}${JSON.stringify(k)}${colon}${layout.raw?.[k] ?? JSON.stringify(doc[k])}`);
  return `{${nl}${lines.join(`,${nl}`)}${nl}}${layout.ending ?? '\n'}`;
}

// ---------------------------------------------------------------------------
// Arbitraries.

const pick = <T>(items: readonly T[]) => fc.nat({ max: items.length - 1 }).map((i) => items[i] as T);

function baseArb(corpus: Corpus): fc.Arbitrary<Sample> {
  return pick(corpus.samples);
}

/** Bytes-level damage: flips, overwrites, insertions, deletions, duplications. */
function byteMutations(corpus: Corpus): fc.Arbitrary<Case> {
  const edit = fc.record({
    at: fc.nat(),
    op: fc.constantFrom('flip', 'set', 'insert', 'delete', 'duplicate'),
    value: fc.integer({ min: 0, max: 255 }),
    bit: fc.integer({ min: 0, max: 7 }),
    len: fc.integer({ min: 1, max: 24 }),
  });
  return fc.tuple(baseArb(corpus), fc.array(edit, { minLength: 1, maxLength: 6 })).map(([base, edits]) => {
    let bytes = Buffer.from(base.bytes);
    for (const e of edits) {
      const at = bytes.length === 0 ? 0 : e.at % bytes.length;
      if (e.op === 'flip' && bytes.length > 0) bytes[at] = (bytes[at] as number) ^ (1 << e.bit);
      else if (e.op === 'set' && bytes.length > 0) bytes[at] = e.value;
      else if (e.op === 'insert') bytes = Buffer.concat([bytes.subarray(0, at), Buffer.alloc(e.len, e.value), bytes.subarray(at)]);
      else if (e.op === 'delete') bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + e.len)]);
      else if (e.op === 'duplicate') bytes = Buffer.concat([bytes.subarray(0, at + e.len), bytes.subarray(at)]);
    }
    return { label: 'bytes', input: bytes, expectedName: base.name };
  });
}

/** Cut anywhere, or grow at either end. */
function truncatedOrExtended(corpus: Corpus): fc.Arbitrary<Case> {
  const tails = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((u) => Buffer.from(u)),
    fc.constantFrom('\n', ' ', '\0', '\r\n', '\t', '{}', ',"x":1}', '\uFEFF', '\n\n', 'null').map((s) => Buffer.from(s, 'utf8')),
  );
  return fc.oneof(
    fc.tuple(baseArb(corpus), fc.nat()).map(([base, n]) => ({ label: 'truncated', input: base.bytes.subarray(0, n % base.bytes.length), expectedName: base.name })),
    fc.tuple(baseArb(corpus), tails).map(([base, tail]) => ({ label: 'extended', input: Buffer.concat([base.bytes, tail]), expectedName: base.name })),
    fc.tuple(baseArb(corpus), tails).map(([base, head]) => ({ label: 'prefixed', input: Buffer.concat([head, base.bytes]), expectedName: base.name })),
    fc.tuple(baseArb(corpus), baseArb(corpus)).map(([a, b]) => ({ label: 'concatenated', input: Buffer.concat([a.bytes, b.bytes]), expectedName: a.name })),
  );
}

/** The same document written differently: layout, escapes, key order, duplicates, number forms, encodings. */
function reencoded(corpus: Corpus): fc.Arbitrary<Case> {
  const layout = fc.record({
    indent: fc.constantFrom('', ' ', '  ', '    ', '\t', '   '),
    newline: fc.constantFrom('', '\n', '\r\n', '\r', '\n\n'),
    colon: fc.constantFrom(':', ': ', ' : ', ':  ', ':\t'),
    ending: fc.constantFrom('', '\n', '\n\n', '\r\n', ' \n', '\n '),
  });
  const escaped = fc.tuple(baseArb(corpus), pick(FIELDS), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), fc.boolean()).map(([base, field, spots, upper]) => {
    const doc = docOf(base);
    const value = doc[field];
    const text = typeof value === 'string' ? value : String(value);
    const chars = [...text];
    for (const s of spots) {
      if (chars.length === 0) break;
      const i = s % chars.length;
      const c = chars[i] as string;
      const hex = (c.codePointAt(0) as number).toString(16).padStart(4, '0');
      chars[i] = c === '/' && s % 2 === 0 ? '\\/' : `\\u${upper ? hex.toUpperCase() : hex}`;
    }
    const raw = typeof value === 'string' ? `"${chars.join('')}"` : JSON.stringify(value);
    return { label: 'unicode-escape', input: render(doc, { raw: { [field]: raw } }), expectedName: base.name };
  });
  const base64Variant = fc.tuple(baseArb(corpus), pick(BINARY), fc.constantFrom('url', 'unpadded', 'extra-pad', 'wrapped', 'space', 'lowercase', 'trailing-bits', 'data-uri', 'padded-middle'), fc.nat()).map(([base, field, variant, n]) => {
    const doc = docOf(base);
    const b64 = String(doc[field]);
    let out = b64;
    if (variant === 'url') out = b64.replace(/\+/g, '-').replace(/\//g, '_');
    else if (variant === 'unpadded') out = b64.replace(/=+$/, '');
    else if (variant === 'extra-pad') out = `${b64}=`;
    else if (variant === 'wrapped') out = b64.replace(/(.{76})/g, '$1\n');
    else if (variant === 'space') out = `${b64.slice(0, n % (b64.length + 1))} ${b64.slice(n % (b64.length + 1))}`;
    else if (variant === 'lowercase') out = b64.toLowerCase();
    else if (variant === 'trailing-bits') out = tweakTrailingBits(b64, n);
    else if (variant === 'data-uri') out = `data:application/octet-stream;base64,${b64}`;
    else if (variant === 'padded-middle') out = `${b64.slice(0, 4)}=${b64.slice(4)}`;
    return { label: `base64-${variant}`, input: render(doc, { raw: { [field]: JSON.stringify(out) } }), expectedName: base.name };
  });
  const versionForm = fc.tuple(baseArb(corpus), fc.constantFrom('1.0', '1e0', '10e-1', '"1"', '-0', '01', ' 1', '0x1', '+1', '1.', '.1e1', '1E0', '0.1e1', '2147483647.0')).map(([base, form]) => {
    const doc = docOf(base);
    const v = String(doc.version);
    const raw = form.replace(/1/g, v === '1' ? '1' : v);
    return { label: 'number-form', input: render(doc, { raw: { version: raw } }), expectedName: base.name };
  });
  return fc.oneof(
    fc.tuple(baseArb(corpus), layout).map(([base, l]) => ({ label: 'layout', input: render(docOf(base), l), expectedName: base.name })),
    escaped,
    base64Variant,
    versionForm,
    fc.tuple(baseArb(corpus), fc.shuffledSubarray([...FIELDS], { minLength: FIELDS.length, maxLength: FIELDS.length })).map(([base, keys]) => ({
      label: 'key-order',
      input: render(docOf(base), { keys }),
      expectedName: base.name,
    })),
    fc.tuple(baseArb(corpus), pick(FIELDS), fc.nat({ max: FIELDS.length }), baseArb(corpus)).map(([base, field, at, other]) => {
      // A duplicate key: JSON.parse keeps the last value, a human reads the first.
      const text = render(docOf(base));
      const lines = text.split('\n');
      lines.splice(1 + at, 0, `  ${JSON.stringify(field)}: ${JSON.stringify(docOf(other)[field])},`);
      return { label: 'duplicate-key', input: lines.join('\n'), expectedName: base.name };
    }),
    fc.tuple(baseArb(corpus), pick(FIELDS)).map(([base, field]) => ({
      label: 'missing-key',
      input: render(docOf(base), { keys: FIELDS.filter((f) => f !== field) }),
      expectedName: base.name,
    })),
    fc.tuple(baseArb(corpus), fc.constantFrom('extra', '__proto__', 'constructor', 'toString', ''), fc.nat({ max: FIELDS.length })).map(([base, key, at]) => {
      const doc = docOf(base) as Record<string, unknown>;
      const keys: string[] = [...FIELDS];
      keys.splice(at, 0, key);
      return { label: 'extra-key', input: render({ ...doc, [key]: 1 }, { keys }), expectedName: base.name };
    }),
    fc.tuple(baseArb(corpus), fc.constantFrom('utf16le', 'latin1', 'bom', 'ucs2-bom', 'string')).map(([base, enc]) => {
      const text = base.bytes.toString('utf8');
      const input =
        enc === 'utf16le' ? Buffer.from(text, 'utf16le')
        : enc === 'latin1' ? Buffer.from(text.replace(/"format"/, '"f\u00f6rmat"'), 'latin1')
        : enc === 'bom' ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), base.bytes])
        : enc === 'ucs2-bom' ? Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])
        : text; // the exact text as a string: must be accepted like the bytes
      return { label: `encoding-${enc}`, input, expectedName: base.name };
    }),
  );
}

/** Change one base64 character so the last group's unused bits differ: decodes to the same bytes, but is not canonical. */
function tweakTrailingBits(b64: string, n: number): string {
  const pad = b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
  if (pad === 0) return `${b64.slice(0, -1)}${b64.at(-1) === 'A' ? 'B' : 'A'}`; // no spare bits: an ordinary change
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const i = b64.length - pad - 1;
  const value = alphabet.indexOf(b64[i] as string);
  const spare = pad === 2 ? 0b1111 : 0b11;
  const tweaked = (value & ~spare) | ((value + 1 + (n % spare)) & spare);
  return `${b64.slice(0, i)}${alphabet[tweaked === value ? value ^ 1 : tweaked]}${b64.slice(i + 1)}`;
}

/** A field's value replaced by another JSON type, a huge value, or a deeply nested one. */
function typeConfused(corpus: Corpus): fc.Arbitrary<Case> {
  type Replace = (original: unknown) => string;
  const replacement: fc.Arbitrary<Replace> = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('null', 'true', 'false', '{}', '[]', '""', '0', '-1', '1.5', '-0', '1e308', '-1e308', '1e309', '9007199254740993', '2147483648', '4294967297', '"NaN"', '"Infinity"').map((t): Replace => () => t) },
    { weight: 4, arbitrary: fc.constant<Replace>((o) => JSON.stringify(String(o))) },
    { weight: 2, arbitrary: fc.constant<Replace>((o) => (/^-?\d+(\.\d+)?$/.test(String(o)) ? String(o) : '12345')) },
    { weight: 3, arbitrary: fc.constant<Replace>((o) => `[${JSON.stringify(o)}]`) },
    { weight: 3, arbitrary: fc.constant<Replace>((o) => `{"value": ${JSON.stringify(o)}}`) },
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v): Replace => () => JSON.stringify(v) ?? 'null') },
    { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((v): Replace => () => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.integer({ min: 10, max: 30_000 }).map((d): Replace => () => `${'['.repeat(d)}${']'.repeat(d)}`) },
    { weight: 1, arbitrary: fc.integer({ min: 10, max: 30_000 }).map((d): Replace => () => `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`) },
    { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 1_600_000 }).map((n): Replace => () => JSON.stringify('A'.repeat(n))) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 2_000 }).map((n): Replace => (o) => `[${Array(n).fill(JSON.stringify(o)).join(',')}]`) },
  );
  return fc.tuple(baseArb(corpus), pick(FIELDS), replacement).map(([base, field, replace]) => {
    const doc = docOf(base);
    return { label: `type-${field}`, input: render(doc, { raw: { [field]: replace(doc[field]) } }), expectedName: base.name };
  });
}

/**
 * Canonical files that lie: fields spliced in from other real files, a renamed
 * token, another version, time, provider or key. They parse; only the crypto
 * (key commitment, AAD, the provider's context binding) can refuse them.
 */
function spliced(corpus: Corpus): fc.Arbitrary<Case> {
  const groups: readonly (readonly Field[])[] = [
    ['wrappedKey'], ['keyId'], ['wrappedKey', 'keyId'], ['nonce'], ['commitment'], ['nonce', 'commitment'],
    ['ciphertext'], ['nonce', 'commitment', 'ciphertext'], ['wrappedKey', 'keyId', 'nonce', 'commitment'],
    ['name'], ['version'], ['created'], ['name', 'version'], ['wrappedKey', 'keyId', 'nonce', 'commitment', 'ciphertext'],
  ];
  const splice = fc.tuple(baseArb(corpus), baseArb(corpus), pick(groups), fc.boolean()).map(([base, donor, group, claimDonorName]) => {
    const doc = { ...docOf(base) };
    const d = docOf(donor);
    for (const f of group) doc[f] = d[f];
    return { label: `splice-${group.join('+')}`, input: render(doc), expectedName: claimDonorName ? String(doc.name) : base.name };
  });
  const edit = fc
    .tuple(
      baseArb(corpus),
      fc.constantFrom('rename', 'version-up', 'version-down', 'version-any', 'created', 'provider', 'keyId-version', 'keyId-other'),
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.date({ min: new Date('2000-01-01T00:00:00.000Z'), max: new Date('2100-01-01T00:00:00.000Z'), noInvalidDate: true }),
      fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/).filter((s) => !s.includes('..')),
    )
    .map(([base, what, n, when, newName]) => {
      const doc = { ...docOf(base) };
      let expectedName = base.name;
      if (what === 'rename') {
        doc.name = newName;
        expectedName = newName;
      } else if (what === 'version-up') doc.version = Math.min(2 ** 31 - 1, Number(doc.version) + 1);
      else if (what === 'version-down') doc.version = Math.max(1, Number(doc.version) - 1);
      else if (what === 'version-any') doc.version = n;
      else if (what === 'created') doc.created = when.toISOString();
      else if (what === 'provider') doc.provider = 'aws';
      else if (what === 'keyId-version') doc.keyId = String(doc.keyId).replace(/\/v\d+$/, `/v${(n % 5) + 1}`);
      else doc.keyId = `arn:aws:kms:eu-west-1:111122223333:key/${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}`;
      return { label: `edit-${what}`, input: render(doc), expectedName };
    });
  const foreign = baseArb(corpus).map((base) => ({ label: 'as-is', input: base.bytes, expectedName: base.name }));
  return fc.oneof({ weight: 5, arbitrary: splice }, { weight: 4, arbitrary: edit }, { weight: 1, arbitrary: foreign });
}

/** Documents that were never sealed files: random JSON, random bytes, random text. */
function noise(): fc.Arbitrary<Case> {
  return fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => ({ label: 'random-json', input: JSON.stringify(v) ?? 'null', expectedName: 'db' })),
    fc.uint8Array({ maxLength: 512 }).map((u) => ({ label: 'random-bytes', input: Buffer.from(u), expectedName: 'db' })),
    fc.string({ unit: 'grapheme', maxLength: 200 }).map((s) => ({ label: 'random-text', input: s, expectedName: 'db' })),
    fc.dictionary(pick(FIELDS), fc.jsonValue({ maxDepth: 2 })).map((d) => ({ label: 'random-fields', input: `${JSON.stringify(d, null, 2)}\n`, expectedName: 'db' })),
  );
}

/** Every kind of hostile sealed file, weighted towards the ones that get furthest into the code. */
export function caseArb(corpus: Corpus): fc.Arbitrary<Case> {
  return fc.oneof(
    { weight: 4, arbitrary: byteMutations(corpus) },
    { weight: 2, arbitrary: truncatedOrExtended(corpus) },
    { weight: 4, arbitrary: reencoded(corpus) },
    { weight: 3, arbitrary: typeConfused(corpus) },
    { weight: 4, arbitrary: spliced(corpus) },
    { weight: 1, arbitrary: noise() },
  ).map(printable);
}

/** A counterexample fast-check can print without flooding the terminal (inputs reach 1.6 MB). */
function printable(c: Case): Case {
  const text = typeof c.input === 'string' ? c.input : c.input.toString('latin1');
  const shown = text.length > 300 ? `${JSON.stringify(text.slice(0, 300))}… (${text.length} chars)` : JSON.stringify(text);
  return Object.assign(c, { [fc.toStringMethod]: () => `{label: ${c.label}, expectedName: ${c.expectedName}, ${typeof c.input === 'string' ? 'string' : 'bytes'}: ${shown}}` });
}

// ---------------------------------------------------------------------------
// The property.

/**
 * Opens one case and checks the outcome. Returns normally when tokend behaved;
 * throws an Error describing the violation otherwise (a false accept, a wrong
 * plaintext, an untyped error, an unexpected code, an oversized or leaking message).
 */
export async function checkCase(deps: FuzzDeps, corpus: Corpus, c: Case, stats?: FuzzStats): Promise<void> {
  const { openSealed, parseSealed, serializeSealed } = deps.envelope;
  const bytes = typeof c.input === 'string' ? Buffer.from(c.input, 'utf8') : c.input;
  if (stats) {
    stats.cases += 1;
    stats.byLabel[c.label] = (stats.byLabel[c.label] ?? 0) + 1;
  }

  // The parser alone: canonical bytes or ERR_SEALED_CORRUPT.
  let parsed: ReturnType<typeof parseSealed> | undefined;
  try {
    parsed = parseSealed(c.input);
  } catch (err) {
    assertTyped(deps, err, ['ERR_SEALED_CORRUPT'], c, corpus, 'parseSealed');
  }
  if (parsed && !serializeSealed(parsed).equals(bytes)) throw new Error(`[${c.label}] parseSealed accepted a non-canonical file`);

  // Parser, provider and decrypter together.
  let opened: { plaintext: Buffer } | undefined;
  try {
    opened = await openSealed(c.input, c.expectedName, deps.provider);
  } catch (err) {
    assertTyped(deps, err, EXPECTED_OPEN_CODES, c, corpus, 'openSealed');
    if (stats) {
      const code = (err as { code: string }).code;
      stats.refusedByCode[code] = (stats.refusedByCode[code] ?? 0) + 1;
    }
    return;
  }
  const original = corpus.samples.find((s) => !s.foreign && s.name === c.expectedName && s.bytes.equals(bytes));
  try {
    if (!original) throw new Error(`[${c.label}] FALSE ACCEPT: a file that is not byte-identical to a sealed file opened as '${c.expectedName}'`);
    if (!opened.plaintext.equals(original.plaintext)) throw new Error(`[${c.label}] opened to the wrong plaintext`);
  } finally {
    opened.plaintext.fill(0);
  }
  if (stats) stats.accepted += 1;
}

function assertTyped(deps: FuzzDeps, err: unknown, codes: readonly string[], c: Case, corpus: Corpus, where: string): void {
  if (!(err instanceof deps.TokendError)) {
    const kind = err instanceof Error ? `${err.constructor.name}: ${err.message.slice(0, 200)}` : String(err);
    throw new Error(`[${c.label}] ${where} threw an untyped error (${kind})`);
  }
  if (!codes.includes(err.code)) throw new Error(`[${c.label}] ${where} failed with unexpected code ${err.code}: ${err.message.slice(0, 200)}`);
  const text = `${err.message}\n${err.detail ?? ''}`;
  if (text.length > MAX_MESSAGE_CHARS) throw new Error(`[${c.label}] ${where} error message is ${text.length} characters (limit ${MAX_MESSAGE_CHARS}): it echoes the input`);
  for (const s of corpus.samples) {
    if (s.plaintext.length >= 6 && text.includes(s.plaintext.toString('utf8'))) throw new Error(`[${c.label}] ${where} error message contains a token value`);
  }
}

/** Runs `runs` cases (fast-check; shrinks and reports a seed on failure). Returns what it saw. */
export async function fuzzSealed(deps: FuzzDeps, options: { runs: number; seed?: number; corpus?: Corpus }): Promise<FuzzStats & { seed: number; ms: number }> {
  const corpus = options.corpus ?? (await buildCorpus(deps));
  const stats: FuzzStats = { cases: 0, accepted: 0, refusedByCode: {}, byLabel: {} };
  const seed = options.seed ?? (Date.now() ^ (Math.random() * 0x100000000)) >>> 0;
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(caseArb(corpus), (c) => checkCase(deps, corpus, c, stats)),
    { numRuns: options.runs, seed, endOnFailure: false },
  );
  // A wrong data key (any length) never decrypts: the commitment or the tag refuses it.
  const parsed = corpus.samples.filter((s) => !s.foreign).map((s) => deps.envelope.parseSealed(s.bytes, s.name));
  fc.assert(
    fc.property(pick(parsed), fc.uint8Array({ maxLength: 64 }), (token, key) => {
      try {
        deps.envelope.decryptSealed(token, Buffer.from(key)).fill(0);
      } catch (err) {
        if (err instanceof deps.TokendError && err.code === 'ERR_DECRYPT_FAILED') return;
        throw err;
      }
      throw new Error('decryptSealed accepted a random data key');
    }),
    { numRuns: Math.max(100, Math.floor(options.runs / 50)), seed },
  );
  return { ...stats, seed, ms: performance.now() - started };
}
