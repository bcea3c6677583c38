// The keyfile provider: a development mock KMS. A 0600 JSON file of versioned
// 256-bit keys, one of them primary. Never for production: the keys sit on the
// same disk as the sealed tokens.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { TokendError } from '../errors.js';
import { readPrivateFile, writeFileAtomic } from '../private-files.js';
import { canonicalContext } from './provider.js';
import type { DataKey, EncryptionContext, KeyProvider, RewrappedKey } from './provider.js';

const FORMAT = 'tokend-keyfile/1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = IV_BYTES + KEY_BYTES + TAG_BYTES;
const ID = /^kf-[0-9a-f]{16}$/;

/** The warning every process using a keyfile logs once at start. */
export const KEYFILE_WARNING =
  'using the keyfile provider, a development mock KMS: its keys live on this disk, so sealed tokens here are only as safe as the keyfile; use the aws provider in production';

interface KeyVersion {
  readonly version: number;
  readonly created: string;
  readonly key: Buffer;
}

interface Keyfile {
  readonly id: string;
  readonly primary: number;
  readonly keys: readonly KeyVersion[];
}

/** Creates a new keyfile with one primary key (version 1). Refuses to overwrite: keys are never replaced. */
export async function createKeyfile(path: string, now: Date = new Date()): Promise<void> {
  const keyfile: Keyfile = {
    id: `kf-${randomBytes(8).toString('hex')}`,
    primary: 1,
    keys: [{ version: 1, created: now.toISOString(), key: randomBytes(KEY_BYTES) }],
  };
  try {
    await writeFileAtomic(path, serialize(keyfile), { overwrite: false });
  } finally {
    wipe(keyfile);
  }
}

/** Adds a new key version and makes it primary; older versions still unwrap. Returns the new version. */
export async function rotateKeyfile(path: string, now: Date = new Date()): Promise<number> {
  const keyfile = await readKeyfile(path);
  const version = Math.max(...keyfile.keys.map((k) => k.version)) + 1;
  const next: Keyfile = {
    ...keyfile,
    primary: version,
    keys: [...keyfile.keys, { version, created: now.toISOString(), key: randomBytes(KEY_BYTES) }],
  };
  try {
    await writeFileAtomic(path, serialize(next));
    return version;
  } finally {
    wipe(next);
  }
}

/**
 * Removes key version `version` from the keyfile. Refuses the primary key.
 * Tokens still wrapped under it would no longer open, so `guard` is called with
 * the version's key id first and may throw to stop the removal.
 */
export async function retireKeyVersion(
  path: string,
  version: number,
  guard: (keyId: string) => Promise<void> = async () => undefined,
): Promise<void> {
  const keyfile = await readKeyfile(path);
  try {
    if (version === keyfile.primary) {
      throw new TokendError('ERR_USAGE', `key version ${version} is the primary key of keyfile '${path}'; rotate first`);
    }
    if (!keyfile.keys.some((k) => k.version === version)) {
      throw new TokendError('ERR_NOT_FOUND', `keyfile '${path}' has no key version ${version}`);
    }
    await guard(keyfileKeyId(keyfile.id, version));
    await writeFileAtomic(path, serialize({ ...keyfile, keys: keyfile.keys.filter((k) => k.version !== version) }));
  } finally {
    wipe(keyfile);
  }
}

/** The key id a keyfile records for `version`, e.g. `kf-0123456789abcdef/v2`. */
export function keyfileKeyId(id: string, version: number): string {
  return `${id}/v${version}`;
}

/** Loads a keyfile provider. Fails closed on loose permissions, symlinks and malformed files, naming the file. */
export async function loadKeyfileProvider(path: string): Promise<KeyProvider> {
  return new KeyfileProvider(await readKeyfile(path));
}

class KeyfileProvider implements KeyProvider {
  readonly name = 'keyfile' as const;
  readonly defaultKeyId: string;
  readonly #keyfile: Keyfile;

  constructor(keyfile: Keyfile) {
    this.#keyfile = keyfile;
    this.defaultKeyId = keyfileKeyId(keyfile.id, keyfile.primary);
  }

  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    const plaintext = randomBytes(KEY_BYTES);
    return { plaintext, wrapped: this.#wrap(plaintext, this.defaultKeyId, context), keyId: this.defaultKeyId };
  }

  async unwrap(wrapped: Buffer, keyId: string, context: EncryptionContext): Promise<Buffer> {
    const key = this.#key(keyId);
    if (wrapped.length !== WRAPPED_BYTES) throw unwrapFailed('wrapped key has the wrong length');
    const decipher = createDecipheriv('aes-256-gcm', key, wrapped.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(keyId, context));
    decipher.setAuthTag(wrapped.subarray(IV_BYTES + KEY_BYTES));
    const plaintext = decipher.update(wrapped.subarray(IV_BYTES, IV_BYTES + KEY_BYTES));
    try {
      decipher.final();
    } catch (err) {
      plaintext.fill(0);
      throw unwrapFailed('wrapped key does not verify under this key and encryption context', err);
    }
    return plaintext;
  }

