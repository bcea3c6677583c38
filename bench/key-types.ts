// What a certificate's key type costs per mutual-TLS handshake: RSA-2048 (tokend's
// leaves, made by src/pki), RSA-3072, and ECDSA P-256 (made with openssl, since
// node-forge cannot make EC certificates). A node:https server that demands a
// client certificate (as serve does) in this process; `openssl s_time -new`
// makes full handshakes against it. Server CPU per handshake comes from
// process.cpuUsage(), client CPU from s_time's own figure.
//
// Rows run interleaved, BENCH_ROUNDS times; the table shows each row's median.
//
// Run: npm run build && node bench/key-types.ts   (BENCH_SECONDS=10, BENCH_ROUNDS=3 by default)

import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
// The built module (dist/): Node strips the types from this file but src/ imports use .js names.
import { createCertificate, generateRsaKeyPair, randomSerial } from '../dist/pki/x509.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CURLS = 50;
const DAY = 86_400_000;

type Key = 'rsa-2048' | 'rsa-3072' | 'ec-p256';
interface Pair { cert: string; key: string }
interface Setup { name: string; server: Key; client: Key }

const SETUPS: Setup[] = [
  { name: 'RSA-2048 server + RSA-2048 client (tokend today)', server: 'rsa-2048', client: 'rsa-2048' },
  { name: 'RSA-3072 server + RSA-3072 client', server: 'rsa-3072', client: 'rsa-3072' },
  { name: 'ECDSA P-256 server + ECDSA P-256 client', server: 'ec-p256', client: 'ec-p256' },
  { name: 'ECDSA P-256 server + RSA-2048 client', server: 'ec-p256', client: 'rsa-2048' },
];

const work = await mkdtemp(join(tmpdir(), 'tokend-bench-'));
try {
  const rsaCa = await makeRsaCa();
  const ecCa = await makeEcCa();
  const caBundle = join(work, 'bundle.crt');
  await writeFile(caBundle, `${rsaCa.cert}${ecCa.cert}`);
  const prepared = [];
  for (const setup of SETUPS) {
    // Each side's certificate comes from the CA of its own key type: RSA-3072 (tokend's) or ECDSA P-256.
    const server = await leaf(setup.server, 'server', setup.server === 'ec-p256' ? ecCa : rsaCa);
    const client = await leaf(setup.client, 'client', setup.client === 'ec-p256' ? ecCa : rsaCa);
    await assertKeyType(server.cert, setup.server);
    await assertKeyType(client.cert, setup.client);
    prepared.push({ setup, server, client, runs: [] as Awaited<ReturnType<typeof measure>>[] });
  }
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const p of prepared) p.runs.push(await measure(p.server, p.client, caBundle));
  }
  const rows = prepared.map((p) => ({
    setup: p.setup,
    perSecond: median(p.runs.map((r) => r.perSecond)),
    serverCpuMs: median(p.runs.map((r) => r.serverCpuMs)),
    clientCpuMs: median(p.runs.map((r) => r.clientCpuMs)),
    curlMs: median(p.runs.map((r) => r.curlMs)),
    connections: p.runs.reduce((n, r) => n + r.connections, 0),
  }));
  await report(rows);
} finally {
  await rm(work, { recursive: true, force: true });
}

async function measure(server: Pair, client: Pair, caBundle: string) {
  const ca = await readFile(caBundle, 'utf8');
  const srv = createServer({ cert: server.cert, key: server.key, ca, requestCert: true, rejectUnauthorized: true }, (_req, res) => res.end('ok\n'));
  let refused = 0;
  srv.on('tlsClientError', () => (refused += 1));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  const files = { cert: join(work, 'c.crt'), key: join(work, 'c.key') };
  await writeFile(files.cert, client.cert);
  await writeFile(files.key, client.key, { mode: 0o600 });
  const before = process.cpuUsage();
  const { stdout } = await run('openssl', [
    's_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(SECONDS), '-www', '/',
    '-cert', files.cert, '-key', files.key, '-CAfile', caBundle,
  ], { maxBuffer: 1 << 24 });
  const cpu = process.cpuUsage(before);
  // What a container pays: one curl process per request, as in the brief.
  const curlStart = process.hrtime.bigint();
  for (let i = 0; i < CURLS; i += 1) {
    await run('curl', ['-sS', '-o', '/dev/null', '--cert', files.cert, '--key', files.key, '--cacert', caBundle, `https://127.0.0.1:${port}/`]);
  }
  const curlMs = Number(process.hrtime.bigint() - curlStart) / 1e6 / CURLS;
  await new Promise<void>((r) => srv.close(() => r()));
  // "1234 connections in 10.00s; 123.40 connections/user sec, bytes read 0"
  // "1234 connections in 11 real seconds, 0 bytes read per connection"
  const user = /(\d+) connections in ([\d.]+)s; ([\d.]+) connections\/user sec/.exec(stdout);
  const real = /(\d+) connections in (\d+) real seconds/.exec(stdout);
  if (!user || !real) throw new Error(`unexpected s_time output:\n${stdout}`);
  const connections = Number(real[1]);
  if (refused > 0) throw new Error(`${refused} handshakes were refused: the setup is wrong`);
  return {
    perSecond: connections / Number(real[2]),
    serverCpuMs: (cpu.user + cpu.system) / 1000 / connections,
    clientCpuMs: 1000 / Number(user[3]),
    curlMs,
    connections,
  };
}

