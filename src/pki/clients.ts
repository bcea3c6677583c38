// Client certificates: issue a bundle, renew it in place, revoke, list. The
// registry (issued.json) records every issue; the denylist (revoked.json)
// records revocations; both change only under the PKI lock.

import { resolve, dirname } from 'node:path';
import type { PkiConfig } from '../config.js';
import { TokendError } from '../errors.js';
import { assertValidName, isValidName } from '../names.js';
import { ensurePrivateDir, exists } from '../private-files.js';
import { assertInternal, loadAuthority, signLeaf } from './authority.js';
import { bundleState, writeBundle } from './bundle.js';
import type { Owner } from './bundle.js';
import { addToDenylist, readDenylist, revokedSerials } from './denylist.js';
import type { RevokedEntry } from './denylist.js';
import { defaultBundleDir, pkiPaths } from './layout.js';
import { BACKDATE_MS, MAX_TTL_MS, MIN_TTL_MS, daysToMs, isRenewalDue } from './lifetime.js';
import { withLock } from './lock.js';
import { appendIssued, latestFor, readRegistry, removeIssued } from './registry.js';
import type { IssuedEntry } from './registry.js';
import { isSerial, normalizeSerial } from './serial.js';

export interface IssueOptions {
  /** Lifetime; default pki.clientTtlDays. */
  readonly ttlMs?: number | undefined;
  /** Bundle directory; default <pki.dir>/clients/<identity>. Its parent must exist. */
  readonly out?: string | undefined;
  readonly owner?: Owner | undefined;
  /** Replace an existing bundle. */
  readonly force?: boolean | undefined;
  readonly now?: Date | undefined;
}

/**
 * Issues a client certificate for `identity` and writes its bundle. Refuses
 * in external mode, refuses an existing bundle without `force`, and never
 * leaves half a bundle (see bundle.ts). The registry entry is written before
 * the bundle, so `cert revoke <identity>` can never miss a certificate that
 * reached the disk, and removed again if the bundle could not be written.
 */
export async function issueBundle(pki: PkiConfig, identity: string, options: IssueOptions = {}): Promise<IssuedEntry> {
  assertInternal(pki, 'issue certificates');
  assertValidName(identity, 'identity');
  const paths = pkiPaths(pki);
  const dir = options.out === undefined ? defaultBundleDir(pki, identity) : resolve(options.out);
  if (options.out === undefined) {
    await ensurePrivateDir(paths.dir);
    await ensurePrivateDir(paths.clients);
  } else if (!(await exists(dirname(dir)))) {
    throw new TokendError('ERR_NOT_FOUND', `the parent directory of '${dir}' does not exist; create it first`);
  }
  return withLock(paths.lock, () => issueLocked(pki, identity, dir, options.ttlMs ?? daysToMs(pki.clientTtlDays), options));
}

async function issueLocked(pki: PkiConfig, identity: string, dir: string, ttlMs: number, options: IssueOptions): Promise<IssuedEntry> {
  // Fail before making keys when the bundle will be refused anyway.
  const state = await bundleState(dir);
  if (state === 'foreign') throw new TokendError('ERR_EXISTS', `'${dir}' exists and is not a tokend bundle (nor an empty directory); refusing to write into it`);
  if (state === 'bundle' && !options.force) {
    throw new TokendError('ERR_EXISTS', `a bundle already exists in '${dir}'; pass --force to replace it, or use 'tokend cert renew ${identity}'`);
  }
  const now = options.now ?? new Date();
  const authority = await loadAuthority(pki, now);
  const leaf = await signLeaf(authority, { profile: 'client', identity, trustDomain: pki.trustDomain, ttlMs }, now);
  const entry: IssuedEntry = {
    serial: leaf.serial,
    identity,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    bundle: dir,
  };
  const registry = pkiPaths(pki).issued;
  await appendIssued(registry, entry);
  try {
    await writeBundle(dir, { caPem: authority.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem }, {
      replace: options.force === true,
      owner: options.owner,
      version: leaf.serial,
    });
  } catch (err) {
    // The certificate never reached the disk: take it off the registry again (best effort; a leftover entry is harmless).
    await removeIssued(registry, leaf.serial).catch(() => undefined);
    throw err;
  }
  return entry;
}

