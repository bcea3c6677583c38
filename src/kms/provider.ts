// The key-provider interface: the one seam between tokend and any KMS or HSM.
// It mirrors AWS KMS GenerateDataKey / Decrypt / ReEncrypt so that every backend
// (keyfile, AWS, later PKCS#11, Vault Transit, GCP, Azure) fits the same shape.

/**
 * Non-secret key/value pairs bound to a wrapped data key. Unwrapping with a
 * different context fails. It shows up in KMS audit logs (CloudTrail), so it
 * must never hold a secret.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

/** A fresh data key: `plaintext` is 32 bytes the caller must zero after use. */
export interface DataKey {
  readonly plaintext: Buffer;
  readonly wrapped: Buffer;
  /** The key that wrapped it, fully qualified (an ARN for AWS), as recorded in the sealed file. */
  readonly keyId: string;
}

/** A data key wrapped under another KMS key; the plaintext key was never returned. */
export interface RewrappedKey {
  readonly wrapped: Buffer;
  readonly keyId: string;
}

/** Provider identifiers as recorded in sealed files. */
export type ProviderName = 'keyfile' | 'aws';

/**
 * A KMS or KMS-like backend. Implementations fail with TokendError:
 * ERR_DECRYPT_FAILED when a wrapped key does not open (wrong key, wrong context,
 * tampering: one opaque error), ERR_KMS_ACCESS when the key is denied, disabled
 * or missing (names the key), ERR_KMS_UNAVAILABLE when the backend cannot be
 * reached in time (callers may retry later).
 */
export interface KeyProvider {
  readonly name: ProviderName;
  /** The key new data keys are wrapped under, for status lines and `check`. */
  readonly defaultKeyId: string;
  /** Generates a fresh 256-bit data key wrapped under the default key, bound to `context`. */
  generateDataKey(context: EncryptionContext): Promise<DataKey>;
  /** Unwraps a data key with the key it was wrapped under (`keyId` is pinned) and the same context. */
  unwrap(wrapped: Buffer, keyId: string, context: EncryptionContext): Promise<Buffer>;
  /**
   * Moves a wrapped data key to `toKeyId` (default: the default key) without the
   * plaintext data key leaving the provider where the backend allows it.
   */
  rewrap(wrapped: Buffer, keyId: string, context: EncryptionContext, toKeyId?: string): Promise<RewrappedKey>;
  /**
   * The fully qualified id a sealed file would record for `keyId` (an alias
   * becomes its key ARN), so callers can compare key ids. Throws ERR_KMS_ACCESS
   * when the key does not exist.
   */
  resolveKeyId(keyId: string): Promise<string>;
  /** Proves the backend is usable (keys readable, KMS reachable); throws otherwise. */
  check(): Promise<void>;
  /** Releases key material and connections. */
  close(): void;
}

/**
 * The canonical byte form of an encryption context: keys sorted, JSON encoded.
 * Used where a provider authenticates the context itself (the keyfile's AAD).
 */
export function canonicalContext(context: EncryptionContext): Buffer {
  const sorted = Object.keys(context)
    .sort()
    .map((k) => [k, context[k]]);
  return Buffer.from(JSON.stringify(sorted), 'utf8');
}
