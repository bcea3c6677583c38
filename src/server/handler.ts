// The request handler: a short list of guards, then one route match. Every
// request is authenticated by its TLS client certificate before it gets here,
// and leaves exactly one audit line.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { decryptWithTokenKey, deriveTokenKey, unwrapDataKey } from '../envelope.js';
import type { SealedToken } from '../envelope.js';
import { describeError, isTokendError } from '../errors.js';
import { certificateFields, identityOf } from '../identity.js';
import type { Identity, NoIdentity } from '../identity.js';
import type { DataKeyCache, KeySource } from '../key-cache.js';
import type { KeyProvider } from '../kms/provider.js';
import type { Metrics } from '../metrics.js';
import { isValidName } from '../names.js';
import type { Logger } from './log.js';
import { sendProblem } from './problem.js';
import type { ProblemCode } from './problem.js';
import type { ServingState } from './state.js';
import { tokenJson } from './token-json.js';

export interface HandlerDeps {
  readonly state: () => ServingState;
  readonly cache: DataKeyCache;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/** What the audit line records about one request. Never a token value. */
interface Audit {
  route: string;
  identity: string | undefined;
  serial: string | undefined;
  token: string | undefined;
  decision: 'allow' | 'deny' | undefined;
  code: ProblemCode | undefined;
  cache: KeySource | undefined;
  reason: string | undefined;
}

const PROXY_HEADERS = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x-forwarded-host', 'x-forwarded-proto', 'via'];
const TOKEN_PREFIX = '/v1/tokens/';
const COMMON_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' } as const;

/** Identity per TLS connection, computed once per state generation. */
const identities = new WeakMap<TLSSocket, { generation: number; identity: Identity | NoIdentity }>();

/** The identity of a verified connection under `state` (cached per connection). */
export function connectionIdentity(socket: TLSSocket, state: ServingState): Identity | NoIdentity {
  const known = identities.get(socket);
  if (known && known.generation === state.generation) return known.identity;
  const identity = identityOf(certificateFields(socket.getPeerX509Certificate()), {
    from: state.config.server.identityFrom,
    trustDomain: state.config.pki.trustDomain,
  });
  identities.set(socket, { generation: state.generation, identity });
  return identity;
}

/** Builds the request listener. */
export function createHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { cache, metrics, log } = deps;

  const finish = (req: IncomingMessage, res: ServerResponse, audit: Audit, started: number) => {
    const status = res.statusCode;
    metrics.inc('tokend_requests_total', { route: audit.route, status: String(status) });
    if (audit.decision) metrics.inc('tokend_decisions_total', { decision: audit.decision });
    log.info({
      msg: 'request',
      method: req.method,
      route: audit.route,
      identity: audit.identity,
      serial: audit.serial,
      token: audit.token,
      decision: audit.decision,
      status,
      code: audit.code,
      cache: audit.cache,
      reason: audit.reason,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
  };

  const fail = (res: ServerResponse, audit: Audit, code: ProblemCode, detail?: string, headers?: Record<string, string>) => {
    audit.code = code;
    sendProblem(res, code, detail, headers);
  };

  return (req, res) => {
    const started = performance.now();
    const state = deps.state();
    const audit: Audit = { route: 'other', identity: undefined, serial: undefined, token: undefined, decision: undefined, code: undefined, cache: undefined, reason: undefined };
    res.once('finish', () => finish(req, res, audit, started));
    try {
      route(req, res, state, audit);
    } catch (err) {
      audit.reason = describeError(err);
      log.error({ msg: 'request failed', err });
      if (!res.headersSent) fail(res, audit, 'ERR_INTERNAL');
      else res.destroy();
    }
  };

  function route(req: IncomingMessage, res: ServerResponse, state: ServingState, audit: Audit): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, audit, 'ERR_METHOD_NOT_ALLOWED', undefined, { allow: 'GET, HEAD' });
    const te = req.headers['transfer-encoding'];
    const cl = req.headers['content-length'];
    if (te !== undefined || (cl !== undefined && cl !== '0')) {
      res.shouldKeepAlive = false; // the unread body must not be parsed as the next request
      return fail(res, audit, 'ERR_BODY_NOT_ALLOWED');
    }
    for (const h of PROXY_HEADERS) if (req.headers[h] !== undefined) return fail(res, audit, 'ERR_PROXY_HEADER', `header '${h}' is not accepted`);
    const url = req.url ?? '';
    if (!url.startsWith('/') || url.includes('?') || url.includes('#') || url.length > 256) return fail(res, audit, 'ERR_BAD_REQUEST');

    const socket = req.socket as TLSSocket;
    const identity = connectionIdentity(socket, state);
    audit.serial = identity.serial;
    if (state.tls.revoked.has(identity.serial)) {
      audit.reason = 'certificate revoked since the connection was made';
      res.shouldKeepAlive = false;
      return fail(res, audit, 'ERR_REVOKED');
    }
    if (url === '/healthz') {
      audit.route = 'healthz';
      return sendJson(req, res, 200, { status: 'ok', tokens: state.tokens.size });
    }
    if ('error' in identity) {
      audit.reason = identity.error;
      if (url === '/v1/whoami') audit.route = 'whoami';
      return fail(res, audit, 'ERR_NO_IDENTITY', identity.error);
    }
    audit.identity = identity.name;

    if (url.startsWith(TOKEN_PREFIX)) return token(req, res, state, identity, url.slice(TOKEN_PREFIX.length), audit);
    if (url === '/v1/tokens') {
      audit.route = 'list';
      const names = [...state.tokens.keys()].filter((n) => state.policy.allows(identity.name, n));
      return sendJson(req, res, 200, { identity: identity.name, tokens: names });
    }
    if (url === '/v1/whoami') {
      audit.route = 'whoami';
      return sendJson(req, res, 200, {
        identity: identity.name,
        source: identity.source,
        spiffeId: identity.spiffeId,
        serial: identity.serial,
        notAfter: identity.notAfter,
      });
    }
    if (url === '/metrics') {
      audit.route = 'metrics';
      if (!state.config.server.admins.includes(identity.name)) {
        audit.decision = 'deny';
        return fail(res, audit, 'ERR_FORBIDDEN');
      }
      audit.decision = 'allow';
      const body = Buffer.from(metrics.render());
      res.writeHead(200, { ...COMMON_HEADERS, 'content-type': 'text/plain; version=0.0.4', 'content-length': body.length });
      res.end(body);
      return;
    }
    return fail(res, audit, 'ERR_NO_ROUTE');
  }

