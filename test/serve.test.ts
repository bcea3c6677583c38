import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokendError } from '../src/errors.js';
import { createProvider } from '../src/kms/create.js';
import type { KeyProvider } from '../src/kms/provider.js';
import { loadConfig } from '../src/config.js';
import { revoke } from '../src/pki/index.js';
import { curl, makeFixture, startDaemon } from './support/daemon.js';
import type { Fixture, Running } from './support/daemon.js';

const SECRET = Buffer.concat([Buffer.from('tok-'), Buffer.from([0, 1, 2, 0x0a, 0xff]), Buffer.from('-end')]);
const TEXT_SECRET = 'p@ss "word" \\ with\ttab and ünïcode';
const ALL_VALUES = [SECRET, Buffer.from(TEXT_SECRET), Buffer.from('other-secret-value')];

let fx: Fixture;
let srv: Running;
let demo: string;
let admin: string;
let billing: string;
/** Provider outage switch for the wrapped (real) keyfile provider. */
let outage = false;

beforeAll(async () => {
  fx = await makeFixture();
  await fx.seal('binary-token', SECRET);
  await fx.seal('text-token', TEXT_SECRET);
  await fx.seal('other-token', 'other-secret-value');
  await fx.seal('cold-token', 'cold-value');
  await fx.writePolicy([
    { identities: ['demo'], tokens: ['binary-token', 'text-token', 'missing-*', 'cold-token'] },
    { identities: ['billing'], tokens: ['other-*'] },
  ]);
  demo = fx.bundleDir('demo');
  admin = fx.bundleDir('admin');
  billing = await fx.bundle('billing');
  srv = await startDaemon(fx, {
    sources: {
      createProvider: async (config) => flaky(await createProvider(config.provider)),
    },
  });
});

afterAll(async () => {
  expect(await srv.stop()).toBe(0);
  // Log scan: no log line ever contains a token value, in any encoding.
  const text = srv.logText();
  for (const v of ALL_VALUES) {
    for (const form of [v.toString('utf8'), v.toString('base64'), v.toString('hex'), JSON.stringify(v.toString('utf8')).slice(1, -1)]) {
      expect(text.includes(form)).toBe(false);
    }
  }
});

function flaky(inner: KeyProvider): KeyProvider {
  const down = () => {
    if (outage) throw new TokendError('ERR_KMS_UNAVAILABLE', 'KMS unavailable (test outage)');
  };
  return {
    name: inner.name,
    defaultKeyId: inner.defaultKeyId,
    generateDataKey: (c) => inner.generateDataKey(c),
    unwrap: async (w, k, c) => {
      down();
      return inner.unwrap(w, k, c);
    },
    rewrap: (w, k, c, t) => inner.rewrap(w, k, c, t),
    resolveKeyId: (k) => inner.resolveKeyId(k),
    check: () => inner.check(),
    close: () => inner.close(),
  };
}

const audit = () => srv.logs.filter((l) => l.msg === 'request');

