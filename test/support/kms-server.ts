// A local AWS KMS for tests: a real HTTP server speaking the KMS JSON 1.1 wire
// protocol (X-Amz-Target: TrentService.<Op>, base64 blobs, `__type` errors),
// verifying SigV4 on every request, with fault injection. AWS itself is not
// reachable here; this lets the real @aws-sdk/client-kms run end to end.
// Not shipped: it lives under test/.
//
// Operations: CreateKey, CreateAlias, DescribeKey, GenerateDataKey, Encrypt,
// Decrypt, ReEncrypt, with the request/response fields, error types and HTTP
// statuses of the AWS KMS API reference. Ciphertext blobs embed the key id (so
// Decrypt without KeyId works, as in AWS) and authenticate the key ARN and the
// encryption context (so a changed context is InvalidCiphertextException).

import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { TEST_CREDENTIALS, verifySignature } from './sigv4.js';
import type { Credentials } from './sigv4.js';

/** Faults the next requests suffer. Counters count down one per request; tests set them directly. */
export interface KmsFaults {
  /** Added before every answer (milliseconds). */
  latencyMs: number;
  /** The next N requests get ThrottlingException (HTTP 400). */
  throttle: number;
  /** The next N requests get KMSInternalException (HTTP 500). */
  fail500: number;
  /** The next N requests have their connection destroyed without an answer. */
  drop: number;
  /** The next N Decrypt/ReEncrypt answers claim another key (a lying or confused endpoint). */
  wrongKey: number;
  /** Outage: every connection is destroyed as soon as it opens. */
  down: boolean;
}

/** What the server knows about one KMS key. */
export interface KmsKey {
  readonly keyId: string;
  readonly arn: string;
}

/** One request as the server understood it (after signature checks), for assertions. */
export interface KmsRequest {
  readonly operation: string;
  readonly input: Readonly<Record<string, unknown>>;
}

export interface KmsServer {
  /** `http://127.0.0.1:<port>`: the endpoint to give the SDK. */
  readonly endpoint: string;
  readonly region: string;
  readonly accountId: string;
  /** The credentials requests must be signed with. */
  readonly credentials: Credentials;
  readonly faults: KmsFaults;
  /** Requests received per operation (every attempt, faulted ones included; not those refused while `down`). */
  readonly calls: Readonly<Record<string, number>>;
  /** Requests that passed the signature check, in order. */
  readonly requests: readonly KmsRequest[];
  /** Creates a symmetric ENCRYPT_DECRYPT key (as CreateKey does). */
  createKey(description?: string): KmsKey;
  /** Points `alias/<name>` at a key (as CreateAlias does). */
  createAlias(aliasName: string, keyId: string): void;
  /** Disables a key (as DisableKey does): crypto operations then fail with DisabledException. */
  disableKey(keyId: string): void;
  /** Makes IAM deny `action` (e.g. `kms:Decrypt`) on a key: AccessDeniedException. */
  deny(keyId: string, action: string): void;
  /** Clears the call counters and the request log. */
  resetCalls(): void;
  /**
   * The AWS environment a client of this server needs: the fake credentials and
   * the region, with every other AWS setting that could leak in from the machine
   * cleared (undefined = unset). Profiles and the instance metadata service are off.
   */
  env(): Record<string, string | undefined>;
  close(): Promise<void>;
}

export interface KmsServerOptions {
  readonly region?: string;
  readonly accountId?: string;
  readonly credentials?: Credentials;
}

type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface Key {
  readonly keyId: string;
  readonly arn: string;
  readonly material: Buffer;
  readonly created: number;
  readonly description: string;
  state: KeyState;
}

/** An error KMS answers with: `__type`, HTTP status, message. */
class KmsError extends Error {
  readonly type: string;
  readonly status: number;

