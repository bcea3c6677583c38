import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bootMachine } from '../support/nspawn.js';
import { hasCommand, isRoot, missing } from '../support/requirements.js';

const skip = missing({ root: isRoot(), 'systemd-nspawn': hasCommand('systemd-nspawn'), debootstrap: hasCommand('debootstrap') });

describe.skipIf(skip)('systemd-nspawn test machines', () => {
  it('boots real systemd to running, with Node 24 inside, and starts a unit written before boot', { timeout: 300_000 }, async () => {
    const machine = await bootMachine({
      prepare: (root) =>
        writeFile(
          join(root, 'etc/systemd/system/hello.service'),
          `[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/bin/node -p "'hello from ' + process.version"\n`,
        ),
    });
    expect((await machine.exec(['systemctl', 'is-system-running'], { allowFailure: true })).stdout.trim()).toMatch(/^(running|degraded)$/);
    expect((await machine.exec(['/usr/local/bin/node', '-p', 'process.versions.node'])).stdout.trim()).toBe(process.versions.node);

    expect((await machine.systemctl('start', 'hello.service')).code).toBe(0);
    const props = await machine.show('hello.service', ['ActiveState', 'Result']);
    expect(props).toEqual({ ActiveState: 'active', Result: 'success' });
    expect(await machine.journal('hello.service')).toContain(`hello from ${process.version}`);

    // The test's writes land in its own overlay, never in the shared base.
    await machine.exec(['sh', '-c', 'echo mine > /etc/written-by-test']);
    expect(await readFile(join(machine.root, 'etc/written-by-test'), 'utf8')).toBe('mine\n');
    await machine.dispose();
  });

  it('gives each test a fresh root', { timeout: 120_000 }, async () => {
    const machine = await bootMachine();
    const r = await machine.exec(['test', '-e', '/etc/written-by-test'], { allowFailure: true });
    expect(r.code).toBe(1);
  });
});
