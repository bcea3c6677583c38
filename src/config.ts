// Configuration: one JSON file, parsed once into a frozen object. Unknown keys
// are errors; every setting has a named default and a stated range; relative
// paths are resolved against the config file's directory; the environment is
// read here and nowhere else.

import { dirname, isAbsolute, resolve } from 'node:path';
import { TokendError } from './errors.js';
import { assertNotWritableByOthers, readNamedFile } from './private-files.js';

/** Defaults, in one place. Ranges are enforced where each value is read below. */
export const DEFAULTS = Object.freeze({
  configPath: '/etc/tokend/tokend.json',
  store: 'tokens',
  keyfile: 'keyfile.json',
  listen: Object.freeze(['127.0.0.1:7443']),
  policy: 'policy.json',
  pkiDir: 'pki',
  trustDomain: 'tokend.local',
  identityFrom: 'spiffe-then-cn' as const,
  caTtlDays: 3650,
  clientTtlDays: 7,
  serverTtlDays: 30,
  renewBeforeFraction: 0.33,
  cacheEnabled: true,
  cacheTtlSeconds: 300,
  cacheStaleSeconds: 3600,
  cacheMaxEntries: 10_000,
  awsConnectTimeoutMs: 1_000,
  awsRequestTimeoutMs: 3_000,
  awsMaxAttempts: 3,
  awsDeadlineMs: 5_000,
  maxConnections: 1_024,
  maxHeaderBytes: 8_192,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxRequestsPerConnection: 1_000,
  ticketRotationSeconds: 3_600,
  shutdownGraceMs: 5_000,
  retryAfterSeconds: 5,
  logLevel: 'info' as const,
});

export type IdentitySource = 'spiffe-then-cn' | 'spiffe' | 'cn';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface KeyfileProviderConfig {
  readonly type: 'keyfile';
  readonly keyfile: string;
}

export interface AwsProviderConfig {
  readonly type: 'aws';
  /** Key id, alias (`alias/name`) or ARN that new data keys are wrapped under. */
  readonly keyId: string;
  readonly region: string | undefined;
  /** Endpoint override (emulators, VPC endpoints); AWS_ENDPOINT_URL_KMS also works. */
  readonly endpoint: string | undefined;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxAttempts: number;
  /** Total time allowed for one provider call, retries included. */
  readonly deadlineMs: number;
}

export type ProviderConfig = KeyfileProviderConfig | AwsProviderConfig;

export interface PkiConfig {
  /** `internal`: tokend is the CA (keys under `dir`); `external`: only `caBundle` is trusted, nothing is issued. */
  readonly mode: 'internal' | 'external';
  readonly dir: string;
  readonly caBundle: string | undefined;
  /** External mode only: the server certificate (chain) and its 0600 key, issued by the external CA. */
  readonly serverCert: string | undefined;
  readonly serverKey: string | undefined;
  readonly trustDomain: string;
  /** Lifetime of a CA made by `tokend ca init`. */
  readonly caTtlDays: number;
  readonly clientTtlDays: number;
  readonly serverTtlDays: number;
  /** Renew a certificate when less than this fraction of its lifetime remains. */
  readonly renewBeforeFraction: number;
}

export interface ServerConfig {
  /** `host:port` (IPv6 in brackets) or `unix:/path`. */
  readonly listen: readonly string[];
  readonly allowNonLoopback: boolean;
  readonly identityFrom: IdentitySource;
  /** Identities allowed to read /metrics. */
  readonly admins: readonly string[];
  readonly maxConnections: number;
  readonly maxHeaderBytes: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxRequestsPerConnection: number;
  readonly ticketRotationSeconds: number;
  readonly shutdownGraceMs: number;
  readonly retryAfterSeconds: number;
}

export interface CacheConfig {
  readonly enabled: boolean;
  readonly ttlSeconds: number;
  /** How long past its TTL a cached key may still serve while the provider is failing. */
  readonly staleSeconds: number;
  readonly maxEntries: number;
}

