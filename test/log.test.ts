import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/server/log.js';

/** A logger at info writing into `lines` (parsed), synchronously. */
function capture(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

describe('logger redaction', () => {
  it('censors fields that could hold a secret, at the top and nested up to three levels', () => {
    const { log, lines } = capture();
    log.info({ msg: 'x', value: 'v0', password: 'p0', token: { name: 'db', value: 'v1' }, a: { b: { key: 'k2', secret: 's2' } } });
    expect(lines[0]).toMatchObject({
      msg: 'x',
      value: '[redacted]',
      password: '[redacted]',
      token: { name: 'db', value: '[redacted]' },
      a: { b: { key: '[redacted]', secret: '[redacted]' } },
    });
    expect(JSON.stringify(lines)).not.toMatch(/v0|p0|v1|k2|s2/);
  });

  it('replaces binary data anywhere with a placeholder', () => {
    const { log, lines } = capture();
    log.info({ msg: 'x', body: Buffer.from('hunter2'), list: [new Uint8Array([104, 105])], deep: { a: { raw: Buffer.from('hunter2') } } });
    expect(lines[0]).toMatchObject({ body: '[bytes redacted]', list: ['[bytes redacted]'], deep: { a: { raw: '[bytes redacted]' } } });
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('scrubs the serialized error too (its own fields and its cause)', () => {
    const { log, lines } = capture();
    const err = Object.assign(new Error('boom', { cause: Object.assign(new Error('inner'), { secret: 's-inner' }) }), { plaintext: Buffer.from('hunter2'), dataKey: 'dk' });
    log.error({ msg: 'failed', err });
    expect(lines[0]).toMatchObject({ err: { message: 'boom: inner', plaintext: '[redacted]', dataKey: '[redacted]' } });
    expect(JSON.stringify(lines)).not.toMatch(/hunter2|s-inner|"dk"/);
  });

  it('leaves an ordinary audit line as it is', () => {
    const { log, lines } = capture();
    log.info({ msg: 'request', route: 'token', identity: 'demo', token: 'db', decision: 'allow', status: 200, cache: 'hit' });
    expect(lines[0]).toMatchObject({ level: 'info', service: 'tokend', msg: 'request', route: 'token', identity: 'demo', token: 'db', decision: 'allow', status: 200, cache: 'hit' });
  });
});
