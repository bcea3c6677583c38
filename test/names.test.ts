import { describe, expect, it } from 'vitest';
import { assertValidName, isValidName } from '../src/names.js';

describe('token names', () => {
  it.each(['db', 'github-token', 'a', 'x.y_z-1', '0', 'a'.repeat(128)])('accepts %j', (name) => {
    expect(isValidName(name)).toBe(true);
  });

  it.each([
    ['', 'empty'],
    ['a'.repeat(129), 'limit is 128'],
    ['../etc', 'path separator'],
    ['a/b', 'path separator'],
    ['a..b', '".."'],
    ['a\0b', 'NUL'],
    ['DB', 'upper-case'],
    ['-db', 'starting with'],
    ['.db', 'starting with'],
    ['db%2f', 'use lower-case'],
    ['dé', 'use lower-case'],
  ])('rejects %j and says why', (name, why) => {
    expect(isValidName(name)).toBe(false);
    expect(() => assertValidName(name)).toThrow(why);
    try {
      assertValidName(name);
    } catch (err) {
      expect((err as { code: string }).code).toBe('ERR_INVALID_NAME');
    }
  });
});
