// sd_notify for a Node daemon: readiness, status, reload, stop and the watchdog, told to systemd.
//
// Node cannot send a unix datagram, so each message is handed to the `systemd-notify` CLI. Under
// systemd 252 (Debian bookworm) the CLI waits on sd_notify_barrier until the manager has read the
// message, so it is attributed to our unit while the CLI still lives; the unit needs
// NotifyAccess=all because the CLI is not the main process (a non-root CLI cannot claim our PID).
// Messages go out one at a time, in call order, so READY is never overtaken by an earlier STATUS.

import { spawn } from 'node:child_process';

/** What a daemon tells its service manager. Every method is a no-op outside systemd. */
export interface Notifier {
  /** True when NOTIFY_SOCKET is set, i.e. messages really go somewhere. */
  readonly enabled: boolean;
  /** The watchdog ping interval in ms (half of WATCHDOG_USEC), or undefined when no watchdog is armed. */
  readonly watchdogIntervalMs: number | undefined;
  /** Start-up (or a reload) is complete: READY=1, with a status line. */
  ready(status: string): void;
  /** A one-line status shown by `systemctl status`; never put a secret in it (it passes through argv). */
  status(text: string): void;
  /** A reload has begun: RELOADING=1 with MONOTONIC_USEC; call ready() when it is done. */
  reloading(): void;
  /** A graceful stop has begun: STOPPING=1. */
  stopping(): void;
  /** Stops the watchdog and resolves once every queued message has been handed over. */
  close(): Promise<void>;
}

/** Hands one notify message (its VARIABLE=VALUE lines) to the service manager. */
export type NotifySend = (assignments: readonly string[]) => Promise<void>;

export interface NotifierOptions {
  /** The transport; defaults to spawning the `systemd-notify` CLI. */
  readonly send?: NotifySend;
  /** Where a failure to notify is reported (each distinct message once). Defaults to one line on stderr. */
  readonly warn?: (message: string) => void;
}

/** Builds the notifier from the environment systemd gave us (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID). */
export function createNotifier(env: NodeJS.ProcessEnv = process.env, options: NotifierOptions = {}): Notifier {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return DISABLED;

  const warn = onceEach(options.warn ?? ((message) => process.stderr.write(`tokend: ${message}\n`)));
  const send = options.send ?? spawnSystemdNotify(socket, env.PATH, warn);
  let tail: Promise<void> = Promise.resolve();
  let watchdogQueued = false;
  let closed = false;

  const enqueue = (assignments: readonly string[], isWatchdog = false): void => {
    if (closed) return;
    if (isWatchdog) {
      // A ping still waiting in the queue already says "alive"; a second one adds nothing.
      if (watchdogQueued) return;
      watchdogQueued = true;
    }
    tail = tail.then(async () => {
      if (isWatchdog) watchdogQueued = false;
      try {
        await send(assignments);
      } catch (err) {
        warn(`could not notify systemd: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  };

  const intervalMs = watchdogInterval(env);
  const stopWatchdog = intervalMs === undefined ? () => undefined : startWatchdog(intervalMs, () => enqueue(['WATCHDOG=1'], true));

  return {
    enabled: true,
    watchdogIntervalMs: intervalMs,
    ready: (status) => enqueue(['READY=1', `STATUS=${oneLine(status)}`]),
    status: (text) => enqueue([`STATUS=${oneLine(text)}`]),
    reloading: () => enqueue(['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`]),
    stopping: () => enqueue(['STOPPING=1']),
    close: async () => {
      stopWatchdog();
      closed = true;
      await tail;
    },
  };
}

const DISABLED: Notifier = Object.freeze({
  enabled: false,
  watchdogIntervalMs: undefined,
  ready: () => undefined,
  status: () => undefined,
  reloading: () => undefined,
  stopping: () => undefined,
  close: () => Promise.resolve(),
});

/** Half of WATCHDOG_USEC in ms, when the watchdog is meant for this process (WATCHDOG_PID unset or ours). */
function watchdogInterval(env: NodeJS.ProcessEnv): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  return Math.max(1, Math.floor(usec / 2_000));
}

/**
 * Pings every `intervalMs` while the event loop is healthy. A timer that fires later than one
 * whole interval means the loop was stuck: that ping is skipped, so a daemon that is mostly
 * blocked lets the watchdog fire instead of limping on. The timer never keeps the process alive.
 */
function startWatchdog(intervalMs: number, ping: () => void): () => void {
  let due = performance.now() + intervalMs;
  let timer: NodeJS.Timeout;
  const tick = (): void => {
    const now = performance.now();
    if (now - due <= intervalMs) ping();
    due = now + intervalMs;
    timer = setTimeout(tick, intervalMs).unref();
  };
  ping();
  timer = setTimeout(tick, intervalMs).unref();
  return () => clearTimeout(timer);
}

/**
 * The default transport: one `systemd-notify VAR=VALUE...` per message, with a minimal
 * environment (our own may hold credentials). A missing binary disables notifications.
 */
function spawnSystemdNotify(socket: string, path: string | undefined, warn: (message: string) => void): NotifySend {
  const env = { NOTIFY_SOCKET: socket, PATH: path || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  let missing = false;
  return (assignments) =>
    new Promise<void>((resolve, reject) => {
      if (missing) return resolve();
      const child = spawn('systemd-notify', [...assignments], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        if (stderr.length < 1_000) stderr += chunk;
      });
      // The CLI waits at most 5 s for the manager (its barrier timeout); never let it linger longer.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err.code === 'ENOENT') {
          missing = true;
          warn('systemd-notify is not installed; readiness and watchdog notifications are disabled');
          return resolve();
        }
        reject(err);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve();
        const why = stderr.trim().split('\n')[0] || (signal ? `killed by ${signal}` : `exit code ${code}`);
        reject(new Error(`systemd-notify failed: ${why}`));
      });
    });
}

/** CLOCK_MONOTONIC in µs, as RELOADING=1 wants it (Node's hrtime is CLOCK_MONOTONIC on Linux). */
function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1_000n).toString();
}

/** A status is one line: a newline would smuggle extra assignments into the message. */
function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, 1_024);
}

/** A watchdog ping failing every few seconds must not flood the log: each distinct message once. */
function onceEach(warn: (message: string) => void): (message: string) => void {
  const seen = new Set<string>();
  return (message) => {
    if (seen.has(message) || seen.size >= 32) return;
    seen.add(message);
    warn(message);
  };
}
