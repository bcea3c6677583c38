import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  FORMAT,
  MAX_TOKEN_BYTES,
  decryptSealed,
  decryptWithTokenKey,
  deriveTokenKey,
  openSealed,
  parseSealed,
  seal,
  serializeSealed,
} from '../src/envelope.js';
import { TokendError } from '../src/errors.js';
import type { KeyProvider } from '../src/kms/provider.js';
import { freshKeyfile } from './support/keyfile.js';

let provider: KeyProvider;
let otherProvider: KeyProvider;

beforeAll(async () => {
  provider = (await freshKeyfile()).provider;
  otherProvider = (await freshKeyfile()).provider;
});

async function sealed(name: string, plaintext: Buffer, version = 1): Promise<Buffer> {
  return serializeSealed(await seal({ name, version, plaintext, provider }));
}

async function expectDecryptFailure(promise: Promise<unknown>): Promise<TokendError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokendError);
  expect((err as TokendError).code).toBe('ERR_DECRYPT_FAILED');
  return err as TokendError;
}

describe('sealed tokens: round trip', () => {
  it.each([
    ['empty', Buffer.alloc(0)],
    ['1-byte', Buffer.from('x')],
    ['64 KiB', randomBytes(64 * 1024)],
    ['binary, not UTF-8', Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x0a, 0x0d])],
  ])('returns the exact bytes of a %s token', async (_label, plaintext) => {
    const file = await sealed('db', plaintext);
    const { token, plaintext: back } = await openSealed(file, 'db', provider);
    expect(back.equals(plaintext)).toBe(true);
    expect(token.version).toBe(1);
  });

  it('writes a self-describing, canonical text file with every documented field', async () => {
    const file = await sealed('github-token', Buffer.from('t0ken'), 7);
    const doc = JSON.parse(file.toString('utf8'));
    expect(Object.keys(doc)).toEqual([
      'format', 'name', 'version', 'created', 'provider', 'keyId', 'wrappedKey', 'nonce', 'commitment', 'ciphertext',
    ]);
    expect(doc).toMatchObject({ format: FORMAT, name: 'github-token', version: 7, provider: 'keyfile' });
    expect(file.toString('utf8').endsWith('}\n')).toBe(true);
    expect(serializeSealed(parseSealed(file, 'github-token')).equals(file)).toBe(true);
  });

  it('uses a fresh data key and nonce for every seal of the same token', async () => {
    const a = parseSealed(await sealed('db', Buffer.from('same')), 'db');
    const b = parseSealed(await sealed('db', Buffer.from('same')), 'db');
    expect(a.wrappedKey.equals(b.wrappedKey)).toBe(false);
    expect(a.nonce.equals(b.nonce)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
  });

  it('refuses a token over the size limit', async () => {
    await expect(seal({ name: 'big', version: 1, plaintext: Buffer.alloc(MAX_TOKEN_BYTES + 1), provider })).rejects.toMatchObject({
      code: 'ERR_TOO_LARGE',
    });
  });
});

