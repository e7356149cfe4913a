import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { SERVE_ROTATION, fakeAgentPort, serveDeps } from '../helpers/serve-fixtures.js';
import { serve } from '../../controller/serve.js';
import { openStore, type Store } from '../../controller/store/index.js';
import { PROFILES } from '../../pki/issue.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { run, runOk } from '../helpers/run.js';

/**
 * `/metrics` of a real `midcert serve` (bin/midcert, its own process) over a store that holds
 * rotations, checked with the real `promtool check metrics`; a rotation recorded by another
 * process (this test process, writing the store as the CLI would) shows in the next scrape; and
 * SIGTERM ends serve promptly with exit code 0. Timing goals live in bench/ (bench/RESULTS.md);
 * the bounds here are hang guards.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const MIDCERT = join(ROOT, 'bin/midcert');

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer().once('error', fail).listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

async function promtool(args: string[], input?: string): Promise<{ code: number; out: string }> {
  const r = await run('promtool', args, { input, timeoutMs: 30_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** One finished rotation for `agent` in a new job, the way the orchestrator records it; returns the leaf's notAfter. */
async function recordRotation(store: Store, pki: LabPki, agent: string, result: 'succeeded' | 'failed', validityDays: number): Promise<Date> {
  const leaf = await pki.ca.issueIdentity(`CN=${agent},O=Acme,OU=ITOM`, PROFILES.client, { days: validityDays });
  const job = await store.jobs.create({ kind: 'rotate', agents: [agent] });
  await store.jobs.transition(job.id, 'running');
  if (result === 'failed') {
    await store.jobAgents.advance(job.id, agent, 'failed', { errorCode: 'HEALTH_CHECK_FAILED', errorMessage: 'restored' });
    await store.jobs.transition(job.id, 'failed', { code: 'HEALTH_CHECK_FAILED', message: 'restored' });
    return leaf.cert.notAfter;
  }
  await store.jobAgents.advance(job.id, agent, 'preparing');
  await store.jobAgents.advance(job.id, agent, 'csr_ready', { renewalId: `job${job.id}-${agent}`, csrPem: 'csr' });
  await store.jobAgents.advance(job.id, agent, 'issued', { certificatePem: leaf.certPem, chainPem: pki.ca.chainPem });
  await store.jobAgents.advance(job.id, agent, 'published');
  await store.jobAgents.advance(job.id, agent, 'installing');
  await store.jobAgents.advance(job.id, agent, 'succeeded');
  const rec = await store.certificates.recordIssued({ agentName: agent, pem: leaf.certPem, jobId: job.id });
  const previous = await store.certificates.latest(agent, 'installed');
  await store.certificates.setStatus(rec.sha256, 'installed');
  if (previous) await store.certificates.setStatus(previous.sha256, 'retired');
  await store.jobs.transition(job.id, 'succeeded');
  return leaf.cert.notAfter;
}

function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf('}'));
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

async function waitForMetrics(port: number, child: ChildProcess, log: () => string): Promise<string> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`midcert serve exited ${child.exitCode}: ${log()}`);
    try {
      return await scrape(port);
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`no /metrics within 60 s: ${log()}`);
}

