// The notifier under real systemd 252 (systemd-nspawn): readiness, status, watchdog and reload,
// driven by a throwaway daemon (test/fixtures/notify-daemon.mjs) that uses dist/systemd/notify.js.

import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { bootMachine } from './support/nspawn.js';
import type { Machine } from './support/nspawn.js';
import { hasCommand, isRoot, missing } from './support/requirements.js';
import { REPO_BIND, REPO_IN_MACHINE, assertBuilt, writeIntoRoot } from './support/units.js';

const skip = missing({ root: isRoot(), 'systemd-nspawn': hasCommand('systemd-nspawn'), debootstrap: hasCommand('debootstrap') });

const daemon = `/usr/local/bin/node ${REPO_IN_MACHINE}/test/fixtures/notify-daemon.mjs`;

/** A Type=notify unit running the daemon as an unprivileged (dynamic) user, as tokend runs. */
function unit(args: string, extra = ''): string {
  return `[Service]\nType=notify\nNotifyAccess=all\nDynamicUser=yes\nExecStart=${daemon} ${args}\nExecReload=/bin/kill -HUP $MAINPID\n${extra}`;
}

describe.skipIf(skip)('sd_notify under real systemd', () => {
  let machine: Machine;

  beforeAll(async () => {
    await assertBuilt();
    machine = await bootMachine({
      bindReadOnly: REPO_BIND,
      prepare: (root) =>
        writeIntoRoot(root, {
          'etc/systemd/system/nd-gate.service': unit('ready-when:/run/nd-go 7800'),
          'etc/systemd/system/nd-serve.service': unit('serve 7801', 'WatchdogSec=2\n'),
          // A hung process cannot run its SIGTERM handler: without a short TimeoutStopSec, stopping the restarted
          // (and again hung) daemon at the end of the test waits systemd's default 90 s before SIGKILL.
          'etc/systemd/system/nd-hang.service': unit('hang 7802', 'WatchdogSec=2\nRestart=on-failure\nRestartSec=1\nTimeoutStopSec=2\n'),
          'etc/systemd/system/nd-main-only.service': unit('serve 7803', 'TimeoutStartSec=3\n').replace('NotifyAccess=all', 'NotifyAccess=main'),
        }),
    });
  }, 300_000);

  it('keeps a Type=notify unit activating until READY=1, showing its STATUS meanwhile', async () => {
    expect((await machine.systemctl('start', '--no-block', 'nd-gate.service')).code).toBe(0);
    await machine.waitForUnit('nd-gate.service', ['ActiveState', 'StatusText'], (p) => p.StatusText === 'listening, waiting to be told to start');
    expect((await machine.show('nd-gate.service', ['ActiveState'])).ActiveState).toBe('activating');

    await machine.exec(['touch', '/run/nd-go']);
    const props = await machine.waitForUnit('nd-gate.service', ['ActiveState', 'SubState', 'StatusText'], (p) => p.ActiveState === 'active');
    expect(props).toEqual({ ActiveState: 'active', SubState: 'running', StatusText: 'listening on 127.0.0.1:7800' });
  });

  it('keeps a healthy daemon alive with watchdog pings (WatchdogSec=2)', async () => {
    expect((await machine.systemctl('start', 'nd-serve.service')).code).toBe(0);
    await sleep(5_000); // more than two watchdog periods
    const props = await machine.show('nd-serve.service', ['ActiveState', 'NRestarts', 'WatchdogUSec']);
    expect(props).toEqual({ ActiveState: 'active', NRestarts: '0', WatchdogUSec: '2s' });
    expect(await machine.journal('nd-serve.service')).not.toContain('Watchdog timeout');
  });

  it('reloads: RELOADING=1, then READY=1 with the new status, same main PID', async () => {
    await machine.waitForUnit('nd-serve.service', ['ActiveState'], (p) => p.ActiveState === 'active');
    const before = await machine.show('nd-serve.service', ['MainPID']);
    expect((await machine.systemctl('reload', 'nd-serve.service')).code).toBe(0);
    const after = await machine.waitForUnit('nd-serve.service', ['ActiveState', 'StatusText', 'MainPID'], (p) => p.StatusText === 'reloaded 1');
    expect(after).toEqual({ ActiveState: 'active', StatusText: 'reloaded 1', MainPID: before.MainPID });
    expect(await machine.journal('nd-serve.service')).toMatch(/Reloading nd-serve\.service/);
  });

  it('stops cleanly on SIGTERM after STOPPING=1', async () => {
    expect((await machine.systemctl('stop', 'nd-serve.service')).code).toBe(0);
    expect(await machine.show('nd-serve.service', ['ActiveState', 'Result'])).toEqual({ ActiveState: 'inactive', Result: 'success' });
  });

  it('has a daemon whose event loop hangs killed by the watchdog and restarted', async () => {
    expect((await machine.systemctl('start', 'nd-hang.service')).code).toBe(0);
    await machine.waitForUnit('nd-hang.service', ['NRestarts'], (p) => Number(p.NRestarts) >= 1, 20_000);
    expect(await machine.journal('nd-hang.service')).toContain('Watchdog timeout');
    await machine.systemctl('stop', 'nd-hang.service');
  });

  it('loses READY from the systemd-notify child with NotifyAccess=main (why the unit needs =all)', async () => {
    const start = await machine.systemctl('start', 'nd-main-only.service');
    expect(start.code).not.toBe(0);
    expect(await machine.journal('nd-main-only.service')).toMatch(/reception only permitted for main PID/);
  });
});
