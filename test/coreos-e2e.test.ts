// A host provisioned as production provisions it, end to end: `tokend ignition` renders the
// config from an operator's directory (aws provider, sealed tokens, policy), the real Ignition
// applies it to a Debian root, the root boots real systemd under systemd-nspawn, and tokend
// runs there as tokend.service, talking to KMS (the wire-protocol test server on the host's
// loopback: nspawn shares the host's network namespace). The only test-only additions are the
// KMS credentials and a short watchdog, in a drop-in (production uses the instance role).

import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { HOST } from '../src/ignition.js';
import { tokend } from './support/cli.js';
import { ignitionRequirements, applyIgnition, enablePresets, validateIgnition } from './support/ignition.js';
import { startKmsServer } from './support/kms-server.js';
import type { KmsServer } from './support/kms-server.js';
import { bootMachine } from './support/nspawn.js';
import type { Machine } from './support/nspawn.js';
import { freshRoot } from './support/rootfs.js';
import { missing } from './support/requirements.js';
import { tempDir } from './support/tmp.js';
import { REPO_BIND, installTokend, writeIntoRoot } from './support/units.js';

const skip = missing(ignitionRequirements());

// Token values with bytes that a lossy path would change: spaces, a tab, a trailing newline, UTF-8.
const DB_PASSWORD = 'p@ss w0rd\twith spaces and ünïcode\n';
const API_KEY = 'ak_live_0123456789abcdef';
const BUNDLE = `${HOST.clients}/billing`;
// nspawn shares the host's network namespace: a port of its own, apart from other suites.
const PORT = 17443;

const sha = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

