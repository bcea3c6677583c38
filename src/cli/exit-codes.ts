// Exit codes: the contract between the CLI and scripts (documented in `tokend --help` and the README).

import type { ErrorCode } from '../errors.js';

/** Exit code per outcome. Stable. */
export const EXIT = Object.freeze({
  ok: 0,
  error: 1,
  usage: 2,
  config: 3,
  notFound: 4,
  exists: 5,
  decrypt: 6,
  kmsAccess: 7,
  kmsUnavailable: 8,
});

const BY_CODE: Readonly<Record<ErrorCode, number>> = {
  ERR_USAGE: EXIT.usage,
  ERR_INVALID_NAME: EXIT.usage,
  ERR_TOO_LARGE: EXIT.usage,
  ERR_CONFIG: EXIT.config,
  ERR_PERMISSIONS: EXIT.config,
  ERR_KEYFILE: EXIT.config,
  ERR_POLICY: EXIT.config,
  ERR_PKI: EXIT.config,
  ERR_NOT_FOUND: EXIT.notFound,
  ERR_EXISTS: EXIT.exists,
  ERR_SEALED_CORRUPT: EXIT.decrypt,
  ERR_DECRYPT_FAILED: EXIT.decrypt,
  ERR_PROVIDER_MISMATCH: EXIT.decrypt,
  ERR_KMS_ACCESS: EXIT.kmsAccess,
  ERR_KMS_UNAVAILABLE: EXIT.kmsUnavailable,
  ERR_IO: EXIT.error,
};

/** The exit code for a TokendError code. */
export function exitCodeFor(code: ErrorCode): number {
  return BY_CODE[code];
}

/** The text `tokend --help` prints about exit codes. */
export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  other failure (I/O error, a partial rewrap)
  2  usage error: unknown command or option, invalid token name, token too large
  3  configuration or permissions: bad config, policy or keyfile, loose file modes
  4  not found: no such token, file or identity
  5  exists: refused to overwrite (use --force where offered)
  6  a sealed token is corrupt or does not decrypt (tampered, wrong key, wrong name)
  7  KMS access denied, key disabled or missing
  8  KMS unavailable (network, throttling, timeout): retry later`;
