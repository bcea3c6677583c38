// Listeners: one HTTPS server per configured address (loopback by default, unix
// sockets allowed), sharing one handler. Revoked certificates are cut off right
// after the handshake, before any HTTP is read.

import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { isIP } from 'node:net';
import { chmod, lstat, rm } from 'node:fs/promises';
import type { TLSSocket } from 'node:tls';
import { TokendError } from '../errors.js';
import type { ServerConfig } from '../config.js';
import { isRevoked } from '../pki/index.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from './log.js';
import type { ServingState } from './state.js';
import { connectionGuard } from './connection-guard.js';
import { secureContextOptions, serverTlsOptions } from './tls-options.js';

/** A parsed listen address. */
export type ListenAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly loopback: boolean; readonly text: string }
  | { readonly kind: 'unix'; readonly path: string; readonly text: string };

/** Parses `127.0.0.1:7443`, `[::1]:7443` or `unix:/run/tokend/tokend.sock`. Throws ERR_CONFIG naming the address. */
export function parseListenAddress(text: string): ListenAddress {
  const bad = (why: string): never => {
    throw new TokendError('ERR_CONFIG', `listen address '${text}' ${why}`);
  };
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!path.startsWith('/')) return bad('must be unix:/absolute/path');
    return { kind: 'unix', path, text };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (!m) return bad('is not host:port with an IP address (IPv6 in brackets) or unix:/path');
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (isIP(host) === 0) return bad('does not have a valid IP address');
  if (port > 65_535) return bad('has a port outside 0..65535 (0 picks a free port)');
  return { kind: 'tcp', host, port, loopback: isLoopback(host), text };
}

function isLoopback(host: string): boolean {
  return isIP(host) === 4 ? host.startsWith('127.') : host === '::1';
}

export interface ListenerDeps {
  readonly state: () => ServingState;
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/** The running listeners. */
export interface Listeners {
  readonly addresses: readonly string[];
  /** Applies new TLS material to new connections and rotates ticket keys; live connections continue. */
  applyTls(state: ServingState): void;
  /** New session-ticket keys (old tickets then fall back to a full handshake). */
  rotateTicketKeys(): void;
  /** Open connections right now. */
  connections(): number;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes the rest. */
  close(graceMs: number): Promise<void>;
}

/**
 * Starts one server per address. Refuses a non-loopback address unless
 * `allowNonLoopback` is set (then it warns). Resolves once every listener
 * accepts connections.
 */
export async function startListeners(config: ServerConfig, deps: ListenerDeps, ticketKeys: () => Buffer): Promise<Listeners> {
  const addresses = config.listen.map(parseListenAddress);
  for (const a of addresses) {
    if (a.kind === 'tcp' && !a.loopback) {
      if (!config.allowNonLoopback) {
        throw new TokendError('ERR_CONFIG', `listen address '${a.text}' is not loopback; set server.allowNonLoopback to true to allow it`);
      }
      deps.log.warn({ msg: 'listening on a non-loopback address: tokend is reachable from other hosts', address: a.text });
    }
  }
  const sockets = new Set<TLSSocket>();
  const servers: Server[] = [];
  const bound: string[] = [];
  try {
    for (const address of addresses) {
      const server = await startOne(address, config, deps, ticketKeys(), sockets);
      servers.push(server);
      bound.push(boundAddress(server, address));
    }
  } catch (err) {
    await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
    throw err;
  }

  // The PEM texts the servers' secure contexts were last built from. A reload that leaves them as they were
  // (most reloads: a policy or token change) keeps the contexts: building one parses the key and the CA again
  // and allocates a new OpenSSL context per listener, which a storm of reloads turns into native-heap churn.
  const initial = deps.state().tls;
  let applied = { ca: initial.ca, cert: initial.cert, key: initial.key };
  return {
    addresses: bound,
    applyTls(state) {
      const { ca, cert, key } = state.tls;
      const changed = ca !== applied.ca || cert !== applied.cert || key !== applied.key;
      for (const s of servers) {
        if (changed) s.setSecureContext(secureContextOptions(state.tls));
        s.setTicketKeys(ticketKeys());
      }
      if (changed) applied = { ca, cert, key };
    },
    rotateTicketKeys() {
      for (const s of servers) s.setTicketKeys(ticketKeys());
    },
    connections: () => sockets.size,
    async close(graceMs) {
      const closed = servers.map((s) => new Promise<void>((done) => s.close(() => done())));
      for (const s of servers) s.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of servers) s.closeAllConnections();
        for (const sock of sockets) sock.destroy();
      }, graceMs);
      await Promise.all(closed);
      clearTimeout(timer);
      for (const a of addresses) if (a.kind === 'unix') await rm(a.path, { force: true });
    },
  };
}

