// Real systemd in tests: boots a root filesystem with systemd-nspawn (no machined on the host,
// so --register=no), finds the container's PID 1 and drives it through nsenter. Every machine is
// powered off and its root removed after the test, even when the test fails.

import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { access, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { deferCleanup, onWorkerExit } from './cleanup.js';
import { freshRoot } from './rootfs.js';
import type { FreshRoot } from './rootfs.js';
import { run } from './run.js';
import type { RunOptions, RunResult } from './run.js';

export interface BootOptions {
  /** The root to boot; default: a fresh overlay of the base rootfs. */
  readonly root?: FreshRoot;
  /** Runs on the root before boot: write units, apply Ignition, enable services. */
  readonly prepare?: (root: string) => Promise<void> | void;
  /** Host paths to bind read-only into the container: { '/opt/tokend': '/work/repo/dist' }. */
  readonly bindReadOnly?: Readonly<Record<string, string>>;
  /** How long boot may take before the test fails (default 60 s). */
  readonly timeoutMs?: number;
}

/** A booted container with systemd as PID 1. */
export interface Machine {
  readonly name: string;
  /** The container's root as seen from the host (the overlay; /run and /tmp are not in it). */
  readonly root: string;
  /** The container's PID 1 (systemd) in the host's PID namespace. */
  readonly pid1: number;
  /** Runs a command inside the container (all its namespaces); rejects on failure unless allowFailure. */
  exec(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** `systemctl ...args` inside the container; never rejects, check `code`. */
  systemctl(...args: string[]): Promise<RunResult>;
  /** `systemctl show` of the given properties: { ActiveState: 'active', ... }. */
  show(unit: string, properties: readonly string[]): Promise<Record<string, string>>;
  /** Polls `show` until `until(props)` holds; on timeout fails with the properties and the unit's journal. */
  waitForUnit(
    unit: string,
    properties: readonly string[],
    until: (props: Record<string, string>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, string>>;
  /** The journal (of one unit, when given) as plain text. */
  journal(unit?: string): Promise<string>;
  /** Powers the container off (killing it if it does not stop) and removes its root. Idempotent. */
  dispose(): Promise<void>;
}

const CONTAINER_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  SYSTEMD_PAGER: 'cat',
  SYSTEMD_COLORS: '0',
  TERM: 'dumb',
};

/** Boots a systemd container and waits until it is running (or degraded); disposed after the test. */
export async function bootMachine(options: BootOptions = {}): Promise<Machine> {
  const root = options.root ?? (await freshRoot());
  await options.prepare?.(root.path);
  const name = `tk-${randomBytes(4).toString('hex')}`;
  const logPath = `${root.path}.nspawn.log`;
  const log = openSync(logPath, 'w');
  const binds = Object.entries(options.bindReadOnly ?? {}).map(([inside, host]) => `--bind-ro=${host}:${inside}`);
  const nspawn = spawn(
    'systemd-nspawn',
    ['-b', '-D', root.path, '-M', name, '--register=no', '--keep-unit', '--console=passive', ...binds],
    { stdio: ['ignore', log, log], env: { PATH: process.env.PATH ?? CONTAINER_ENV.PATH, LANG: 'C.UTF-8' } },
  );
  closeSync(log);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => nspawn.on('exit', () => ((exited = true), resolve())));
  nspawn.on('error', () => undefined);

  let pid1 = 0;
  const forget = onWorkerExit(() => {
    if (pid1) killQuietly(pid1);
    if (nspawn.pid) killQuietly(nspawn.pid);
  });
  let disposed: Promise<void> | undefined;
  const dispose = (): Promise<void> => {
    disposed ??= (async () => {
      if (!exited && pid1) {
        await run('nsenter', ['-t', String(pid1), '-a', 'systemctl', 'poweroff'], { env: CONTAINER_ENV, allowFailure: true, timeoutMs: 5_000 }).catch(() => undefined);
        await Promise.race([exitedPromise, sleep(15_000)]);
      }
      // A container that does not power off is ended: killing its PID 1 tears its PID namespace down.
      if (!exited && pid1) killQuietly(pid1);
      if (!exited) await Promise.race([exitedPromise, sleep(5_000)]);
      if (!exited && nspawn.pid) killQuietly(nspawn.pid);
      forget();
      await root.dispose();
    })();
    return disposed;
  };
  deferCleanup(dispose);

  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const bootLog = async (): Promise<string> => (await readFile(logPath, 'utf8').catch(() => '')).slice(-4_000);
  // PID 1 appears as nspawn's child; its manager socket shows that systemd can take requests.
  while (Date.now() < deadline) {
    if (exited) throw new Error(`systemd-nspawn exited during boot:\n${await bootLog()}`);
    pid1 ||= (await childNamed(nspawn.pid ?? 0, 'systemd')) ?? 0;
    if (pid1 && (await access(`/proc/${pid1}/root/run/systemd/private`).then(() => true, () => false))) break;
    await sleep(50);
  }
  if (!pid1) throw new Error(`no systemd in the container after ${timeoutMs} ms:\n${await bootLog()}`);

  const exec = (argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> =>
    run('nsenter', ['-t', String(pid1), '-a', '--', ...argv], { ...opts, env: { ...CONTAINER_ENV, ...opts.env } });
  const systemctl = (...args: string[]): Promise<RunResult> => exec(['systemctl', '--no-pager', ...args], { allowFailure: true });
  const show = async (unit: string, properties: readonly string[]): Promise<Record<string, string>> => {
    const r = await exec(['systemctl', 'show', unit, ...properties.flatMap((p) => ['-p', p])]);
    return Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((line) => {
      const eq = line.indexOf('=');
      return [line.slice(0, eq), line.slice(eq + 1)];
    }));
  };
  const journal = async (unit?: string): Promise<string> =>
    (await exec(['journalctl', '--no-pager', '-o', 'short-monotonic', ...(unit ? ['-u', unit] : [])], { allowFailure: true })).stdout;

  const state = await exec(['systemctl', 'is-system-running', '--wait'], {
    allowFailure: true,
    timeoutMs: Math.max(1_000, deadline - Date.now()),
  });
  const running = state.stdout.trim();
  if (running !== 'running' && running !== 'degraded') {
    throw new Error(`container did not finish booting (state '${running}'):\n${(await systemctl('--failed')).stdout}\n${await bootLog()}`);
  }

  return {
    name,
    root: root.path,
    pid1,
    exec,
    systemctl,
    show,
    journal,
    dispose,
    async waitForUnit(unit, properties, until, waitMs = 30_000) {
      const end = Date.now() + waitMs;
      let props = await show(unit, properties);
      while (!until(props)) {
        if (Date.now() > end) {
          throw new Error(`${unit} did not reach the expected state in ${waitMs} ms: ${JSON.stringify(props)}\n${(await journal(unit)).slice(-4_000)}`);
        }
        await sleep(100);
        props = await show(unit, properties);
      }
      return props;
    },
  };
}

/** The PID of the child of `parent` whose command name is `comm`, if any. */
async function childNamed(parent: number, comm: string): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(join('/proc', entry, 'stat'), 'utf8').catch(() => '');
    // Format: "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
    const close = stat.lastIndexOf(')');
    if (close < 0 || stat.slice(stat.indexOf('(') + 1, close) !== comm) continue;
    if (Number(stat.slice(close + 2).split(' ')[1]) === parent) return Number(entry);
  }
  return undefined;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