/**
 * Re-issues `identity`'s newest certificate into the same bundle directory,
 * atomically (the container's next curl reads the new files). Keeps the
 * previous lifetime unless `ttlMs` is given, and the bundle's owner. The old
 * certificate stays valid until it expires; revoke it if it must stop now.
 */
export async function renewBundle(pki: PkiConfig, identity: string, options: { ttlMs?: number | undefined; now?: Date | undefined } = {}): Promise<IssuedEntry> {
  assertInternal(pki, 'renew certificates');
  assertValidName(identity, 'identity');
  const paths = pkiPaths(pki);
  return withLock(paths.lock, async () => {
    const latest = latestFor(await readRegistry(paths.issued), identity);
    if (!latest) throw new TokendError('ERR_NOT_FOUND', `no certificate was issued for identity '${identity}'; run 'tokend cert issue ${identity}'`);
    if ((await bundleState(latest.bundle)) !== 'bundle') {
      throw new TokendError('ERR_NOT_FOUND', `the bundle of identity '${identity}' ('${latest.bundle}') is gone; issue a new one with 'tokend cert issue ${identity}'`);
    }
    const ttlMs = options.ttlMs ?? previousLifetime(latest);
    return issueLocked(pki, identity, latest.bundle, ttlMs, { force: true, now: options.now });
  });
}

/** What `renewDue` did. */
export interface RenewReport {
  readonly renewed: readonly IssuedEntry[];
  /** Identities whose newest certificate is not due yet. */
  readonly notDue: readonly string[];
}

/**
 * Renews every identity whose newest certificate (not revoked, bundle still
 * present) has less than pki.renewBeforeFraction of its lifetime left. For a
 * timer: `tokend cert renew --due`.
 */
export async function renewDue(pki: PkiConfig, now: Date = new Date()): Promise<RenewReport> {
  assertInternal(pki, 'renew certificates');
  const paths = pkiPaths(pki);
  const entries = await readRegistry(paths.issued);
  const revoked = revokedSerials(await readDenylist(paths.revoked));
  const renewed: IssuedEntry[] = [];
  const notDue: string[] = [];
  for (const identity of [...new Set(entries.map((e) => e.identity))].sort()) {
    const latest = latestFor(entries, identity) as IssuedEntry;
    if (revoked.has(latest.serial) || (await bundleState(latest.bundle)) !== 'bundle') continue;
    if (isRenewalDue(new Date(latest.notBefore), new Date(latest.notAfter), pki.renewBeforeFraction, now)) {
      renewed.push(await renewBundle(pki, identity, { now }));
    } else {
      notDue.push(identity);
    }
  }
  return { renewed, notDue };
}

/** How `revoke` reads its argument: a serial, an identity, or decided by what it matches. */
export type RevokeBy = 'serial' | 'identity' | 'auto';

/** What `revoke` did. */
export interface RevokeReport {
  /** Newly added to the denylist. */
  readonly revoked: readonly RevokedEntry[];
  /** Matched but already on the denylist. */
  readonly alreadyRevoked: readonly string[];
}

/**
 * Adds certificates to the denylist: one serial, or every unexpired
 * certificate issued to an identity. Works in external mode by serial only
 * (tokend does not know what an external CA issued). Serve enforces the
 * denylist after a reload.
 */
