// The sealed-token format: envelope encryption with a fresh data key per token,
// AES-256-GCM, key commitment, and a canonical JSON text form (docs/format.md).

import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { TokendError, decryptFailed, isTokendError } from './errors.js';
import { assertValidName, isValidName } from './names.js';
import type { EncryptionContext, KeyProvider, ProviderName } from './kms/provider.js';

/** The format identifier written into every sealed file. */
export const FORMAT = 'tokend-sealed/1';
/** The largest token tokend seals: 1 MiB. */
export const MAX_TOKEN_BYTES = 1024 * 1024;
/** The largest sealed file tokend parses (base64 of the largest token plus header room). */
export const MAX_SEALED_BYTES = Math.ceil((MAX_TOKEN_BYTES + 16) / 3) * 4 + 16 * 1024;
/** The highest token version. */
export const MAX_VERSION = 2 ** 31 - 1;

const PROVIDERS: readonly ProviderName[] = ['keyfile', 'aws'];
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const MAX_KEY_ID = 2048;
const MAX_WRAPPED = 8192;
const HKDF_INFO = Buffer.from(`${FORMAT} data key`, 'utf8');
/** Key ids are ARNs, aliases, keyfile ids: visible ASCII. No spaces or control characters, which `tokend list` would print to a terminal. */
const KEY_ID = new RegExp(`^[\\x21-\\x7e]{1,${MAX_KEY_ID}}$`);
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const FIELDS = [
  'format',
  'name',
  'version',
  'created',
  'provider',
  'keyId',
  'wrappedKey',
  'nonce',
  'commitment',
  'ciphertext',
] as const;

/** A parsed sealed token. Holds ciphertext only; safe to keep in memory and log (minus nothing). */
export interface SealedToken {
  readonly format: typeof FORMAT;
  readonly name: string;
  readonly version: number;
  /** ISO 8601 UTC with milliseconds. */
  readonly created: string;
  readonly provider: ProviderName;
  readonly keyId: string;
  readonly wrappedKey: Buffer;
  readonly nonce: Buffer;
  readonly commitment: Buffer;
  /** AES-256-GCM ciphertext followed by the 16-byte tag. */
  readonly ciphertext: Buffer;
}

/** What the provider binds a token's data key to: its name and version. */
export function encryptionContext(name: string, version: number): EncryptionContext {
  return { 'tokend:name': name, 'tokend:version': String(version) };
}

export interface SealInput {
  readonly name: string;
  readonly version: number;
  /** The token bytes. Not zeroed here: the caller owns them. */
  readonly plaintext: Buffer;
  readonly provider: KeyProvider;
  readonly now?: Date;
  readonly random?: (size: number) => Buffer;
}

/**
 * Seals `plaintext` as token `name` at `version`: a fresh data key from the
 * provider (bound to name and version), a key-committing derivation, and
 * AES-256-GCM over the token with the header as AAD. Zeroes every key it held.
 */
