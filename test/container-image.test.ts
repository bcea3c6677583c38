// The Dockerfile builds with real podman (behind this machine's TLS-intercepting proxy, given its
// CA as a build secret) into a small, non-root, shell-less image that runs read-only.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO } from './support/rootfs.js';
import { TOKEND_IMAGE as IMAGE, podman, tokendImage } from './support/podman.js';
import { hasCommand, isRoot, missing } from './support/requirements.js';

const skip = missing({ root: isRoot(), podman: hasCommand('podman'), debootstrap: hasCommand('debootstrap') });

/** Runs the image read-only with no capabilities (health checks need systemd timers: off here). */
const runImage = (...args: string[]) => podman(['run', '--rm', '--read-only', '--cap-drop=all', '--no-healthcheck', ...args], { allowFailure: true });

describe.skipIf(skip)('the container image (Dockerfile)', () => {
  beforeAll(() => tokendImage(), 900_000);

  it('prints tokend help, read-only and with no capabilities', async () => {
    const r = await runImage(IMAGE, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: tokend <command> [options]');
    for (const command of ['init', 'seal', 'unseal', 'list', 'rewrap', 'check']) expect(r.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('runs as the non-root tokend user (uid 10001) with no shell in the image', async () => {
    const uid = await runImage('--entrypoint', 'node', IMAGE, '-p', 'process.getuid() + ":" + process.getgid()');
    expect(uid.stdout.trim()).toBe('10001:10001');
    const shell = await runImage('--entrypoint', '/bin/sh', IMAGE, '-c', 'true');
    expect(shell.code).not.toBe(0);
  });

  it('runs the Node.js release pinned in .node-version (24.21.0 leaks per mTLS handshake)', async () => {
    const want = (await readFile(join(REPO, '.node-version'), 'utf8')).trim();
    expect(await readFile(join(REPO, 'Dockerfile'), 'utf8')).toContain(`ARG NODE_IMAGE=docker.io/library/node:${want}-bookworm-slim`);
    const version = await runImage('--entrypoint', 'node', IMAGE, '--version');
    expect(version.stdout.trim()).toBe(`v${want}`);
  });

  it('declares the health check, stop signal, volumes and OCI labels', async () => {
    const [image] = JSON.parse((await podman(['image', 'inspect', IMAGE])).stdout) as Array<{
      Config: { User: string; StopSignal: string; Entrypoint: string[]; Cmd: string[]; Volumes: object; Labels: Record<string, string> };
      Healthcheck: { Test: string[] };
      Size: number;
    }>;
    const { Config: c, Healthcheck: health, Size: size } = image!;
    console.log(`${IMAGE}: ${(Number(size) / 1e6).toFixed(1)} MB`);
    expect([c.User, c.StopSignal]).toEqual(['10001:10001', 'SIGTERM']);
    expect([c.Entrypoint, c.Cmd]).toEqual([['node', '/app/tokend.mjs'], ['serve', '--config', '/etc/tokend/tokend.json']]);
    expect(Object.keys(c.Volumes).sort()).toEqual(['/etc/tokend', '/var/lib/tokend']);
    expect(c.Labels['org.opencontainers.image.title']).toBe('tokend');
    expect(c.Labels['org.opencontainers.image.licenses']).toBe('Apache-2.0');
    expect(health.Test).toEqual(['CMD', 'node', '/app/tokend.mjs', 'health']);
  });

  it('renders the same Ignition config as the CLI (the units ship inside the image)', async () => {
    const r = await runImage('-v', `${join(REPO, 'ignition/example')}:/work:ro`, IMAGE, 'ignition', '--dir', '/work', '--client', 'billing=1000:1000', '--client', 'reports');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(await readFile(join(REPO, 'ignition/tokend.ign'), 'utf8'));
  });
});
