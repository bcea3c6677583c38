// The memory of a Node process after a full garbage collection, asked through its inspector (a process
// started with --inspect=127.0.0.1:0): the Chrome DevTools protocol over Node's own WebSocket client.
// Resident size alone cannot tell a leak from garbage V8 has not collected yet or pages it keeps.

export interface HeapAfterGc {
  /** process.memoryUsage() of the inspected process, in bytes, right after two full collections. */
  readonly heapUsed: number;
  readonly external: number;
  readonly rss: number;
}

/** The inspector's WebSocket URL from the process's stderr ("Debugger listening on ws://…"). */
export function inspectorUrl(stderr: string): string {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1];
  if (!url) throw new Error(`no inspector URL in the process's stderr (started without --inspect?): ${stderr.slice(0, 500)}`);
  return url;
}

/** Collects garbage in the inspected process (twice: a second pass frees what finalizers released) and reads its memory. */
export async function heapAfterGc(url: string): Promise<HeapAfterGc> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot connect to the inspector at ${url}`)), { once: true });
  });
  let next = 0;
  const call = (method: string, params: object = {}) =>
    new Promise<{ result?: { value?: unknown } }>((resolve, reject) => {
      const id = (next += 1);
      const onMessage = (ev: MessageEvent) => {
        const msg = JSON.parse(String(ev.data)) as { id?: number; result?: { result?: { value?: unknown } }; error?: { message: string } };
        if (msg.id !== id) return;
        ws.removeEventListener('message', onMessage);
        if (msg.error) reject(new Error(`inspector ${method}: ${msg.error.message}`));
        else resolve(msg.result ?? {});
      };
      ws.addEventListener('message', onMessage);
      ws.send(JSON.stringify({ id, method, params }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const r = (await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })) as { result?: { value?: unknown } };
    const m = JSON.parse(String(r.result?.value)) as { heapUsed: number; external: number; rss: number };
    return { heapUsed: m.heapUsed, external: m.external, rss: m.rss };
  } finally {
    ws.close();
  }
}
