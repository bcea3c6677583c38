// Per-connection HTTP bookkeeping: the request limit, and the answer to a
// malformed or timed-out request, which must not overtake the responses still
// pending on the same connection (pipelining) nor follow a response that
// already closed it.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

interface ConnectionState {
  requests: number;
  /** Responses started and not yet closed. */
  pending: number;
  /** A parse error or timeout was seen: the connection is finished. */
  failed: boolean;
  whenIdle: (() => void) | undefined;
}

/** The status line for a refused request, by Node's error code (anything else is a 400). */
const REFUSALS: Readonly<Record<string, string>> = {
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
};

export interface ConnectionGuard {
  /** The server's request listener: counts and limits requests per connection, then calls the handler. */
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  /** Answers an HTTP parse error or timeout on an established connection, in order, then closes it. */
  readonly onClientError: (err: Error & { code?: string }, socket: Duplex) => void;
}

/**
 * Wraps `handler`. The response to request `maxRequests` on a connection
 * closes it; requests pipelined beyond it are never answered (the client
 * retries them on a new connection, RFC 9112 §9.6), unlike Node's own limit,
 * which answers each with a 503 and keeps the connection open.
 */
export function connectionGuard(handler: (req: IncomingMessage, res: ServerResponse) => void, maxRequests: number): ConnectionGuard {
  const states = new WeakMap<Duplex, ConnectionState>();
  const stateOf = (socket: Duplex): ConnectionState => {
    let state = states.get(socket);
    if (!state) {
      state = { requests: 0, pending: 0, failed: false, whenIdle: undefined };
      states.set(socket, state);
    }
    return state;
  };

  return {
    onRequest(req, res) {
      const c = stateOf(req.socket);
      c.requests += 1;
      if (c.requests > maxRequests) return;
      if (c.requests === maxRequests) res.shouldKeepAlive = false;
      c.pending += 1;
      res.once('close', () => {
        c.pending -= 1;
        if (c.pending === 0) c.whenIdle?.();
      });
      handler(req, res);
    },
    onClientError(err, socket) {
      const c = stateOf(socket);
      if (c.failed) return; // Node reports every later chunk again; the first answer stands
      c.failed = true;
      const answer = () => {
        // After a response that closed the connection (Node has ended it), nothing may follow.
        if (!socket.writable || err.code === 'ECONNRESET') socket.destroy();
        else socket.end(`HTTP/1.1 ${REFUSALS[err.code ?? ''] ?? '400 Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      };
      if (c.pending === 0) return answer();
      socket.pause(); // read no more; answer once the earlier responses are out
      c.whenIdle = answer;
    },
  };
}
