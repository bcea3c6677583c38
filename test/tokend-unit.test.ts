// units/: every unit clean under `systemd-analyze verify`, every service's exposure ≤ 2.0, and
// tokend.service's sandbox really runs a Node daemon under systemd 252 (a throwaway daemon
// stands in for `tokend serve` here; test/coreos-e2e.test.ts runs the real one).

import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bootMachine } from './support/nspawn.js';
import { REPO, freshRoot } from './support/rootfs.js';
import { run } from './support/run.js';
import { hasCommand, isRoot, missing } from './support/requirements.js';
import { REPO_BIND, REPO_IN_MACHINE, assertBuilt, installTokendUnit, writeIntoRoot } from './support/units.js';

const skip = missing({
  root: isRoot(),
  'systemd-analyze': hasCommand('systemd-analyze'),
  'systemd-nspawn': hasCommand('systemd-nspawn'),
  debootstrap: hasCommand('debootstrap'),
});

const UNIT = join(REPO, 'units/tokend.service');

/** The unit and its user, installed into a root; a stand-in command can replace `tokend serve` (and its ExecStartPre). */
async function installUnit(root: string, execStart?: string, extra = ''): Promise<void> {
  await installTokendUnit(root, execStart ? `[Service]\n${extra}ExecStart=\nExecStart=${execStart}\n` : undefined);
  // The installed tokend's `serve` fails as a bad config does: exit code 3 (tokend-ca.service's `ca init` succeeds).
  await writeIntoRoot(root, { 'etc/tokend/tokend.json': '{}\n', 'usr/local/bin/tokend': '#!/bin/sh\n[ "$1" = serve ] && exit 3\nexit 0\n' });
  await chmod(join(root, 'usr/local/bin/tokend'), 0o755);
}

/** Every unit shipped in units/ (the quadlet is podman's, not systemd's: quadlet.test.ts). */
const UNITS = ['tokend.service', 'tokend-ca.service', 'tokend-client@.service', 'tokend-renew.service', 'tokend-renew.timer'];

