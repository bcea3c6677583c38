// Typed errors with stable codes: callers switch on `code`, people read `message`.

/** Every code tokend can fail with. Stable: scripts and the HTTP API depend on them. */
export type ErrorCode =
  | 'ERR_USAGE'
  | 'ERR_CONFIG'
  | 'ERR_PERMISSIONS'
  | 'ERR_INVALID_NAME'
  | 'ERR_NOT_FOUND'
  | 'ERR_EXISTS'
  | 'ERR_SEALED_CORRUPT'
  | 'ERR_DECRYPT_FAILED'
  | 'ERR_PROVIDER_MISMATCH'
  | 'ERR_KEYFILE'
  | 'ERR_KMS_ACCESS'
  | 'ERR_KMS_UNAVAILABLE'
  | 'ERR_POLICY'
  | 'ERR_PKI'
  | 'ERR_TOO_LARGE'
  | 'ERR_IO';

/**
 * The one error type tokend throws on purpose.
 * `message` is lower case and names the subject; `detail` is for operators
 * (audit log, debug output) and is never sent to a remote caller.
 * Neither ever contains a secret value.
 */
export class TokendError extends Error {
  readonly code: ErrorCode;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; detail?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TokendError';
    this.code = code;
    this.detail = options.detail;
  }
}

/** True when `err` is a TokendError, optionally with the given code. */
export function isTokendError(err: unknown, code?: ErrorCode): err is TokendError {
  return err instanceof TokendError && (code === undefined || err.code === code);
}

const MAX_DETAIL = 300;

/**
 * The single opaque failure for anything that goes wrong while opening a sealed
 * token: tampering, truncation, wrong key, wrong name. No oracle: the caller
 * learns only that it failed; `detail` says why, for the audit log.
 */
export function decryptFailed(name: string, detail: string, cause?: unknown): TokendError {
  return new TokendError('ERR_DECRYPT_FAILED', `sealed token '${name}' could not be decrypted`, {
    // Bounded: a detail may quote a field of a hostile file, and it goes to the audit log.
    detail: detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL)}…` : detail,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A short description of any thrown value, for logs; never includes stack or secrets. */
export function describeError(err: unknown): string {
  if (err instanceof TokendError) return err.detail ? `${err.message} (${err.detail})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
