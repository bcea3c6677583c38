// units/tokend.service: clean under `systemd-analyze verify`, exposure ≤ 2.0, and its sandbox
// really runs a Node daemon under systemd 252 (a throwaway daemon stands in for `tokend serve`).

import { chmod } from 'node:fs/promises';
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

/** The unit and its user, installed into a root; a stand-in command can replace `tokend serve`. */
async function installUnit(root: string, execStart?: string, extra = ''): Promise<void> {
  await installTokendUnit(root, execStart ? `[Service]\n${extra}ExecStart=\nExecStart=${execStart}\n` : undefined);
  // Until `tokend serve` exists, the installed tokend fails as a bad config does: exit code 3.
  await writeIntoRoot(root, { 'etc/tokend/tokend.json': '{}\n', 'usr/local/bin/tokend': '#!/bin/sh\nexit 3\n' });
  await chmod(join(root, 'usr/local/bin/tokend'), 0o755);
}

describe.skipIf(skip)('units/tokend.service', () => {
  it('passes systemd-analyze verify without a warning', async () => {
    const root = await freshRoot();
    await installUnit(root.path);
    const r = await run('systemd-analyze', ['verify', `--root=${root.path}`, '/etc/systemd/system/tokend.service'], { allowFailure: true });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.code).toBe(0);
  });

  it('has an exposure score of at most 2.0 under systemd-analyze security', async () => {
    const r = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT], { env: { ...process.env, SYSTEMD_COLORS: '0' } });
    const score = /Overall exposure level for tokend\.service: ([\d.]+)/.exec(r.stdout)?.[1];
    const open = r.stdout.split('\n').filter((l) => l.startsWith('✗')).map((l) => l.replace(/\s{2,}/g, ' | ').trim());
    console.log(`tokend.service exposure: ${score}\n  still open:\n    ${open.join('\n    ')}`);
    expect(Number(score)).toBeLessThanOrEqual(2.0);
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
});
