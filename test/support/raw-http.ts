// Raw HTTP/1.1 over real TLS (or plain TCP) for hostile-input tests: exact bytes
// out, every byte back, and the responses parsed in order, so that a test can
// send what no well-behaved client would (smuggling shapes, pipelined floods,
// slow headers) and see exactly what tokend answered and when it hung up.

import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';

/** One parsed response. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** Everything that came back on one connection. */
export interface Exchange {
  readonly raw: Buffer;
  readonly responses: readonly RawResponse[];
  /** True when the server closed the connection before `waitMs`. */
  readonly closed: boolean;
  /** Milliseconds from the start (connect) until close, or until we gave up. */
  readonly ms: number;
  /** Socket error code, if any (ECONNRESET, a TLS alert…). */
  readonly error: string | undefined;
}

export interface ExchangeOptions {
  /** A client bundle directory (ca.crt, client.crt, client.key); omit for plain TCP. */
  readonly bundle?: string;
  /** Give up (and destroy the socket) after this long. Default 3000 ms. */
  readonly waitMs?: number;
  /** Stop as soon as this many responses have arrived (keep-alive connections stay open). */
  readonly responses?: number;
  readonly tls?: Record<string, unknown>;
}

/** TLS options for a client bundle. */
export function bundleTls(bundle: string): { cert: Buffer; key: Buffer; ca: Buffer; servername: string } {
  return {
    cert: readFileSync(join(bundle, 'client.crt')),
    key: readFileSync(join(bundle, 'client.key')),
    ca: readFileSync(join(bundle, 'ca.crt')),
    servername: 'localhost',
  };
}

/**
 * Connects to 127.0.0.1:`port`, then writes `send` (bytes, or a function that
 * drives the socket itself) and collects the answer until the server closes,
 * `responses` have arrived, or `waitMs` passes.
 */
export function exchange(port: number, send: string | Buffer | ((socket: Socket) => void), options: ExchangeOptions = {}): Promise<Exchange> {
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let done = false;
    const socket: Socket = options.bundle
      ? tlsConnect({ host: '127.0.0.1', port, ...bundleTls(options.bundle), ...options.tls })
      : netConnect({ host: '127.0.0.1', port });
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      if (!socket.destroyed) socket.destroy();
      resolve({ raw, responses: parseResponses(raw), closed, ms: performance.now() - started, error });
    };
    const timer = setTimeout(() => finish(false), options.waitMs ?? 3_000);
    socket.once(options.bundle ? 'secureConnect' : 'connect', () => {
      if (typeof send === 'function') send(socket);
      else socket.write(send);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (options.responses !== undefined && parseResponses(Buffer.concat(chunks)).length >= options.responses) finish(false);
    });
    socket.on('error', (err: Error & { code?: string }) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => finish(true));
  });
}

/** Parses consecutive HTTP/1.1 responses (content-length or chunked bodies); stops at the first incomplete one. */
export function parseResponses(raw: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = raw.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? Number.NaN);
    if (Number.isNaN(status)) break;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    let bodyStart = end + 4;
    let body: Buffer;
    if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', bodyStart);
        if (lineEnd < 0) return out;
        const size = parseInt(raw.subarray(bodyStart, lineEnd).toString('latin1'), 16);
        bodyStart = lineEnd + 2 + size + 2;
        if (bodyStart > raw.length) return out;
        if (size === 0) break;
        parts.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size));
      }
      body = Buffer.concat(parts);
    } else {
      const length = Number(headers['content-length'] ?? 0);
      if (bodyStart + length > raw.length) break;
      body = raw.subarray(bodyStart, bodyStart + length);
      bodyStart += length;
    }
    out.push({ status, headers, body });
    at = bodyStart;
  }
  return out;
}

/** A GET request line with the headers tokend needs (Host) and any extra ones. */
export function get(path: string, extra: readonly string[] = []): string {
  return [`GET ${path} HTTP/1.1`, 'Host: localhost', ...extra, '', ''].join('\r\n');
}
