// Hostile HTTP over real mTLS: smuggling shapes, bodies on GET, malformed and huge
// headers, pipelined floods, slow senders, encoding tricks in token names,
// absolute-form and asterisk targets, HTTP/2 prior knowledge. Each is refused
// with the right status or a closed connection, never answered with a token it
// should not get, and after each one another client is still served.

import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { curl, makeFixture, startDaemon } from './support/daemon.js';
import type { Fixture, Running } from './support/daemon.js';
import { exchange, get } from './support/raw-http.js';
import type { Exchange } from './support/raw-http.js';

const SECRET = 'hostile-http-secret-value-7d1c';
const HEADERS_TIMEOUT_MS = 1_000;
const MAX_REQUESTS = 20;
const MAX_CONNECTIONS = 48;

let fx: Fixture;
let srv: Running;
let demo: string;
let admin: string;

beforeAll(async () => {
  fx = await makeFixture();
  await fx.seal('db', SECRET);
  await fx.seal('other', 'other-hostile-value-55aa');
  await fx.writePolicy([{ identities: ['demo'], tokens: ['db'] }]);
  await fx.editConfig((doc) => {
    Object.assign(doc.server, {
      headersTimeoutMs: HEADERS_TIMEOUT_MS,
      requestTimeoutMs: 2_000,
      keepAliveTimeoutMs: 2_000,
      maxRequestsPerConnection: MAX_REQUESTS,
      maxConnections: MAX_CONNECTIONS,
    });
  });
  demo = fx.bundleDir('demo');
  admin = fx.bundleDir('admin');
  srv = await startDaemon(fx);
});

afterAll(async () => {
  expect(await srv.stop()).toBe(0);
  expect(srv.logText()).not.toContain(SECRET);
});

/** After every attack: another client, on a fresh connection, still gets its token. */
afterEach(async () => {
  const r = await curl(`${srv.url}/v1/tokens/db`, { bundle: demo });
  expect(r.status).toBe(200);
  expect(r.body.toString()).toBe(SECRET);
});

const statuses = (x: Exchange) => x.responses.map((r) => r.status);
const send = (payload: string | Buffer | ((s: Socket) => void), options: { waitMs?: number; responses?: number } = {}) =>
  exchange(srv.port, payload, { bundle: demo, ...options });
const codeOf = (r: { body: Buffer }) => (JSON.parse(r.body.toString()) as { code: string }).code;

