// units/tokend.container and tokend-ca.container: the real quadlet generator (podman 5.4, as
// Fedora CoreOS ships it) turns them into services, and the podman commands it generates run the
// image built from the Dockerfile: the CA one-shot, then tokend, healthy (what Notify=healthy
// waits for), serving over mutual TLS on the host's loopback, stopped gracefully by its ExecStop.
// Not verified here: systemd running those services, and the podman 5 flags they use (this host
// has podman 4.3 and no systemd as PID 1): the test runs their commands itself, without them.

import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { tokend } from './support/cli.js';
import { curl } from './support/daemon.js';
import { TOKEND_IMAGE, podman, podmanEnv, quadletBin, tokendImage } from './support/podman.js';
import { REPO } from './support/rootfs.js';
import { run } from './support/run.js';
import { hasCommand, isRoot, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';
import { deferCleanup } from './support/cleanup.js';

const skip = missing({ root: isRoot(), podman: hasCommand('podman'), debootstrap: hasCommand('debootstrap'), 'apt-get': hasCommand('apt-get') });

/** The image name the quadlets run; the test tags the image it built from the Dockerfile so. */
const QUADLET_IMAGE = 'localhost/tokend:latest';
const ID = 10001;
// Network=host: the test's tokend listens on the host's loopback, on a port of its own.
const PORT = 17454;
const TOKEN = 'quadlet token\twith bytes that must survive\n';

type Units = Record<string, string>;

/** Runs the real generator on units/*.container; returns the generated units by name and its log. */
async function generate(): Promise<{ units: Units; log: string }> {
  const dir = await tempDir('tokend-quadlet-');
  for (const f of ['tokend.container', 'tokend-ca.container']) await copyFile(join(REPO, 'units', f), join(dir, f));
  const r = await run(await quadletBin(), ['-dryrun'], { env: { ...process.env, QUADLET_UNIT_DIRS: dir } });
  // stdout: ---name.service--- then the unit, for each unit.
  const parts = r.stdout.split(/^---(\S+)---$/m);
  const units: Units = {};
  for (let i = 1; i + 1 < parts.length; i += 2) units[parts[i] as string] = (parts[i + 1] as string).trim();
  return { units, log: r.stderr };
}

/** The value of `key=` in a unit (the last one). */
function directive(unit: string, key: string): string {
  const lines = unit.split('\n').filter((l) => l.startsWith(`${key}=`));
  return (lines.at(-1) ?? '').slice(key.length + 1);
}

/** Splits an ExecStart= command line as systemd does for what quadlet writes: "..." with \ escapes. */
function words(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === '\\') cur += line[++i];
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') {
      quoted = inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

describe.skipIf(skip)('the tokend quadlets (podman 5 generator, image from the Dockerfile)', () => {
  let units: Units;
  let log: string;

  beforeAll(async () => {
    ({ units, log } = await generate());
  }, 600_000);

  it('are accepted by the real quadlet generator, which makes tokend.service and tokend-ca.service', () => {
    expect(Object.keys(units).sort()).toEqual(['tokend-ca.service', 'tokend.service']);
    expect(log).not.toMatch(/error|warning|unsupported/i);
  });

  it('make tokend.service a Type=notify unit that is ready when the health check passes, after the CA', () => {
    const svc = units['tokend.service']!;
    expect([directive(svc, 'Type'), directive(svc, 'NotifyAccess'), directive(svc, 'Requires')]).toEqual(['notify', 'all', 'tokend-ca.service']);
    expect(directive(svc, 'After')).toContain('tokend-ca.service');
    const argv = words(directive(svc, 'ExecStart'));
    for (const flag of ['--sdnotify=healthy', '--read-only', '--security-opt=no-new-privileges', '--ulimit=core=0']) expect(argv).toContain(flag);
    expect(argv.join(' ')).toContain('--cap-drop all --read-only --user 10001:10001');
    expect(argv.join(' ')).toContain('--network host');
    expect(argv).toContain(QUADLET_IMAGE);
    expect(directive(units['tokend-ca.service']!, 'Type')).toBe('oneshot');
    expect(words(directive(units['tokend-ca.service']!, 'ExecStart')).join(' ')).toContain('--network none');
  });

  it('pass systemd-analyze verify', async () => {
    const dir = await tempDir('tokend-quadlet-units-');
    for (const [name, text] of Object.entries(units)) await writeFile(join(dir, name), `${text}\n`);
    const r = await run('systemd-analyze', ['verify', join(dir, 'tokend-ca.service'), join(dir, 'tokend.service')], { allowFailure: true });
    // The generated units name their own source file (SourcePath=) in the temp dir; nothing else may be said.
    expect(`${r.stdout}${r.stderr}`.split('\n').filter((l) => l && !/network-online\.target|SourcePath/.test(l))).toEqual([]);
    expect(r.code).toBe(0);
  });

  describe('run as their generated commands say', () => {
    let root: string;
    let bundle: string;

    /**
     * The generated argv, with only what this host must differ in: paths, a unique name, and
     * what podman 4.3 lacks and podman 5 under systemd has: --sdnotify=healthy (no NOTIFY_SOCKET
     * here anyway), --cgroups=split (conmon in the unit's cgroup: needs systemd) and the
     * startup health check (the regular one, the same `tokend health`, stays); and this host's
     * ulimits.
     */
    const localize = (argv: string[], name: string): string[] => {
      const out: string[] = [];
      for (let i = 0; i < argv.length; i++) {
        const a = argv[i] as string;
        if (a === '--sdnotify=healthy' || a === '--cgroups=split') continue;
        if (a.startsWith('--health-startup-')) {
          i++; // and its value
          continue;
        }
        // An explicit --ulimit makes podman drop containers.conf's default_ulimits, which this
        // host needs (its hard limits are below podman's defaults: scripts/containers.conf).
        if (a.startsWith('--ulimit=')) out.push('--ulimit=nofile=20000:20000', '--ulimit=nproc=32768:32768');
        out.push(
          a
            .replace('%t/%N.cid', join(root, `${name}.cid`))
            .replace(/^\/etc\/tokend:/, `${join(root, 'etc')}:`)
            .replace(/^\/var\/lib\/tokend:/, `${join(root, 'var')}:`)
            .replace(/^(tokend|tokend-ca)$/, name),
        );
      }
      return out;
    };

    beforeAll(async () => {
      await tokendImage();
      await podman(['tag', TOKEND_IMAGE, QUADLET_IMAGE]);
      // The host layout `tokend ignition` provisions, with the ids the image uses.
      root = await tempDir('tokend-quadlet-host-');
      const etc = join(root, 'etc');
      const dev = join(root, 'operator');
      expect((await tokend(['init', '--dir', dev])).code).toBe(0);
      expect((await tokend(['seal', 'db-password', '--dir', dev], { input: TOKEN })).code).toBe(0);
      await mkdir(join(etc, 'tokens'), { recursive: true });
      const config = { provider: { type: 'keyfile', keyfile: '/etc/tokend/keyfile.json' }, store: '/etc/tokend/tokens', policy: '/etc/tokend/policy.json', pki: { dir: '/var/lib/tokend/pki' }, server: { listen: [`127.0.0.1:${PORT}`] } };
      await writeFile(join(etc, 'tokend.json'), JSON.stringify(config, null, 2));
      await writeFile(join(etc, 'policy.json'), JSON.stringify({ rules: [{ identities: ['billing'], tokens: ['db-password'] }] }));
      await copyFile(join(dev, 'tokens/db-password.sealed'), join(etc, 'tokens/db-password.sealed'));
      await copyFile(join(dev, 'keyfile.json'), join(etc, 'keyfile.json'));
      for (const [p, mode, uid] of [['', 0o750, 0], ['tokend.json', 0o640, 0], ['policy.json', 0o640, 0], ['tokens', 0o750, 0], ['tokens/db-password.sealed', 0o640, 0], ['keyfile.json', 0o600, ID]] as const) {
        await chown(join(etc, p), uid, ID);
        await chmod(join(etc, p), mode);
      }
      await mkdir(join(root, 'var'), { mode: 0o700 });
      await chown(join(root, 'var'), ID, ID);
      await chmod(root, 0o755);
    }, 900_000);

    it('tokend-ca.service makes the host CA as uid 10001, without network', async () => {
      const argv = localize(words(directive(units['tokend-ca.service']!, 'ExecStart')), `tokend-ca-${randomBytes(3).toString('hex')}`);
      expect(argv[0]).toBe('/usr/bin/podman');
      const r = await podman(argv.slice(1), { allowFailure: true });
      expect(r.code, r.stderr).toBe(0);
      const key = await stat(join(root, 'var/pki/ca.key'));
      expect([key.uid, key.mode & 0o777]).toEqual([ID, 0o600]);
      // A bundle for the app, issued by the same image as the same user.
      const issue = await podman(['run', '--rm', '--read-only', '--cap-drop=all', '--network=none', '--user', `${ID}:${ID}`, '-v', `${join(root, 'etc')}:/etc/tokend:ro`, '-v', `${join(root, 'var')}:/var/lib/tokend`, QUADLET_IMAGE, 'cert', 'issue', 'billing', '--out', '/var/lib/tokend/billing'], { allowFailure: true });
      expect(issue.code, issue.stderr).toBe(0);
      bundle = join(root, 'var/billing');
    });

    it('tokend.service runs the image: healthy, then serving the token over mTLS on the host loopback; its ExecStop stops it with exit 0', async () => {
      const name = `tokend-${randomBytes(3).toString('hex')}`;
      const svc = units['tokend.service']!;
      const argv = localize(words(directive(svc, 'ExecStart')), name);
      const started = await podman(argv.slice(1), { allowFailure: true });
      expect(started.code, started.stderr).toBe(0);
      deferCleanup(async () => void (await podman(['rm', '-f', '-i', name], { allowFailure: true })));
      // podman wait, started now, reports the exit code of a container that --rm then removes.
      const waited = new Promise<string>((resolve) => {
        const child = spawn('podman', ['wait', name], { env: podmanEnv() });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.on('close', () => resolve(out.trim()));
      });

      // What Notify=healthy waits for: the health check (tokend health) passing.
      let healthy = false;
      for (let i = 0; i < 60 && !healthy; i++) {
        healthy = (await podman(['healthcheck', 'run', name], { allowFailure: true })).code === 0;
        if (!healthy) await sleep(250);
      }
      expect(healthy).toBe(true);
      const r = await curl(`https://127.0.0.1:${PORT}/v1/tokens/db-password`, { bundle });
      expect(r.status, r.stderr).toBe(200);
      expect(createHash('sha256').update(r.body).digest('hex')).toBe(createHash('sha256').update(TOKEN).digest('hex'));

      const stop = localize(words(directive(svc, 'ExecStop')), name);
      expect((await podman(stop.slice(1), { allowFailure: true })).code).toBe(0);
      expect(await waited).toBe('0');
      expect((await podman(['container', 'exists', name], { allowFailure: true })).code).toBe(1);
    });
  });
});
