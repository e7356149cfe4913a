import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { PROFILES } from '../../pki/issue.js';
import { createLabCa } from '../lab-ca.js';
import { sendControlRequest } from './control-protocol.js';
import { createMidHost, type MidHost } from './host.js';

/**
 * Measures the runner's resident memory with N simulated MIDs heartbeating (docs/lab/mid.md):
 *   npx tsx lab/mid/measure-rss.ts [--counts 0,1,50,200] [--heartbeat-ms 2000] [--settle-ms 10000]
 * Each count gets a fresh runner process; all MIDs share one keystore's contents (memory does not
 * depend on which certificate a MID holds). The heartbeat endpoint runs in this process.
 */

const RUNNER_MAIN = fileURLToPath(new URL('./runner-main.ts', import.meta.url));

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { counts: { type: 'string', default: '0,1,50,200' }, 'heartbeat-ms': { type: 'string', default: '2000' }, 'settle-ms': { type: 'string', default: '10000' } } });
  const counts = values.counts.split(',').map(Number);
  const heartbeatMs = Number(values['heartbeat-ms']);
  const settleMs = Number(values['settle-ms']);
  const dir = await mkdtemp(join(tmpdir(), 'mid-rss-'));
  try {
    const ca = await createLabCa('rss');
    const leaf = await ca.issueIdentity('CN=rss-mid,O=midcert Lab', PROFILES.client);
    const endpoint = await startEndpoint(ca);
    const caFile = join(dir, 'root.pem');
    await writeFile(caFile, ca.root.certPem);
    const template = await createMidHost({ home: join(dir, 'template'), name: 'template', instanceUrl: endpoint.url, auth: 'mutual', bundlePem: leaf.certPem + ca.intermediate.certPem + ca.root.certPem + leaf.keyPem });
    const hosts = await makeHosts(dir, Math.max(...counts), endpoint.url, template);
    console.log(`| MIDs | runner RSS (MiB) | peak RSS (MiB) | heartbeats/s |`);
    console.log(`| ---: | ---: | ---: | ---: |`);
    for (const count of counts) {
      const row = await measure(hosts.slice(0, count), { dir, caFile, heartbeatMs, settleMs, endpoint });
      console.log(`| ${count} | ${row.rssMiB.toFixed(1)} | ${row.hwmMiB.toFixed(1)} | ${row.rate.toFixed(1)} |`);
    }
    endpoint.server.close();
    endpoint.server.closeAllConnections();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function makeHosts(dir: string, count: number, url: string, template: MidHost): Promise<MidHost[]> {
  const hosts: MidHost[] = [];
  for (let i = 0; i < count; i++) {
    const host = await createMidHost({ home: join(dir, `mid${i}`), name: `mid${i}`, instanceUrl: url, auth: 'mutual' });
    await copyFile(template.keystorePath, host.keystorePath);
    hosts.push(host);
  }
  return hosts;
}

async function startEndpoint(ca: Awaited<ReturnType<typeof createLabCa>>) {
  const tls = await ca.issueIdentity('CN=localhost', { ...PROFILES.server, sans: ['IP:127.0.0.1'] });
  const state = { beats: 0 };
  const server = createServer({ key: tls.keyPem, cert: tls.certPem + ca.intermediate.certPem, ca: ca.root.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    req.resume();
    req.on('end', () => {
      if (!(req.socket as TLSSocket).authorized) return;
      state.beats++;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ result: { sys_id: createHash('md5').update(String(state.beats)).digest('hex'), status: 'Up' } }));
    });
  });
  server.on('secureConnection', (s: TLSSocket) => { if (!s.authorized) s.destroy(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, state, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}

interface Context { dir: string; caFile: string; heartbeatMs: number; settleMs: number; endpoint: { state: { beats: number } } }

async function measure(hosts: MidHost[], ctx: Context): Promise<{ rssMiB: number; hwmMiB: number; rate: number }> {
  const socket = join(ctx.dir, 'rss.sock');
  const child = await startRunner(socket, ctx);
  try {
    for (const [i, host] of hosts.entries()) {
      await sendControlRequest(socket, { verb: 'register', unit: `mid${i}`, home: host.home });
      const res = await sendControlRequest(socket, { verb: 'start', unit: `mid${i}` });
      if (!res.ok || res.status?.state !== 'active') throw new Error(`mid${i} did not start: ${JSON.stringify(res)}`);
    }
    await new Promise((r) => setTimeout(r, ctx.settleMs / 2));
    const before = ctx.endpoint.state.beats;
    await new Promise((r) => setTimeout(r, ctx.settleMs / 2));
    const rate = (ctx.endpoint.state.beats - before) / (ctx.settleMs / 2000);
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024, rate };
  } finally {
    await sendControlRequest(socket, { verb: 'shutdown' }).catch(() => undefined);
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
  }
}

async function startRunner(socket: string, ctx: Context): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', RUNNER_MAIN, '--socket', socket, '--ca-file', ctx.caFile, '--time-scale', String(ctx.heartbeatMs / 40_000)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => { if (chunk.toString().includes('listening')) resolve(); });
    child.once('exit', (code) => reject(new Error(`runner exited with ${code}`)));
  });
  return child;
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