  async rewrap(wrapped: Buffer, keyId: string, context: EncryptionContext, toKeyId?: string): Promise<RewrappedKey> {
    const target = toKeyId ?? this.defaultKeyId;
    this.#key(target);
    const plaintext = await this.unwrap(wrapped, keyId, context);
    try {
      return { wrapped: this.#wrap(plaintext, target, context), keyId: target };
    } finally {
      plaintext.fill(0);
    }
  }

  async resolveKeyId(keyId: string): Promise<string> {
    try {
      this.#key(keyId);
    } catch {
      throw new TokendError('ERR_KMS_ACCESS', `key '${keyId}' is not in this keyfile (ids look like ${this.defaultKeyId})`);
    }
    return keyId;
  }

  async check(): Promise<void> {
    const probe = { 'tokend:check': 'keyfile' };
    const key = await this.generateDataKey(probe);
    const back = await this.unwrap(key.wrapped, key.keyId, probe);
    const ok = back.equals(key.plaintext);
    key.plaintext.fill(0);
    back.fill(0);
    if (!ok) throw new TokendError('ERR_KEYFILE', 'keyfile self-test failed');
  }

  close(): void {
    wipe(this.#keyfile);
  }

  #wrap(plaintext: Buffer, keyId: string, context: EncryptionContext): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key(keyId), iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(keyId, context));
    return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  /** The key for `keyId`; an unknown id (retired version, another keyfile) is an opaque unwrap failure. */
  #key(keyId: string): Buffer {
    const prefix = `${this.#keyfile.id}/v`;
    const version = keyId.startsWith(prefix) ? Number(keyId.slice(prefix.length)) : Number.NaN;
    const found = this.#keyfile.keys.find((k) => k.version === version);
    if (!found || keyfileKeyId(this.#keyfile.id, found.version) !== keyId) {
      throw unwrapFailed(`key '${keyId}' is not in this keyfile (another keyfile, or a retired version)`);
    }
    return found.key;
  }
}

function aad(keyId: string, context: EncryptionContext): Buffer {
  return Buffer.concat([Buffer.from(`${FORMAT}\n${keyId}\n`, 'utf8'), canonicalContext(context)]);
}

function unwrapFailed(detail: string, cause?: unknown): TokendError {
  return new TokendError('ERR_DECRYPT_FAILED', 'data key could not be unwrapped', {
    detail,
    ...(cause === undefined ? {} : { cause }),
  });
}

async function readKeyfile(path: string): Promise<Keyfile> {
  const raw = await readPrivateFile(path, 'keyfile');
  try {
    return parse(raw, path);
  } finally {
    raw.fill(0);
  }
}

function parse(raw: Buffer, path: string): Keyfile {
  const bad = (why: string): never => {
    throw new TokendError('ERR_KEYFILE', `keyfile '${path}' is malformed: ${why}`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    return bad('it is not valid JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return bad('it is not a JSON object');
  const d = doc as Record<string, unknown>;
  const unknown = Object.keys(d).filter((k) => !['format', 'id', 'primary', 'keys'].includes(k));
  if (unknown.length > 0) return bad(`unknown field '${unknown[0]}'`);
  if (d.format !== FORMAT) return bad(`format is not '${FORMAT}'`);
  if (typeof d.id !== 'string' || !ID.test(d.id)) return bad('id is not of the form kf-<16 hex digits>');
  if (!Array.isArray(d.keys) || d.keys.length === 0) return bad('keys is not a non-empty array');
  const keys = d.keys.map((entry: unknown, i: number): KeyVersion => {
    if (typeof entry !== 'object' || entry === null) return bad(`keys[${i}] is not an object`);
    const e = entry as Record<string, unknown>;
    const extra = Object.keys(e).filter((k) => !['version', 'created', 'key'].includes(k));
    if (extra.length > 0) return bad(`keys[${i}] has unknown field '${extra[0]}'`);
    if (typeof e.version !== 'number' || !Number.isInteger(e.version) || e.version < 1) {
      return bad(`keys[${i}].version is not a positive integer`);
    }
    if (typeof e.created !== 'string') return bad(`keys[${i}].created is not a string`);
    const key = typeof e.key === 'string' ? Buffer.from(e.key, 'base64') : Buffer.alloc(0);
    if (key.length !== KEY_BYTES) return bad(`keys[${i}].key is not 32 bytes of base64`);
    return { version: e.version, created: e.created, key };
  });
  const versions = new Set(keys.map((k) => k.version));
  if (versions.size !== keys.length) return bad('two keys share a version');
  if (typeof d.primary !== 'number' || !versions.has(d.primary)) return bad('primary names no key version in the file');
  return { id: d.id, primary: d.primary, keys };
}

function serialize(keyfile: Keyfile): Buffer {
  const doc = {
    format: FORMAT,
    id: keyfile.id,
    primary: keyfile.primary,
    keys: keyfile.keys.map((k) => ({ version: k.version, created: k.created, key: k.key.toString('base64') })),
  };
  return Buffer.from(`${JSON.stringify(doc, null, 2)}\n`, 'utf8');
}

function wipe(keyfile: Keyfile): void {
  for (const k of keyfile.keys) k.key.fill(0);
}
