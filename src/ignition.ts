// The Ignition fragment for a host (spec 3.3.0): the tokend user, /etc/tokend (config, policy,
// sealed tokens, an external CA bundle), the units, and which of them start on first boot.
// Pure: it takes file contents and returns the config. Everything in it is readable from the
// cloud's metadata service, so it holds no secret and no private key, ever: the host makes its
// own CA and keys on first boot (units/tokend-ca.service), and the KMS credentials are the
// instance role's.

import { parseConfig } from './config.js';
import type { Config } from './config.js';
import { parseSealed } from './envelope.js';
import { TokendError } from './errors.js';
import { assertValidName } from './names.js';

/** Where tokend lives on a provisioned host (units/ and docs/coreos.md use the same paths). */
export const HOST = Object.freeze({
  etc: '/etc/tokend',
  config: '/etc/tokend/tokend.json',
  policy: '/etc/tokend/policy.json',
  tokens: '/etc/tokend/tokens',
  caBundle: '/etc/tokend/ca.crt',
  state: '/var/lib/tokend',
  pki: '/var/lib/tokend/pki',
  clients: '/var/lib/tokend-clients',
  user: 'tokend',
  /** uid and gid of tokend on hosts and in the image, so the unit and the quadlet share files. */
  id: 10001,
});

/** The Ignition config spec version rendered (the newest Ignition 2.14 validates as stable). */
export const IGNITION_SPEC = '3.3.0';

/** An app identity whose client bundle the host issues on first boot, owned by uid:gid (default root). */
export interface HostClient {
  readonly identity: string;
  readonly owner?: { readonly uid: number; readonly gid: number } | undefined;
}

/** What goes onto the host. */
export interface HostFiles {
  /** The operator's config document (JSON, as parsed); paths are rewritten to the host layout. */
  readonly config: Readonly<Record<string, unknown>>;
  /** The policy file, verbatim. */
  readonly policy: string;
  /** Sealed token files by token name, verbatim (ciphertext only). */
  readonly tokens: ReadonlyMap<string, string>;
  /** External mode: the CA bundle that client certificates chain to (certificates only). */
  readonly caBundle?: string | undefined;
  /** Unit files by name: HOST_UNITS. */
  readonly units: Readonly<Record<string, string>>;
  readonly clients: readonly HostClient[];
}

/** The subset of the Ignition 3.3.0 config that tokend renders. */
export interface IgnitionConfig {
  readonly ignition: { readonly version: string };
  readonly passwd: { readonly users: readonly IgnitionUser[]; readonly groups: readonly { readonly name: string; readonly gid: number; readonly system: boolean }[] };
  readonly storage: { readonly directories: readonly IgnitionNode[]; readonly files: readonly IgnitionFile[]; readonly links: readonly IgnitionLink[] };
  readonly systemd: { readonly units: readonly IgnitionUnit[] };
}

interface IgnitionUser {
  readonly name: string;
  readonly uid: number;
  readonly primaryGroup: string;
  readonly system: boolean;
  readonly homeDir: string;
  readonly noCreateHome: boolean;
  readonly shell: string;
}

interface IgnitionNode {
  readonly path: string;
  readonly mode: number;
  readonly user: { readonly name: string };
  readonly group: { readonly name: string };
}

interface IgnitionFile extends IgnitionNode {
  readonly overwrite: boolean;
  readonly contents: { readonly source: string };
}

interface IgnitionLink {
  readonly path: string;
  readonly target: string;
  readonly hard: boolean;
}

interface IgnitionUnit {
  readonly name: string;
  readonly enabled?: boolean;
  readonly contents?: string;
  readonly dropins?: readonly { readonly name: string; readonly contents: string }[];
}

/** The units every host gets, in this order. */
export const HOST_UNITS = Object.freeze(['tokend.service', 'tokend-ca.service', 'tokend-client@.service', 'tokend-renew.service', 'tokend-renew.timer']);

/** The units that start on boot; the others are pulled in (Requires=, the timer, client links). */
const ENABLED = new Set(['tokend.service', 'tokend-renew.timer']);

const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * Renders the Ignition config for one host. Fails closed (ERR_CONFIG) on anything that must
 * not reach a host through Ignition: the development keyfile provider, a sealed token of
 * another provider, a private key anywhere, client bundles in external mode (tokend issues
 * nothing there). Deterministic: the same input gives the same bytes.
 */
