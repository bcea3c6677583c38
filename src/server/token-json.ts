// The JSON form of a token response, built byte by byte so the token never becomes a JavaScript string.

import { isUtf8 } from 'node:buffer';

const HEX = '0123456789abcdef';
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/**
 * `{"name":…,"version":…,"value":…}` as a Buffer. A UTF-8 token is escaped into
 * a JSON string directly from its bytes; any other token is sent as base64 with
 * `"encoding":"base64"`. The caller zeroes the result after sending it.
 */
export function tokenJson(name: string, version: number, value: Buffer): Buffer {
  const head = Buffer.from(`{"name":${JSON.stringify(name)},"version":${version},`);
  if (!isUtf8(value)) {
    const encoded = base64Bytes(value);
    const out = Buffer.concat([head, Buffer.from('"encoding":"base64","value":"'), encoded, Buffer.from('"}')]);
    encoded.fill(0);
    return out;
  }
  let extra = 0;
  for (const b of value) if (b === 0x22 || b === 0x5c) extra += 1;
  else if (b < 0x20) extra += 5;
  const open = Buffer.from('"value":"');
  const out = Buffer.alloc(head.length + open.length + value.length + extra + 2);
  let at = head.copy(out, 0);
  at += open.copy(out, at);
  for (const b of value) {
    if (b === 0x22 || b === 0x5c) {
      out[at++] = 0x5c;
      out[at++] = b;
    } else if (b < 0x20) {
      out[at++] = 0x5c;
      out[at++] = 0x75; // \u00XX
      out[at++] = 0x30;
      out[at++] = 0x30;
      out[at++] = HEX.charCodeAt(b >> 4);
      out[at++] = HEX.charCodeAt(b & 15);
    } else out[at++] = b;
  }
  out[at++] = 0x22;
  out[at++] = 0x7d;
  return out;
}

/** Standard base64 of `src`, written into a new Buffer without an intermediate string. */
function base64Bytes(src: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(src.length / 3) * 4);
  let o = 0;
  for (let i = 0; i < src.length; i += 3) {
    const a = src[i] as number;
    const b = i + 1 < src.length ? (src[i + 1] as number) : 0;
    const c = i + 2 < src.length ? (src[i + 2] as number) : 0;
    out[o++] = B64.charCodeAt(a >> 2);
    out[o++] = B64.charCodeAt(((a & 3) << 4) | (b >> 4));
    out[o++] = i + 1 < src.length ? B64.charCodeAt(((b & 15) << 2) | (c >> 6)) : 0x3d;
    out[o++] = i + 2 < src.length ? B64.charCodeAt(c & 63) : 0x3d;
  }
  return out;
}