describe('midcert serve /metrics (prom-client, promtool, freshness, SIGTERM)', function () {
  this.timeout(180_000);
  let dir: string;
  let pki: LabPki;
  let port: number;
  let child: ChildProcess | undefined;
  let output = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-metrics-'));
    pki = await makeLabPki();
    await runOk(MIDCERT, ['--data-dir', dir, 'init', '--json'], { timeoutMs: 60_000 });
    port = await freePort();
    // Agents at addresses nobody listens on: serve polls them (agent_up 0) and renews nothing.
    await appendFile(join(dir, 'controller.yaml'), `serve:\n  metricsAddress: 127.0.0.1:${port}\n  intervalSeconds: 3600\n  jitterSeconds: 0\n`);
    const store = await openStore(dir, { actor: 'test' });
    try {
      await store.agents.add({ name: 'mid01', address: '127.0.0.1:1', midName: 'MID Server 01' });
      await store.agents.add({ name: 'mid02', address: '127.0.0.1:1' });
      await recordRotation(store, pki, 'mid01', 'succeeded', 200);
      await recordRotation(store, pki, 'mid02', 'succeeded', 100);
      await recordRotation(store, pki, 'mid02', 'failed', 1);
    } finally {
      await store.close();
    }
    child = spawn(MIDCERT, ['--data-dir', dir, 'serve'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('serves conventional series that promtool check metrics accepts', async () => {
    const text = await waitForMetrics(port, child as ChildProcess, () => output);
    const lint = await promtool(['check', 'metrics'], text);
    assert.equal(lint.code, 0, `promtool check metrics:\n${lint.out}`);
    for (const name of [
      'midcert_certificate_expiration_timestamp_seconds', 'midcert_certificate_not_before_timestamp_seconds', 'midcert_ca_certificate_expiration_timestamp_seconds',
      'midcert_agent_up', 'midcert_rotations_total', 'midcert_rotation_duration_seconds', 'midcert_last_rotation_timestamp_seconds', 'midcert_last_rotation_success',
      'midcert_ca_requests_total', 'midcert_ca_request_duration_seconds', 'midcert_instance_requests_total', 'midcert_instance_request_duration_seconds',
      'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds',
    ]) assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), `HELP for ${name}`);
    assert.doesNotMatch(text, /days_left/);
    // The expiry is the installed leaf's notAfter, from the store (the agents are unreachable).
    const store = await openStore(dir, { actor: 'test' });
    const mid01 = await store.certificates.latest('mid01', 'installed');
    await store.close();
    assert.ok(mid01);
    assert.equal(value(text, 'midcert_certificate_expiration_timestamp_seconds', { agent: 'mid01', mid: 'MID Server 01' }), Date.parse(mid01.notAfter) / 1000);
    assert.equal(value(text, 'midcert_rotations_total', { kind: 'rotate', result: 'succeeded' }), 2);
    assert.equal(value(text, 'midcert_rotations_total', { kind: 'rotate', result: 'failed' }), 1);
    assert.equal(value(text, 'midcert_last_rotation_success', { agent: 'mid02' }), 0);
    assert.equal(value(text, 'midcert_last_rotation_success', { agent: 'mid01' }), 1);
    assert.equal(value(text, 'midcert_rotation_duration_seconds_count', { kind: 'rotate', result: 'succeeded' }), 2);
    // The chain delivered with the installed leaves: intermediate and root, each once.
    assert.equal(text.split('\n').filter((l) => l.startsWith('midcert_ca_certificate_expiration_timestamp_seconds{')).length, 2);
  });

  it('shows a rotation recorded by another process in the next scrape (expiry and counters)', async () => {
    const before = await scrape(port);
    const store = await openStore(dir, { actor: 'user:cli' });
    let notAfter: Date;
    try {
      notAfter = await recordRotation(store, pki, 'mid02', 'succeeded', 300);
    } finally {
      await store.close();
    }
    const after = await scrape(port);
    assert.notEqual(value(before, 'midcert_certificate_expiration_timestamp_seconds', { agent: 'mid02' }), notAfter.getTime() / 1000);
    assert.equal(value(after, 'midcert_certificate_expiration_timestamp_seconds', { agent: 'mid02' }), notAfter.getTime() / 1000);
    assert.equal(value(after, 'midcert_rotations_total', { kind: 'rotate', result: 'succeeded' }), 3);
    assert.equal(value(after, 'midcert_last_rotation_success', { agent: 'mid02' }), 1);
    assert.equal((await promtool(['check', 'metrics'], after)).code, 0);
  });

  it('exits with code 0 soon after SIGTERM', async () => {
    const proc = child as ChildProcess;
    const exited = new Promise<{ code: number | null; ms: number }>((done) => {
      const start = performance.now();
      proc.once('exit', (code) => done({ code, ms: performance.now() - start }));
      proc.kill('SIGTERM');
    });
    const guard = new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`still running 10 s after SIGTERM: ${output.slice(-2000)}`)), 10_000).unref());
    const { code, ms } = await Promise.race([exited, guard]);
    assert.equal(code, 0, output.slice(-2000));
    process.stdout.write(`      (midcert serve exited ${Math.round(ms)} ms after SIGTERM)\n`);
  });
});

describe('serve(): shutdown with a pass in flight', () => {
  it('returns within the grace when a rotation step hangs, leaving the job to resume', async function () {
    this.timeout(20_000);
    const dir = await mkdtemp(join(tmpdir(), 'midcert-serve-grace-'));
    const store = await openStore(dir, { actor: 'test' });
    await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
    const abort = new AbortController();
    let preparing = false;
    const port = fakeAgentPort(5, { prepare: () => { preparing = true; return new Promise(() => undefined); } }); // never answers
    const served = serve(store, serveDeps(store, port), SERVE_ROTATION, { intervalMs: 60_000, jitterMs: 0, windows: [], renewWithinDays: 30, shutdownGraceMs: 300 }, pino({ level: 'silent' }), abort.signal);
    try {
      const until = Date.now() + 5000;
      while (!preparing && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assert.ok(preparing, 'the renewal started');
      const start = performance.now();
      abort.abort();
      const outcome = await served;
      assert.equal(outcome.abandoned, true);
      assert.ok(performance.now() - start < 5000, 'returned well before the hang guard');
      const running = await store.jobs.list({ states: ['running'] });
      assert.equal(running.length, 1, 'the job is left running for resume');
      assert.ok(['pending', 'preparing'].includes((await store.jobAgents.require(running[0]!.id, 'mid01')).state), 'not settled: the next start resumes it');
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('returns at once when the signal aborts between passes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'midcert-serve-idle-'));
    const store = await openStore(dir, { actor: 'test' });
    const abort = new AbortController();
    const deps = { store, dial: () => { throw new Error('no agents'); }, ca: { submit: async () => ({ kind: 'rejected' as const, reason: '' }), poll: async () => ({ kind: 'rejected' as const, reason: '' }) }, instance: undefined, onEvent: () => undefined };
    const rotation = { force: false, expiringWithinDays: 30, canary: 0, batch: 10, maxFailures: 0, concurrency: 2, dryRun: false, caTimeoutMs: 1000, caPollMs: 10, upTimeoutMs: 1000 };
    const served = serve(store, deps, rotation, { intervalMs: 600_000, jitterMs: 0, windows: [], renewWithinDays: 30 }, pino({ level: 'silent' }), abort.signal);
    await new Promise((r) => setTimeout(r, 200));
    const start = performance.now();
    abort.abort();
    assert.deepEqual(await served, { abandoned: false });
    assert.ok(performance.now() - start < 1000);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
});