describe('serve: the API over real mTLS with curl', () => {
  it('returns the exact token bytes as text/plain with Cache-Control: no-store', async () => {
    const r = await curl(`${srv.url}/v1/tokens/binary-token`, { bundle: demo });
    expect(r.status).toBe(200);
    expect(r.body.equals(SECRET)).toBe(true);
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.headers['content-length']).toBe(String(SECRET.length));
  });

  it('returns {name, version, value} with Accept: application/json', async () => {
    const r = await curl(`${srv.url}/v1/tokens/text-token`, { bundle: demo, args: ['-H', 'Accept: application/json'] });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(JSON.parse(r.body.toString('utf8'))).toEqual({ name: 'text-token', version: 1, value: TEXT_SECRET });
  });

  it('sends a token that is not UTF-8 as base64 in JSON, marked as such', async () => {
    const r = await curl(`${srv.url}/v1/tokens/binary-token`, { bundle: demo, args: ['-H', 'Accept: application/json'] });
    const doc = JSON.parse(r.body.toString('utf8'));
    expect(doc.encoding).toBe('base64');
    expect(Buffer.from(doc.value, 'base64').equals(SECRET)).toBe(true);
  });

  it('lists only the existing tokens this identity may read', async () => {
    const r = await curl(`${srv.url}/v1/tokens`, { bundle: demo });
    expect(JSON.parse(r.body.toString())).toEqual({ identity: 'demo', tokens: ['binary-token', 'cold-token', 'text-token'] });
    const b = await curl(`${srv.url}/v1/tokens`, { bundle: billing });
    expect(JSON.parse(b.body.toString()).tokens).toEqual(['other-token']);
  });

  it('tells a caller who it is (whoami) from the SPIFFE ID in its certificate', async () => {
    const r = await curl(`${srv.url}/v1/whoami`, { bundle: billing });
    expect(JSON.parse(r.body.toString())).toMatchObject({ identity: 'billing', source: 'spiffe', spiffeId: 'spiffe://tokend.local/billing' });
  });

  it('answers /healthz for any authenticated caller', async () => {
    const r = await curl(`${srv.url}/healthz`, { bundle: billing });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString()).status).toBe('ok');
  });

  it('serves /metrics to an admin identity only', async () => {
    const denied = await curl(`${srv.url}/metrics`, { bundle: demo });
    expect(denied.status).toBe(403);
    const r = await curl(`${srv.url}/metrics`, { bundle: admin });
    expect(r.status).toBe(200);
    const text = r.body.toString();
    expect(text).toMatch(/tokend_requests_total\{route="token",status="200"\} \d+/);
    expect(text).toMatch(/tokend_kms_calls_total \d+/);
    expect(text).toMatch(/tokend_cert_expiry_timestamp_seconds\{cert="server"\} \d+/);
  });
});

describe('serve: refused at the TLS level (never reaches HTTP)', () => {
  const refusedAtTls = async (r: Awaited<ReturnType<typeof curl>>) => {
    expect(r.status).toBe(0);
    expect(r.exit).not.toBe(0);
  };

  it('refuses a connection without a client certificate', async () => {
    const before = audit().length;
    await refusedAtTls(await curl(`${srv.url}/healthz`, { cacert: join(demo, 'ca.crt') }));
    expect(audit().length).toBe(before);
  });

  it('refuses a client certificate from another CA', async () => {
    const other = await makeFixture();
    await refusedAtTls(await curl(`${srv.url}/healthz`, { bundle: other.bundleDir('demo'), cacert: join(demo, 'ca.crt') }));
  });

  it('refuses an expired client certificate', async () => {
    const out = join(fx.dir, 'expired');
    await fx.bundle('expired', { out, now: new Date(Date.now() - 3 * 86_400_000), ttlMs: 86_400_000 });
    await refusedAtTls(await curl(`${srv.url}/healthz`, { bundle: out }));
  });

  it('refuses a client certificate that is not yet valid', async () => {
    const out = join(fx.dir, 'future');
    await fx.bundle('future', { out, now: new Date(Date.now() + 86_400_000), ttlMs: 86_400_000 });
    await refusedAtTls(await curl(`${srv.url}/healthz`, { bundle: out }));
  });

  it('refuses a server-auth-only certificate used as a client certificate', async () => {
    const dir = join(fx.dir, 'server-as-client');
    await mkdir(dir);
    await writeFile(join(dir, 'client.crt'), await readFile(join(fx.dir, 'pki', 'server.crt')));
    await writeFile(join(dir, 'client.key'), await readFile(join(fx.dir, 'pki', 'server.key')), { mode: 0o600 });
    await writeFile(join(dir, 'ca.crt'), await readFile(join(fx.dir, 'pki', 'ca.crt')));
    await refusedAtTls(await curl(`${srv.url}/healthz`, { bundle: dir }));
  });
});

