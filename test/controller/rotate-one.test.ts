import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CaOutcome } from '../../controller/ca/adapter.js';
import { jobRecord } from '../../controller/orchestrator/job-record.js';
import type { AgentPort, CaPort, InstallOutcome, InstancePort } from '../../controller/orchestrator/ports.js';
import { rotateOne, type RotationRecord } from '../../controller/orchestrator/rotate-one.js';
import pino from 'pino';
import { inMaintenanceWindow, renderMetrics, renewalDue, serve } from '../../controller/serve.js';
import { openStore, type Store } from '../../controller/store/index.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';

/**
 * The rotation state machine with stand-in ports (the real agent, CA and instance are covered by
 * their own suites and by the end-to-end test); here what matters is the order of effects,
 * resumption from every saved state, and the store mapping.
 */
class FakeAgent implements AgentPort {
  prepares = 0;
  installs = 0;
  installed = new Map<string, InstallOutcome>();
  constructor(private readonly pki: LabPki, private readonly failInstall = false) {}
  async status() { return { midName: 'mid01', leafSha256: 'old', leafSubject: '', leafIssuer: '', notBefore: undefined, notAfter: new Date(Date.now() + 5 * 86_400_000).toISOString(), serviceActive: true, instanceUrl: '' }; }
  async prepare() { this.prepares++; return { csrPem: (await import('../../pki/csr.js')).buildCsr(this.pki.leaf.key, { subject: 'CN=mid01' }) }; }
  async install(renewalId: string) {
    const again = this.installed.get(renewalId);
    if (again) return again; // the agent answers a repeated request by renewal id
    this.installs++;
    const outcome: InstallOutcome = this.failInstall
      ? { ok: false, failedStep: 'verify-health', errorCode: 'HEALTH_CHECK_FAILED', errorMessage: 'SSLHandshakeException', rolledBack: true, currentSha256: 'old' }
      : { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: 'new' };
    this.installed.set(renewalId, outcome);
    return outcome;
  }
  enableMutualAuth(renewalId: string) { return this.install(renewalId); }
  async rollback(): Promise<InstallOutcome> { throw new Error('unused'); }
  close() {}
}

function fakeCa(pki: LabPki, script: CaOutcome['kind'][]): CaPort & { submits: number; polls: number } {
  const next = (csrPem: string): CaOutcome => {
    const kind = script.shift() ?? 'issued';
    if (kind === 'issued') return { kind, certificatePem: pki.ca.signCsr(csrPem), chainPem: pki.ca.chainPem };
    if (kind === 'pending') return { kind, cookie: 'req-7', retryAfterSeconds: 0 };
    if (kind === 'rejected') return { kind, reason: 'Denied by Policy Module' };
    return { kind, reason: 'connection refused' };
  };
  let lastCsr = '';
  const ca = {
    submits: 0, polls: 0,
    async submit(csrPem: string) { ca.submits++; lastCsr = csrPem; return next(csrPem); },
    async poll() { ca.polls++; return next(lastCsr); },
  };
  return ca;
}

function fakeInstance(): InstancePort & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async ensureCaChain() { calls.push('chain'); },
    async publishLeaf() { calls.push('leaf'); },
    async waitForMidUp() { calls.push('up'); },
    async retireOldLeaves() { calls.push('retire'); },
  };
}

