// The load generator: one process, separate from every server, so the server's
// CPU can be read from /proc without the client's. It runs one job (argv[2],
// JSON), prints `{"event":"start"}` when the measured window opens and
// `{"event":"end"}` when it closes (the runner reads server CPU at those two
// lines), then one result line.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createSecureContext } from 'node:tls';
import type { SecureContext, TLSSocket } from 'node:tls';
import { Pool } from 'undici';

/** One load job. `warmupMs` runs first, unmeasured; then `durationMs` is measured. */
export interface LoadJob {
  readonly kind: 'keepalive' | 'connect' | 'curl';
  readonly host: string;
  readonly port: number;
  readonly path: string;
  /** Connections (keepalive) or requests in flight (connect, curl). */
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** connect only: offer the latest session ticket (TLS resumption). */
  readonly resume?: boolean;
  /** Open loop: start requests at this many per second in all (a late request starts at once); default closed loop. */
  readonly rate?: number;
  /** Client bundle: ca.crt, client.crt, client.key. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** Expected body length of every answer (anything else counts as an error). */
  readonly bodyBytes: number;
}

/** What a job measured in its window. Latencies in milliseconds. */
export interface LoadResult {
  readonly event: 'result';
  readonly requests: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly seconds: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** connect only: share of connections that resumed a session. */
  readonly resumed: number | undefined;
  /** The loader's own CPU in the window, as a share of one core (near 1 = the loader may be the limit). */
  readonly loaderCpu: number;
}

interface Window {
  measuring: boolean;
  stopped: boolean;
  latencies: number[];
  errors: number;
  firstError: string | undefined;
  connections: number;
  resumed: number;
}

const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
const w: Window = { measuring: false, stopped: false, latencies: [], errors: 0, firstError: undefined, connections: 0, resumed: 0 };

function record(started: number, ok: boolean, why?: string): void {
  if (!w.measuring) return;
  if (ok) w.latencies.push(performance.now() - started);
  else {
    w.errors += 1;
    w.firstError ??= why;
  }
}

/** Runs `worker` `concurrency` times in parallel until the window closes (paced when `job.rate` is set). */
async function drive(worker: () => Promise<void>): Promise<LoadResult> {
  let slot = performance.now();
  const pace = async () => {
    if (!job.rate) return;
    const at = slot;
    slot = Math.max(slot + 1000 / job.rate, performance.now()); // late: start now, and no catch-up burst later
    const wait = at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  };
  const loops = Array.from({ length: job.concurrency }, async () => {
    while (!w.stopped) {
      await pace();
      if (!w.stopped) await worker();
    }
  });
  await new Promise((r) => setTimeout(r, job.warmupMs));
  w.measuring = true;
  process.stdout.write(`${JSON.stringify({ event: 'start' })}\n`);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, job.durationMs));
  w.measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ event: 'end' })}\n`);
  w.stopped = true;
  await Promise.all(loops);
  const sorted = Float64Array.from(w.latencies).sort();
  const at = (q: number) => (sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));
  return {
    event: 'result',
    requests: sorted.length,
    errors: w.errors,
    firstError: w.firstError,
    seconds,
    rps: sorted.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
    resumed: job.kind === 'connect' ? w.resumed / Math.max(1, w.connections) : undefined,
    loaderCpu: (cpu.user + cpu.system) / 1e6 / seconds,
  };
}

/** Keep-alive: an undici Pool whose connections share one client secure context. */
async function keepAlive(context: SecureContext): Promise<LoadResult> {
  const pool = new Pool(`https://${job.host}:${job.port}`, {
    connections: job.concurrency,
    pipelining: 1,
    allowH2: false,
    connect: { secureContext: context, rejectUnauthorized: true },
  });
  try {
    return await drive(async () => {
      const started = performance.now();
      try {
        const res = await pool.request({ path: job.path, method: 'GET' });
        const body = await res.body.arrayBuffer();
        record(started, res.statusCode === 200 && body.byteLength === job.bodyBytes, `status ${res.statusCode}, ${body.byteLength} bytes`);
      } catch (err) {
        record(started, false, (err as Error).message);
      }
    });
  } finally {
    await pool.close();
  }
}

/** A new TLS connection per request (`Connection: close`), optionally resuming the latest session. */
async function newConnections(context: SecureContext): Promise<LoadResult> {
  let session: Buffer | undefined;
  const request = Buffer.from(`GET ${job.path} HTTP/1.1\r\nHost: ${job.host}\r\nConnection: close\r\n\r\n`);
  const once = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const chunks: Buffer[] = [];
      let settled = false;
      const socket: TLSSocket = connect({
        host: job.host,
        port: job.port,
        secureContext: context,
        rejectUnauthorized: true,
        ...(job.resume && session ? { session } : {}),
      });
      const done = (ok: boolean, why?: string) => {
        if (settled) return;
        settled = true;
        record(started, ok, why);
        socket.destroy();
        resolve();
      };
      if (job.resume) socket.on('session', (s: Buffer) => (session = s));
      socket.once('secureConnect', () => {
        if (w.measuring) {
          w.connections += 1;
          if (socket.isSessionReused()) w.resumed += 1;
        }
        socket.write(request);
      });
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.once('end', () => {
        const text = Buffer.concat(chunks).toString('latin1');
        const split = text.indexOf('\r\n\r\n');
        const ok = text.startsWith('HTTP/1.1 200 ') && split >= 0 && text.length - split - 4 === job.bodyBytes;
        done(ok, ok ? undefined : `answer: ${text.slice(0, 40)}`);
      });
      socket.once('error', (err) => done(false, err.message));
    });
  return drive(once);
}

/** curl per request: what a container pays (a process, a full handshake, one request). */
async function curlEach(): Promise<LoadResult> {
  const args = ['-sS', '--max-time', '10', '--noproxy', '*', '--cert', job.cert, '--key', job.key, '--cacert', job.ca, '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `https://${job.host}:${job.port}${job.path}`];
  const once = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const child = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      child.once('close', (code) => {
        record(started, code === 0 && out === `200 ${job.bodyBytes}`, `curl exit ${code}: ${out.slice(0, 60)}`);
        resolve();
      });
    });
  return drive(once);
}

const context = createSecureContext({ ca: readFileSync(job.ca), cert: readFileSync(job.cert), key: readFileSync(job.key) });
const result = job.kind === 'keepalive' ? await keepAlive(context) : job.kind === 'connect' ? await newConnections(context) : await curlEach();
process.stdout.write(`${JSON.stringify(result)}\n`);
