// Token names: the one rule for what a token may be called, shared by the store, the CLI and the HTTP API.

import { TokendError } from './errors.js';

/** Lower-case letters, digits, '.', '_', '-'; starts with a letter or digit; at most 128 characters. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** True when `name` is a valid token name. Pure; no exceptions. */
export function isValidName(name: string): boolean {
  return NAME.test(name) && !name.includes('..');
}

/**
 * Returns `name` when valid, else throws ERR_INVALID_NAME. The rule rejects path
 * separators, '..', NUL, upper case (no case-folding surprises on other file
 * systems) and anything over 128 characters, so a name is always a safe file name.
 */
export function assertValidName(name: string, what = 'token name'): string {
  if (isValidName(name)) return name;
  const shown = JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
  let why = 'use lower-case letters, digits, ".", "_" and "-", starting with a letter or digit, at most 128 characters';
  if (name.length === 0) why = 'it is empty';
  else if (name.length > 128) why = `it is ${name.length} characters long; the limit is 128`;
  else if (name.includes('/') || name.includes('\\')) why = 'it contains a path separator';
  else if (name.includes('..')) why = 'it contains ".."';
  else if (name.includes('\0')) why = 'it contains a NUL byte';
  else if (name !== name.toLowerCase()) why = 'it contains upper-case letters; names are lower case';
  return invalid(what, shown, why);
}

function invalid(what: string, shown: string, why: string): never {
  throw new TokendError('ERR_INVALID_NAME', `${what} ${shown} is not valid: ${why}`);
}