describe('controller rotation of one MID (state machine, resume, store mapping)', () => {
  let pki: LabPki;
  let dir: string;
  let store: Store;
  before(async () => { pki = await makeLabPki(); });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-rot-'));
    store = openStore(dir, { actor: 'test' });
    store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
  });
  afterEach(async () => { store.close(); await rm(dir, { recursive: true, force: true }); });

  function context(agent: AgentPort, ca: CaPort, instance: InstancePort, jobId: number, events: string[] = []) {
    const rec = jobRecord(store, jobId, 'mid01');
    return { agentName: 'mid01', agent, ca, instance, load: rec.load, save: rec.save, emit: (e: { step: string; state: string }) => events.push(`${e.step}:${e.state}`), options: { renewalId: `job${jobId}-mid01`, caPollMs: 1, caTimeoutMs: 2000, upTimeoutMs: 1000 } };
  }

  function newJob(): number {
    const job = store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    store.jobs.transition(job.id, 'running');
    return job.id;
  }

  it('runs prepare → CA → publish (chain, leaf) → install → Up → retire, and records it in the store', async () => {
    const agent = new FakeAgent(pki);
    const instance = fakeInstance();
    const jobId = newJob();
    const record = await rotateOne(context(agent, fakeCa(pki, ['issued']), instance, jobId));
    assert.equal(record.state, 'verified');
    assert.deepEqual(instance.calls, ['chain', 'leaf', 'up', 'retire']);
    const row = store.jobAgents.require(jobId, 'mid01');
    assert.equal(row.state, 'succeeded');
    assert.match(row.certificatePem ?? '', /BEGIN CERTIFICATE/);
    assert.ok(row.outageStartedAt && row.outageEndedAt);
  });

  it('polls a pending CA request until it is issued', async () => {
    const ca = fakeCa(pki, ['pending', 'pending', 'issued']);
    const record = await rotateOne(context(new FakeAgent(pki), ca, fakeInstance(), newJob()));
    assert.equal(record.state, 'verified');
    assert.equal(ca.submits, 1);
    assert.equal(ca.polls, 2);
  });

  for (const [kind, code] of [['rejected', 'CA_REJECTED'], ['unreachable', 'CA_UNREACHABLE']] as const) {
    it(`stops before touching the MID when the CA answers ${kind}`, async () => {
      const agent = new FakeAgent(pki);
      const instance = fakeInstance();
      const jobId = newJob();
      const record = await rotateOne(context(agent, fakeCa(pki, [kind]), instance, jobId));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, code);
      assert.equal(agent.installs, 0);
      assert.deepEqual(instance.calls, []);
      assert.equal(store.jobAgents.require(jobId, 'mid01').state, 'failed');
    });
  }

  it('reports an install the agent rolled back as a failure with the agent\'s code', async () => {
    const record = await rotateOne(context(new FakeAgent(pki, true), fakeCa(pki, ['issued']), fakeInstance(), newJob()));
    assert.equal(record.state, 'failed');
    assert.equal(record.failedStep, 'install:verify-health');
    assert.equal(record.errorCode, 'HEALTH_CHECK_FAILED');
    assert.match(record.errorMessage ?? '', /rolled back/);
  });

  for (const killAt of ['prepared', 'issued', 'published', 'installed'] as const) {
    it(`a controller killed after "${killAt}" resumes from the store without repeating earlier steps`, async () => {
      const agent = new FakeAgent(pki);
      const ca = fakeCa(pki, ['issued']);
      const instance = fakeInstance();
      const jobId = newJob();
      const ctx = context(agent, ca, instance, jobId);
      // The first controller dies right after saving `killAt`.
      let dead = false;
      const dying = (r: RotationRecord): void => {
        if (dead) throw new Error('killed');
        ctx.save(r);
        if (r.state === killAt) { dead = true; throw new Error('killed'); }
      };
      await rotateOne({ ...ctx, save: dying }).catch(() => undefined);
      assert.ok(dead, `never reached ${killAt}`);
      const record = await rotateOne(context(agent, ca, instance, jobId));
      assert.equal(record.state, 'verified', JSON.stringify(record));
      assert.equal(agent.prepares, 1, 'one key and CSR');
      assert.equal(ca.submits, 1, 'one CA request');
      assert.equal(agent.installs, 1, 'installed once');
      assert.equal(store.jobAgents.require(jobId, 'mid01').state, 'succeeded');
    });
  }
});

