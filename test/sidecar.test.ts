// tokend's image as a sidecar, with testcontainers on real podman: the image built from the
// real Dockerfile runs read-only with no capabilities and its files mounted read-only; an app
// container in its network namespace gets its token over mutual TLS with curl; others do not.

import { createHash } from 'node:crypto';
import { chmod, chown, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { GenericContainer, Wait } from 'testcontainers';
import type { StartedTestContainer } from 'testcontainers';
import { beforeAll, describe, expect, it } from 'vitest';
import { tokend } from './support/cli.js';
import { deferCleanup } from './support/cleanup.js';
import { startKmsServer } from './support/kms-server.js';
import type { KmsServer } from './support/kms-server.js';
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

describe.skipIf(skip)('the Kubernetes recipe (docs/sidecar.md), run as a podman pod', () => {
  // The pod shares the host's network here, so that tokend reaches the KMS test server on the
  // host's loopback (in Kubernetes: AWS KMS, with workload identity); its port is its own.
  const PORT = 17455;
  const name = `tokend-k8s-${Math.random().toString(16).slice(2, 8)}`;
  let kms: KmsServer;
  let configMap: string;
  let tokens: string;

  /**
   * A volume standing in for an emptyDir: it lives as long as the pod, across its containers,
   * owned by tokend's uid (as an fsGroup would make it usable). (A podman tmpfs volume would
   * not do: its content is gone once no container mounts it.)
   */
  const emptyDir = async (suffix: string, mode: number) => {
    const volume = `${name}-${suffix}`;
    await podman(['volume', 'create', volume]);
    deferCleanup(async () => void (await podman(['volume', 'rm', '-f', volume], { allowFailure: true })));
    const path = (await podman(['volume', 'inspect', '--format', '{{.Mountpoint}}', volume])).stdout.trim();
    await chown(path, TOKEND_UID, TOKEND_UID);
    await chmod(path, mode);
    return volume;
  };

  /** A container of the pod running the tokend image as the manifest's securityContext says. */
  const tokendArgs = (...extra: string[]) => [
    '--pod', name, '--user', `${TOKEND_UID}:${TOKEND_UID}`, '--read-only', '--cap-drop=all', '--security-opt=no-new-privileges', '--no-healthcheck',
    '-v', `${configMap}:/etc/tokend:ro`, '-v', `${tokens}:/etc/tokend-tokens:ro`, ...extra,
  ];

  beforeAll(async () => {
    await tokendImage();
    kms = await startKmsServer({ region: 'eu-west-1' });
    kms.createAlias('alias/tokend-fleet', kms.createKey('fleet').keyId);
    const operator = await tempDir('tokend-k8s-');
    const config = {
      store: '/etc/tokend-tokens',
      policy: 'policy.json',
      provider: { type: 'aws', keyId: 'alias/tokend-fleet', region: 'eu-west-1', endpoint: kms.endpoint },
      pki: { mode: 'internal', dir: '/var/lib/tokend/pki', trustDomain: 'billing.pod' },
      server: { listen: [`127.0.0.1:${PORT}`] },
    };
    await mkdir(join(operator, 'tokens'), { mode: 0o700 });
    await writeFile(join(operator, 'tokend.json'), JSON.stringify({ ...config, store: 'tokens' }), { mode: 0o600 });
    const sealed = await tokend(['seal', 'stripe-key', '--dir', operator], { input: TOKEN, env: kms.env() });
    expect(sealed.code, sealed.stderr).toBe(0);

    // A ConfigMap volume as the kubelet writes it: a world-writable root of symlinks into a
    // timestamped directory of root-owned 0644 files.
    configMap = join(operator, 'configmap');
    const data = join(configMap, '..2026_01_01_00_00_00.000000001');
    await mkdir(join(data, 'tokens'), { recursive: true, mode: 0o755 });
    await writeFile(join(data, 'tokend.json'), JSON.stringify(config, null, 2), { mode: 0o644 });
    await writeFile(join(data, 'policy.json'), JSON.stringify({ rules: [{ identities: ['billing'], tokens: ['stripe-key'] }] }), { mode: 0o644 });
    await copyFile(join(operator, 'tokens/stripe-key.sealed'), join(data, 'tokens/stripe-key.sealed'));
    await chmod(join(data, 'tokens/stripe-key.sealed'), 0o644);
    await symlink(basename(data), join(configMap, '..data'));
    for (const entry of ['tokend.json', 'policy.json', 'tokens']) await symlink(join('..data', entry), join(configMap, entry));
    await chmod(configMap, 0o777);
    await chmod(operator, 0o755);
    // `subPath: tokens`: the kubelet mounts the directory the symlink resolves to.
    tokens = join(data, 'tokens');

    await podman(['pod', 'create', '--network', 'host', '--name', name]);
    deferCleanup(async () => void (await podman(['pod', 'rm', '-f', name], { allowFailure: true })));
    return () => kms.close();
  }, 900_000);

  it('makes the per-pod CA and the app bundle in init steps, then serves the app (uid 1000) its token', async () => {
    const state = await emptyDir('state', 0o700);
    const client = await emptyDir('client', 0o755);
    const init = await podman(['run', '--rm', ...tokendArgs('-v', `${state}:/var/lib/tokend`), TOKEND_IMAGE, 'ca', 'init', '--if-missing'], { allowFailure: true });
    expect(init.code, init.stderr).toBe(0);
    const bundle = await podman(
      ['run', '--rm', ...tokendArgs('-v', `${state}:/var/lib/tokend`, '-v', `${client}:/run/tokend-client`, '--cap-add=CHOWN,DAC_OVERRIDE,FOWNER'), TOKEND_IMAGE, 'cert', 'issue', 'billing', '--out', '/run/tokend-client/billing', '--owner', '1000:1000', '--ttl', '90d', '--force'],
      { allowFailure: true },
    );
    expect(bundle.code, bundle.stderr).toBe(0);

    const credentials = Object.entries(kms.env()).filter(([, v]) => v !== undefined).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    const sidecar = `${name}-tokend`;
    const started = await podman(['run', '-d', '--name', sidecar, ...tokendArgs('-v', `${state}:/var/lib/tokend`), ...credentials, TOKEND_IMAGE], { allowFailure: true });
    expect(started.code, started.stderr).toBe(0);
    // The startupProbe: `tokend health` inside the sidecar, until it passes.
    let healthy = false;
    for (let i = 0; i < 60 && !healthy; i++) {
      healthy = (await podman(['exec', sidecar, 'node', '/app/tokend.mjs', 'health', '--address', `127.0.0.1:${PORT}`], { allowFailure: true })).code === 0;
      if (!healthy) await new Promise((r) => setTimeout(r, 250));
    }
    expect(healthy, (await podman(['logs', sidecar], { allowFailure: true })).stdout).toBe(true);

    const b = '/run/tokend-client/billing';
    const app = await podman(
      ['run', '--rm', '--pod', name, '--user', '1000:1000', '--read-only', '--cap-drop=all', '-v', `${client}:/run/tokend-client:ro`, NODE_IMAGE,
        'curl', '-sS', '--max-time', '5', '--cert', `${b}/client.crt`, '--key', `${b}/client.key`, '--cacert', `${b}/ca.crt`, `https://127.0.0.1:${PORT}/v1/tokens/stripe-key`],
      { allowFailure: true },
    );
    expect(app.code, app.stderr).toBe(0);
    expect(sha(app.stdout)).toBe(sha(TOKEN));
    expect(kms.calls.Decrypt).toBe(1);

    const stop = await podman(['stop', '--time', '10', sidecar]);
    expect(stop.code).toBe(0);
    expect((await podman(['inspect', '--format', '{{.State.ExitCode}}', sidecar])).stdout.trim()).toBe('0');
  });

  it("refuses tokend's key when it comes through a symlink, as a Secret volume delivers it", async () => {
    // The per-pod state, but with the server key swapped for a symlink to a copy beside it.
    const state = await emptyDir('secretlike', 0o700);
    expect((await podman(['run', '--rm', ...tokendArgs('-v', `${state}:/var/lib/tokend`), TOKEND_IMAGE, 'ca', 'init'], { allowFailure: true })).code).toBe(0);
    const link = await podman(['run', '--rm', ...tokendArgs('-v', `${state}:/var/lib/tokend`), '--entrypoint', 'node', TOKEND_IMAGE, '-e',
      "const fs=require('fs');const p='/var/lib/tokend/pki/';fs.renameSync(p+'server.key',p+'real.key');fs.symlinkSync('real.key',p+'server.key')"], { allowFailure: true });
    expect(link.code, link.stderr).toBe(0);
    const serve = await podman(['run', '--rm', ...tokendArgs('-v', `${state}:/var/lib/tokend`), TOKEND_IMAGE], { allowFailure: true });
    expect(serve.code).toBe(3);
    expect(serve.stderr).toMatch(/server key '\/var\/lib\/tokend\/pki\/server\.key' is a symbolic link; refusing to follow it/);
  });
});
