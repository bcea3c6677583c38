// Real podman in tests: the locally built base image (no registry can be reached), the podman
// CLI with the project's containers.conf, and a podman API socket for testcontainers.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { GenericContainer } from 'testcontainers';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup, onWorkerExit } from './cleanup.js';
import { CACHE_DIR, REPO } from './rootfs.js';
import { run } from './run.js';
import type { RunOptions, RunResult } from './run.js';

/** The image the Dockerfile builds FROM: a local stand-in built by scripts/build-images. */
export const NODE_IMAGE = 'docker.io/library/node:24-bookworm-slim';

/** The environment podman runs with: CONTAINERS_CONF from scripts/env, else the committed file. */
export function podmanEnv(): NodeJS.ProcessEnv {
  const cached = join(CACHE_DIR, 'containers.conf');
  const conf = process.env.CONTAINERS_CONF || (existsSync(cached) ? cached : join(REPO, 'scripts/containers.conf'));
  return { ...process.env, CONTAINERS_CONF: conf };
}

/** Runs the podman CLI; rejects on failure unless allowFailure. */
export function podman(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run('podman', args, { timeoutMs: 600_000, ...options, env: { ...podmanEnv(), ...options.env } });
}

let images: Promise<void> | undefined;

/** Builds the base image once (cached across runs; rebuilt when Node or npm change). */
export function baseImages(): Promise<void> {
  images ??= run(join(REPO, 'scripts/build-images'), [], {
    timeoutMs: 600_000,
    env: { ...podmanEnv(), PATH: `${join(process.execPath, '..')}:${process.env.PATH ?? ''}` },
  }).then(() => undefined);
  return images;
}

let quadlet: Promise<string> | undefined;

/** podman 5's quadlet generator (scripts/quadlet fetches it once from Debian trixie's podman). */
export function quadletBin(): Promise<string> {
  quadlet ??= run(join(REPO, 'scripts/quadlet'), [], { timeoutMs: 600_000 }).then((r) => r.stdout.trim());
  return quadlet;
}

let service: Promise<string> | undefined;

/**
 * Points testcontainers at podman: uses DOCKER_HOST when set (.ci/run starts one service for the
 * whole run), else starts a podman API service for this worker, stopped when the worker exits.
 * Call before the first testcontainers call; returns the DOCKER_HOST value.
 */
export function useTestcontainers(): Promise<string> {
  service ??= (async () => {
    process.env.TESTCONTAINERS_RYUK_DISABLED = 'true'; // Ryuk's image cannot be pulled here
    if (process.env.DOCKER_HOST) return process.env.DOCKER_HOST;
    const dir = await mkdtemp(join(tmpdir(), 'tokend-podman-'));
    const script = join(REPO, 'scripts/podman-service');
    const stopSync = (): void => {
      try {
        execFileSync(script, ['stop', dir], { stdio: 'ignore', env: podmanEnv() });
        execFileSync('rm', ['-rf', dir], { stdio: 'ignore' });
      } catch {
        // Best effort at exit.
      }
    };
    const forget = onWorkerExit(stopSync);
    deferCleanup(async () => {
      await run(script, ['stop', dir], { env: podmanEnv(), allowFailure: true });
      await rm(dir, { recursive: true, force: true });
      forget();
      delete process.env.DOCKER_HOST;
      service = undefined;
    });
    const host = (await run(script, ['start', dir], { env: podmanEnv() })).stdout.trim();
    process.env.DOCKER_HOST = host;
    return host;
  })();
  return service;
}

/** Something testcontainers started that must be stopped (and removed) after the test. */
interface Stoppable {
  stop(): Promise<unknown>;
}

/** Stops `container` after the current test (or file), even when the test fails; returns it. */
export function stopAfter<T extends Stoppable>(container: T): T {
  deferCleanup(async () => {
    await container.stop().catch(() => undefined);
  });
  return container;
}

/** The tag tokendImage() builds. */
export const TOKEND_IMAGE = 'localhost/tokend:test';

let tokend: Promise<string> | undefined;

/**
 * Builds the project's Dockerfile once per test file (podman's layer cache makes repeats cheap)
 * in docker format, which keeps its HEALTHCHECK; behind a TLS-intercepting proxy npm gets the
 * CA bundle (NODE_EXTRA_CA_CERTS) as a build secret. Returns the image tag.
 */
export function tokendImage(): Promise<string> {
  tokend ??= (async () => {
    await baseImages();
    const ca = process.env.NODE_EXTRA_CA_CERTS ?? '/etc/ssl/certs/ca-certificates.crt';
    const secret = existsSync(ca) ? ['--secret', `id=ca,src=${ca}`] : [];
    await podman(['build', '--format', 'docker', ...secret, '-t', TOKEND_IMAGE, REPO], { timeoutMs: 900_000 });
    return TOKEND_IMAGE;
  })();
  return tokend;
}

/**
 * A testcontainers container that can also run with a read-only root filesystem (`podman run
 * --read-only`), which GenericContainer has no builder for; podman then mounts tmpfs on /tmp,
 * /run and /var/tmp, as it does for --read-only.
 */
export class HardenedContainer extends GenericContainer {
  /** The root filesystem is mounted read-only. */
  withReadOnlyRootfs(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }
}
