// The PKI's public surface: what serve, the CLI, checks and dev setup use. Internals stay internal.

export { assertInternal, createCa, CA_KEY_BITS, LEAF_KEY_BITS, SERVER_NAMES } from './authority.js';
export type { Authority } from './authority.js';
export { BUNDLE_FILES } from './bundle.js';
export type { Owner } from './bundle.js';
export { issueBundle, listCertificates, renewBundle, renewDue, revoke } from './clients.js';
export type { CertificateRow, IssueOptions, RenewReport, RevokeBy, RevokeReport } from './clients.js';
export type { RevokedEntry } from './denylist.js';
export { ensureDevPki } from './dev-pki.js';
export type { PkiStep } from './dev-pki.js';
export { defaultBundleDir, pkiPaths, spiffeId } from './layout.js';
export type { PkiPaths } from './layout.js';
export { isRenewalDue, parseTtl } from './lifetime.js';
export type { IssuedEntry } from './registry.js';
export { isRevoked, isSerial, normalizeSerial } from './serial.js';
export { loadTlsMaterial, renewServerCertIfDue } from './server-tls.js';
export type { TlsMaterial } from './server-tls.js';
export { checkPki } from './status.js';
