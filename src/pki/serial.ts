// Certificate serial numbers in one canonical form, so that the denylist, the
// registry, the CLI and Node's TLS socket all compare the same strings.

import { TokendError } from '../errors.js';

const HEX = /^[0-9a-f]+$/;

/**
 * The canonical form of a serial: lower-case hex, no colons, no leading zeros
 * ("0" for zero). Accepts what people paste (`63:AA:08…`, `0x63aa…`) and
 * what Node's `getPeerCertificate().serialNumber` gives (upper-case hex).
 * Throws ERR_USAGE when it is not hex.
 * @example normalizeSerial('00:6A:FF') === '6aff'
 */
export function normalizeSerial(hex: string): string {
  const compact = hex.trim().toLowerCase().replace(/^0x/, '').replaceAll(':', '');
  if (!HEX.test(compact)) {
    const shown = JSON.stringify(hex.length > 80 ? `${hex.slice(0, 80)}…` : hex);
    throw new TokendError('ERR_USAGE', `serial ${shown} is not a hexadecimal certificate serial number`);
  }
  return compact.replace(/^0+(?=.)/, '');
}

/** True when `hex` is a serial normalizeSerial accepts. Pure; no exceptions. */
export function isSerial(hex: string): boolean {
  try {
    normalizeSerial(hex);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a peer certificate's serial is on the denylist. Fails closed: a
 * serial that cannot be normalized (Node prints a negative one with a '-')
 * counts as revoked.
 * @example isRevoked(material.revoked, socket.getPeerCertificate().serialNumber)
 */
export function isRevoked(revoked: ReadonlySet<string>, serialNumber: string | undefined): boolean {
  if (serialNumber === undefined || !isSerial(serialNumber)) return true;
  return revoked.has(normalizeSerial(serialNumber));
}
