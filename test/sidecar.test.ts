// tokend's image as a sidecar, with testcontainers on real podman: the image built from the
// real Dockerfile runs read-only with no capabilities and its files mounted read-only; an app
// container in its network namespace gets its token over mutual TLS with curl; others do not.

import { createHash } from 'node:crypto';
import { chmod, chown, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GenericContainer, Wait } from 'testcontainers';
import type { StartedTestContainer } from 'testcontainers';
import { beforeAll, describe, expect, it } from 'vitest';
import { tokend } from './support/cli.js';
import { HardenedContainer, NODE_IMAGE, TOKEND_IMAGE, podman, stopAfter, tokendImage, useTestcontainers } from './support/podman.js';
import { hasCommand, isRoot, missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';

const skip = missing({ root: isRoot(), podman: hasCommand('podman'), debootstrap: hasCommand('debootstrap') });

/** The image's tokend user. Files tokend must own (keyfile, server key) belong to it on the host. */
const TOKEND_UID = 10001;
const TOKEN = 'sk_test_51H\u00e9 with a space\n';
const OTHER_TOKEN = 'other-value-0123456789';

const sha = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

describe.skipIf(skip)('tokend as a sidecar container (podman, testcontainers)', () => {
  let operator: string;
  let sidecarDir: string;
  let sidecar: StartedTestContainer;
  let app: StartedTestContainer;
  let other: StartedTestContainer;
  let nobody: StartedTestContainer;

  /** Starts a container in the sidecar's network namespace (its 127.0.0.1), with a bundle or none. */
  async function appContainer(bundle?: string): Promise<StartedTestContainer> {
    let c = new GenericContainer(NODE_IMAGE).withNetworkMode(`container:${sidecar.getId()}`).withCommand(['sleep', 'infinity']);
    // Even a container without a bundle may know the CA: what it lacks is a client certificate.
    c = bundle
      ? c.withBindMounts([{ source: bundle, target: '/run/tokend-client', mode: 'ro' }])
      : c.withBindMounts([{ source: join(sidecarDir, 'ca.crt'), target: '/etc/tokend-ca.crt', mode: 'ro' }]);
    return stopAfter(await c.start());
  }

  /** curl from inside `c`, as an app would; the body comes back as text with the status after it. */
  async function curlFrom(c: StartedTestContainer, path: string, withBundle = true) {
    const tls = withBundle ? ['--cert', '/run/tokend-client/client.crt', '--key', '/run/tokend-client/client.key'] : [];
    const r = await c.exec(['curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', ...tls, '--cacert', withBundle ? '/run/tokend-client/ca.crt' : '/etc/tokend-ca.crt', `https://127.0.0.1:7443${path}`]);
    const cut = r.stdout.lastIndexOf('\n');
    return { exit: r.exitCode, status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut), stderr: r.stderr };
  }

  /** tokend from the image: read-only root, every capability dropped, its files read-only. */
  async function startSidecar(): Promise<StartedTestContainer> {
    return stopAfter(
      await new HardenedContainer(TOKEND_IMAGE)
        .withReadOnlyRootfs()
        .withDroppedCapabilities('ALL')
        .withSecurityOpt('no-new-privileges')
        .withBindMounts([{ source: sidecarDir, target: '/etc/tokend', mode: 'ro' }])
        .withWaitStrategy(Wait.forLogMessage(/"msg":"ready"/))
        .start(),
    );
  }

  beforeAll(async () => {
    await useTestcontainers();
    await tokendImage();

    // The operator's machine: a dev directory (keyfile, CA), bundles, sealed tokens, a policy.
    operator = await tempDir('tokend-sidecar-');
    const dev = join(operator, 'dev');
    const run = async (args: string[], input = '') => {
      const r = await tokend(args, { input });
      expect(r.code, r.stderr).toBe(0);
    };
    await run(['init', '--dir', dev]);
    await run(['cert', 'issue', 'billing', '--dir', dev]);
    await run(['cert', 'issue', 'reports', '--dir', dev]);
    await run(['seal', 'stripe-key', '--dir', dev], TOKEN);
    await run(['seal', 'reports-db', '--dir', dev], OTHER_TOKEN);

    // What the sidecar gets, and nothing more (no CA key): read-only, owned as tokend requires.
    sidecarDir = join(operator, 'sidecar');
    await mkdir(join(sidecarDir, 'tokens'), { recursive: true, mode: 0o755 });
    await chmod(sidecarDir, 0o755);
    const config = {
      store: 'tokens',
      policy: 'policy.json',
      provider: { type: 'keyfile', keyfile: 'keyfile.json' },
      pki: { mode: 'external', caBundle: 'ca.crt', serverCert: 'server.crt', serverKey: 'server.key' },
      server: { listen: ['127.0.0.1:7443'] },
    };
    await writeFile(join(sidecarDir, 'tokend.json'), JSON.stringify(config, null, 2), { mode: 0o644 });
    await writeFile(join(sidecarDir, 'policy.json'), JSON.stringify({ rules: [{ identities: ['billing'], tokens: ['stripe-key'] }, { identities: ['reports'], tokens: ['reports-db'] }] }), { mode: 0o644 });
    for (const [from, to, mode] of [
      ['pki/ca.crt', 'ca.crt', 0o644],
      ['pki/server.crt', 'server.crt', 0o644],
      ['pki/server.key', 'server.key', 0o600],
      ['keyfile.json', 'keyfile.json', 0o600],
      ['tokens/stripe-key.sealed', 'tokens/stripe-key.sealed', 0o644],
      ['tokens/reports-db.sealed', 'tokens/reports-db.sealed', 0o644],
    ] as const) {
      await copyFile(join(dev, from), join(sidecarDir, to));
      await chmod(join(sidecarDir, to), mode);
      if (mode === 0o600) await chown(join(sidecarDir, to), TOKEND_UID, TOKEND_UID);
    }

    sidecar = await startSidecar();
    app = await appContainer(join(dev, 'pki/clients/billing'));
    other = await appContainer(join(dev, 'pki/clients/reports'));
    nobody = await appContainer();
  }, 900_000);

  it('serves the exact token to the app container, over mutual TLS on the shared 127.0.0.1', async () => {
    const r = await curlFrom(app, '/v1/tokens/stripe-key');
    expect(r.status, r.stderr).toBe(200);
    expect(sha(r.body)).toBe(sha(TOKEN));
    expect((await curlFrom(app, '/v1/tokens/reports-db')).status).toBe(403);
  });

  it('refuses a container without a client certificate at the TLS handshake', async () => {
    const r = await curlFrom(nobody, '/v1/tokens/stripe-key', false);
    expect(r.status).toBe(0);
    expect(r.exit).not.toBe(0);
    expect(r.stderr).toMatch(/alert|certificate required|handshake|SSL/i);
  });

  it("refuses another identity's bundle for this token (403), and gives it its own", async () => {
    const r = await curlFrom(other, '/v1/tokens/stripe-key');
    expect(r.status).toBe(403);
    expect(r.body).not.toContain('sk_test');
    const own = await curlFrom(other, '/v1/tokens/reports-db');
    expect(own.status).toBe(200);
    expect(sha(own.body)).toBe(sha(OTHER_TOKEN));
  });

  it('runs read-only, as uid 10001, with no capabilities and no new privileges', async () => {
    const [info] = JSON.parse((await podman(['inspect', sidecar.getId()])).stdout) as Array<{
      HostConfig: { ReadonlyRootfs: boolean; CapDrop: string[]; SecurityOpt: string[] };
      EffectiveCaps: string[] | null;
      Config: { User: string };
    }>;
    expect(info!.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info!.EffectiveCaps ?? []).toEqual([]);
    expect(info!.HostConfig.SecurityOpt).toContain('no-new-privileges');
    expect(info!.Config.User).toBe('10001:10001');
  });

  it('listens on nothing but loopback in the shared network namespace', async () => {
    // /proc/net/tcp{,6} list the sockets of the namespace the app shares with the sidecar.
    const r = await app.exec(['sh', '-c', 'cat /proc/net/tcp /proc/net/tcp6']);
    const listening = r.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[3] === '0A')
      .map((f) => f[1] as string);
    expect(listening).toEqual(['0100007F:1D13']); // 127.0.0.1:7443, and nothing else
  });

  it('passes its own HEALTHCHECK (tokend health, a TLS handshake)', async () => {
    const r = await podman(['healthcheck', 'run', sidecar.getId()], { allowFailure: true });
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
  });

  it('logs JSON lines only, with an audit line per request and no token value', async () => {
    const logs = (await podman(['logs', sidecar.getId()])).stdout;
    const lines = logs.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.msg === 'ready')).toBe(true);
    expect(lines.filter((l) => JSON.stringify(l).includes('stripe-key')).length).toBeGreaterThan(0);
    for (const value of [TOKEN, TOKEN.trim(), OTHER_TOKEN]) expect(logs.includes(value)).toBe(false);
  });

  it('stops gracefully on podman stop: exit 0 before the stop timeout', async () => {
    const stopped = await startSidecar();
    const r = await podman(['stop', '--time', '10', stopped.getId()]);
    expect(r.code).toBe(0);
    const state = await podman(['inspect', '--format', '{{.State.ExitCode}} {{.State.Status}}', stopped.getId()]);
    expect(state.stdout.trim()).toBe('0 exited');
    const logs = (await podman(['logs', stopped.getId()])).stdout;
    expect(logs).toMatch(/"msg":"stopped"/);
  });
});
