import { join } from 'node:path';
import { GenericContainer, Wait } from 'testcontainers';
import { beforeAll, describe, expect, it } from 'vitest';
import { NODE_IMAGE, baseImages, podman, stopAfter, useTestcontainers } from '../support/podman.js';
import { REPO } from '../support/rootfs.js';
import { hasCommand, isRoot, missing } from '../support/requirements.js';

const skip = missing({ root: isRoot(), podman: hasCommand('podman'), debootstrap: hasCommand('debootstrap') });

describe.skipIf(skip)('podman and testcontainers', () => {
  beforeAll(async () => {
    await baseImages();
    await useTestcontainers();
  }, 600_000);

  it('has the local Node 24 base image, with npm for build stages', async () => {
    const r = await podman(['run', '--rm', NODE_IMAGE, 'sh', '-c', 'node --version && npm --version']);
    const [node, npm] = r.stdout.trim().split('\n');
    expect(node).toBe(process.version);
    expect(npm).toMatch(/^11\./);
  });

  it('builds an image from a Dockerfile and shares 127.0.0.1 with a second container', { timeout: 300_000 }, async () => {
    const image = await GenericContainer.fromDockerfile(join(REPO, 'test/fixtures/hello-image')).build('localhost/tokend-test-hello:latest', { deleteOnExit: false });
    const server = stopAfter(await image.withWaitStrategy(Wait.forLogMessage(/listening as uid 65534/)).start());

    const client = stopAfter(
      await new GenericContainer(NODE_IMAGE)
        .withNetworkMode(`container:${server.getId()}`)
        .withCommand(['node', '-e', "fetch('http://127.0.0.1:8080').then(r => r.text()).then(t => console.log('got: ' + t))"])
        .withWaitStrategy(Wait.forLogMessage(/got: /))
        .start(),
    );
    const logs = await client.logs();
    const text = await new Promise<string>((resolve) => {
      let all = '';
      logs.on('data', (c: Buffer | string) => (all += c.toString()));
      logs.on('end', () => resolve(all));
      setTimeout(() => resolve(all), 2_000);
    });
    expect(text).toContain('got: hello');
  });
});
