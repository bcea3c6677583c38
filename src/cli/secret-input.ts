// Reading a token for `seal`: from stdin or a file, never from argv, into a Buffer the caller zeroes.

import type { Readable } from 'node:stream';
import { TokendError } from '../errors.js';
import { MAX_TOKEN_BYTES } from '../envelope.js';
import { readNamedFile } from '../private-files.js';

/**
 * Reads the whole of `stream` (at most `limit` bytes) into one Buffer and
 * zeroes the intermediate chunks. Throws ERR_TOO_LARGE past the limit.
 */
export async function readSecretStream(stream: Readable, subject: string, limit = MAX_TOKEN_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      chunks.push(buf);
      size += buf.length;
      if (size > limit) throw new TokendError('ERR_TOO_LARGE', `${subject} is larger than ${limit} bytes`);
    }
    return Buffer.concat(chunks, size);
  } finally {
    for (const c of chunks) c.fill(0);
  }
}

/** Reads a secret from `file` (a path, or '-' for stdin) or stdin; refuses an interactive terminal. */
export async function readSecret(
  stdin: Readable & { isTTY?: boolean },
  file: string | undefined,
  subject: string,
): Promise<Buffer> {
  if (file !== undefined && file !== '-') {
    const buf = await readNamedFile(file, 'token file');
    if (buf.length > MAX_TOKEN_BYTES) {
      buf.fill(0);
      throw new TokendError('ERR_TOO_LARGE', `${subject} in '${file}' is larger than ${MAX_TOKEN_BYTES} bytes`);
    }
    return buf;
  }
  if (stdin.isTTY) {
    throw new TokendError('ERR_USAGE', `no ${subject} on stdin: pipe it in (tokend seal NAME < token.txt) or pass --file PATH`);
  }
  return readSecretStream(stdin, subject);
}

/** Drops one trailing "\n" or "\r\n" (for `--strip-newline`); returns a view of the same memory. */
export function stripNewline(buf: Buffer): Buffer {
  let end = buf.length;
  if (end > 0 && buf[end - 1] === 0x0a) end -= 1;
  if (end > 0 && end < buf.length && buf[end - 1] === 0x0d) end -= 1;
  return buf.subarray(0, end);
}