describe('sealed tokens: tampering', () => {
  it('fails on every single-bit flip anywhere in the file (exhaustive)', async () => {
    const file = await sealed('db', Buffer.from('hunter2'));
    let accepted = 0;
    for (let i = 0; i < file.length; i += 1) {
      for (let bit = 0; bit < 8; bit += 1) {
        const copy = Buffer.from(file);
        copy[i] = (copy[i] as number) ^ (1 << bit);
        try {
          await openSealed(copy, 'db', provider);
          accepted += 1;
        } catch (err) {
          expect((err as TokendError).code).toBe('ERR_DECRYPT_FAILED');
        }
      }
    }
    expect(accepted).toBe(0);
  });

  it('fails on every truncation and on appended bytes', async () => {
    const file = await sealed('db', Buffer.from('hunter2'));
    for (let len = 0; len < file.length; len += 1) {
      await expectDecryptFailure(openSealed(file.subarray(0, len), 'db', provider));
    }
    await expectDecryptFailure(openSealed(Buffer.concat([file, Buffer.from('\n')]), 'db', provider));
  });

  it('fails when a file is opened as another token (copied to another name)', async () => {
    const file = await sealed('db', Buffer.from('hunter2'));
    const err = await expectDecryptFailure(openSealed(file, 'api-key', provider));
    expect(err.message).toBe("sealed token 'api-key' could not be decrypted");
  });

  it('fails when the name inside the file is rewritten to match the new name', async () => {
    const file = await sealed('db', Buffer.from('hunter2'));
    const renamed = Buffer.from(file.toString('utf8').replace('"name": "db"', '"name": "dc"'));
    await expectDecryptFailure(openSealed(renamed, 'dc', provider));
  });

  it('fails when the version is rewritten', async () => {
    const file = await sealed('db', Buffer.from('hunter2'), 1);
    const bumped = Buffer.from(file.toString('utf8').replace('"version": 1,', '"version": 2,'));
    await expectDecryptFailure(openSealed(bumped, 'db', provider));
  });

  it('fails for a file sealed under another keyfile', async () => {
    const foreign = serializeSealed(await seal({ name: 'db', version: 1, plaintext: Buffer.from('x'), provider: otherProvider }));
    const err = await expectDecryptFailure(openSealed(foreign, 'db', provider));
    expect(err.detail).toMatch(/not in this keyfile/);
  });

  it('fails when the key-wrapping fields are swapped in from another seal of the same name (key commitment)', async () => {
    const a = parseSealed(await sealed('db', Buffer.from('first')), 'db');
    const b = parseSealed(await sealed('db', Buffer.from('second')), 'db');
    const spliced = serializeSealed({ ...a, wrappedKey: b.wrappedKey, keyId: b.keyId });
    const err = await expectDecryptFailure(openSealed(spliced, 'db', provider));
    expect(err.detail).toMatch(/commitment/);
  });

  it('checks the key commitment before decrypting under a different data key', () => {
    const token = { ...parseSealedSync() };
    expect(() => decryptSealed(token, randomBytes(32))).toThrow(expect.objectContaining({ code: 'ERR_DECRYPT_FAILED', detail: expect.stringMatching(/commitment/) }));
  });

  it('opens a token in two steps (derive its key once, then decrypt) exactly as in one', async () => {
    const a = parseSealed(await sealed('db', Buffer.from('first')), 'db');
    const b = parseSealed(await sealed('db', Buffer.from('second')), 'db');
    const dataKey = await provider.unwrap(a.wrappedKey, a.keyId, { 'tokend:name': 'db', 'tokend:version': '1' });
    const key = deriveTokenKey(a, dataKey);
    expect(decryptWithTokenKey(a, key).toString()).toBe('first');
    expect(decryptWithTokenKey(a, key).equals(decryptSealed(a, dataKey))).toBe(true);
    expect(() => decryptWithTokenKey(b, key)).toThrow(expect.objectContaining({ code: 'ERR_DECRYPT_FAILED', detail: expect.stringMatching(/tag/) }));
    expect(() => deriveTokenKey(b, dataKey)).toThrow(expect.objectContaining({ code: 'ERR_DECRYPT_FAILED', detail: expect.stringMatching(/commitment/) }));
    expect(() => decryptWithTokenKey(a, key.subarray(1))).toThrow(expect.objectContaining({ code: 'ERR_DECRYPT_FAILED' }));
  });

  it('refuses re-encoded files that mean the same thing (not canonical)', async () => {
    const file = await sealed('db', Buffer.from('hunter2'));
    const compact = Buffer.from(`${JSON.stringify(JSON.parse(file.toString('utf8')))}\n`);
    const escaped = Buffer.from(file.toString('utf8').replace('"db"', '"\\u0064b"'));
    const crlf = Buffer.from(file.toString('utf8').replace(/\n/g, '\r\n'));
    for (const variant of [compact, escaped, crlf]) {
      const err = await expectDecryptFailure(openSealed(variant, 'db', provider));
      expect(err.detail).toMatch(/canonical|fields/);
    }
  });

  it('reports structural problems as ERR_SEALED_CORRUPT naming the token when parsing headers', () => {
    expect(() => parseSealed('{"format":"x"}', 'db')).toThrow("sealed token 'db' is corrupt");
    try {
      parseSealed('not json', 'db');
    } catch (err) {
      expect((err as TokendError).code).toBe('ERR_SEALED_CORRUPT');
    }
  });

  it('never includes the plaintext in an error', async () => {
    const secret = 'correct horse battery staple';
    const file = await sealed('db', Buffer.from(secret));
    const copy = Buffer.from(file);
    copy[copy.length - 10] = (copy[copy.length - 10] as number) ^ 1;
    const err = await expectDecryptFailure(openSealed(copy, 'db', provider));
    expect(`${err.message} ${err.detail} ${String(err.cause)}`).not.toContain(secret);
  });
});