describe('serve: refused at the HTTP level', () => {
  it('answers 403 for an identity the policy does not allow, and audits the denial', async () => {
    const r = await curl(`${srv.url}/v1/tokens/binary-token`, { bundle: billing });
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(r.body.toString())).toMatchObject({ status: 403, code: 'ERR_FORBIDDEN' });
    expect(audit().at(-1)).toMatchObject({ identity: 'billing', token: 'binary-token', decision: 'deny', status: 403 });
  });

  it('answers 404 for a missing token the caller could read, 403 for one it could not (no enumeration)', async () => {
    const readable = await curl(`${srv.url}/v1/tokens/missing-thing`, { bundle: demo });
    expect(readable.status).toBe(404);
    expect(JSON.parse(readable.body.toString()).code).toBe('ERR_TOKEN_NOT_FOUND');
    const unreadable = await curl(`${srv.url}/v1/tokens/no-such-token`, { bundle: demo });
    expect(unreadable.status).toBe(403);
  });

  it.each([
    ['..%2fetc%2fpasswd'],
    ['%00'],
    ['binary%2dtoken'],
    ['BINARY-TOKEN'],
    ['a'.repeat(200)],
    ['..'],
    ['x/y'],
  ])('answers 400 for the token name %s', async (name) => {
    const r = await curl(`${srv.url}/v1/tokens/${name}`, { bundle: demo, args: ['--path-as-is'] });
    expect(r.status).toBe(400);
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH'])('answers 405 to %s', async (method) => {
    const r = await curl(`${srv.url}/v1/tokens/binary-token`, { bundle: demo, args: ['-X', method] });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD');
  });

  it('answers 431 to oversized headers', async () => {
    const r = await curl(`${srv.url}/healthz`, { bundle: demo, args: ['-H', `X-Big: ${'a'.repeat(20_000)}`] });
    expect(r.status).toBe(431);
  });

  it('answers 400 to X-Forwarded-For and other proxy headers', async () => {
    for (const h of ['X-Forwarded-For: 10.0.0.1', 'Forwarded: for=10.0.0.1', 'X-Real-IP: 10.0.0.1']) {
      const r = await curl(`${srv.url}/v1/tokens/binary-token`, { bundle: demo, args: ['-H', h] });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body.toString()).code).toBe('ERR_PROXY_HEADER');
    }
  });

  it('answers 400 to a GET with a body', async () => {
    const r = await curl(`${srv.url}/v1/tokens/binary-token`, { bundle: demo, args: ['-X', 'GET', '--data', 'x'] });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body.toString()).code).toBe('ERR_BODY_NOT_ALLOWED');
  });

  it('answers 404 to an unknown route', async () => {
    expect((await curl(`${srv.url}/v2/anything`, { bundle: demo })).status).toBe(404);
  });
});