async function report(rows: { setup: Setup; perSecond: number; serverCpuMs: number; clientCpuMs: number; curlMs: number; connections: number }[]) {
  const base = rows[0] as (typeof rows)[number];
  const { stdout: version } = { stdout: process.versions.openssl };
  console.log(`Node ${process.version} (OpenSSL ${version}), ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${ROUNDS} rounds × ${SECONDS} s per row (median), TLS 1.3, full handshakes (openssl s_time -new -www /)\n`);
  console.log('| server + client key | handshakes/s | vs RSA-2048 | server CPU ms/handshake | vs RSA-2048 | client CPU ms/handshake | curl ms/request |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.setup.name} | ${r.perSecond.toFixed(0)} | ${(r.perSecond / base.perSecond).toFixed(2)}× | ${r.serverCpuMs.toFixed(2)} | ${(r.serverCpuMs / base.serverCpuMs).toFixed(2)}× | ${r.clientCpuMs.toFixed(2)} | ${r.curlMs.toFixed(1)} |`,
    );
  }
  // The primitives alone, for scale.
  const { stdout } = await run('openssl', ['speed', '-seconds', '2', 'rsa2048', 'rsa3072', 'ecdsap256'], { maxBuffer: 1 << 24 });
  console.log('\nopenssl speed (one core):\n');
  console.log(stdout.split('\n').filter((l) => /sign|bits/.test(l)).map((l) => `    ${l}`).join('\n'));
}

async function makeRsaCa(): Promise<Pair> {
  const k = await generateRsaKeyPair(3072);
  const cert = createCertificate({
    serial: randomSerial(), commonName: 'bench RSA CA', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + DAY),
    publicKeyPem: k.publicKeyPem, issuer: { self: k.privateKeyPem }, ca: { pathLen: 0 },
  });
  return { cert, key: k.privateKeyPem };
}

async function makeEcCa(): Promise<Pair> {
  const key = ecKey();
  const keyPath = join(work, 'ec-ca.key');
  await writeFile(keyPath, key, { mode: 0o600 });
  const { stdout } = await run('openssl', [
    'req', '-x509', '-new', '-key', keyPath, '-subj', '/CN=bench EC CA', '-days', '1', '-sha256',
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert: stdout, key };
}

async function leaf(type: Key, role: 'server' | 'client', ca: Pair): Promise<Pair> {
  if (type !== 'ec-p256') {
    const k = await generateRsaKeyPair(type === 'rsa-2048' ? 2048 : 3072);
    const cert = createCertificate({
      serial: randomSerial(), commonName: role === 'server' ? 'localhost' : 'bench', notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + DAY), publicKeyPem: k.publicKeyPem, issuer: { certPem: ca.cert, keyPem: ca.key },
      eku: [role === 'server' ? 'serverAuth' : 'clientAuth'],
      san: role === 'server' ? { dns: ['localhost'], ips: ['127.0.0.1'] } : { uris: ['spiffe://tokend.local/bench'] },
    });
    return { cert, key: k.privateKeyPem };
  }
  // ECDSA leaf from the EC CA, by openssl.
  const key = ecKey();
  const p = (n: string) => join(work, `${role}-${n}`);
  await writeFile(p('key'), key, { mode: 0o600 });
  await writeFile(p('ca.crt'), ca.cert);
  await writeFile(p('ca.key'), ca.key, { mode: 0o600 });
  await writeFile(p('ext'), role === 'server'
    ? 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n'
    : 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://tokend.local/bench\n');
  await run('openssl', ['req', '-new', '-key', p('key'), '-subj', `/CN=${role === 'server' ? 'localhost' : 'bench'}`, '-out', p('csr')]);
  const { stdout } = await run('openssl', ['x509', '-req', '-in', p('csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-set_serial', `0x${randomSerial()}`, '-days', '1', '-sha256', '-extfile', p('ext')]);
  return { cert: stdout, key };
}

/** Guards the table against a mislabelled row. */
async function assertKeyType(certPem: string, type: Key): Promise<void> {
  const { X509Certificate } = await import('node:crypto');
  const key = new X509Certificate(certPem).publicKey;
  const actual = key.asymmetricKeyType === 'ec' ? 'ec-p256' : `rsa-${key.asymmetricKeyDetails?.modulusLength}`;
  if (actual !== type) throw new Error(`expected a ${type} certificate, made ${actual}`);
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function ecKey(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}
