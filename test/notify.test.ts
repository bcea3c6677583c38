// The notifier's own rules, with the transport replaced by a recorder (the real systemd-notify CLI
// under real systemd is exercised in notify.systemd.test.ts).

import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createNotifier } from '../src/systemd/notify.js';
import type { NotifySend } from '../src/systemd/notify.js';

const SOCKET = { NOTIFY_SOCKET: '/run/systemd/notify' };

function recorder(delayMs = 0): { send: NotifySend; sent: string[][]; times: number[] } {
  const sent: string[][] = [];
  const times: number[] = [];
  let inFlight = 0;
  const send: NotifySend = async (assignments) => {
    inFlight += 1;
    if (inFlight > 1) throw new Error('two messages in flight at once');
    times.push(performance.now());
    await sleep(delayMs);
    sent.push([...assignments]);
    inFlight -= 1;
  };
  return { send, sent, times };
}

describe('createNotifier', () => {
  it('does nothing without NOTIFY_SOCKET (not under systemd)', async () => {
    const r = recorder();
    const n = createNotifier({ WATCHDOG_USEC: '1000' }, { send: r.send });
    n.status('a');
    n.ready('b');
    n.reloading();
    n.stopping();
    await n.close();
    expect(n.enabled).toBe(false);
    expect(n.watchdogIntervalMs).toBeUndefined();
    expect(r.sent).toEqual([]);
  });

  it('sends messages one at a time, in call order, so READY never overtakes STATUS', async () => {
    const r = recorder(20);
    const n = createNotifier(SOCKET, { send: r.send });
    n.status('loading policy');
    n.ready('listening on 127.0.0.1:7443');
    n.stopping();
    await n.close();
    expect(r.sent).toEqual([['STATUS=loading policy'], ['READY=1', 'STATUS=listening on 127.0.0.1:7443'], ['STOPPING=1']]);
  });

  it('keeps a status to one line, so it cannot smuggle in other assignments', async () => {
    const r = recorder();
    const n = createNotifier(SOCKET, { send: r.send });
    n.status('bad\nREADY=1\r\u0000x');
    await n.close();
    expect(r.sent).toEqual([['STATUS=bad READY=1 x']]);
  });

  it('marks a reload with RELOADING=1 and the CLOCK_MONOTONIC time in µs', async () => {
    const r = recorder();
    const n = createNotifier(SOCKET, { send: r.send });
    const before = process.hrtime.bigint() / 1000n;
    n.reloading();
    await n.close();
    const after = process.hrtime.bigint() / 1000n;
    expect(r.sent[0]?.[0]).toBe('RELOADING=1');
    const usec = BigInt(/^MONOTONIC_USEC=(\d+)$/.exec(r.sent[0]?.[1] ?? '')?.[1] ?? '-1');
    expect(usec >= before && usec <= after).toBe(true);
  });

  it('pings the watchdog at half of WATCHDOG_USEC', async () => {
    const r = recorder();
    const n = createNotifier({ ...SOCKET, WATCHDOG_USEC: '100000' }, { send: r.send });
    expect(n.watchdogIntervalMs).toBe(50);
    await sleep(400);
    await n.close();
    const pings = r.sent.filter((m) => m[0] === 'WATCHDOG=1').length;
    expect(pings).toBeGreaterThanOrEqual(3);
    const count = r.sent.length;
    await sleep(150);
    expect(r.sent.length).toBe(count); // close() stopped it
  });

  it('arms no watchdog meant for another process (WATCHDOG_PID)', async () => {
    const r = recorder();
    const interval = async (env: NodeJS.ProcessEnv): Promise<number | undefined> => {
      const n = createNotifier({ ...SOCKET, ...env }, { send: r.send });
      await n.close();
      return n.watchdogIntervalMs;
    };
    expect(await interval({ WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid + 1) })).toBeUndefined();
    expect(await interval({ WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid) })).toBe(50);
    expect(await interval({ WATCHDOG_USEC: 'soon' })).toBeUndefined();
  });

  it('skips the ping when the event loop was stuck for longer than an interval', async () => {
    const r = recorder();
    const n = createNotifier({ ...SOCKET, WATCHDOG_USEC: '100000' }, { send: r.send });
    await sleep(120);
    const blockedUntil = performance.now() + 300;
    while (performance.now() < blockedUntil) {
      // The event loop is stuck: no timer can fire.
    }
    await sleep(300);
    await n.close();
    // The overdue timer fired right after the block and must not have said "alive": the first
    // ping after the block comes a whole interval later, once the loop proved healthy again.
    const after = r.times.filter((t) => t >= blockedUntil);
    expect(after.length).toBeGreaterThanOrEqual(1);
    expect(after[0]! - blockedUntil).toBeGreaterThanOrEqual(45);
  });

  it('warns once and carries on when systemd-notify is not installed', async () => {
    const warnings: string[] = [];
    const n = createNotifier({ ...SOCKET, PATH: '/nonexistent' }, { warn: (m) => warnings.push(m) });
    n.status('one');
    n.ready('two');
    await n.close();
    expect(warnings).toEqual(['systemd-notify is not installed; readiness and watchdog notifications are disabled']);
  });

  it('reports a failing send without throwing, each distinct failure once', async () => {
    const warnings: string[] = [];
    const n = createNotifier(SOCKET, { send: () => Promise.reject(new Error('no manager')), warn: (m) => warnings.push(m) });
    n.status('a');
    n.status('b');
    await n.close();
    expect(warnings).toEqual(['could not notify systemd: no manager']);
  });
});
