/**
 * Controller benchmarks (issue 5): fleet status over 200 agents (goal < 2 s on 2 cores), a
 * 200-agent rotation at concurrency 20 against the ideal ceil(N/c) × per-MID time (goal ≤ 1.2×),
 * controller RSS with 1,000 inventory rows. Real pieces: SQLite store, fleet CA, mTLS gRPC to 200
 * agent servers, the local CA signing real CSRs. The agents' host effects are timed stand-ins so
 * the figure measures the controller, not keytool.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createCaAdapter } from '../controller/ca/index.js';
import { initLocalCa } from '../controller/ca/local.js';
import { initDataDir } from '../controller/data-dir.js';
import { fleetStatus } from '../controller/fleet-status.js';
import { runRotation, type RotationOptions } from '../controller/orchestrator/run-rotation.js';
import type { AgentPort } from '../controller/orchestrator/ports.js';
import { fleetDialer } from '../controller/orchestrator/wiring.js';
import { openStore, type Store } from '../controller/store/index.js';
import { buildCsr } from '../pki/csr.js';
import { generateKey } from '../pki/keys.js';

const N = Number(process.env.BENCH_AGENTS ?? 200);

export async function benchController(): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'midcert-bench-ctl-'));
  try {
    await initDataDir(dir);
    await initLocalCa(dir);
    const store = await openStore(dir, { actor: 'bench' });
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/agent-servers.ts', dir, String(N)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ports = await new Promise<number[]>((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (d: Buffer) => { text += d.toString(); if (text.includes('\n')) resolve((JSON.parse(text) as { ports: number[] }).ports); });
      child.on('exit', (code) => reject(new Error(`agent servers exited ${code}`)));
    });
    await store.transaction(async () => {
      for (const [i, p] of ports.entries()) await store.agents.add({ name: `mid${String(i).padStart(3, '0')}`, address: `127.0.0.1:${p}`, serverName: 'bench-agent' });
    });
    const dialer = await fleetDialer(dir);
    const agents = await store.agents.list();
    const statusRuns: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const rows = await fleetStatus(store, agents, dialer, undefined);
      statusRuns.push(performance.now() - t);
      if (rows.filter((r) => r.reachable).length !== N) throw new Error('not every agent answered');
    }
    child.kill('SIGTERM');
    const rotation = await benchRotation(dir, store);
    await store.close();
    return {
      agents: N,
      'fleet status (ms, 3 runs)': statusRuns.map((x) => Math.round(x)).join(' / '),
      ...rotation,
      'controller RSS with 1,000 inventory rows (MiB)': rssWithInventory(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchRotation(dir: string, store: Store): Promise<Record<string, string | number>> {
  const installMs = Number(process.env.BENCH_INSTALL_MS ?? 400);
  const csrs = await Promise.all(Array.from({ length: 8 }, async () => buildCsr(await generateKey(), { subject: 'CN=bench' })));
  const ca = await createCaAdapter({ type: 'local', timeoutSeconds: 30, validityDays: 365 }, { dataDir: dir });
  const port = (i: number): AgentPort => ({
    status: async () => ({ midName: `m${i}`, leafSha256: 'old', leafSubject: '', leafIssuer: '', notBefore: undefined, notAfter: new Date(Date.now() + 86_400_000).toISOString(), serviceActive: true, instanceUrl: '' }),
    prepare: async () => ({ csrPem: csrs[i % csrs.length] as string }),
    install: async () => { await new Promise((r) => setTimeout(r, installMs)); return { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: 'new' }; },
    enableMutualAuth: async () => { throw new Error('unused'); },
    rollback: async () => { throw new Error('unused'); },
    renewal: async () => { throw new Error('unused'); },
    close: () => undefined,
  });
  const agents = await store.agents.list();
  const indexOf = new Map(agents.map((a, i) => [a.name, i]));
  const deps = { store, dial: (a: { name: string }) => port(indexOf.get(a.name) ?? 0), ca, instance: undefined, onEvent: () => undefined };
  const options: RotationOptions = { force: true, expiringWithinDays: 30, canary: 0, batch: N, maxFailures: 0, concurrency: 20, dryRun: false, caTimeoutMs: 10_000, caPollMs: 100, upTimeoutMs: 10_000 };
  const t1 = performance.now();
  await runRotation(deps, agents.slice(0, 1), options);
  const perMid = performance.now() - t1;
  const t = performance.now();
  const report = await runRotation(deps, agents.slice(1), options);
  const wall = performance.now() - t;
  const ideal = Math.ceil((agents.length - 1) / 20) * perMid;
  if (report.summary.succeeded !== agents.length - 1) throw new Error(`rotation: ${JSON.stringify(report.summary)}`);
  return {
    'rotation: per-MID time alone (ms)': Math.round(perMid),
    [`rotation of ${agents.length - 1} at concurrency 20 (ms)`]: Math.round(wall),
    'rotation: ideal ceil(N/c) × per-MID (ms)': Math.round(ideal),
    'rotation: actual / ideal': (wall / ideal).toFixed(2),
  };
}

/** A fresh process opens a store with 1,000 agents and lists them; its RSS is reported. */
function rssWithInventory(): string {
  const script = `
    import { openStore } from './controller/store/index.js';
    import { mkdtempSync } from 'node:fs'; import { tmpdir } from 'node:os'; import { join } from 'node:path';
    const s = await openStore(mkdtempSync(join(tmpdir(), 'rss-')), { actor: 'bench' });
    await s.transaction(async () => { for (let i = 0; i < 1000; i++) await s.agents.add({ name: 'a' + i, address: '10.0.0.1:7443', tags: ['dc1'] }); });
    await s.agents.list(); global.gc?.();
    console.log((process.memoryUsage().rss / 1048576).toFixed(1));
    await s.close();`;
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd() }).toString().trim();
}
