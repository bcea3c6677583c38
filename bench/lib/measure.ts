// One measured window: the load generator runs in its own process
// (bench/load.ts); server CPU, loader CPU and the machine's busy time are read
// from /proc when the loader opens and closes its window.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { LoadJob, LoadResult } from '../load.ts';
import { machineBusySeconds, TICK } from './proc.ts';
import { ROOT } from './workspace.ts';

/** A load result with the server's cost. */
export interface Window extends LoadResult {
  /** Server CPU seconds in the window (its whole process tree). */
  readonly serverCpuSeconds: number;
  /** Server CPU per answered request, in microseconds. */
  readonly cpuUsPerRequest: number;
  /** Server CPU as a share of one core. */
  readonly serverCores: number;
  /** CPU used on this machine by anything but the server and the loader (its curl children included), in cores. */
  readonly otherCores: number;
}

/** Runs `job` against a server whose CPU `serverCpu()` reads. */
export async function measure(job: LoadJob, serverCpu: () => number): Promise<Window> {
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'load.ts'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = child.pid as number;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let at0: { server: number; loader: number; busy: number } | undefined;
  let at1: { server: number; loader: number; busy: number } | undefined;
  let result: LoadResult | undefined;
  const snapshot = () => ({ server: serverCpu(), loader: loaderCpuWithChildren(pid), busy: machineBusySeconds() });
  for await (const line of createInterface({ input: child.stdout })) {
    const event = JSON.parse(line) as { event: string };
    if (event.event === 'start') at0 = snapshot();
    else if (event.event === 'result') result = event as LoadResult;
    else if (event.event === 'end') at1 = snapshot();
  }
  const code = await exited;
  if (!result || !at0 || !at1 || code !== 0) throw new Error(`load generator failed (exit ${code}) for ${JSON.stringify({ ...job, ca: undefined, cert: undefined, key: undefined })}`);
  const server = at1.server - at0.server;
  const loader = at1.loader - at0.loader;
  const busy = at1.busy - at0.busy;
  return {
    ...result,
    serverCpuSeconds: server,
    cpuUsPerRequest: result.requests > 0 ? (server / result.requests) * 1e6 : Number.NaN,
    serverCores: server / result.seconds,
    otherCores: Math.max(0, busy - server - loader) / result.seconds,
  };
}

/** utime + stime of the loader plus the children it has reaped (curl). */
function loaderCpuWithChildren(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK;
  } catch {
    return 0;
  }
}