  constructor(type: string, status: number, message: string) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

const CONTENT_TYPE = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'TrentService.';
const MAX_BODY = 256 * 1024;
const BLOB_VERSION = 0x01;
const UUID_LEN = 36;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const SYMMETRIC = 'SYMMETRIC_DEFAULT';

/** Starts a KMS on 127.0.0.1 with a random port. */
export async function startKmsServer(options: KmsServerOptions = {}): Promise<KmsServer> {
  const region = options.region ?? 'eu-west-1';
  const accountId = options.accountId ?? '111122223333';
  const credentials = options.credentials ?? TEST_CREDENTIALS;
  const keys = new Map<string, Key>();
  const aliases = new Map<string, string>();
  const denied = new Set<string>();
  const faults: KmsFaults = { latencyMs: 0, throttle: 0, fail500: 0, drop: 0, wrongKey: 0, down: false };
  const calls: Record<string, number> = {};
  const requests: KmsRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();

  const arnPrefix = `arn:aws:kms:${region}:${accountId}:`;

  function createKey(description = ''): KmsKey {
    const keyId = randomUUID();
    const key: Key = {
      keyId,
      arn: `${arnPrefix}key/${keyId}`,
      material: randomBytes(32),
      created: Math.floor(Date.now() / 1000),
      description,
      state: 'Enabled',
    };
    keys.set(keyId, key);
    return { keyId, arn: key.arn };
  }

  function createAlias(aliasName: string, targetKeyId: string): void {
    if (!/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(aliasName) || aliasName.startsWith('alias/aws/')) {
      throw new KmsError('ValidationException', 400, `1 validation error detected: Value '${aliasName}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$`);
    }
    if (aliases.has(aliasName)) throw new KmsError('AlreadyExistsException', 400, `An alias with the name ${arnPrefix}${aliasName} already exists`);
    const key = resolveKey(targetKeyId, 'targetKeyId', false);
    aliases.set(aliasName, key.keyId);
  }

  /** Resolves a key id, key ARN, alias name or alias ARN, as the reference allows for each parameter. */
  function resolveKey(id: unknown, field: string, allowAlias = true): Key {
    if (typeof id !== 'string' || id.length < 1 || id.length > 2048) {
      throw new KmsError('ValidationException', 400, `1 validation error detected: Value at '${field}' failed to satisfy constraint: Member must have length between 1 and 2048`);
    }
    let local = id;
    if (id.startsWith('arn:')) {
      const m = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):((?:key|alias)\/.+)$/.exec(id);
      if (!m) throw new KmsError('InvalidArnException', 400, `ARN ${id} is not a valid KMS key or alias ARN`);
      if (m[1] !== region || m[2] !== accountId) throw new KmsError('NotFoundException', 400, `Key '${id}' does not exist`);
      local = m[3] as string;
    }
    if (local.startsWith('alias/')) {
      const target = allowAlias ? aliases.get(local) : undefined;
      if (target === undefined) throw new KmsError('NotFoundException', 400, `Alias ${arnPrefix}${local} is not found.`);
      local = target;
    } else if (local.startsWith('key/')) {
      local = local.slice(4);
    }
    const key = keys.get(local);
    if (!key) throw new KmsError('NotFoundException', 400, `Key '${arnPrefix}key/${local}' does not exist`);
    return key;
  }

  function authorize(key: Key, action: string): void {
    if (denied.has(`${key.arn} ${action}`)) {
      throw new KmsError(
        'AccessDeniedException',
        400,
        `User: arn:aws:sts::${accountId}:assumed-role/tokend-test/i-0123456789abcdef0 is not authorized to perform: ${action} on resource: ${key.arn} because no identity-based policy allows the ${action} action`,
      );
    }
  }

  function usable(key: Key): void {
    if (key.state === 'Disabled') throw new KmsError('DisabledException', 400, `${key.arn} is disabled.`);
    if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', 400, `${key.arn} is pending deletion.`);
  }

