// The AWS KMS provider: fresh data keys from GenerateDataKey, unwrapped by
// Decrypt pinned to the key the sealed file records, moved between keys by
// ReEncrypt (the data key never leaves KMS in plaintext). The only importer of
// the AWS SDK. Credentials come from the SDK's default provider chain only.

import { DecryptCommand, DescribeKeyCommand, GenerateDataKeyCommand, KMSClient, ReEncryptCommand } from '@aws-sdk/client-kms';
import { TokendError } from '../errors.js';
import type { AwsProviderConfig } from '../config.js';
import { deadlineExceeded, kmsFailure } from './aws-errors.js';
import type { KmsCall } from './aws-errors.js';
import type { DataKey, EncryptionContext, KeyProvider, RewrappedKey } from './provider.js';

const DATA_KEY_BYTES = 32;

/**
 * Creates the AWS KMS provider. Region, endpoint and credentials follow the SDK's
 * standard resolution (AWS_REGION, AWS_ENDPOINT_URL_KMS, the default credential
 * chain) unless the config sets region or endpoint. Throws ERR_CONFIG when no
 * region can be found, so a misconfigured host fails at start, not per request.
 */
export async function createAwsProvider(config: AwsProviderConfig): Promise<KeyProvider> {
  const client = new KMSClient({
    ...(config.region === undefined ? {} : { region: config.region }),
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    maxAttempts: config.maxAttempts,
    // Exponential backoff with full jitter, throttling-aware, bounded by a retry quota.
    retryMode: 'standard',
    requestHandler: {
      connectionTimeout: config.connectTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });
  let region: string;
  try {
    region = await client.config.region();
  } catch {
    client.destroy();
    throw new TokendError(
      'ERR_CONFIG',
      `no AWS region for KMS key '${config.keyId}': set provider.region in the config file, or AWS_REGION`,
    );
  }
  return new AwsKmsProvider(client, config, region);
}

class AwsKmsProvider implements KeyProvider {
  readonly name = 'aws' as const;
  readonly defaultKeyId: string;
  readonly #client: KMSClient;
  readonly #region: string;
  readonly #deadlineMs: number;

  constructor(client: KMSClient, config: AwsProviderConfig, region: string) {
    this.#client = client;
    this.#region = region;
    this.#deadlineMs = config.deadlineMs;
    this.defaultKeyId = config.keyId;
  }

  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    const out = await this.#send('GenerateDataKey', [this.defaultKeyId], (abortSignal) =>
      this.#client.send(
        new GenerateDataKeyCommand({ KeyId: this.defaultKeyId, KeySpec: 'AES_256', EncryptionContext: { ...context } }),
        { abortSignal },
      ),
    );
    const plaintext = takeDataKey(out.Plaintext);
    if (!plaintext || !out.CiphertextBlob || out.CiphertextBlob.length === 0 || !sameKey(this.defaultKeyId, out.KeyId)) {
      plaintext?.fill(0);
      throw new TokendError('ERR_KMS_UNAVAILABLE', `KMS answered GenerateDataKey for key '${this.defaultKeyId}' with an unusable response; retry later`, {
        detail: 'the response lacks a 32-byte Plaintext or a CiphertextBlob, or names another key',
      });
    }
    return { plaintext, wrapped: Buffer.from(out.CiphertextBlob), keyId: out.KeyId };
  }

  /** Fails closed: KeyId is always sent, and an answer from any other key is refused. */
  async unwrap(wrapped: Buffer, keyId: string, context: EncryptionContext): Promise<Buffer> {
    const out = await this.#send('Decrypt', [keyId], (abortSignal) =>
      this.#client.send(
        new DecryptCommand({ CiphertextBlob: wrapped, KeyId: keyId, EncryptionContext: { ...context } }),
        { abortSignal },
      ),
    );
    const plaintext = takeDataKey(out.Plaintext);
    if (!plaintext || !sameKey(keyId, out.KeyId)) {
      plaintext?.fill(0);
      throw new TokendError('ERR_DECRYPT_FAILED', 'data key could not be unwrapped', {
        detail: plaintext
          ? `KMS Decrypt answered for key '${out.KeyId}', not the pinned key '${keyId}'`
          : 'KMS Decrypt answered without a 32-byte data key',
      });
    }
    return plaintext;
  }

  async rewrap(wrapped: Buffer, keyId: string, context: EncryptionContext, toKeyId?: string): Promise<RewrappedKey> {
    const target = toKeyId ?? this.defaultKeyId;
    const out = await this.#send('ReEncrypt', [keyId, target], (abortSignal) =>
      this.#client.send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped,
          SourceKeyId: keyId,
          SourceEncryptionContext: { ...context },
          DestinationKeyId: target,
          DestinationEncryptionContext: { ...context },
        }),
        { abortSignal },
      ),
    );
    if (!sameKey(keyId, out.SourceKeyId)) {
      throw new TokendError('ERR_DECRYPT_FAILED', 'data key could not be unwrapped', {
        detail: `KMS ReEncrypt answered for source key '${out.SourceKeyId}', not the pinned key '${keyId}'`,
      });
    }
    if (!out.CiphertextBlob || out.CiphertextBlob.length === 0 || !sameKey(target, out.KeyId)) {
      throw new TokendError('ERR_KMS_UNAVAILABLE', `KMS answered ReEncrypt to key '${target}' with an unusable response; retry later`, {
        detail: 'the response lacks a CiphertextBlob, or names another destination key',
      });
    }
    return { wrapped: Buffer.from(out.CiphertextBlob), keyId: out.KeyId };
  }

  /** DescribeKey: the key ARN behind a key id, alias or ARN. */
  async resolveKeyId(keyId: string): Promise<string> {
    const out = await this.#send('DescribeKey', [keyId], (abortSignal) =>
      this.#client.send(new DescribeKeyCommand({ KeyId: keyId }), { abortSignal }),
    );
    const arn = out.KeyMetadata?.Arn;
    if (!arn) throw new TokendError('ERR_KMS_UNAVAILABLE', `KMS answered DescribeKey for KMS key '${keyId}' without a key ARN; retry later`);
    return arn;
  }

  /** DescribeKey on the configured key: it must exist, be enabled and be a symmetric encryption key. */
  async check(): Promise<void> {
    const out = await this.#send('DescribeKey', [this.defaultKeyId], (abortSignal) =>
      this.#client.send(new DescribeKeyCommand({ KeyId: this.defaultKeyId }), { abortSignal }),
    );
    const meta = out.KeyMetadata;
    const subject = `KMS key '${this.defaultKeyId}'`;
    if (!meta) throw new TokendError('ERR_KMS_UNAVAILABLE', `KMS answered DescribeKey for ${subject} without key metadata; retry later`);
    if (meta.KeyState !== 'Enabled' || meta.Enabled !== true) {
      throw new TokendError('ERR_KMS_ACCESS', `${subject} is not enabled (state ${meta.KeyState ?? 'unknown'})`);
    }
    if (meta.KeyUsage !== 'ENCRYPT_DECRYPT' || (meta.KeySpec ?? 'SYMMETRIC_DEFAULT') !== 'SYMMETRIC_DEFAULT') {
      throw new TokendError(
        'ERR_KMS_ACCESS',
        `${subject} is not a symmetric encryption key (usage ${meta.KeyUsage ?? 'unknown'}, spec ${meta.KeySpec ?? 'unknown'})`,
      );
    }
  }

  close(): void {
    this.#client.destroy();
  }

  /**
   * Runs one SDK call under the total deadline. The SDK retries inside it; the
   * abort signal cancels the attempt in flight, and the race makes the deadline
   * hold even while the SDK sleeps between attempts.
   */
  async #send<T>(operation: KmsCall['operation'], keys: readonly string[], run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const call: KmsCall = { operation, keys, region: this.#region, deadlineMs: this.#deadlineMs };
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = deadlineExceeded(call);
        reject(err);
        controller.abort(err);
      }, this.#deadlineMs);
    });
    try {
      return await Promise.race([run(controller.signal), deadline]);
    } catch (err) {
      throw kmsFailure(controller.signal.aborted ? controller.signal.reason : err, call);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Copies a KMS plaintext data key into a buffer we own and zeroes the SDK's copy. Undefined unless 32 bytes. */
function takeDataKey(plaintext: Uint8Array | undefined): Buffer | undefined {
  if (!plaintext) return undefined;
  try {
    if (plaintext.length !== DATA_KEY_BYTES) return undefined;
    const key = Buffer.alloc(DATA_KEY_BYTES);
    key.set(plaintext);
    return key;
  } finally {
    plaintext.fill(0);
  }
}

/** A key ARN as KMS returns it: `arn:<partition>:kms:<region>:<account>:key/<id>`. */
function isKeyArn(value: string | undefined): boolean {
  return typeof value === 'string' && /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(value);
}

/**
 * Whether KMS answered with a key ARN for the key we named. Sealed files record
 * the key ARN, which must match exactly; a bare key id must be the ARN's id. An
 * alias cannot be resolved locally, so KMS's own KeyId check holds then.
 */
function sameKey(named: string, answered: string | undefined): answered is string {
  if (answered === undefined || !isKeyArn(answered)) return false;
  if (isKeyArn(named)) return named === answered;
  if (named.startsWith('alias/') || named.startsWith('arn:')) return true;
  return answered.endsWith(`:key/${named}`);
}