export async function seal(input: SealInput): Promise<SealedToken> {
  const name = assertValidName(input.name);
  assertVersion(input.version);
  if (input.plaintext.length > MAX_TOKEN_BYTES) {
    throw new TokendError(
      'ERR_TOO_LARGE',
      `token '${name}' is ${input.plaintext.length} bytes; the limit is ${MAX_TOKEN_BYTES}`,
    );
  }
  const random = input.random ?? randomBytes;
  const dataKey = await input.provider.generateDataKey(encryptionContext(name, input.version));
  const keys = deriveKeys(dataKey.plaintext, random(NONCE_BYTES));
  try {
    const header = {
      format: FORMAT,
      name,
      version: input.version,
      created: (input.now ?? new Date()).toISOString(),
      provider: input.provider.name,
      keyId: dataKey.keyId,
      wrappedKey: dataKey.wrapped,
      nonce: keys.nonce,
      commitment: keys.commitment,
    } as const;
    const cipher = createCipheriv('aes-256-gcm', secretKey(keys.encryptionKey), keys.nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(headerAad(header));
    const ciphertext = Buffer.concat([cipher.update(input.plaintext), cipher.final(), cipher.getAuthTag()]);
    return { ...header, ciphertext };
  } finally {
    dataKey.plaintext.fill(0);
    keys.wipe();
  }
}

/**
 * Decrypts a parsed sealed token with its unwrapped data key. Checks the key
 * commitment in constant time before decrypting. Any failure is the one opaque
 * ERR_DECRYPT_FAILED. The returned buffer is the caller's to zero.
 */
export function decryptSealed(token: SealedToken, dataKey: Buffer): Buffer {
  const key = deriveTokenKey(token, dataKey);
  try {
    return decryptWithTokenKey(token, key);
  } finally {
    key.fill(0);
  }
}

/**
 * The key that opens this one token: derived from its data key and nonce,
 * after the key commitment is checked in constant time. What decryptSealed
 * does first; apart so that a cache can keep it and skip the derivation
 * (HKDF-SHA-512, the larger half of the work) on every request. Throws the
 * opaque ERR_DECRYPT_FAILED. The returned buffer is the caller's to zero.
 */
export function deriveTokenKey(token: SealedToken, dataKey: Buffer): Buffer {
  if (dataKey.length !== KEY_BYTES) throw decryptFailed(token.name, 'data key has the wrong length');
  const keys = deriveKeys(dataKey, token.nonce);
  try {
    if (!timingSafeEqual(keys.commitment, token.commitment)) {
      throw decryptFailed(token.name, 'key commitment does not match the data key');
    }
    return Buffer.from(keys.encryptionKey);
  } finally {
    keys.wipe();
  }
}

/** Decrypts a token with the key deriveTokenKey gave for it. Any failure is ERR_DECRYPT_FAILED; the returned buffer is the caller's to zero. */
export function decryptWithTokenKey(token: SealedToken, tokenKey: Buffer): Buffer {
  if (tokenKey.length !== KEY_BYTES) throw decryptFailed(token.name, 'token key has the wrong length');
  const body = token.ciphertext.subarray(0, token.ciphertext.length - TAG_BYTES);
  const tag = token.ciphertext.subarray(token.ciphertext.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', secretKey(tokenKey), token.nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(headerAad(token));
  decipher.setAuthTag(tag);
  const head = decipher.update(body);
  try {
    decipher.final();
  } catch (err) {
    head.fill(0);
    throw decryptFailed(token.name, 'authentication tag does not verify', err);
  }
  return head;
}

/** Asks the provider for the token's data key, pinned to the recorded key and bound to name and version. */
export async function unwrapDataKey(token: SealedToken, provider: KeyProvider): Promise<Buffer> {
  assertProvider(token, provider);
  try {
    return await provider.unwrap(token.wrappedKey, token.keyId, encryptionContext(token.name, token.version));
  } catch (err) {
    if (isTokendError(err, 'ERR_DECRYPT_FAILED')) throw decryptFailed(token.name, err.detail ?? err.message, err);
    throw err;
  }
}

/**
 * Parses and opens a sealed file as token `name`. Everything that can go wrong
 * with the file itself (corruption, tampering, truncation, another name, another
 * key) is the one opaque ERR_DECRYPT_FAILED; provider outages and access errors
 * pass through so the caller can tell "retry later" from "this file is bad".
 */
export async function openSealed(
  bytes: Buffer | string,
  name: string,
  provider: KeyProvider,
): Promise<{ token: SealedToken; plaintext: Buffer }> {
  let token: SealedToken;
  try {
    token = parseSealed(bytes, name);
  } catch (err) {
    if (isTokendError(err, 'ERR_SEALED_CORRUPT')) throw decryptFailed(name, err.detail ?? err.message, err);
    throw err;
  }
  const dataKey = await unwrapDataKey(token, provider);
  try {
    return { token, plaintext: decryptSealed(token, dataKey) };
  } finally {
    dataKey.fill(0);
  }
}

/** Returns the token with its data key wrapped anew (rewrap); the ciphertext is untouched. */
export function withWrappedKey(token: SealedToken, wrapped: Buffer, keyId: string): SealedToken {
  return { ...token, wrappedKey: wrapped, keyId };
}

/** The canonical text form: pretty JSON, fixed field order, standard base64, one trailing newline. */
export function serializeSealed(token: SealedToken): Buffer {
  return Buffer.from(canonicalText(token), 'utf8');
}

/** The canonical form as a string (ASCII only: every field is checked to be). */
function canonicalText(token: SealedToken): string {
  const doc = {
    format: token.format,
    name: token.name,
    version: token.version,
    created: token.created,
    provider: token.provider,
    keyId: token.keyId,
    wrappedKey: token.wrappedKey.toString('base64'),
    nonce: token.nonce.toString('base64'),
    commitment: token.commitment.toString('base64'),
    ciphertext: token.ciphertext.toString('base64'),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Parses a sealed file strictly: it must be exactly the canonical form that
 * serializeSealed writes (so no bit of it can change without being noticed),
 * and, when `expectedName` is given, claim that name. Throws ERR_SEALED_CORRUPT
 * naming the token and the structural problem; never decrypts.
 */
export function parseSealed(bytes: Buffer | string, expectedName?: string): SealedToken {
  const subject = expectedName ?? 'unnamed';
  const corrupt = (why: string): never => {
    throw new TokendError('ERR_SEALED_CORRUPT', `sealed token '${subject}' is corrupt: ${why}`, { detail: why });
  };
  if (bytes.length > MAX_SEALED_BYTES) corrupt(`it is larger than ${MAX_SEALED_BYTES} bytes`);
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return corrupt('it is not valid JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return corrupt('it is not a JSON object');
  const record = doc as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length !== FIELDS.length || !FIELDS.every((f, i) => keys[i] === f)) {
    return corrupt(`its fields are not exactly ${FIELDS.join(', ')} in that order`);
  }
  if (record.format !== FORMAT) return corrupt(`unsupported format ${describeFormat(record.format)}`);
  const name = record.name;
  if (typeof name !== 'string' || !isValidName(name)) return corrupt('the name field is not a valid token name');
  if (expectedName !== undefined && name !== expectedName) return corrupt(`it claims to be token '${name}'`);
  const version = record.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > MAX_VERSION) {
    return corrupt('the version field is not an integer from 1 to 2147483647');
  }
  const created = record.created;
  if (typeof created !== 'string' || !ISO_TIME.test(created) || !isCanonicalTime(created)) {
    return corrupt('the created field is not an ISO 8601 UTC time');
  }
  const provider = record.provider;
  if (typeof provider !== 'string' || !PROVIDERS.includes(provider as ProviderName)) {
    return corrupt('the provider field names no known provider');
  }
  const keyId = record.keyId;
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) {
    return corrupt(`the keyId field is not 1 to ${MAX_KEY_ID} visible ASCII characters`);
  }
  const field = (key: 'wrappedKey' | 'nonce' | 'commitment' | 'ciphertext', min: number, max: number): Buffer => {
    const value = record[key];
    const buf = typeof value === 'string' ? strictBase64(value) : undefined;
    if (buf === undefined) return corrupt(`the ${key} field is not canonical base64`);
    if (buf.length < min || buf.length > max) return corrupt(`the ${key} field has the wrong length`);
    return buf;
  };
  const wrappedKey = field('wrappedKey', 1, MAX_WRAPPED);
  const nonce = field('nonce', NONCE_BYTES, NONCE_BYTES);
  const commitment = field('commitment', KEY_BYTES, KEY_BYTES);
  const ciphertext = field('ciphertext', TAG_BYTES, MAX_TOKEN_BYTES + TAG_BYTES);
  const token: SealedToken = { format: FORMAT, name, version, created, provider: provider as ProviderName, keyId, wrappedKey, nonce, commitment, ciphertext };
  // Compared as text: the canonical form is ASCII, so a file with invalid UTF-8 (decoded to U+FFFD) never matches.
  if (canonicalText(token) !== text) {
    return corrupt('it is not in canonical form (whitespace, escapes or trailing bytes differ)');
  }
  return token;
}

/**
 * The format field as an error message may show it: a short plain string
 * quoted, anything else only by type. Never JSON.stringify an attacker's value
 * (a deeply nested one overflows the stack, a huge one floods the log).
 */
function describeFormat(value: unknown): string {
  if (typeof value === 'string' && value.length <= 64 && /^[\x20-\x7e]*$/.test(value)) return JSON.stringify(value);
  if (typeof value === 'string') return `(a string of ${value.length} characters)`;
  return `(a ${value === null ? 'null' : Array.isArray(value) ? 'list' : typeof value}, not a string)`;
}

function assertProvider(token: SealedToken, provider: KeyProvider): void {
  if (token.provider !== provider.name) {
    throw new TokendError(
      'ERR_PROVIDER_MISMATCH',
      `sealed token '${token.name}' was sealed with the '${token.provider}' provider, but tokend is configured for '${provider.name}'`,
    );
  }
}

function assertVersion(version: number): void {
  if (!Number.isInteger(version) || version < 1 || version > MAX_VERSION) {
    throw new TokendError('ERR_USAGE', `token version ${version} is not an integer from 1 to ${MAX_VERSION}`);
  }
}

/** True when `text` is a real instant written exactly as Date#toISOString writes it (month 13 is not). */
function isCanonicalTime(text: string): boolean {
  const ms = Date.parse(text);
  return !Number.isNaN(ms) && new Date(ms).toISOString() === text;
}

/** Base64 that decodes and re-encodes to exactly the same text, else undefined. */
function strictBase64(text: string): Buffer | undefined {
  const buf = Buffer.from(text, 'base64');
  return buf.toString('base64') === text ? buf : undefined;
}

/** The authenticated header: everything that describes the token (docs/format.md explains why the key-wrapping fields are authenticated by the provider instead). */
function headerAad(h: Pick<SealedToken, 'format' | 'name' | 'version' | 'created' | 'nonce' | 'commitment'>): Buffer {
  return Buffer.from(
    JSON.stringify([h.format, h.name, h.version, h.created, h.nonce.toString('base64'), h.commitment.toString('base64')]),
    'utf8',
  );
}

/** HKDF-SHA-512(data key, salt = nonce) → 32-byte encryption key ‖ 32-byte commitment. */
function deriveKeys(dataKey: Buffer, nonce: Buffer) {
  const okm = Buffer.from(hkdfSync('sha512', secretKey(dataKey), nonce, HKDF_INFO, 2 * KEY_BYTES));
  return {
    nonce,
    encryptionKey: okm.subarray(0, KEY_BYTES),
    commitment: Buffer.from(okm.subarray(KEY_BYTES)),
    wipe: () => okm.fill(0),
  };
}

/**
 * A KeyObject copy of `key` for node:crypto. Node 24 probes a Buffer key for
 * KeyObject and CryptoKey by throwing and catching, which costs more than the
 * HKDF or the AES-GCM it feeds (docs/benchmarks.md); a KeyObject skips that.
 * Node cleanses the copy (OPENSSL_clear_free) when the object is collected;
 * the caller still zeroes its Buffer.
 */
function secretKey(key: Buffer): KeyObject {
  return createSecretKey(key);
}