describe('request smuggling shapes', () => {
  const smuggled = get('/v1/tokens/db');
  it.each([
    ['Content-Length and Transfer-Encoding together', `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ['two different Content-Lengths', `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`],
    ['a chunked body carrying a request', `GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`],
    ['a Content-Length body carrying a request', `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`],
    ['a Content-Length shorter than the body', `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello${smuggled}`],
    ['Transfer-Encoding: identity', `GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n${smuggled}`],
    ['Transfer-Encoding with a space before the colon', `GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ['Transfer-Encoding: xchunked', `GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ['Transfer-Encoding: chunked, identity', `GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`],
    ['a folded Transfer-Encoding', `GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ['a Content-Length with a sign', `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +${smuggled.length}\r\n\r\n${smuggled}`],
  ])('%s: one 400, the connection closed, the smuggled request never answered', async (_shape, payload) => {
    const x = await send(payload);
    expect(statuses(x)).toEqual([400]);
    expect(x.closed).toBe(true);
    expect(x.raw.includes(SECRET)).toBe(false);
  });
});

describe('bodies on GET and HEAD', () => {
  it.each(['GET', 'HEAD'])('answers a %s with a body 400 ERR_BODY_NOT_ALLOWED and closes', async (method) => {
    const x = await send(`${method} /v1/tokens/db HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`);
    const text = x.raw.toString('latin1');
    expect(text.match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(['HTTP/1.1 400']);
    if (method === 'GET') expect(codeOf(x.responses[0] as { body: Buffer })).toBe('ERR_BODY_NOT_ALLOWED');
    expect(text).toMatch(/\r\nConnection: close\r\n/i);
    expect(x.closed).toBe(true);
  });

  it('serves a GET with Content-Length: 0 (no body) on a connection that stays open', async () => {
    const x = await send(get('/v1/tokens/db', ['Content-Length: 0']), { responses: 1 });
    expect(statuses(x)).toEqual([200]);
    expect(x.responses[0]?.body.toString()).toBe(SECRET);
    expect(x.closed).toBe(false);
  });
});

describe('malformed and huge headers', () => {
  it.each([
    ['a header without a colon', 'GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n'],
    ['a NUL in a header value', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n'],
    ['a control character in a header name', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n'],
    ['bare LF line endings', 'GET /healthz HTTP/1.1\nHost: x\n\n'],
    ['an obsolete folded header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n'],
    ['no Host header', 'GET /healthz HTTP/1.1\r\n\r\n'],
    ['an unknown HTTP version', 'GET /healthz HTTP/1.7\r\nHost: x\r\n\r\n'],
    ['a lower-case method', 'get /healthz HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x0d, 0x0a])],
  ])('answers %s with 400 and closes', async (_what, payload) => {
    const x = await send(payload);
    expect(statuses(x)).toEqual([400]);
    expect(x.closed).toBe(true);
  });

  it.each([
    ['one 20 KB header', get('/healthz', [`X-Big: ${'a'.repeat(20_000)}`])],
    ['3,000 small headers', get('/healthz', Array.from({ length: 3_000 }, (_, i) => `x${i}: y`))],
    ['a 20 KB request target', get(`/v1/tokens/${'a'.repeat(20_000)}`)],
  ])('answers %s with 431 and closes', async (_what, payload) => {
    const x = await send(payload);
    expect(statuses(x)).toEqual([431]);
    expect(x.closed).toBe(true);
  });
});

describe('pipelined floods', () => {
  it(`answers ${MAX_REQUESTS} pipelined requests in order, then closes the connection without answering more`, async () => {
    const requests = Array.from({ length: MAX_REQUESTS + 10 }, (_, i) => get(i % 2 === 0 ? '/v1/tokens/db' : '/healthz')).join('');
    const x = await send(requests);
    expect(statuses(x)).toEqual(Array(MAX_REQUESTS).fill(200));
    x.responses.forEach((r, i) => expect(i % 2 === 0 ? r.body.toString() === SECRET : r.body.toString().includes('"status":"ok"')).toBe(true));
    expect(x.responses.at(-1)?.headers.connection).toBe('close');
    expect(x.closed).toBe(true);
    expect(x.ms).toBeLessThan(2_000); // closed right after the last response, not by a timeout
  });

  it('disconnects a client that keeps sending requests past the per-connection limit', async () => {
    const flood = (s: Socket) => {
      const timer = setInterval(() => (s.destroyed ? clearInterval(timer) : s.write(get('/healthz'))), 20);
      s.once('close', () => clearInterval(timer));
    };
    const x = await send(flood, { waitMs: 5_000 });
    expect(x.closed).toBe(true);
    expect(statuses(x)).toEqual(Array(MAX_REQUESTS).fill(200));
  });

  it('keeps responses in request order when an asynchronous token answer precedes a synchronous one', async () => {
    const x = await send(get('/v1/tokens/db') + get('/v1/whoami') + get('/v1/tokens/db') + get('/healthz'), { responses: 4 });
    expect(statuses(x)).toEqual([200, 200, 200, 200]);
    expect(x.responses[0]?.body.toString()).toBe(SECRET);
    expect(JSON.parse(x.responses[1]?.body.toString() ?? '{}').identity).toBe('demo');
    expect(x.responses[2]?.body.toString()).toBe(SECRET);
  });

  it('answers a token request before refusing the malformed request pipelined behind it (no response desync)', async () => {
    const x = await send(`${get('/v1/tokens/db')}GARBAGE\r\n\r\n`);
    expect(x.responses[0]?.status).toBe(200);
    expect(x.responses[0]?.body.toString()).toBe(SECRET);
    expect(statuses(x).slice(1).every((s) => s === 400)).toBe(true);
    expect(x.closed).toBe(true);
  });

  it('writes nothing after a response that closed the connection, whatever else was pipelined', async () => {
    const x = await send(`GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGARBAGE\r\n\r\n`);
    expect(statuses(x)).toEqual([400]);
    expect(x.raw.toString('latin1').match(/HTTP\/1\.1 /g)).toHaveLength(1);
  });

  it('serves 30 connections pipelining 20 requests each, all answered', async () => {
    const burst = Array.from({ length: MAX_REQUESTS }, () => get('/v1/tokens/db')).join('');
    const all = await Promise.all(Array.from({ length: 30 }, () => send(burst, { responses: MAX_REQUESTS, waitMs: 15_000 })));
    for (const x of all) expect(statuses(x)).toEqual(Array(MAX_REQUESTS).fill(200));
  }, 30_000);
});

describe('slow and idle clients (bounded in time and count)', () => {
  // A timed-out request is noticed at the next check (connectionsCheckingInterval = min(1 s, headersTimeout)).
  const bound = HEADERS_TIMEOUT_MS * 2 + 1_000;

  it('closes 20 slowloris connections (one header byte every 100 ms) with 408, serving others meanwhile', async () => {
    const slow = (s: Socket) => {
      const text = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(200)}`;
      let i = 0;
      const timer = setInterval(() => (s.destroyed ? clearInterval(timer) : s.write(text[i++ % text.length] as string)), 100);
      s.once('close', () => clearInterval(timer));
    };
    const pending = Array.from({ length: 20 }, () => send(slow, { waitMs: bound + 2_000 }));
    await new Promise((r) => setTimeout(r, 300));
    const during = await curl(`${srv.url}/v1/tokens/db`, { bundle: demo });
    expect(during.status).toBe(200);
    for (const x of await Promise.all(pending)) {
      expect(x.closed).toBe(true);
      expect(x.ms).toBeLessThan(bound);
      expect(statuses(x)).toEqual([408]);
    }
  });

  it('closes a connection that completes the handshake and then sends nothing, with 408', async () => {
    const x = await send(() => undefined, { waitMs: bound + 2_000 });
    expect(x.closed).toBe(true);
    expect(x.ms).toBeLessThan(bound);
    expect(statuses(x)).toEqual([408]);
  });

  it('closes an idle keep-alive connection after keepAliveTimeout, without an error response', async () => {
    const x = await send(get('/healthz'), { waitMs: 6_000 });
    expect(statuses(x)).toEqual([200]);
    expect(x.closed).toBe(true);
    expect(x.ms).toBeLessThan(2_000 + 2_000);
  });

  it('closes a TCP connection that never starts the TLS handshake', async () => {
    const x = await exchange(srv.port, () => undefined, { waitMs: bound + 5_000 });
    expect(x.closed).toBe(true);
    expect(x.ms).toBeLessThan(bound);
    expect(x.raw.length).toBe(0);
  });

  it(`recovers when ${MAX_CONNECTIONS} silent TCP connections fill every slot`, async () => {
    const sockets = Array.from({ length: MAX_CONNECTIONS }, () => {
      const s = netConnect({ host: '127.0.0.1', port: srv.port });
      s.on('error', () => undefined);
      return s;
    });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const started = performance.now();
      let ok = false;
      while (!ok && performance.now() - started < bound + 3_000) {
        ok = (await curl(`${srv.url}/healthz`, { bundle: admin, args: ['--max-time', '2'] })).status === 200;
      }
      expect(ok).toBe(true);
      expect(sockets.every((s) => s.destroyed || s.readableEnded)).toBe(true);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 20_000);
});

describe('encoding tricks in token names (never a token, never another token)', () => {
  it.each([
    '/v1/tokens/%64b', // percent-encoded 'd'
    '/v1/tokens/%2564b', // double-encoded
    '/v1/tokens/db%00',
    '/v1/tokens/db%2f',
    '/v1/tokens/db%2F..%2Fother',
    '/v1/tokens/db/',
    '/v1/tokens/db/.',
    '/v1/tokens/./db',
    '/v1/tokens/../tokens/db',
    '/v1/tokens/%2e%2e/db',
    '/v1/tokens//db',
    '/v1/tokens/db;x',
    '/v1/tokens/db%20',
    '/v1/tokens/DB',
    '/v1/tokens/d%C3%A9',
    '/v1/tokens/%C0%AEdb', // overlong UTF-8 '.'
    '/v1/tokens/%EF%BD%84%EF%BD%82', // fullwidth 'ｄｂ'
    '/v1/tokens/db\\',
    '/v1/tokens/db?x=1',
    '/v1/tokens/db#frag',
    '/v1/tokens/%64%62',
  ])('refuses %s', async (path) => {
    const x = await send(get(path), { responses: 1 });
    expect(statuses(x)).toHaveLength(1);
    expect([400, 404]).toContain(x.responses[0]?.status);
    expect(x.raw.includes(SECRET)).toBe(false);
  });

  it.each([
    ['raw UTF-8 bytes', Buffer.concat([Buffer.from('GET /v1/tokens/d'), Buffer.from('é', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')])],
    ['fullwidth letters', Buffer.from('GET /v1/tokens/ｄｂ HTTP/1.1\r\nHost: x\r\n\r\n', 'utf8')],
    ['a tab in the target', Buffer.from('GET /v1/tokens/d\tb HTTP/1.1\r\nHost: x\r\n\r\n')],
  ])('refuses a target with %s (400, closed)', async (_what, payload) => {
    const x = await send(payload);
    expect(statuses(x)).toEqual([400]);
    expect(x.raw.includes(SECRET)).toBe(false);
  });

  it('routes only the exact path: //v1/tokens/db and /V1/tokens/db are not token routes', async () => {
    for (const path of ['//v1/tokens/db', '/V1/tokens/db', '/v1/Tokens/db', '/v1/tokens']) {
      const x = await send(get(path), { responses: 1 });
      expect(x.raw.includes(SECRET), path).toBe(false);
    }
  });
});

describe('request targets that are not origin-form', () => {
  it.each([
    ['absolute-form https', 400, 'GET https://127.0.0.1/v1/tokens/db HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'],
    ['absolute-form http', 400, 'GET http://localhost/v1/tokens/db HTTP/1.1\r\nHost: localhost\r\n\r\n'],
    ['asterisk-form GET', 400, 'GET * HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['asterisk-form OPTIONS', 405, 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n'],
  ])('answers %s with %i', async (_what, status, payload) => {
    const x = await send(payload, { responses: 1 });
    expect(statuses(x)).toEqual([status]);
    expect(x.raw.includes(SECRET)).toBe(false);
  });

  it('closes a CONNECT (authority-form) without answering it', async () => {
    const x = await send('CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n');
    expect(x.closed).toBe(true);
    expect(statuses(x).every((s) => s >= 400)).toBe(true);
  });
});

describe('HTTP/2 and protocol upgrades', () => {
  it('answers the HTTP/2 connection preface over TLS (prior knowledge) with 400 and closes', async () => {
    const x = await send('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    expect(statuses(x)).toEqual([400]);
    expect(x.closed).toBe(true);
  });

  it('serves curl --http2-prior-knowledge over HTTP/1.1: ALPN offers no h2', async () => {
    const r = await curl(`${srv.url}/v1/tokens/db`, { bundle: demo, args: ['--http2-prior-knowledge', '-v'] });
    expect(r.status).toBe(200);
    expect(r.stderr).toContain('ALPN: server accepted http/1.1');
  });

  it('refuses cleartext HTTP/2 prior knowledge on the TLS port', async () => {
    const r = await curl(`http://127.0.0.1:${srv.port}/healthz`, { args: ['--http2-prior-knowledge'] });
    expect(r.exit).not.toBe(0);
    expect(r.status).toBe(0);
  });

  it.each([
    ['h2c', ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA']],
    ['websocket', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']],
  ])('ignores an Upgrade to %s and answers over HTTP/1.1', async (_what, headers) => {
    const x = await send(get('/v1/tokens/db', headers), { responses: 1 });
    expect(statuses(x)).toEqual([200]);
    expect(x.raw.toString('latin1')).not.toMatch(/101 Switching/);
  });
});
