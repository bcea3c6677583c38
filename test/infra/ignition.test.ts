import { lstat, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ignitionRequirements, IGNITION_VERSION, applyIgnition, dataUrl, enablePresets, validateIgnition } from '../support/ignition.js';
import { bootMachine } from '../support/nspawn.js';
import { freshRoot } from '../support/rootfs.js';
import { missing } from '../support/requirements.js';

const skip = missing(ignitionRequirements());

/** A small config in the shape tokend's will have: a system user, private files, a unit. */
const config = {
  ignition: { version: IGNITION_VERSION },
  passwd: { users: [{ name: 'svc', system: true, homeDir: '/var/lib/svc', noCreateHome: true, shell: '/usr/sbin/nologin' }] },
  storage: {
    directories: [{ path: '/etc/svc/pki', mode: 0o750, user: { name: 'svc' }, group: { name: 'svc' } }],
    files: [
      { path: '/etc/svc/svc.json', mode: 0o640, user: { name: 'root' }, group: { name: 'svc' }, contents: { source: dataUrl('{"ok":true}\n') } },
      { path: '/etc/svc/pki/server.key', mode: 0o600, user: { name: 'svc' }, group: { name: 'svc' }, contents: { source: dataUrl('not a real key\n') } },
    ],
  },
  systemd: {
    units: [{ name: 'svc.service', enabled: true, contents: '[Service]\nType=oneshot\nRemainAfterExit=yes\nUser=svc\nExecStart=/bin/cat /etc/svc/pki/server.key\n[Install]\nWantedBy=multi-user.target\n' }],
  },
};

describe.skipIf(skip)('the real Ignition', () => {
  it('validates a good config and rejects a bad one with a reason', async () => {
    expect(await validateIgnition(config)).toEqual({ ok: true, report: '' });
    const bad = await validateIgnition({ ...config, ignition: { version: '3.3.0' }, storage: { files: [{ path: 'relative/path' }] } });
    expect(bad.ok).toBe(false);
    expect(bad.report).toMatch(/path not absolute/);
  });

  it('applies a config to a root: users, owners, modes, units; systemd then runs the unit', { timeout: 120_000 }, async () => {
    const root = await freshRoot();
    await applyIgnition(root.path, config);
    expect(await enablePresets(root.path)).toEqual(['svc.service']);

    const passwd = await readFile(join(root.path, 'etc/passwd'), 'utf8');
    const uid = Number(/^svc:x:(\d+):(\d+):/m.exec(passwd)?.[1]);
    const gid = Number(/^svc:x:(\d+):(\d+):/m.exec(passwd)?.[2]);
    expect(uid).toBeGreaterThan(0);
    const mode = async (p: string) => {
      const st = await stat(join(root.path, p));
      return { mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
    };
    expect(await mode('etc/svc/svc.json')).toEqual({ mode: '640', uid: 0, gid });
    expect(await mode('etc/svc/pki')).toEqual({ mode: '750', uid, gid });
    expect(await mode('etc/svc/pki/server.key')).toEqual({ mode: '600', uid, gid });
    expect((await lstat(join(root.path, 'etc/systemd/system/multi-user.target.wants/svc.service'))).isSymbolicLink()).toBe(true);

    const machine = await bootMachine({ root });
    const props = await machine.waitForUnit('svc.service', ['ActiveState', 'Result'], (p) => p.ActiveState !== 'activating' && p.ActiveState !== 'inactive');
    expect(props).toEqual({ ActiveState: 'active', Result: 'success' });
    expect(await machine.journal('svc.service')).toContain('not a real key');
  });
});