describe('controller serve: renewal window, maintenance windows, metrics', () => {
  const day = 86_400_000;
  it('renews inside max(30 days, a third of the lifetime)', () => {
    const now = new Date('2026-06-01T00:00:00Z');
    const at = (days: number): string => new Date(now.getTime() + days * day).toISOString();
    assert.equal(renewalDue(at(-165), at(200), now), false); // 1-year leaf: the window is ~122 days
    assert.equal(renewalDue(at(-265), at(100), now), true);
    assert.equal(renewalDue(at(-10), at(50), now), false); // 60-day leaf: window is 30 days
    assert.equal(renewalDue(at(-10), at(29), now), true);
    assert.equal(renewalDue(undefined, undefined, now), true);
  });

  it('honours maintenance windows (UTC, daily or per weekday, across midnight)', () => {
    const sat0130 = new Date('2026-11-28T01:30:00Z');
    assert.equal(inMaintenanceWindow([], sat0130), true);
    assert.equal(inMaintenanceWindow(['Sat 01:00-05:00'], sat0130), true);
    assert.equal(inMaintenanceWindow(['Sun 01:00-05:00'], sat0130), false);
    assert.equal(inMaintenanceWindow(['daily 23:00-02:00'], sat0130), true);
    assert.equal(inMaintenanceWindow(['daily 02:00-04:00'], sat0130), false);
  });

  it('reconciles at once when an agent reports a keystore change, without waiting for the interval', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'midcert-serve-'));
    const store = openStore(dir, { actor: 'test' });
    store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
    let statusCalls = 0;
    const abort = new AbortController();
    const port: AgentPort = {
      status: async () => { statusCalls++; return { midName: 'mid01', leafSha256: 'x', leafSubject: '', leafIssuer: '', notBefore: new Date(Date.now() - 10 * 86_400_000).toISOString(), notAfter: new Date(Date.now() + 300 * 86_400_000).toISOString(), serviceActive: true, instanceUrl: '' }; },
      prepare: async () => { throw new Error('unused'); },
      install: async () => { throw new Error('unused'); },
      enableMutualAuth: async () => { throw new Error('unused'); },
      rollback: async () => { throw new Error('unused'); },
      events: async function* (signal) {
        await new Promise((r) => setTimeout(r, 100));
        yield { type: 'keystore-changed', message: 'security/agent_keystore' };
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      },
      close: () => undefined,
    };
    const deps = { store, dial: () => port, ca: { submit: async () => ({ kind: 'rejected' as const, reason: '' }), poll: async () => ({ kind: 'rejected' as const, reason: '' }) }, instance: undefined, onEvent: () => undefined };
    const rotation = { force: false, expiringWithinDays: 30, canary: 0, batch: 10, maxFailures: 0, concurrency: 2, dryRun: false, caTimeoutMs: 1000, caPollMs: 10, upTimeoutMs: 1000 };
    const served = serve(store, deps, rotation, { intervalMs: 60_000, jitterMs: 0, windows: [], renewWithinDays: 30 }, pino({ level: 'silent' }), abort.signal);
    try {
      const until = Date.now() + 5000;
      while (statusCalls < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.ok(statusCalls >= 2, `a second pass followed the event (status calls: ${statusCalls})`);
    } finally {
      abort.abort();
      await served;
      store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('renders Prometheus gauges per MID', () => {
    const text = renderMetrics(new Map([['mid01', { daysLeft: 12, reachable: true, lastResult: 'ok' as const }], ['mid02', { daysLeft: null, reachable: false, lastResult: 'failed' as const }]]));
    assert.match(text, /^midcert_certificate_days_left\{mid="mid01"\} 12$/m);
    assert.match(text, /^midcert_agent_reachable\{mid="mid02"\} 0$/m);
    assert.match(text, /^midcert_last_rotation_success\{mid="mid02"\} 0$/m);
    assert.doesNotMatch(text, /days_left\{mid="mid02"\}/);
  });
});