describe.skipIf(skip)('a CoreOS-style host provisioned by Ignition, running tokend.service', () => {
  let kms: KmsServer;
  let machine: Machine;
  let operator: string;
  let rendered: string;

  /** curl over mTLS inside the host with billing's bundle; the body comes back as bytes. */
  const get = async (path: string) => {
    const r = await machine.exec(
      ['curl', '-sS', '--max-time', '10', '-w', '\n%{http_code}', '--cert', `${BUNDLE}/client.crt`, '--key', `${BUNDLE}/client.key`, '--cacert', `${BUNDLE}/ca.crt`, `https://127.0.0.1:${PORT}${path}`],
      { allowFailure: true },
    );
    const cut = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut), stderr: r.stderr };
  };
  const props = (...p: string[]) => machine.show('tokend.service', p);

  beforeAll(async () => {
    kms = await startKmsServer({ region: 'eu-west-1' });
    kms.createAlias('alias/tokend-fleet', kms.createKey('fleet key').keyId);

    // The operator's directory, as on a laptop or in CI: config, policy, tokens sealed with KMS.
    operator = await tempDir('tokend-operator-');
    await mkdir(join(operator, 'tokens'), { mode: 0o700 });
    const config = {
      provider: { type: 'aws', keyId: 'alias/tokend-fleet', region: 'eu-west-1', endpoint: kms.endpoint },
      pki: { trustDomain: 'e2e.example' },
      server: { listen: [`127.0.0.1:${PORT}`] },
    };
    await writeFile(join(operator, 'tokend.json'), JSON.stringify(config, null, 2), { mode: 0o600 });
    await writeFile(join(operator, 'policy.json'), JSON.stringify({ rules: [{ identities: ['billing'], tokens: ['db-password'] }] }), { mode: 0o600 });
    for (const [name, value] of [['db-password', DB_PASSWORD], ['api-key', API_KEY]] as const) {
      const sealed = await tokend(['seal', name, '--dir', operator], { input: value, env: kms.env() });
      expect(sealed.code, sealed.stderr).toBe(0);
    }
    const r = await tokend(['ignition', '--dir', operator, '--client', 'billing', '--client', 'reports=1000:1000']);
    expect(r.code, r.stderr).toBe(0);
    rendered = r.stdout.toString('utf8');
    expect(await validateIgnition(rendered)).toEqual({ ok: true, report: '' });

    const root = await freshRoot();
    await installTokend(root.path);
    await applyIgnition(root.path, rendered);
    expect([...(await enablePresets(root.path))].sort()).toEqual(['tokend-renew.timer', 'tokend.service']);
    const credentials = Object.entries(kms.env()).filter(([, v]) => v !== undefined).map(([k, v]) => `Environment=${k}=${v}`);
    await writeIntoRoot(root.path, { 'etc/systemd/system/tokend.service.d/test.conf': `[Service]\n${credentials.join('\n')}\nWatchdogSec=3s\n` });
    machine = await bootMachine({ root, bindReadOnly: REPO_BIND });
    return () => kms.close();
  }, 300_000);

  it('holds no token in the rendered Ignition config', () => {
    for (const value of [DB_PASSWORD, API_KEY]) {
      expect(rendered.includes(value) || rendered.includes(encodeURIComponent(value)) || rendered.includes(Buffer.from(value).toString('base64'))).toBe(false);
    }
  });

  it('lays out /etc/tokend as Ignition wrote it: root:tokend, read-only to tokend (uid and gid 10001)', async () => {
    const passwd = await readFile(join(machine.root, 'etc/passwd'), 'utf8');
    expect(passwd).toMatch(/^tokend:x:10001:10001::\/var\/lib\/tokend:\/usr\/sbin\/nologin$/m);
    const gid = 10001;
    const node = async (p: string) => {
      const st = await stat(join(machine.root, p));
      return `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid === gid ? 'tokend' : st.gid}`;
    };
    expect(await node('etc/tokend')).toBe('750 0:tokend');
    expect(await node('etc/tokend/tokend.json')).toBe('640 0:tokend');
    expect(await node('etc/tokend/policy.json')).toBe('640 0:tokend');
    expect(await node('etc/tokend/tokens')).toBe('750 0:tokend');
    expect(await node('etc/tokend/tokens/db-password.sealed')).toBe('640 0:tokend');
  });

  it('boots tokend.service to active (running) through Type=notify, as tokend, with its status', async () => {
    const p = await machine.waitForUnit('tokend.service', ['ActiveState', 'SubState', 'Type', 'StatusText', 'User', 'NRestarts'], (x) => x.ActiveState === 'active', 60_000);
    expect(p).toEqual({
      ActiveState: 'active',
      SubState: 'running',
      Type: 'notify',
      User: 'tokend',
      NRestarts: '0',
      StatusText: `serving 2 token(s) to 1 identity pattern(s) via the aws provider on 127.0.0.1:${PORT}`,
    });
  });

  it('made the host its own CA and server key on first boot, private to tokend', async () => {
    const list = await machine.exec(['stat', '-c', '%n %a %U', `${HOST.pki}`, `${HOST.pki}/ca.key`, `${HOST.pki}/server.key`, `${HOST.pki}/ca.crt`]);
    expect(list.stdout.trim().split('\n')).toEqual([`${HOST.pki} 700 tokend`, `${HOST.pki}/ca.key 600 tokend`, `${HOST.pki}/server.key 600 tokend`, `${HOST.pki}/ca.crt 644 tokend`]);
  });

  it("issued billing's client bundle on first boot (tokend-client@billing), owned by root", async () => {
    const p = await machine.waitForUnit('tokend-client@billing.service', ['ActiveState', 'Result'], (x) => x.ActiveState === 'active' || x.Result !== 'success', 60_000);
    expect(p, await machine.journal('tokend-client@billing.service')).toEqual({ ActiveState: 'active', Result: 'success' });
    const list = await machine.exec(['stat', '-L', '-c', '%n %a %U', BUNDLE, `${BUNDLE}/client.key`, `${BUNDLE}/client.crt`]);
    expect(list.stdout.trim().split('\n')).toEqual([`${BUNDLE} 700 root`, `${BUNDLE}/client.key 600 root`, `${BUNDLE}/client.crt 644 root`]);
  });

  it('hands a bundle to the uid its app runs as (--client reports=1000:1000)', async () => {
    await machine.waitForUnit('tokend-client@reports.service', ['ActiveState', 'Result'], (x) => x.ActiveState === 'active' || x.Result !== 'success', 60_000);
    const reports = `${HOST.clients}/reports`;
    const list = await machine.exec(['stat', '-L', '-c', '%n %a %u:%g', reports, `${reports}/client.key`]);
    expect(list.stdout.trim().split('\n')).toEqual([`${reports} 700 1000:1000`, `${reports}/client.key 600 1000:1000`]);
  });

  it('serves a token over mutual TLS inside the host, byte for byte, unwrapped by KMS', async () => {
    const calls = kms.calls.Decrypt ?? 0;
    const r = await get('/v1/tokens/db-password');
    expect(r.status, r.stderr).toBe(200);
    expect(sha(r.body)).toBe(sha(DB_PASSWORD));
    expect(kms.calls.Decrypt).toBe(calls + 1);
    expect((await get('/v1/tokens/api-key')).status).toBe(403);
    const anonymous = await machine.exec(['curl', '-sS', '--max-time', '5', '--cacert', `${BUNDLE}/ca.crt`, `https://127.0.0.1:${PORT}/v1/tokens/db-password`], { allowFailure: true });
    expect(anonymous.code).not.toBe(0);
  });

  it('reaches active only once its port accepts connections (restart observed from inside)', async () => {
    // Polls the unit as fast as systemctl answers: the first time it reads active/running, the
    // port must already accept. Activating must have been seen, or the check proves nothing.
    const script = `
      systemctl restart --no-block tokend.service
      seen=
      for i in $(seq 20000); do
        s=$(systemctl show -p ActiveState -p SubState --value tokend.service | paste -sd/)
        case $s in
          activating/*|deactivating/*) seen=yes ;;
          active/running) [ -n "$seen" ] && break ;;
        esac
      done
      if bash -c '</dev/tcp/127.0.0.1/${PORT}' 2>/dev/null; then echo "saw-activating=$seen accepting"; else echo "saw-activating=$seen refused"; fi`;
    const r = await machine.exec(['bash', '-c', script], { timeoutMs: 120_000 });
    expect(r.stdout.trim()).toBe('saw-activating=yes accepting');
    expect((await get('/v1/tokens/db-password')).status).toBe(200);
  });

  it('applies a changed policy on systemctl reload, in the same process', async () => {
    const before = await props('MainPID', 'NRestarts');
    await writeFile(join(machine.root, 'etc/tokend/policy.json'), JSON.stringify({ rules: [{ identities: ['billing'], tokens: ['db-password', 'api-key'] }] }));
    const reload = await machine.systemctl('reload', 'tokend.service');
    expect(reload.code, reload.stderr).toBe(0);
    await expect.poll(async () => (await get('/v1/tokens/api-key')).status, { timeout: 15_000, interval: 200 }).toBe(200);
    expect(sha((await get('/v1/tokens/api-key')).body)).toBe(sha(API_KEY));
    expect(await props('MainPID', 'NRestarts')).toEqual(before);
    expect(await machine.journal('tokend.service')).toMatch(/"msg":"reloaded","generation":2/);
  });

  it('is restarted after systemctl kill -s KILL', async () => {
    const before = await props('MainPID', 'NRestarts');
    expect((await machine.systemctl('kill', '-s', 'KILL', 'tokend.service')).code).toBe(0);
    const after = await machine.waitForUnit('tokend.service', ['ActiveState', 'MainPID', 'NRestarts'], (p) => p.ActiveState === 'active' && p.MainPID !== before.MainPID && p.MainPID !== '0', 30_000);
    expect(Number(after.NRestarts)).toBe(Number(before.NRestarts) + 1);
    expect((await get('/v1/tokens/db-password')).status).toBe(200);
  });

  it('is killed by the watchdog when its event loop hangs (SIGSTOP), and restarted', async () => {
    const before = await props('MainPID', 'NRestarts', 'WatchdogUSec');
    expect(before.WatchdogUSec).toBe('3s');
    await machine.exec(['kill', '-STOP', before.MainPID as string]);
    const after = await machine.waitForUnit('tokend.service', ['ActiveState', 'MainPID', 'NRestarts'], (p) => p.ActiveState === 'active' && p.MainPID !== before.MainPID && p.MainPID !== '0', 30_000);
    expect(Number(after.NRestarts)).toBe(Number(before.NRestarts) + 1);
    expect(await machine.journal('tokend.service')).toMatch(/tokend\.service: Watchdog timeout \(limit 3s\)!/);
    expect((await get('/v1/tokens/db-password')).status).toBe(200);
  });

  it('stops cleanly on systemctl stop: exit 0, result success, STOPPING logged', async () => {
    expect((await machine.systemctl('stop', 'tokend.service')).code).toBe(0);
    expect(await props('ActiveState', 'Result', 'ExecMainCode', 'ExecMainStatus')).toEqual({ ActiveState: 'inactive', Result: 'success', ExecMainCode: '1', ExecMainStatus: '0' });
    const journal = await machine.journal('tokend.service');
    expect(journal).toMatch(/"msg":"stopped"/);
    for (const value of [DB_PASSWORD.trim(), API_KEY]) expect(journal.includes(value)).toBe(false);
    expect(journal).not.toMatch(/SIGSYS|core-dump|Bad system call/);
  });
});