describe('serve: TLS session resumption', () => {
  it('resumes a session with a ticket, keeps the client identity, and starts over after the ticket keys rotate', async () => {
    const { connect } = await import('node:tls');
    const [cert, key, ca] = await Promise.all(['client.crt', 'client.key', 'ca.crt'].map((f) => readFile(join(demo, f))));
    const session = (reuse?: Buffer) =>
      new Promise<{ reused: boolean; version: string | null; ticket: Buffer | undefined; body: string }>((resolve, reject) => {
        let ticket: Buffer | undefined;
        const s = connect({ host: '127.0.0.1', port: srv.port, cert, key, ca, servername: 'localhost', ...(reuse ? { session: reuse } : {}) });
        s.on('session', (t: Buffer) => (ticket = t));
        s.once('secureConnect', () => s.write('GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
        let data = '';
        s.on('data', (c: Buffer) => (data += c.toString()));
        s.on('end', () => resolve({ reused: s.isSessionReused(), version: s.getProtocol(), ticket, body: data.slice(data.indexOf('\r\n\r\n') + 4) }));
        s.on('error', reject);
      });
    const first = await session();
    expect(first.version).toBe('TLSv1.3');
    expect(first.reused).toBe(false);
    const second = await session(first.ticket);
    expect(second.reused).toBe(true);
    expect(JSON.parse(second.body).identity).toBe('demo');
    expect(await srv.daemon.reload()).toBe(true); // a reload rotates the ticket keys
    const third = await session(first.ticket);
    expect(third.reused).toBe(false);
    expect(JSON.parse(third.body).identity).toBe('demo');
  });
});

describe('serve: provider outage', () => {
  it('serves a cached key during an outage, 503 + Retry-After for an uncached one, and recovers', async () => {
    expect((await curl(`${srv.url}/v1/tokens/text-token`, { bundle: demo })).status).toBe(200);
    outage = true;
    try {
      const warm = await curl(`${srv.url}/v1/tokens/text-token`, { bundle: demo });
      expect(warm.status).toBe(200);
      expect(warm.body.toString()).toBe(TEXT_SECRET);
      const cold = await curl(`${srv.url}/v1/tokens/cold-token`, { bundle: demo });
      expect(cold.status).toBe(503);
      expect(Number(cold.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(cold.body.toString()).code).toBe('ERR_KMS_UNAVAILABLE');
    } finally {
      outage = false;
    }
    // The breaker holds cold requests back for a short cooldown, then tries the provider again.
    await new Promise((r) => setTimeout(r, 1_100));
    const back = await curl(`${srv.url}/v1/tokens/cold-token`, { bundle: demo });
    expect(back.status).toBe(200);
    expect(back.body.toString()).toBe('cold-value');
  });
});

describe('serve: reload', () => {
  it('applies a changed policy to a keep-alive connection opened before the reload', async () => {
    const config = await loadConfig(fx.configPath);
    const key = await readFile(join(billing, 'client.key'));
    const cert = await readFile(join(billing, 'client.crt'));
    const ca = await readFile(join(billing, 'ca.crt'));
    const { Agent } = await import('node:https');
    const agent = new Agent({ keepAlive: true, maxSockets: 1, key, cert, ca });
    const get = (path: string) =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = request(`${srv.url}${path}`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      expect((await get('/v1/tokens/text-token')).status).toBe(403);
      await fx.writePolicy([{ identities: ['billing'], tokens: ['text-token'] }, { identities: ['demo'], tokens: ['*-token'] }]);
      expect(await srv.daemon.reload()).toBe(true);
      const after = await get('/v1/tokens/text-token');
      expect(after).toEqual({ status: 200, reused: true });
      expect(config.policy).toBe(join(fx.dir, 'policy.json'));
    } finally {
      agent.destroy();
    }
  });

  it('keeps the old policy in force when the new policy file is broken', async () => {
    await writeFile(join(fx.dir, 'policy.json'), '{"rules": [ {"identities": ["demo"], "tokens": [] } ]}');
    expect(await srv.daemon.reload()).toBe(false);
    const err = srv.logs.filter((l) => l.msg === 'reload failed; still serving the previous state').at(-1);
    expect(String(err?.reason)).toContain("rules[0].tokens must be a non-empty list");
    expect((await curl(`${srv.url}/v1/tokens/text-token`, { bundle: billing })).status).toBe(200);
  });

  it('refuses a revoked certificate after a reload: new connections at the TLS level, live ones with 403', async () => {
    const victim = await fx.bundle('victim');
    const [cert, key, ca] = await Promise.all(['client.crt', 'client.key', 'ca.crt'].map((f) => readFile(join(victim, f))));
    const { Agent } = await import('node:https');
    const agent = new Agent({ keepAlive: true, maxSockets: 1, cert, key, ca });
    const get = () =>
      new Promise<{ status: number; reused: boolean; code?: string }>((resolve, reject) => {
        const req = request(`${srv.url}/healthz`, { agent }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, code: body.includes('"code"') ? JSON.parse(body).code : undefined }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      expect((await get()).status).toBe(200);
      const config = await loadConfig(fx.configPath);
      await revoke(config.pki, 'victim');
      await fx.writePolicy([{ identities: ['demo'], tokens: ['*-token'] }]);
      expect(await srv.daemon.reload()).toBe(true);
      expect(await get()).toEqual({ status: 403, reused: true, code: 'ERR_REVOKED' });
    } finally {
      agent.destroy();
    }
    const r = await curl(`${srv.url}/healthz`, { bundle: victim });
    expect(r.status).toBe(0);
    expect(srv.logs.some((l) => l.msg === 'connection refused' && l.reason === 'client certificate revoked')).toBe(true);
  });
});