describe.skipIf(skip)('units/tokend.service', () => {
  it('passes systemd-analyze verify without a warning, with every unit beside it', async () => {
    const root = await freshRoot();
    await installUnit(root.path);
    const extra = UNITS.filter((u) => u !== 'tokend.service' && u !== 'tokend-ca.service');
    await writeIntoRoot(root.path, Object.fromEntries(await Promise.all(extra.map(async (u) => [`etc/systemd/system/${u}`, await readFile(join(REPO, 'units', u), 'utf8')]))));
    const paths = ['tokend.service', 'tokend-ca.service', 'tokend-client@billing.service', 'tokend-renew.service', 'tokend-renew.timer'].map((u) => `/etc/systemd/system/${u}`);
    const r = await run('systemd-analyze', ['verify', `--root=${root.path}`, ...paths], { allowFailure: true });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.code).toBe(0);
  });

  it('has an exposure score of at most 2.0 under systemd-analyze security, for every service', async () => {
    for (const unit of [UNIT, ...['tokend-ca.service', 'tokend-client@.service', 'tokend-renew.service'].map((u) => join(REPO, 'units', u))]) {
      const r = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', unit], { env: { ...process.env, SYSTEMD_COLORS: '0' } });
      const [, name, score] = /Overall exposure level for (\S+): ([\d.]+)/.exec(r.stdout) ?? [];
      const open = r.stdout.split('\n').filter((l) => l.startsWith('✗')).map((l) => l.replace(/\s{2,}/g, ' | ').trim());
      console.log(`${name} exposure: ${score}\n  still open:\n    ${open.join('\n    ')}`);
      expect(Number(score), name).toBeLessThanOrEqual(2.0);
    }
  });

  it('runs a Node 24 daemon inside its sandbox: as tokend, listening on 127.0.0.1, READY, reloadable, stoppable', { timeout: 120_000 }, async () => {
    await assertBuilt();
    const machine = await bootMachine({
      bindReadOnly: REPO_BIND,
      prepare: (root) => installUnit(root, `/usr/local/bin/node ${REPO_IN_MACHINE}/test/fixtures/notify-daemon.mjs serve 7443`),
    });
    expect((await machine.systemctl('start', 'tokend.service')).code).toBe(0);
    const props = await machine.show('tokend.service', ['ActiveState', 'StatusText', 'MainPID', 'User']);
    expect(props).toMatchObject({ ActiveState: 'active', StatusText: 'listening on 127.0.0.1:7443', User: 'tokend' });
    const owner = await machine.exec(['ps', '-o', 'user=', '-p', props.MainPID!]);
    expect(owner.stdout.trim()).toBe('tokend');

    const reply = await machine.exec(['curl', '-sS', '--max-time', '5', 'telnet://127.0.0.1:7443'], { allowFailure: true });
    expect(reply.stdout).toBe(`ok ${props.MainPID}\n`);

    expect((await machine.systemctl('reload', 'tokend.service')).code).toBe(0);
    await machine.waitForUnit('tokend.service', ['StatusText'], (p) => p.StatusText === 'reloaded 1');

    expect((await machine.systemctl('stop', 'tokend.service')).code).toBe(0);
    expect(await machine.show('tokend.service', ['Result'])).toEqual({ Result: 'success' });
    const journal = await machine.journal('tokend.service');
    expect(journal).not.toMatch(/SIGSYS|core-dump|Bad system call/);
  });

  it('lets Node do what tokend needs in its sandbox, and nothing it should not', { timeout: 120_000 }, async () => {
    await assertBuilt();
    const machine = await bootMachine({
      bindReadOnly: REPO_BIND,
      prepare: (root) => installUnit(root, `/usr/local/bin/node ${REPO_IN_MACHINE}/test/fixtures/sandbox-probe.mjs`, 'Type=oneshot\nWatchdogSec=0\n'),
    });
    const start = await machine.systemctl('start', 'tokend.service');
    expect(start.code, await machine.journal('tokend.service')).toBe(0);
    const probe = JSON.parse((await machine.exec(['cat', '/var/lib/tokend/probe.json'])).stdout) as Record<string, string>;
    expect(probe).toEqual({
      crypto: 'ok',
      writeState: 'ok',
      readState: 'ok',
      writeEtc: 'error EROFS',
      writeUsr: 'error EROFS',
      listHome: 'error EACCES',
      worker: 'ok',
      lookupLocalhost: '127.0.0.1',
      loopbackTcp: 'pong',
      spawn: 'ok',
      otherProcesses: expect.stringMatching(/^[1-3] visible$/),
      NoNewPrivs: '1',
      Seccomp: '2',
      CapEff: '0000000000000000',
      CapBnd: '0000000000000000',
    });
  });

  it('does not restart after exit code 3 (bad config or permissions)', { timeout: 120_000 }, async () => {
    const machine = await bootMachine({ prepare: (root) => installUnit(root) });
    await machine.systemctl('start', 'tokend.service');
    const props = await machine.waitForUnit('tokend.service', ['ActiveState', 'Result', 'ExecMainStatus', 'NRestarts'], (p) => p.ActiveState === 'failed');
    expect(props).toEqual({ ActiveState: 'failed', Result: 'exit-code', ExecMainStatus: '3', NRestarts: '0' });
  });

  it('does not start, nor loop, when tokend-ca.service fails with exit code 3', { timeout: 120_000 }, async () => {
    const machine = await bootMachine({
      prepare: async (root) => {
        await installUnit(root);
        await writeIntoRoot(root, { 'usr/local/bin/tokend': '#!/bin/sh\nexit 3\n' });
      },
    });
    const start = await machine.systemctl('start', 'tokend.service');
    expect(start.code).not.toBe(0);
    expect(start.stderr).toMatch(/A dependency job for tokend\.service failed/);
    expect(await machine.show('tokend-ca.service', ['ActiveState', 'Result', 'ExecMainStatus'])).toEqual({ ActiveState: 'failed', Result: 'exit-code', ExecMainStatus: '3' });
    expect(await machine.show('tokend.service', ['ActiveState', 'NRestarts', 'ExecMainPID'])).toEqual({ ActiveState: 'inactive', NRestarts: '0', ExecMainPID: '0' });
  });
});