  function seal(key: Key, plaintext: Buffer, context: Record<string, string>): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.material, iv);
    cipher.setAAD(aad(key, context));
    return Buffer.concat([
      Buffer.from([BLOB_VERSION]),
      Buffer.from(key.keyId, 'ascii'),
      iv,
      cipher.update(plaintext),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
  }

  /** Opens a blob: the key it names, and the plaintext if the context matches. */
  function open(blob: Buffer, pinned: unknown, context: Record<string, string>, keyField: string, action: string): { key: Key; plaintext: Buffer } {
    if (blob.length < 1 + UUID_LEN + IV_BYTES + 1 + TAG_BYTES || blob[0] !== BLOB_VERSION) {
      throw new KmsError('InvalidCiphertextException', 400, '');
    }
    const embedded = keys.get(blob.subarray(1, 1 + UUID_LEN).toString('ascii'));
    if (!embedded) throw new KmsError('InvalidCiphertextException', 400, '');
    if (pinned !== undefined && resolveKey(pinned, keyField) !== embedded) {
      throw new KmsError('IncorrectKeyException', 400, 'The key ID in the request does not identify a CMK that can perform this operation.');
    }
    authorize(embedded, action);
    usable(embedded);
    const body = blob.subarray(1 + UUID_LEN);
    const decipher = createDecipheriv('aes-256-gcm', embedded.material, body.subarray(0, IV_BYTES));
    decipher.setAAD(aad(embedded, context));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const plaintext = decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES));
    try {
      decipher.final();
    } catch {
      plaintext.fill(0);
      throw new KmsError('InvalidCiphertextException', 400, '');
    }
    return { key: embedded, plaintext };
  }

  function metadata(key: Key): Record<string, unknown> {
    return {
      AWSAccountId: accountId,
      KeyId: key.keyId,
      Arn: key.arn,
      CreationDate: key.created,
      Enabled: key.state === 'Enabled',
      Description: key.description,
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeyState: key.state,
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      CustomerMasterKeySpec: SYMMETRIC,
      KeySpec: SYMMETRIC,
      EncryptionAlgorithms: [SYMMETRIC],
      MultiRegion: false,
    };
  }

  /** The answer to a key/wrapped-key pair when the `wrongKey` fault is armed: another key's ARN. */
  function claimedArn(key: Key): string {
    if (faults.wrongKey <= 0) return key.arn;
    faults.wrongKey -= 1;
    return `${arnPrefix}key/${randomUUID()}`;
  }

  const operations: Record<string, (input: Record<string, unknown>) => Record<string, unknown>> = {
    CreateKey(input) {
      const usage = input.KeyUsage ?? 'ENCRYPT_DECRYPT';
      const spec = input.KeySpec ?? input.CustomerMasterKeySpec ?? SYMMETRIC;
      if (usage !== 'ENCRYPT_DECRYPT' || spec !== SYMMETRIC || (input.Origin ?? 'AWS_KMS') !== 'AWS_KMS') {
        throw new KmsError('UnsupportedOperationException', 400, 'this test KMS supports only symmetric ENCRYPT_DECRYPT keys with AWS_KMS origin');
      }
      const created = createKey(typeof input.Description === 'string' ? input.Description : '');
      return { KeyMetadata: metadata(keys.get(created.keyId) as Key) };
    },
    CreateAlias(input) {
      createAlias(String(input.AliasName ?? ''), input.TargetKeyId as string);
      return {};
    },
    DescribeKey(input) {
      const key = resolveKey(input.KeyId, 'keyId');
      authorize(key, 'kms:DescribeKey');
      return { KeyMetadata: metadata(key) };
    },
    GenerateDataKey(input) {
      const key = resolveKey(input.KeyId, 'keyId');
      const context = encryptionContext(input.EncryptionContext, 'encryptionContext');
      const size = dataKeySize(input);
      authorize(key, 'kms:GenerateDataKey');
      usable(key);
      const plaintext = randomBytes(size);
      return { CiphertextBlob: b64(seal(key, plaintext, context)), Plaintext: b64(plaintext), KeyId: key.arn };
    },
    Encrypt(input) {
      const key = resolveKey(input.KeyId, 'keyId');
      const plaintext = blob(input.Plaintext, 'plaintext', 4096);
      const context = encryptionContext(input.EncryptionContext, 'encryptionContext');
      algorithm(input.EncryptionAlgorithm);
      authorize(key, 'kms:Encrypt');
      usable(key);
      return { CiphertextBlob: b64(seal(key, plaintext, context)), KeyId: key.arn, EncryptionAlgorithm: SYMMETRIC };
    },
    Decrypt(input) {
      const ciphertext = blob(input.CiphertextBlob, 'ciphertextBlob', 6144);
      const context = encryptionContext(input.EncryptionContext, 'encryptionContext');
      algorithm(input.EncryptionAlgorithm);
      const { key, plaintext } = open(ciphertext, input.KeyId, context, 'keyId', 'kms:Decrypt');
      const claimed = claimedArn(key);
      const answer = claimed === key.arn ? plaintext : randomBytes(plaintext.length);
      return { KeyId: claimed, Plaintext: b64(answer), EncryptionAlgorithm: SYMMETRIC };
    },
    ReEncrypt(input) {
      const ciphertext = blob(input.CiphertextBlob, 'ciphertextBlob', 6144);
      const source = encryptionContext(input.SourceEncryptionContext, 'sourceEncryptionContext');
      const destination = encryptionContext(input.DestinationEncryptionContext, 'destinationEncryptionContext');
      algorithm(input.SourceEncryptionAlgorithm);
      algorithm(input.DestinationEncryptionAlgorithm);
      const target = resolveKey(input.DestinationKeyId, 'destinationKeyId');
      const { key, plaintext } = open(ciphertext, input.SourceKeyId, source, 'sourceKeyId', 'kms:ReEncryptFrom');
      try {
        authorize(target, 'kms:ReEncryptTo');
        usable(target);
        return {
          CiphertextBlob: b64(seal(target, plaintext, destination)),
          SourceKeyId: claimedArn(key),
          KeyId: target.arn,
          SourceEncryptionAlgorithm: SYMMETRIC,
          DestinationEncryptionAlgorithm: SYMMETRIC,
        };
      } finally {
        plaintext.fill(0);
      }
    },
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    if (body === undefined) return;
    const target = req.headers['x-amz-target'];
    const operation = typeof target === 'string' && target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '';
    if (faults.down) {
      req.socket.destroy();
      return;
    }
    calls[operation || '(none)'] = (calls[operation || '(none)'] ?? 0) + 1;
    if (faults.drop > 0) {
      faults.drop -= 1;
      req.socket.destroy();
      return;
    }
    if (faults.latencyMs > 0) {
      await new Promise<void>((done) => {
        const t = setTimeout(() => {
          timers.delete(t);
          done();
        }, faults.latencyMs);
        timers.add(t);
      });
      if (req.socket.destroyed) return;
    }
    try {
      if (req.method !== 'POST' || (req.url ?? '/') !== '/') throw new KmsError('UnknownOperationException', 400, '');
      const problem = verifySignature({ method: req.method, path: req.url ?? '/', headers: req.headers, body }, credentials, region, 'kms');
      if (problem) throw new KmsError(problem.type, problem.status, problem.message);
      const op = Object.hasOwn(operations, operation) ? operations[operation] : undefined;
      if (!op) throw new KmsError('UnknownOperationException', 400, '');
      if (req.headers['content-type'] !== CONTENT_TYPE) {
        throw new KmsError('SerializationException', 400, `Content-Type must be ${CONTENT_TYPE}`);
      }
      if (faults.throttle > 0) {
        faults.throttle -= 1;
        throw new KmsError('ThrottlingException', 400, 'Rate exceeded');
      }
      if (faults.fail500 > 0) {
        faults.fail500 -= 1;
        throw new KmsError('KMSInternalException', 500, 'The request was rejected because an internal exception occurred. The request can be retried.');
      }
      let input: unknown;
      try {
        input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
      } catch {
        throw new KmsError('SerializationException', 400, 'Start of structure or map found where not expected.');
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new KmsError('SerializationException', 400, 'Start of structure or map found where not expected.');
      }
      if ((input as Record<string, unknown>).DryRun === true) {
        throw new KmsError('DryRunOperationException', 412, 'The request would have succeeded, but the DryRun option is set.');
      }
      requests.push({ operation, input: input as Record<string, unknown> });
      reply(res, 200, op(input as Record<string, unknown>));
    } catch (err) {
      if (!(err instanceof KmsError)) {
        reply(res, 500, { __type: 'KMSInternalException', message: 'internal error in the test KMS' });
        throw err;
      }
      reply(res, err.status, err.message ? { __type: err.type, message: err.message } : { __type: err.type });
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      process.stderr.write(`test KMS: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  server.on('connection', (socket) => {
    if (faults.down) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    accountId,
    credentials,
    faults,
    calls,
    requests,
    createKey,
    createAlias(aliasName, keyId) {
      createAlias(aliasName, keyId);
    },
    disableKey(keyId) {
      resolveKey(keyId, 'keyId').state = 'Disabled';
    },
    deny(keyId, action) {
      denied.add(`${resolveKey(keyId, 'keyId').arn} ${action}`);
    },
    resetCalls() {
      for (const k of Object.keys(calls)) delete calls[k];
      requests.length = 0;
    },
    env() {
      return {
        AWS_ACCESS_KEY_ID: credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        AWS_REGION: region,
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_CONFIG_FILE: '/nonexistent/tokend-test/aws-config',
        AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/tokend-test/aws-credentials',
        AWS_SESSION_TOKEN: undefined,
        AWS_PROFILE: undefined,
        AWS_DEFAULT_REGION: undefined,
        AWS_ENDPOINT_URL: undefined,
        AWS_ENDPOINT_URL_KMS: undefined,
        AWS_MAX_ATTEMPTS: undefined,
        AWS_RETRY_MODE: undefined,
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
        AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
        AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
      };
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((done) => server.close(() => done()));
      for (const key of keys.values()) key.material.fill(0);
    },
  };
}

function aad(key: Key, context: Record<string, string>): Buffer {
  const sorted = Object.keys(context)
    .sort()
    .map((k) => [k, context[k]]);
  return Buffer.from(JSON.stringify([key.arn, sorted]), 'utf8');
}

function encryptionContext(value: unknown, field: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new KmsError('SerializationException', 400, `${field} must be a map of strings to strings`);
  }
  return value as Record<string, string>;
}

function dataKeySize(input: Record<string, unknown>): number {
  const spec = input.KeySpec;
  const bytes = input.NumberOfBytes;
  if (spec !== undefined && bytes !== undefined) {
    throw new KmsError('ValidationException', 400, 'Please specify either number of bytes or key spec.');
  }
  if (spec === 'AES_256') return 32;
  if (spec === 'AES_128') return 16;
  if (spec !== undefined) {
    throw new KmsError('ValidationException', 400, `1 validation error detected: Value '${String(spec)}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]`);
  }
  if (typeof bytes === 'number' && Number.isInteger(bytes) && bytes >= 1 && bytes <= 1024) return bytes;
  throw new KmsError('ValidationException', 400, 'Please specify either number of bytes or key spec.');
}

function algorithm(value: unknown): void {
  if (value !== undefined && value !== SYMMETRIC) {
    throw new KmsError('InvalidKeyUsageException', 400, `the encryption algorithm ${String(value)} is not valid for a symmetric key`);
  }
}

/** A base64 blob parameter, with the reference's length limits. */
function blob(value: unknown, field: string, max: number): Buffer {
  if (typeof value !== 'string') {
    throw new KmsError('ValidationException', 400, `1 validation error detected: Value null at '${field}' failed to satisfy constraint: Member must not be null`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) throw new KmsError('SerializationException', 400, `${field} is not valid base64`);
  if (bytes.length < 1 || bytes.length > max) {
    throw new KmsError('ValidationException', 400, `1 validation error detected: Value at '${field}' failed to satisfy constraint: Member must have length between 1 and ${max}`);
  }
  return bytes;
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64');
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = Buffer.from(JSON.stringify(body), 'utf8');
  res.writeHead(status, {
    'content-type': CONTENT_TYPE,
    'content-length': text.length,
    'x-amzn-requestid': randomUUID(),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY) {
        req.socket.destroy();
        return undefined;
      }
      chunks.push(chunk as Buffer);
    }
  } catch {
    return undefined;
  }
  return Buffer.concat(chunks);
}
