import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../src/policy.js';

const SRC = '/etc/tokend/policy.json';

describe('policy', () => {
  it('allows no one anything when empty (default deny)', () => {
    const p = parsePolicy({ rules: [] }, SRC);
    expect(p.allows('demo', 'db')).toBe(false);
  });

  it('allows exactly the identity/token pairs a rule names', () => {
    const p = parsePolicy({ rules: [{ identities: ['billing'], tokens: ['db', 'stripe-key'] }] }, SRC);
    expect(p.allows('billing', 'db')).toBe(true);
    expect(p.allows('billing', 'stripe-key')).toBe(true);
    expect(p.allows('billing', 'db2')).toBe(false);
    expect(p.allows('billing2', 'db')).toBe(false);
    expect(p.allows('billin', 'db')).toBe(false);
  });

  it('matches * globs over names, anchored at both ends', () => {
    const p = parsePolicy({ rules: [{ identities: ['web-*'], tokens: ['*-api.key', 'db-*-ro'] }] }, SRC);
    expect(p.allows('web-eu', 'maps-api.key')).toBe(true);
    expect(p.allows('web-', 'db--ro')).toBe(true);
    expect(p.allows('web-eu', 'mapsXapi.key')).toBe(false);
    expect(p.allows('xweb-eu', 'maps-api.key')).toBe(false);
    expect(p.allows('web-eu', 'db-main-rw')).toBe(false);
  });

  it('warns when a glob matches every token or every identity', () => {
    const p = parsePolicy({ rules: [{ identities: ['ops'], tokens: ['*'] }, { identities: ['**'], tokens: ['db'] }] }, SRC);
    expect(p.warnings).toEqual([
      `policy '${SRC}': rules[0].tokens[0] is "*", which matches every token`,
      `policy '${SRC}': rules[1].identities[0] is "**", which matches every identity`,
    ]);
  });

  it.each([
    [{}, "'rules' must be a list"],
    [{ rules: {} }, "'rules' must be a list"],
    [{ rules: [], extra: 1 }, "'extra' is not a known key"],
    [{ rules: ['x'] }, 'rules[0] must be an object'],
    [{ rules: [{ identities: ['a'] }] }, 'rules[0].tokens must be a non-empty list'],
    [{ rules: [{ identities: ['a'], tokens: ['db'], allow: true }] }, 'rules[0].allow is not a known key'],
    [{ rules: [{ identities: ['a'], tokens: ['db'] }, { identities: ['A'], tokens: ['db'] }] }, 'rules[1].identities[0] "A" is not a name or glob'],
    [{ rules: [{ identities: ['a'], tokens: ['../db'] }] }, 'rules[0].tokens[0] "../db" is not a name or glob'],
    [[], 'must be a JSON object'],
  ])('rejects %j naming the entry', (doc, message) => {
    expect(() => parsePolicy(doc, SRC)).toThrow(message);
    expect(() => parsePolicy(doc, SRC)).toThrow(`policy '${SRC}'`);
  });
});