export function renderIgnition(input: HostFiles): IgnitionConfig {
  const { document, config } = hostConfig(input.config);
  const external = config.pki.mode === 'external';
  if (external && input.caBundle === undefined) throw new TokendError('ERR_CONFIG', 'external mode: the CA bundle is missing');
  if (!external && input.caBundle !== undefined) throw new TokendError('ERR_CONFIG', 'internal mode: a CA bundle is not used (the host makes its own CA)');
  if (input.caBundle !== undefined && !input.caBundle.includes('-----BEGIN CERTIFICATE-----')) {
    throw new TokendError('ERR_CONFIG', 'the CA bundle holds no PEM certificate');
  }
  if (external && input.clients.length > 0) {
    throw new TokendError('ERR_CONFIG', 'pki.mode is "external": tokend issues no client bundles; issue them with your CA');
  }
  for (const name of HOST_UNITS) if (input.units[name] === undefined) throw new TokendError('ERR_CONFIG', `unit '${name}' is missing`);

  const names = [...input.tokens.keys()].sort();
  for (const name of names) assertSealedFor(name, input.tokens.get(name) as string, config.provider.type);
  const texts: [string, string][] = [
    ['config', JSON.stringify(document)],
    ['policy', input.policy],
    ...(input.caBundle === undefined ? [] : [['CA bundle', input.caBundle] as [string, string]]),
    ...Object.entries(input.units).map(([name, text]) => [`unit '${name}'`, text] as [string, string]),
  ];
  for (const [what, text] of texts) {
    if (PRIVATE_KEY.test(text)) throw new TokendError('ERR_CONFIG', `the ${what} holds a private key; refusing to put it into Ignition`);
  }

  const clients = [...input.clients].sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
  const seen = new Set<string>();
  for (const c of clients) {
    assertValidName(c.identity, 'identity');
    if (seen.has(c.identity)) throw new TokendError('ERR_USAGE', `client identity '${c.identity}' is given twice`);
    seen.add(c.identity);
  }

  const readable = (path: string, content: string): IgnitionFile => ({ ...node(path, 0o640, 'root', HOST.user), overwrite: true, contents: { source: dataUrl(content) } });
  return {
    ignition: { version: IGNITION_SPEC },
    passwd: {
      users: [{ name: HOST.user, uid: HOST.id, primaryGroup: HOST.user, system: true, homeDir: HOST.state, noCreateHome: true, shell: '/usr/sbin/nologin' }],
      groups: [{ name: HOST.user, gid: HOST.id, system: true }],
    },
    storage: {
      directories: [node(HOST.etc, 0o750, 'root', HOST.user), node(HOST.tokens, 0o750, 'root', HOST.user)],
      files: [
        readable(HOST.config, `${JSON.stringify(document, null, 2)}\n`),
        readable(HOST.policy, input.policy),
        ...(input.caBundle === undefined ? [] : [{ ...readable(HOST.caBundle, input.caBundle), mode: 0o644 }]),
        ...names.map((name) => readable(`${HOST.tokens}/${name}.sealed`, input.tokens.get(name) as string)),
      ],
      // Enabling a template's instance through `systemd.units[].enabled` makes Ignition 2.14 ask
      // the running systemd; the link `systemctl enable` would make needs nothing.
      links: clients.map((c) => ({ path: `/etc/systemd/system/multi-user.target.wants/tokend-client@${c.identity}.service`, target: '/etc/systemd/system/tokend-client@.service', hard: false })),
    },
    systemd: {
      units: [
        ...HOST_UNITS.map((name) => ({ name, ...(ENABLED.has(name) ? { enabled: true } : {}), contents: input.units[name] as string })),
        ...clients.flatMap((c) =>
          c.owner ? [{ name: `tokend-client@${c.identity}.service`, dropins: [{ name: 'owner.conf', contents: `[Service]\nEnvironment=TOKEND_CLIENT_OWNER=${c.owner.uid}:${c.owner.gid}\n` }] }] : [],
        ),
      ],
    },
  };
}

/**
 * The config as it must read on the host: store, policy and PKI at the host paths, no `dev`,
 * no keyfile. Validated with the same parser serve uses. Throws ERR_CONFIG for the keyfile provider.
 */
export function hostConfig(doc: Readonly<Record<string, unknown>>): { readonly document: Record<string, unknown>; readonly config: Config } {
  const operator = parseConfig(doc, '/operator/tokend.json');
  if (operator.provider.type === 'keyfile') {
    throw new TokendError(
      'ERR_CONFIG',
      'the keyfile provider is a development mock KMS and is never provisioned onto a host; configure provider "aws" (the host uses its instance role)',
    );
  }
  const { dev: _dev, store: _store, policy: _policy, pki, ...rest } = doc as Record<string, unknown>;
  const pkiDoc = { ...(pki as Record<string, unknown> | undefined) };
  pkiDoc.dir = HOST.pki;
  if (operator.pki.mode === 'external') {
    pkiDoc.caBundle = HOST.caBundle;
    pkiDoc.serverCert = `${HOST.pki}/server.crt`;
    pkiDoc.serverKey = `${HOST.pki}/server.key`;
  }
  const document = { store: HOST.tokens, policy: HOST.policy, ...rest, pki: pkiDoc };
  return { document, config: parseConfig(document, HOST.config) };
}

/** A sealed file that does not parse (ERR_SEALED_CORRUPT), or is another provider's (ERR_CONFIG), stops the render. */
function assertSealedFor(name: string, text: string, provider: string): void {
  const header = parseSealed(text, assertValidName(name));
  if (header.provider !== provider) {
    throw new TokendError('ERR_CONFIG', `sealed token '${name}' was sealed with the '${header.provider}' provider, not '${provider}'; seal it again for the host's KMS`);
  }
}

function node(path: string, mode: number, user: string, group: string): IgnitionNode {
  return { path, mode, user: { name: user }, group: { name: group } };
}

/**
 * A percent-encoded `data:` URL (RFC 2397), as Ignition's contents.source takes it and Butane
 * writes it: unlike base64 it stays reviewable, so anyone can check what a host will get.
 */
export function dataUrl(content: string | Buffer): string {
  const bytes = Buffer.from(content);
  let text = '';
  for (const b of bytes) text += SAFE.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return `data:,${text}`;
}

/** Bytes left as they are in a data URL; everything else is %XX. */
const SAFE = /^[A-Za-z0-9._~/:=@+-]$/;
