// HTTP problems: every error response is application/problem+json with a stable `code`.
// Messages are fixed strings per code; details about the caller's own request are fine,
// details about tokens or keys stay in the audit log.

import type { ServerResponse } from 'node:http';

/** Stable problem codes of the HTTP API. */
export type ProblemCode =
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_BODY_NOT_ALLOWED'
  | 'ERR_PROXY_HEADER'
  | 'ERR_BAD_REQUEST'
  | 'ERR_INVALID_NAME'
  | 'ERR_NO_IDENTITY'
  | 'ERR_REVOKED'
  | 'ERR_FORBIDDEN'
  | 'ERR_TOKEN_NOT_FOUND'
  | 'ERR_NO_ROUTE'
  | 'ERR_KMS_UNAVAILABLE'
  | 'ERR_TOKEN_UNAVAILABLE'
  | 'ERR_INTERNAL';

const TITLES: Readonly<Record<ProblemCode, readonly [number, string]>> = {
  ERR_METHOD_NOT_ALLOWED: [405, 'only GET and HEAD are allowed'],
  ERR_BODY_NOT_ALLOWED: [400, 'requests must not have a body'],
  ERR_PROXY_HEADER: [400, 'proxy headers are refused: tokend is never behind a proxy'],
  ERR_BAD_REQUEST: [400, 'malformed request target'],
  ERR_INVALID_NAME: [400, 'invalid token name'],
  ERR_NO_IDENTITY: [403, 'the client certificate carries no usable identity'],
  ERR_REVOKED: [403, 'the client certificate is revoked'],
  ERR_FORBIDDEN: [403, 'not allowed'],
  ERR_TOKEN_NOT_FOUND: [404, 'no such token'],
  ERR_NO_ROUTE: [404, 'no such route'],
  ERR_KMS_UNAVAILABLE: [503, 'KMS unavailable, try again later'],
  ERR_TOKEN_UNAVAILABLE: [500, 'the token cannot be served; see the tokend audit log'],
  ERR_INTERNAL: [500, 'internal error'],
};

/** The status code of a problem. */
export function statusOf(code: ProblemCode): number {
  return TITLES[code][0];
}

/** Sends a problem response. `detail` must never hold a secret; `headers` are extra response headers. */
export function sendProblem(res: ServerResponse, code: ProblemCode, detail?: string, headers?: Record<string, string>): void {
  const [status, title] = TITLES[code];
  const body = Buffer.from(JSON.stringify(detail === undefined ? { status, code, title } : { status, code, title, detail }));
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(body);
}
