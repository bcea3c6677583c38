// AWS Signature Version 4, as the KMS test server needs it: recompute the
// signature of an incoming request and compare, and sign raw requests for tests
// that must talk to the server without the SDK (unsigned / mis-signed cases).

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** The fake credentials tests hand the SDK (via AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Not real, never were. */
export const TEST_CREDENTIALS = Object.freeze({
  accessKeyId: 'AKIATOKENDTESTFAKE00',
  secretAccessKey: 'tokend-test-fake-secret-key-not-real-00000',
});

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** The parts of a request that SigV4 covers. Header names are lower case; values as received. */
export interface SignableRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

/** Why a request is not properly signed: the KMS error type, its HTTP status and message. */
export interface SignatureProblem {
  readonly type: string;
  readonly status: number;
  readonly message: string;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;.-]+), ?Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
/** Headers a signature must cover for the request to be meaningful. */
const MUST_SIGN = ['host', 'x-amz-date', 'x-amz-target', 'content-type'];
const MAX_SKEW_MS = 15 * 60 * 1000;

/**
 * Verifies the SigV4 signature of `req` for `service` in `region` with `creds`.
 * Returns undefined when the signature is valid, else the error KMS would answer.
 */
export function verifySignature(
  req: SignableRequest,
  creds: Credentials,
  region: string,
  service: string,
  now: Date = new Date(),
): SignatureProblem | undefined {
  const auth = header(req, 'authorization');
  if (auth === undefined) {
    return { type: 'MissingAuthenticationTokenException', status: 403, message: 'Missing Authentication Token' };
  }
  const m = AUTHORIZATION.exec(auth);
  if (!m) {
    return { type: 'IncompleteSignatureException', status: 400, message: `Authorization header requires '${ALGORITHM}' with Credential, SignedHeaders and Signature parameters.` };
  }
  const [, accessKeyId, day, credRegion, credService, signedList, signature] = m as unknown as string[];
  if (accessKeyId !== creds.accessKeyId) {
    return { type: 'UnrecognizedClientException', status: 400, message: 'The security token included in the request is invalid.' };
  }
  if (credRegion !== region || credService !== service) {
    return { type: 'InvalidSignatureException', status: 400, message: `Credential should be scoped to a valid region and service ('${region}', '${service}'), not '${credRegion}', '${credService}'.` };
  }
  const amzDate = header(req, 'x-amz-date');
  const d = amzDate === undefined ? null : AMZ_DATE.exec(amzDate);
  if (!amzDate || !d || !amzDate.startsWith(day as string)) {
    return { type: 'IncompleteSignatureException', status: 400, message: 'X-Amz-Date is missing or does not match the credential scope date.' };
  }
  const signed = (signedList as string).split(';');
  const sorted = [...signed].sort();
  if (signed.some((h, i) => h !== sorted[i]) || new Set(signed).size !== signed.length) {
    return { type: 'IncompleteSignatureException', status: 400, message: 'SignedHeaders must be sorted and unique.' };
  }
  const unsigned = MUST_SIGN.filter((h) => !signed.includes(h));
  if (unsigned.length > 0) {
    return { type: 'InvalidSignatureException', status: 400, message: `The request signature does not cover: ${unsigned.join(', ')}.` };
  }
  const when = Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3]), Number(d[4]), Number(d[5]), Number(d[6]));
  if (Math.abs(now.getTime() - when) > MAX_SKEW_MS) {
    return { type: 'InvalidSignatureException', status: 400, message: `Signature expired: ${amzDate} is now earlier or later than 15 minutes from the server time.` };
  }
  const bodyHash = sha256(req.body);
  const claimed = header(req, 'x-amz-content-sha256');
  if (claimed !== undefined && claimed !== bodyHash) {
    return { type: 'InvalidSignatureException', status: 400, message: 'The provided x-amz-content-sha256 header does not match what was computed.' };
  }
  const scope = `${day}/${region}/${service}/aws4_request`;
  const expected = signatureFor(req, signed, amzDate, scope, creds.secretAccessKey, bodyHash);
  if (!timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(signature as string, 'hex'))) {
    return {
      type: 'InvalidSignatureException',
      status: 400,
      message: 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
    };
  }
  return undefined;
}

/** Signs `req` (adding x-amz-date and authorization headers) the way an AWS SDK would. For raw test requests. */
export function signRequest(
  req: SignableRequest,
  creds: Credentials,
  region: string,
  service: string,
  now: Date = new Date(),
): Record<string, string> {
  const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k.toLowerCase()] = v;
  headers['x-amz-date'] = amzDate;
  const signed = Object.keys(headers).sort();
  const scope = `${amzDate.slice(0, 8)}/${region}/${service}/aws4_request`;
  const signature = signatureFor({ ...req, headers }, signed, amzDate, scope, creds.secretAccessKey, sha256(req.body));
  headers.authorization = `${ALGORITHM} Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`;
  return headers;
}

function signatureFor(
  req: SignableRequest,
  signed: readonly string[],
  amzDate: string,
  scope: string,
  secret: string,
  bodyHash: string,
): string {
  const [path, query = ''] = req.path.split('?', 2) as [string, string?];
  const canonicalQuery = query
    .split('&')
    .filter((p) => p.length > 0)
    .sort()
    .join('&');
  const canonicalHeaders = signed.map((h) => `${h}:${(header(req, h) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonicalRequest = [req.method, path, canonicalQuery, canonicalHeaders, signed.join(';'), bodyHash].join('\n');
  const stringToSign = [ALGORITHM, amzDate, scope, sha256(Buffer.from(canonicalRequest, 'utf8'))].join('\n');
  const [day, region, service] = scope.split('/') as [string, string, string];
  let key = hmac(Buffer.from(`AWS4${secret}`, 'utf8'), day);
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
  return hmac(key, stringToSign).toString('hex');
}

function header(req: SignableRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}
