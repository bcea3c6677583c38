// The real Ignition in tests: `ignition-validate` for configs, and the real `ignition` binary
// (Debian's dracut module) applying a config to a root directory, which can then be booted.

import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand, isRoot } from './requirements.js';
import { run } from './run.js';

/** The real Ignition binary shipped by Debian's `ignition` package. */
export const IGNITION_BIN = '/usr/lib/dracut/modules.d/30ignition/ignition';

/** The Ignition config spec version that Debian's Ignition 2.14 validates as stable. */
export const IGNITION_VERSION = '3.3.0';

/** What applying Ignition to a root and booting it needs, for missing(): root, both Ignition binaries, nspawn, debootstrap. */
export function ignitionRequirements(): Record<string, boolean> {
  return {
    root: isRoot(),
    'ignition-validate': hasCommand('ignition-validate'),
    ignition: existsSync(IGNITION_BIN),
    'systemd-nspawn': hasCommand('systemd-nspawn'),
    debootstrap: hasCommand('debootstrap'),
  };
}

/** A `data:` URL holding `content`, as Ignition's `contents.source` wants it. */
export function dataUrl(content: string | Buffer): string {
  return `data:;base64,${Buffer.from(content).toString('base64')}`;
}

/** The result of `ignition-validate`: ok, and its report (warnings and errors, one per line). */
export async function validateIgnition(config: unknown): Promise<{ ok: boolean; report: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tokend-ign-'));
  try {
    const file = join(dir, 'config.ign');
    await writeFile(file, typeof config === 'string' ? config : JSON.stringify(config));
    const r = await run('ignition-validate', [file], { allowFailure: true });
    return { ok: r.code === 0, report: `${r.stdout}${r.stderr}`.trim() };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Applies `config` to `root` as first boot would: stages fetch-offline, then files (users,
 * directories, files, links, units and the 20-ignition.preset). Rejects with Ignition's log when
 * a stage fails. Call enablePresets() afterwards so the units it enabled start at boot.
 */
export async function applyIgnition(root: string, config: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tokend-ign-'));
  try {
    const file = join(dir, 'config.ign');
    await writeFile(file, typeof config === 'string' ? config : JSON.stringify(config));
    const env = { ...process.env, IGNITION_CONFIG_FILE: file };
    const common = ['-platform', 'file', '-root', root, '-log-to-stdout', '-config-cache', join(dir, 'cache.json'), '-state-file', join(dir, 'state')];
    let log = '';
    for (const stage of ['fetch-offline', 'files']) {
      const args = ['-stage', stage, ...common, ...(stage === 'fetch-offline' ? ['-neednet', join(dir, 'neednet')] : [])];
      const r = await run(IGNITION_BIN, args, { env, allowFailure: true, timeoutMs: 120_000 });
      log += `${r.stdout}${r.stderr}`;
      if (r.code !== 0) throw new Error(`ignition stage ${stage} failed (exit ${r.code}):\n${log.slice(-6_000)}`);
    }
    return log;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Enables what Ignition's preset file says (as `systemctl preset` does on first boot), offline. */
export async function enablePresets(root: string): Promise<readonly string[]> {
  const preset = await readFile(join(root, 'etc/systemd/system-preset/20-ignition.preset'), 'utf8').catch(() => '');
  const units = preset.split('\n').map((l) => /^enable\s+(\S+)/.exec(l.trim())?.[1]).filter((u): u is string => u !== undefined);
  if (units.length > 0) await run('systemctl', [`--root=${root}`, 'enable', ...units]);
  return units;
}