export async function revoke(pki: PkiConfig, target: string, by: RevokeBy = 'auto', now: Date = new Date()): Promise<RevokeReport> {
  const paths = pkiPaths(pki);
  await ensurePrivateDir(paths.dir);
  return withLock(paths.lock, async () => {
    const registry = pki.mode === 'internal' ? await readRegistry(paths.issued) : [];
    const mode = by === 'auto' ? resolveTarget(pki, registry, target) : by;
    let matched: { serial: string; identity: string | null }[];
    if (mode === 'identity') {
      if (pki.mode === 'external') {
        throw new TokendError('ERR_USAGE', 'in external mode revoke by serial: tokend does not know which certificates the external CA issued to an identity');
      }
      assertValidName(target, 'identity');
      const own = registry.filter((e) => e.identity === target);
      if (own.length === 0) throw new TokendError('ERR_NOT_FOUND', `no certificate was issued for identity '${target}'`);
      matched = own.filter((e) => new Date(e.notAfter) > now).map((e) => ({ serial: e.serial, identity: e.identity }));
    } else {
      const serial = normalizeSerial(target);
      matched = [{ serial, identity: registry.find((e) => e.serial === serial)?.identity ?? null }];
    }
    const revokedAt = now.toISOString();
    const added = await addToDenylist(paths.revoked, matched.map((m) => ({ ...m, revokedAt })));
    const addedSerials = new Set(added.map((a) => a.serial));
    return { revoked: added, alreadyRevoked: matched.map((m) => m.serial).filter((s) => !addedSerials.has(s)) };
  });
}

function resolveTarget(pki: PkiConfig, registry: readonly IssuedEntry[], target: string): 'serial' | 'identity' {
  const asIdentity = isValidName(target) && registry.some((e) => e.identity === target);
  const asSerial = isSerial(target) && registry.some((e) => e.serial === normalizeSerial(target));
  if (asIdentity && asSerial) {
    throw new TokendError('ERR_USAGE', `'${target}' is both an identity and a serial; pass --serial or --identity`);
  }
  if (asIdentity) return 'identity';
  if (isSerial(target)) return 'serial';
  if (pki.mode === 'internal' && isValidName(target)) return 'identity'; // reported as not found
  throw new TokendError('ERR_USAGE', `'${target}' is neither a known identity nor a hexadecimal serial`);
}

/** One row of `cert list`. */
export interface CertificateRow {
  readonly identity: string | null;
  readonly serial: string;
  readonly notBefore: string | null;
  readonly notAfter: string | null;
  readonly bundle: string | null;
  readonly revoked: boolean;
  readonly status: 'valid' | 'expired' | 'not-yet-valid' | 'revoked';
}

/**
 * Every issued certificate (registry order), then revoked serials the
 * registry does not know (external mode, or revoked by serial alone).
 */
export async function listCertificates(pki: PkiConfig, now: Date = new Date()): Promise<CertificateRow[]> {
  const paths = pkiPaths(pki);
  const registry = pki.mode === 'internal' ? await readRegistry(paths.issued) : [];
  const denylist = await readDenylist(paths.revoked);
  const revoked = revokedSerials(denylist);
  const rows: CertificateRow[] = registry.map((e) => {
    const isRevoked = revoked.has(e.serial);
    const status = isRevoked ? 'revoked' : now > new Date(e.notAfter) ? 'expired' : now < new Date(e.notBefore) ? 'not-yet-valid' : 'valid';
    return { identity: e.identity, serial: e.serial, notBefore: e.notBefore, notAfter: e.notAfter, bundle: e.bundle, revoked: isRevoked, status };
  });
  const known = new Set(registry.map((e) => e.serial));
  for (const d of denylist) {
    if (!known.has(d.serial)) rows.push({ identity: d.identity, serial: d.serial, notBefore: null, notAfter: null, bundle: null, revoked: true, status: 'revoked' });
  }
  return rows;
}

function previousLifetime(entry: IssuedEntry): number {
  const ms = new Date(entry.notAfter).getTime() - new Date(entry.notBefore).getTime() - BACKDATE_MS;
  return Math.min(MAX_TTL_MS, Math.max(MIN_TTL_MS, Math.round(ms / 60_000) * 60_000));
}
