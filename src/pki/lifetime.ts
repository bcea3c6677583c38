// Certificate lifetimes: parsing `--ttl 30d`, and the one rule for when a certificate is due for renewal.

import { TokendError } from '../errors.js';

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DAY_MS = UNIT_MS.d;

/** Shortest and longest lifetime `--ttl` accepts: one minute (tests, drills) to 397 days (the public-CA ceiling). */
export const MIN_TTL_MS = UNIT_MS.m;
export const MAX_TTL_MS = 397 * DAY_MS;

/** Certificates start this long before they are made, so a host whose clock is slightly behind still accepts them. */
export const BACKDATE_MS = 5 * UNIT_MS.m;

/**
 * Parses a lifetime such as `30d`, `12h` or `90m` into milliseconds.
 * Throws ERR_USAGE naming the value and the allowed range.
 * @example parseTtl('7d') === 604_800_000
 */
export function parseTtl(text: string): number {
  const match = /^([1-9][0-9]{0,6})([mhd])$/.exec(text.trim());
  const ms = match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : NaN;
  if (!(ms >= MIN_TTL_MS && ms <= MAX_TTL_MS)) {
    throw new TokendError('ERR_USAGE', `lifetime '${text}' is not valid: use a number with m, h or d (minutes, hours, days), from 1m to 397d`);
  }
  return ms;
}

/** Days as milliseconds (config lifetimes are in days, fractions allowed). */
export function daysToMs(days: number): number {
  return Math.round(days * DAY_MS);
}

/**
 * True when less than `fraction` of the certificate's lifetime remains at
 * `now` (or it has already expired, or is not yet valid).
 * @example isRenewalDue(issued, expires, 0.33, now)
 */
export function isRenewalDue(notBefore: Date, notAfter: Date, fraction: number, now: Date): boolean {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const remaining = notAfter.getTime() - now.getTime();
  if (now.getTime() < notBefore.getTime()) return true;
  return remaining < lifetime * fraction;
}
