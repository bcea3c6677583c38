import { describe, expect, it } from 'vitest';
import { DEFAULTS, parseConfig, readEnv } from '../src/config.js';

const PATH = '/etc/tokend/tokend.json';

describe('config', () => {
  it('fills every default and resolves relative paths against the config directory', () => {
    const config = parseConfig({}, PATH);
    expect(config.store).toBe('/etc/tokend/tokens');
    expect(config.policy).toBe('/etc/tokend/policy.json');
    expect(config.provider).toEqual({ type: 'keyfile', keyfile: '/etc/tokend/keyfile.json' });
    expect(config.server.listen).toEqual(['127.0.0.1:7443']);
    expect(config.server.allowNonLoopback).toBe(false);
    expect(config.cache.ttlSeconds).toBe(DEFAULTS.cacheTtlSeconds);
    expect(Object.isFrozen(config) && Object.isFrozen(config.server) && Object.isFrozen(config.server.listen)).toBe(true);
  });

  it('keeps absolute paths as they are', () => {
    expect(parseConfig({ store: '/var/lib/tokend/tokens' }, PATH).store).toBe('/var/lib/tokend/tokens');
  });

  it('rejects an unknown top-level key and names it and the file', () => {
    expect(() => parseConfig({ stroe: 'x' }, PATH)).toThrow(`config file '${PATH}': 'stroe' is not a known setting`);
  });

  it('rejects an unknown nested key with its full path', () => {
    expect(() => parseConfig({ cache: { ttl: 5 } }, PATH)).toThrow("'cache.ttl' is not a known setting");
  });

  it.each([
    [{ cache: { ttlSeconds: 0 } }, "'cache.ttlSeconds' must be a number from 1 to 86400"],
    [{ cache: { ttlSeconds: 1.5 } }, "'cache.ttlSeconds' must be an integer"],
    [{ cache: { enabled: 'yes' } }, "'cache.enabled' must be true or false"],
    [{ server: { listen: [] } }, "'server.listen' must be a list of 1 to 16"],
    [{ provider: { type: 'vault' } }, "'provider.type' must be one of \"keyfile\", \"aws\""],
    [{ provider: { type: 'aws' } }, "'provider.keyId' is required"],
    [{ provider: 'keyfile' }, "'provider' must be a JSON object"],
    [{ logLevel: 'loud' }, "'logLevel' must be one of"],
  ])('rejects %j with a message that names the setting', (doc, message) => {
    expect(() => parseConfig(doc, PATH)).toThrow(message);
  });

  it('refuses AWS secret keys in the config file', () => {
    expect(() =>
      parseConfig({ provider: { type: 'aws', keyId: 'alias/tokend', secretAccessKey: 'x' } }, PATH),
    ).toThrow("'provider.secretAccessKey' is not allowed");
  });

  it('reads the environment in one place and validates it', () => {
    expect(readEnv({ TOKEND_CONFIG: '/x.json', TOKEND_LOG_LEVEL: 'debug' })).toEqual({ configPath: '/x.json', logLevel: 'debug' });
    expect(() => readEnv({ TOKEND_LOG_LEVEL: 'chatty' })).toThrow("TOKEND_LOG_LEVEL 'chatty'");
    expect(parseConfig({ logLevel: 'warn' }, PATH, { configPath: undefined, logLevel: 'debug' }).logLevel).toBe('debug');
  });
});
