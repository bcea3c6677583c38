// Policy: which identities may read which tokens. Default deny: a token is
// readable only when some rule names both the identity and the token. An empty
// policy (no rules) allows no one anything.

import { TokendError } from './errors.js';
import { assertNotWritableByOthers, readNamedFile } from './private-files.js';

/** One allow rule: every identity pattern may read every token pattern. Patterns are exact names or `*` globs. */
export interface PolicyRule {
  readonly identities: readonly string[];
  readonly tokens: readonly string[];
}

/** A validated policy. Immutable; a reload builds a new one. */
export interface Policy {
  readonly rules: readonly PolicyRule[];
  /** True when some rule allows `identity` to read `token`. Fails closed: unknown means no. */
  allows(identity: string, token: string): boolean;
  /** Warnings found while validating (over-broad globs), for the log. */
  readonly warnings: readonly string[];
}

const PATTERN = /^[a-z0-9*][a-z0-9._*-]{0,127}$/;

/** Parses a policy document. Throws ERR_POLICY naming the file and the entry (`rules[2].tokens[0]`). */
export function parsePolicy(doc: unknown, source: string): Policy {
  const fail = (where: string, why: string): never => {
    throw new TokendError('ERR_POLICY', `policy '${source}': ${where} ${why}`);
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return fail('the document', 'must be a JSON object with a "rules" list');
  const top = doc as Record<string, unknown>;
  for (const key of Object.keys(top)) if (key !== 'rules') fail(`'${key}'`, 'is not a known key (expected only "rules")');
  if (!Array.isArray(top.rules)) return fail("'rules'", 'must be a list (an empty list allows no one)');
  const warnings: string[] = [];
  const rules = top.rules.map((raw: unknown, i: number): PolicyRule => {
    const at = `rules[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(at, 'must be an object with "identities" and "tokens"');
    const rule = raw as Record<string, unknown>;
    for (const key of Object.keys(rule)) {
      if (key !== 'identities' && key !== 'tokens') fail(`${at}.${key}`, 'is not a known key (expected "identities" and "tokens")');
    }
    const list = (field: 'identities' | 'tokens'): string[] => {
      const value = rule[field];
      if (!Array.isArray(value) || value.length === 0) return fail(`${at}.${field}`, 'must be a non-empty list of names or globs');
      return value.map((p: unknown, j: number) => {
        if (typeof p !== 'string' || !PATTERN.test(p) || p.includes('..')) {
          return fail(`${at}.${field}[${j}]`, `${JSON.stringify(p)} is not a name or glob (lower-case letters, digits, ".", "_", "-", "*")`);
        }
        if (/^\*+$/.test(p)) warnings.push(`policy '${source}': ${at}.${field}[${j}] is ${JSON.stringify(p)}, which matches every ${field === 'tokens' ? 'token' : 'identity'}`);
        return p;
      });
    };
    return { identities: list('identities'), tokens: list('tokens') };
  });
  return compile(rules, warnings);
}

function compile(rules: readonly PolicyRule[], warnings: readonly string[]): Policy {
  const compiled = rules.map((r) => ({ identities: r.identities.map(matcher), tokens: r.tokens.map(matcher) }));
  return Object.freeze({
    rules,
    warnings,
    allows(identity: string, token: string): boolean {
      return compiled.some((r) => r.identities.some((m) => m(identity)) && r.tokens.some((m) => m(token)));
    },
  });
}

/** True when `pattern` (an exact name or a `*` glob) matches `value`. */
export function globMatches(pattern: string, value: string): boolean {
  return matcher(pattern)(value);
}

/** An exact-match or glob matcher; `*` matches any run of name characters (names have no separators). */
function matcher(pattern: string): (value: string) => boolean {
  if (!pattern.includes('*')) return (value) => value === pattern;
  const source = pattern
    .split('*')
    .map((part) => part.replace(/[.]/g, '\\.'))
    .join('[a-z0-9._-]*');
  const re = new RegExp(`^${source}$`);
  return (value) => re.test(value);
}

/**
 * Reads and parses the policy file. Fails closed: a file others can write is
 * refused (anyone who can edit the policy can grant themselves any token).
 */
export async function loadPolicy(path: string): Promise<Policy> {
  await assertNotWritableByOthers(path, 'policy');
  const raw = await readNamedFile(path, 'policy');
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new TokendError('ERR_POLICY', `policy '${path}' is not valid JSON: ${(err as Error).message}`);
  }
  return parsePolicy(doc, path);
}