async function startOne(address: ListenAddress, config: ServerConfig, deps: ListenerDeps, keys: Buffer, sockets: Set<TLSSocket>): Promise<Server> {
  const state = deps.state();
  const guard = connectionGuard(deps.handler, config.maxRequestsPerConnection);
  const server = createServer(
    {
      ...serverTlsOptions(state.tls, keys),
      // A connection that never finishes the handshake holds a slot (maxConnections) like a
      // slow header sender does, so it gets the same bound instead of Node's 120 s default.
      handshakeTimeout: config.headersTimeoutMs,
      maxHeaderSize: config.maxHeaderBytes,
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, config.headersTimeoutMs),
      requireHostHeader: true,
      joinDuplicateHeaders: false,
    },
    guard.onRequest,
  );
  keys.fill(0);
  server.maxConnections = config.maxConnections;
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.disableRenegotiation();
    const serial = socket.getPeerX509Certificate()?.serialNumber; // not getPeerCertificate(): ~70 µs per connection
    if (isRevoked(deps.state().tls.revoked, serial)) {
      deps.metrics.inc('tokend_tls_refused_total', { reason: 'revoked' });
      deps.log.info({ msg: 'connection refused', reason: 'client certificate revoked', serial });
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    // A rejected client certificate surfaces as a hang-up; the real reason is the socket's authorizationError.
    const certificate = socket.authorizationError ? String(socket.authorizationError) : undefined;
    const reason = certificate ?? err.code ?? 'handshake';
    deps.metrics.inc('tokend_tls_refused_total', { reason });
    if (certificate) deps.log.info({ msg: 'connection refused', reason: `client certificate rejected: ${certificate}` });
    else deps.log.debug({ msg: 'tls handshake failed', reason });
  });
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    // https forwards TLS errors (failed or timed-out handshakes) here too: such a connection
    // never became a verified TLS connection, so it gets no HTTP answer, only a close.
    if (!sockets.has(socket as TLSSocket)) {
      socket.destroy();
      return;
    }
    deps.metrics.inc('tokend_http_refused_total', { reason: err.code ?? 'parse' });
    guard.onClientError(err, socket);
  });

  if (address.kind === 'unix') await clearStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: Error & { code?: string }) =>
      reject(new TokendError('ERR_CONFIG', `cannot listen on '${address.text}': ${err.code ?? err.message}`, { cause: err })),
    );
    if (address.kind === 'tcp') server.listen({ host: address.host, port: address.port, ipv6Only: address.host.includes(':') }, resolve);
    else server.listen(address.path, resolve);
  });
  // Any local process may connect, as with a TCP port: the client certificate is the gate.
  if (address.kind === 'unix') await chmod(address.path, 0o666);
  return server;
}

/** The address a server really listens on (port 0 resolved). */
function boundAddress(server: Server, address: ListenAddress): string {
  const info = server.address();
  if (address.kind === 'unix' || info === null || typeof info === 'string') return address.text;
  return info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`;
}

/** Removes a leftover socket file nobody listens on; refuses one that is in use. */
async function clearStaleSocket(path: string): Promise<void> {
  try {
    if (!(await lstat(path)).isSocket()) throw new TokendError('ERR_CONFIG', `'${path}' exists and is not a socket`);
  } catch (err) {
    if (err instanceof TokendError) throw err;
    return; // nothing there
  }
  const inUse = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (inUse) throw new TokendError('ERR_CONFIG', `socket '${path}' is in use by another process`);
  await rm(path, { force: true });
}