/** The validated, frozen configuration. All paths are absolute. */
export interface Config {
  /** The file this was read from. */
  readonly path: string;
  /** Development mode: keyfile provider and a local CA are expected. */
  readonly dev: boolean;
  readonly store: string;
  readonly provider: ProviderConfig;
  readonly policy: string;
  readonly pki: PkiConfig;
  readonly server: ServerConfig;
  readonly cache: CacheConfig;
  readonly logLevel: LogLevel;
}

/** What tokend takes from the environment. Read once, by readEnv. */
export interface Env {
  readonly configPath: string | undefined;
  readonly logLevel: LogLevel | undefined;
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads tokend's environment variables: TOKEND_CONFIG and TOKEND_LOG_LEVEL. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): Env {
  const level = env.TOKEND_LOG_LEVEL;
  if (level !== undefined && !LOG_LEVELS.includes(level as LogLevel)) {
    throw new TokendError('ERR_CONFIG', `TOKEND_LOG_LEVEL '${level}' is not one of ${LOG_LEVELS.join(', ')}`);
  }
  return { configPath: env.TOKEND_CONFIG || undefined, logLevel: level as LogLevel | undefined };
}

/** Reads and validates the config file at `path`. Throws ERR_CONFIG naming the file and the key. */
export async function loadConfig(path: string, env: Env = readEnv()): Promise<Config> {
  const abs = resolve(path);
  let raw: Buffer;
  try {
    await assertNotWritableByOthers(abs, 'config file');
    raw = await readNamedFile(abs, 'config file');
  } catch (err) {
    if (err instanceof TokendError && err.code === 'ERR_NOT_FOUND') {
      throw new TokendError('ERR_CONFIG', `config file '${abs}' does not exist (run 'tokend init' or pass --config)`, { cause: err });
    }
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new TokendError('ERR_CONFIG', `config file '${abs}' is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(doc, abs, env);
}

/** Validates a parsed config document. Pure: `path` only names the file and anchors relative paths. */
export function parseConfig(doc: unknown, path: string, env: Env = { configPath: undefined, logLevel: undefined }): Config {
  const base = dirname(path);
  const file = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const root = new Section(doc, `config file '${path}'`, '');

  const dev = root.bool('dev', false);
  const store = file(root.string('store', DEFAULTS.store));
  const policy = file(root.string('policy', DEFAULTS.policy));
  const provider = parseProvider(root.section('provider'), file);

  const p = root.section('pki');
  const pkiMode = p.oneOf('mode', ['internal', 'external'] as const, 'internal');
  const caBundle = p.optionalString('caBundle');
  const serverCert = p.optionalString('serverCert');
  const serverKey = p.optionalString('serverKey');
  for (const [key, value] of [['caBundle', caBundle], ['serverCert', serverCert], ['serverKey', serverKey]] as const) {
    if (pkiMode === 'internal' && value !== undefined) p.fail(key, 'is only for mode "external" (in internal mode tokend keeps its CA and server certificate under pki.dir)');
    if (pkiMode === 'external' && value === undefined) p.fail(key, 'is required when mode is "external"');
  }
  const pki: PkiConfig = {
    mode: pkiMode,
    dir: file(p.string('dir', DEFAULTS.pkiDir)),
    caBundle: caBundle === undefined ? undefined : file(caBundle),
    serverCert: serverCert === undefined ? undefined : file(serverCert),
    serverKey: serverKey === undefined ? undefined : file(serverKey),
    trustDomain: p.string('trustDomain', DEFAULTS.trustDomain, /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/),
    caTtlDays: p.number('caTtlDays', DEFAULTS.caTtlDays, 30, 9_125),
    clientTtlDays: p.number('clientTtlDays', DEFAULTS.clientTtlDays, 1 / 24, 397),
    serverTtlDays: p.number('serverTtlDays', DEFAULTS.serverTtlDays, 1 / 24, 397),
    renewBeforeFraction: p.number('renewBeforeFraction', DEFAULTS.renewBeforeFraction, 0.05, 0.9),
  };
  p.done();

  const s = root.section('server');
  const server: ServerConfig = {
    listen: s.stringList('listen', DEFAULTS.listen, 1, 16),
    allowNonLoopback: s.bool('allowNonLoopback', false),
    identityFrom: s.oneOf('identityFrom', ['spiffe-then-cn', 'spiffe', 'cn'] as const, DEFAULTS.identityFrom),
    admins: s.stringList('admins', [], 0, 64),
    maxConnections: s.int('maxConnections', DEFAULTS.maxConnections, 1, 100_000),
    maxHeaderBytes: s.int('maxHeaderBytes', DEFAULTS.maxHeaderBytes, 1_024, 65_536),
    headersTimeoutMs: s.int('headersTimeoutMs', DEFAULTS.headersTimeoutMs, 100, 60_000),
    requestTimeoutMs: s.int('requestTimeoutMs', DEFAULTS.requestTimeoutMs, 100, 300_000),
    keepAliveTimeoutMs: s.int('keepAliveTimeoutMs', DEFAULTS.keepAliveTimeoutMs, 100, 600_000),
    maxRequestsPerConnection: s.int('maxRequestsPerConnection', DEFAULTS.maxRequestsPerConnection, 1, 1_000_000),
    ticketRotationSeconds: s.int('ticketRotationSeconds', DEFAULTS.ticketRotationSeconds, 60, 86_400),
    shutdownGraceMs: s.int('shutdownGraceMs', DEFAULTS.shutdownGraceMs, 0, 120_000),
    retryAfterSeconds: s.int('retryAfterSeconds', DEFAULTS.retryAfterSeconds, 1, 3_600),
  };
  s.done();

  const c = root.section('cache');
  const cache: CacheConfig = {
    enabled: c.bool('enabled', DEFAULTS.cacheEnabled),
    ttlSeconds: c.int('ttlSeconds', DEFAULTS.cacheTtlSeconds, 1, 86_400),
    staleSeconds: c.int('staleSeconds', DEFAULTS.cacheStaleSeconds, 0, 7 * 86_400),
    maxEntries: c.int('maxEntries', DEFAULTS.cacheMaxEntries, 1, 1_000_000),
  };
  c.done();

  const fileLogLevel = root.oneOf('logLevel', LOG_LEVELS, DEFAULTS.logLevel);
  const logLevel = env.logLevel ?? fileLogLevel;
  root.done();
  return deepFreeze({ path, dev, store, provider, policy, pki, server, cache, logLevel });
}

/** AWS region names: eu-west-1, us-gov-west-1, cn-north-1. */
const AWS_REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const KMS_KEY = '(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})';
const KMS_ALIAS = 'alias/[A-Za-z0-9/_-]{1,250}';
/** The four ways KMS accepts a key: key id, key ARN, alias name, alias ARN. */
const AWS_KEY_ID = new RegExp(`^(?:${KMS_KEY}|${KMS_ALIAS}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\\d{12}:(?:key/${KMS_KEY}|${KMS_ALIAS}))$`);

function parseProvider(p: Section, file: (p: string) => string): ProviderConfig {
  const type = p.oneOf('type', ['keyfile', 'aws'] as const, 'keyfile');
  if (type === 'keyfile') {
    const keyfile = file(p.string('keyfile', DEFAULTS.keyfile));
    p.done();
    return { type, keyfile };
  }
  const keyId = p.optionalString('keyId');
  if (keyId === undefined) return p.fail('keyId', 'is required for the aws provider (a key id, alias/<name> or key ARN)');
  if (!AWS_KEY_ID.test(keyId)) p.fail('keyId', 'is not a KMS key id, key ARN, alias/<name> or alias ARN');
  const region = p.optionalString('region');
  if (region !== undefined && !AWS_REGION.test(region)) p.fail('region', 'is not an AWS region name (like eu-west-1)');
  const endpoint = p.optionalString('endpoint');
  if (endpoint !== undefined && !/^https?:\/\/[^\s]+$/.test(endpoint)) p.fail('endpoint', 'is not an http(s) URL');
  const config: AwsProviderConfig = {
    type,
    keyId,
    region,
    endpoint,
    connectTimeoutMs: p.int('connectTimeoutMs', DEFAULTS.awsConnectTimeoutMs, 50, 60_000),
    requestTimeoutMs: p.int('requestTimeoutMs', DEFAULTS.awsRequestTimeoutMs, 50, 120_000),
    maxAttempts: p.int('maxAttempts', DEFAULTS.awsMaxAttempts, 1, 10),
    deadlineMs: p.int('deadlineMs', DEFAULTS.awsDeadlineMs, 100, 300_000),
  };
  for (const forbidden of ['accessKeyId', 'secretAccessKey', 'sessionToken']) {
    if (p.has(forbidden)) p.fail(forbidden, 'is not allowed: tokend takes AWS credentials only from the default provider chain (instance role, environment, profile)');
  }
  p.done();
  return config;
}

/** Reads one JSON object, remembering which keys were read so that done() can reject the rest. */
class Section {
  readonly #obj: Record<string, unknown>;
  readonly #file: string;
  readonly #prefix: string;
  readonly #seen = new Set<string>();

  constructor(value: unknown, file: string, prefix: string) {
    this.#file = file;
    this.#prefix = prefix;
    if (value === undefined) value = {};
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new TokendError('ERR_CONFIG', `${file}: ${prefix ? `'${prefix.slice(0, -1)}'` : 'the top level'} must be a JSON object`);
    }
    this.#obj = value as Record<string, unknown>;
  }

  has(key: string): boolean {
    return Object.hasOwn(this.#obj, key);
  }

  fail(key: string, why: string): never {
    throw new TokendError('ERR_CONFIG', `${this.#file}: '${this.#prefix}${key}' ${why}`);
  }

  section(key: string): Section {
    return new Section(this.#get(key), this.#file, `${this.#prefix}${key}.`);
  }

  bool(key: string, def: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined) return def;
    if (typeof v !== 'boolean') return this.fail(key, 'must be true or false');
    return v;
  }

  optionalString(key: string): string | undefined {
    const v = this.#get(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v.length === 0) return this.fail(key, 'must be a non-empty string');
    return v;
  }

  string(key: string, def: string, pattern?: RegExp): string {
    const v = this.optionalString(key) ?? def;
    if (pattern && !pattern.test(v)) return this.fail(key, `must match ${pattern}`);
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], def: T): T {
    const v = this.#get(key);
    if (v === undefined) return def;
    if (typeof v !== 'string' || !allowed.includes(v as T)) {
      return this.fail(key, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
    }
    return v as T;
  }

  number(key: string, def: number, min: number, max: number): number {
    const v = this.#get(key);
    if (v === undefined) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      return this.fail(key, `must be a number from ${min} to ${max}`);
    }
    return v;
  }

  int(key: string, def: number, min: number, max: number): number {
    const v = this.number(key, def, min, max);
    if (!Number.isInteger(v)) return this.fail(key, `must be an integer from ${min} to ${max}`);
    return v;
  }

  stringList(key: string, def: readonly string[], min: number, max: number): readonly string[] {
    const v = this.#get(key);
    if (v === undefined) return def;
    if (!Array.isArray(v) || v.length < min || v.length > max || !v.every((x) => typeof x === 'string' && x.length > 0)) {
      return this.fail(key, `must be a list of ${min} to ${max} non-empty strings`);
    }
    return v as string[];
  }

  /** Rejects any key that was not read: typos fail loudly instead of being ignored. */
  done(): void {
    const unknown = Object.keys(this.#obj).filter((k) => !this.#seen.has(k));
    if (unknown.length > 0) {
      this.fail(unknown[0] as string, `is not a known setting (known here: ${[...this.#seen].sort().join(', ') || 'none'})`);
    }
  }

  #get(key: string): unknown {
    this.#seen.add(key);
    return this.#obj[key];
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
