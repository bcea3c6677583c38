// How AWS KMS failures become tokend errors: a stable code for each kind of
// failure, operator messages that name the key, one opaque error for anything
// wrong with a wrapped key, and never a ciphertext blob or plaintext anywhere.

import { TokendError } from '../errors.js';

/** The call that failed, as the error message should describe it. */
export interface KmsCall {
  readonly operation: 'GenerateDataKey' | 'Decrypt' | 'ReEncrypt' | 'DescribeKey';
  /** The key(s) as the operator wrote them: an ARN, alias or key id; for ReEncrypt, source and destination. */
  readonly keys: readonly string[];
  readonly region: string;
  readonly deadlineMs: number;
}

/** Wrapped-key problems: KMS says the blob, its key or its encryption context does not match. No oracle. */
const UNWRAP = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

/** Credentials problems: KMS could not authenticate the request. */
const CREDENTIALS = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignatureException',
  'IncompleteSignature',
  'MissingAuthenticationTokenException',
  'MissingAuthenticationToken',
  'InvalidClientTokenId',
  'ExpiredTokenException',
]);

/** Transient: worth retrying later (the SDK has already retried within the deadline). */
const TRANSIENT = new Set([
  'ThrottlingException',
  'LimitExceededException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalFailure',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);

const MAX_DETAIL = 300;

/** The error tokend raises when a call does not finish within the per-call deadline. */
export function deadlineExceeded(call: KmsCall): TokendError {
  return unavailable(call, `no answer within the ${call.deadlineMs} ms deadline`);
}

/**
 * Maps any error from a KMS call to a TokendError. The SDK error is summarized
 * into `detail` (type and KMS message) and deliberately not kept as `cause`:
 * SDK errors can carry the raw HTTP response, which must never reach a log.
 */
export function kmsFailure(err: unknown, call: KmsCall): TokendError {
  if (err instanceof TokendError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
    $fault?: unknown;
    $metadata?: { httpStatusCode?: unknown; attempts?: unknown };
  };
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const attempts = typeof e.$metadata?.attempts === 'number' ? e.$metadata.attempts : undefined;
  const summary = summarize(name, e.message, attempts);
  const key = keyPhrase(call);

  if (UNWRAP.has(name)) {
    return new TokendError('ERR_DECRYPT_FAILED', 'data key could not be unwrapped', {
      detail: `KMS ${call.operation} refused the wrapped key (${name}): the blob, its KMS key or its encryption context does not match`,
    });
  }
  if (name === 'AccessDeniedException') {
    return access(`KMS denied ${action(call)} on ${key}; check the IAM policy and the key policy`, summary);
  }
  if (name === 'DisabledException') return access(`${key} is disabled`, summary);
  if (name === 'KMSInvalidStateException') return access(`${key} is not usable in its current state (for example, pending deletion)`, summary);
  if (name === 'NotFoundException') return access(`${key} does not exist in region '${call.region}'`, summary);
  if (name === 'InvalidArnException') return access(`${key} is not a valid KMS key ARN`, summary);
  if (name === 'InvalidKeyUsageException') return access(`${key} is not a symmetric ENCRYPT_DECRYPT key`, summary);
  if (name === 'CredentialsProviderError') {
    // Often transient on EC2 (the instance metadata service did not answer): retryable, so the
    // server keeps serving cached keys within their stale bound and answers 503 for the rest.
    return unavailable(call, `no AWS credentials from the SDK's default provider chain (environment, profile, SSO, instance role): ${summary}`);
  }
  if (CREDENTIALS.has(name)) return access(`KMS rejected the AWS credentials used for ${key}`, summary);

  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const network = typeof e.code === 'string' ? e.code : undefined;
  if (TRANSIENT.has(name) || e.$fault === 'server' || (status !== undefined && status >= 500)) {
    return unavailable(call, summary);
  }
  if (name === 'AbortError') return unavailable(call, 'the call was aborted');
  if (status !== undefined) {
    // Any other client-side rejection KMS may add later: operator-facing, naming the key.
    return access(`KMS rejected ${call.operation} on ${key}`, summary);
  }
  return unavailable(call, network ? `${summary} [${network}]` : summary);
}

function access(message: string, detail: string): TokendError {
  return new TokendError('ERR_KMS_ACCESS', message, { detail });
}

function unavailable(call: KmsCall, why: string): TokendError {
  const keys = call.keys.map((k) => `'${k}'`).join(' → ');
  return new TokendError('ERR_KMS_UNAVAILABLE', `KMS is unavailable for key ${keys}; retry later`, { detail: why });
}

/** Names the key a failure is about; for ReEncrypt KMS does not say which of the two, so both are named. */
function keyPhrase(call: KmsCall): string {
  const [first, second] = call.keys;
  if (call.operation === 'ReEncrypt' && second !== undefined) {
    return `the source KMS key '${first}' or the destination KMS key '${second}'`;
  }
  return `KMS key '${first}'`;
}

function action(call: KmsCall): string {
  return call.operation === 'ReEncrypt' ? 'kms:ReEncryptFrom/kms:ReEncryptTo' : `kms:${call.operation}`;
}

function summarize(name: string, message: unknown, attempts: number | undefined): string {
  const text = typeof message === 'string' && message.length > 0 ? `${name}: ${message}` : name;
  const capped = text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL)}…` : text;
  return attempts !== undefined && attempts > 1 ? `${capped} (after ${attempts} attempts)` : capped;
}