  function token(req: IncomingMessage, res: ServerResponse, state: ServingState, identity: Identity, name: string, audit: Audit): void {
    audit.route = 'token';
    if (!isValidName(name)) return fail(res, audit, 'ERR_INVALID_NAME');
    audit.token = name;
    if (!state.policy.allows(identity.name, name)) {
      audit.decision = 'deny';
      audit.reason = 'no policy rule allows this identity to read this token';
      return fail(res, audit, 'ERR_FORBIDDEN');
    }
    audit.decision = 'allow';
    const sealed = state.tokens.get(name);
    if (!sealed) return fail(res, audit, 'ERR_TOKEN_NOT_FOUND');
    const json = wantsJson(req);
    cache
      .use(
        sealed,
        () => tokenKeyOf(sealed, state.provider),
        (key) => {
          const plaintext = decryptWithTokenKey(sealed, key);
          if (!json) return plaintext;
          const body = tokenJson(sealed.name, sealed.version, plaintext);
          plaintext.fill(0);
          return body;
        },
      )
      .then(
        ({ value, source }) => {
          audit.cache = source;
          const zero = () => value.fill(0);
          res.once('close', zero);
          res.writeHead(200, {
            ...COMMON_HEADERS,
            'content-type': json ? 'application/json' : 'text/plain',
            'content-length': value.length,
            'x-token-version': String(sealed.version),
          });
          res.end(value, zero);
        },
        (err: unknown) => {
          audit.reason = describeError(err);
          if (isTokendError(err, 'ERR_KMS_UNAVAILABLE')) {
            return fail(res, audit, 'ERR_KMS_UNAVAILABLE', undefined, { 'retry-after': String(Math.max(cache.retryAfterSeconds(), state.config.server.retryAfterSeconds)) });
          }
          if (!isTokendError(err)) log.error({ msg: 'unexpected error while opening a token', token: name, err });
          return fail(res, audit, 'ERR_TOKEN_UNAVAILABLE');
        },
      );
  }
}

/**
 * What the cache keeps for a token: its own key, derived from the unwrapped
 * data key once (the data key is zeroed at once), so a request does one
 * AES-GCM decryption and no key derivation.
 */
async function tokenKeyOf(sealed: SealedToken, provider: KeyProvider): Promise<Buffer> {
  const dataKey = await unwrapDataKey(sealed, provider);
  try {
    return deriveTokenKey(sealed, dataKey);
  } finally {
    dataKey.fill(0);
  }
}

function wantsJson(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return accept !== undefined && accept.includes('application/json');
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, doc: unknown): void {
  const body = Buffer.from(JSON.stringify(doc));
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': 'application/json', 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}