describe('sealed tokens: hostile field values (found by test/fuzz-sealed.test.ts)', () => {
  const canonicalWith = async (field: string, raw: string) => {
    const text = (await sealed('db', Buffer.from('hunter2'))).toString('utf8');
    return text.replace(new RegExp(`"${field}": ("[^"]*"|\\d+)`), `"${field}": ${raw}`);
  };

  it('refuses a deeply nested format value with ERR_SEALED_CORRUPT, not a RangeError', async () => {
    const text = await canonicalWith('format', `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    expect(() => parseSealed(text, 'db')).toThrow(expect.objectContaining({ code: 'ERR_SEALED_CORRUPT', message: "sealed token 'db' is corrupt: unsupported format (a list, not a string)" }));
  });

  it('does not echo a huge format value into the error message', async () => {
    const text = await canonicalWith('format', JSON.stringify('A'.repeat(1_000_000)));
    expect(() => parseSealed(text, 'db')).toThrow("sealed token 'db' is corrupt: unsupported format (a string of 1000000 characters)");
  });

  it.each([
    ['an escape sequence', '"kf-0123456789abcdef/v1\\u001b[2J"'],
    ['a newline', '"kf-0123456789abcdef/v1\\nforged line"'],
    ['a space', '"kf-0123456789abcdef/v1 x"'],
    ['non-ASCII', '"kf-0123456789abcdef/v\\u0661"'],
  ])('refuses a keyId with %s (tokend list prints it to a terminal)', async (_what, raw) => {
    const text = await canonicalWith('keyId', raw);
    expect(() => parseSealed(text, 'db')).toThrow("sealed token 'db' is corrupt: the keyId field is not 1 to 2048 visible ASCII characters");
  });

  it('bounds the detail of a decrypt failure even for a 2048-character key id', async () => {
    const text = await canonicalWith('keyId', JSON.stringify(`kf-${'f'.repeat(2045)}`));
    const err = await expectDecryptFailure(openSealed(text, 'db', provider));
    expect((err.detail ?? '').length).toBeLessThanOrEqual(301);
  });
});

describe('sealed tokens: properties (fast-check)', () => {
  it('round-trips any byte string', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
        const plaintext = Buffer.from(bytes);
        const { plaintext: back } = await openSealed(await sealed('prop', plaintext), 'prop', provider);
        expect(back.equals(plaintext)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('rejects any mutation of a sealed file', async () => {
    const file = await sealed('prop', Buffer.from('s3cret-value'));
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: file.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (at, xor) => {
          const copy = Buffer.from(file);
          copy[at] = (copy[at] as number) ^ xor;
          await expectDecryptFailure(openSealed(copy, 'prop', provider));
        },
      ),
      { numRuns: 500 },
    );
  });
});

let sample: ReturnType<typeof parseSealed> | undefined;
beforeAll(async () => {
  sample = parseSealed(await sealed('db', Buffer.from('sample')), 'db');
});
function parseSealedSync() {
  if (!sample) throw new Error('sample not ready');
  return sample;
}
