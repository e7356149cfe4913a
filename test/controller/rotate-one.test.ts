import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { getEventListeners } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CaOutcome } from '../../controller/ca/adapter.js';
import { jobRecord } from '../../controller/orchestrator/job-record.js';
import { MidcertError } from '../../common/errors.js';
import type { AgentPort, CaPort, InstallOutcome, InstancePort, RenewalSnapshot } from '../../controller/orchestrator/ports.js';
import { readCertificates } from '../../pki/certificate.js';
import { Permits } from '../../controller/orchestrator/permits.js';
import { rotateOne, type RotationRecord } from '../../controller/orchestrator/rotate-one.js';
import pino from 'pino';
import { inMaintenanceWindow, renewalDue, serve } from '../../controller/serve.js';
import { openStore, type Store } from '../../controller/store/index.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { SERVE_ROTATION, fakeAgentPort, serveDeps } from '../helpers/serve-fixtures.js';

/**
 * The rotation state machine with stand-in ports (the real agent, CA and instance are covered by
 * their own suites and by the end-to-end test); here what matters is the order of effects,
 * resumption from every saved state, and the store mapping.
 */
class FakeAgent implements AgentPort {
  prepares = 0;
  /** Installs that ran on the "host"; installCalls counts every InstallCertificate request. */
  installs = 0;
  installCalls = 0;
  queries = 0;
  installed = new Map<string, InstallOutcome>();
  /** The next install runs on the host, then its stream breaks with this error before the result arrives. */
  breakStream: MidcertError | undefined;
  /** Scripted GetRenewal answers (an error = unreachable); when empty, the answer follows `installed`. */
  answers: Array<Partial<RenewalSnapshot> | MidcertError> = [];
  constructor(private readonly pki: LabPki, private readonly failInstall = false) {}
  async status() { return { midName: 'mid01', leafSha256: 'old', leafSubject: '', leafIssuer: '', notBefore: undefined, notAfter: new Date(Date.now() + 5 * 86_400_000).toISOString(), serviceActive: true, instanceUrl: '' }; }
  prepareIds: string[] = [];
  async prepare(renewalId: string) { this.prepares++; this.prepareIds.push(renewalId); return { csrPem: (await import('../../pki/csr.js')).buildCsr(this.pki.leaf.key, { subject: 'CN=mid01' }) }; }
  allowSeen: Array<readonly string[] | undefined> = [];
  async install(renewalId: string, certificatePem: string, _chain = '', _progress: unknown = undefined, allowKeyTypes?: readonly string[]) {
    this.installCalls++;
    this.allowSeen.push(allowKeyTypes);
    const again = this.installed.get(renewalId);
    if (again) return again; // the agent answers a repeated request by renewal id
    this.installs++;
    const outcome: InstallOutcome = this.failInstall
      ? { ok: false, failedStep: 'verify-health', errorCode: 'HEALTH_CHECK_FAILED', errorMessage: 'SSLHandshakeException', rolledBack: true, currentSha256: 'old' }
      : { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: shaOf(certificatePem) };
    this.installed.set(renewalId, outcome);
    const broken = this.breakStream;
    this.breakStream = undefined;
    if (broken) throw broken;
    return outcome;
  }
  enableMutualAuth(renewalId: string, certificatePem: string) { return this.install(renewalId, certificatePem); }
  async rollback(): Promise<InstallOutcome> { throw new Error('unused'); }
  async renewal(renewalId: string): Promise<RenewalSnapshot> {
    this.queries++;
    const base: RenewalSnapshot = { state: 'prepared', step: '', leafSha256: '', failedStep: '', errorCode: '', errorMessage: '', finishedAt: '' };
    const scripted = this.answers.shift();
    if (scripted instanceof MidcertError) throw scripted;
    if (scripted) return { ...base, ...scripted };
    const done = this.installed.get(renewalId);
    if (!done) return base;
    return { ...base, state: done.ok ? 'installed' : 'rolled-back', leafSha256: done.currentSha256, failedStep: done.failedStep, errorCode: done.errorCode, errorMessage: done.errorMessage, finishedAt: new Date().toISOString() };
  }
  close() {}
}

function shaOf(pem: string): string {
  return readCertificates(Buffer.from(pem))[0]?.sha256 ?? '';
}

const lost = (): MidcertError => new MidcertError('UNAVAILABLE', 'Connection dropped');

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
    store = await openStore(dir, { actor: 'test' });
    await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
  });
  afterEach(async () => { await store.close(); await rm(dir, { recursive: true, force: true }); });

  function context(agent: AgentPort, ca: CaPort, instance: InstancePort, jobId: number, events: string[] = []) {
    const rec = jobRecord(store, jobId, 'mid01');
    return { agentName: 'mid01', agent, ca, instance, load: rec.load, save: rec.save, emit: (e: { step: string; state: string }) => events.push(`${e.step}:${e.state}`), options: { renewalId: `job${jobId}-mid01`, caPollMs: 1, caTimeoutMs: 2000, upTimeoutMs: 1000, reconnectMs: 2000, reconnectBackoffMs: 10 } };
  }

  /** The one-statement writes `run` makes, each as the store states it passes through. */
  async function writesOf(run: () => Promise<void>): Promise<string[]> {
    const updates: string[] = [];
    const advanceFrom = store.jobAgents.advanceFrom;
    store.jobAgents.advanceFrom = async (expected, plan) => {
      updates.push(plan(expected).map((s) => s.to).join('→'));
      return advanceFrom(expected, plan);
    };
    try {
      await run();
    } finally {
      store.jobAgents.advanceFrom = advanceFrom;
    }
    return updates;
  }

  async function newJob(): Promise<number> {
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    await store.jobs.transition(job.id, 'running');
    return job.id;
  }

  it('runs prepare → CA → publish (chain, leaf) → install → Up → retire, and records it in the store', async () => {
    const agent = new FakeAgent(pki);
    const instance = fakeInstance();
    const jobId = await newJob();
    const record = await rotateOne(context(agent, fakeCa(pki, ['issued']), instance, jobId));
    assert.equal(record.state, 'verified');
    assert.deepEqual(instance.calls, ['chain', 'leaf', 'up', 'retire']);
    const row = await store.jobAgents.require(jobId, 'mid01');
    assert.equal(row.state, 'succeeded');
    assert.match(row.certificatePem ?? '', /BEGIN CERTIFICATE/);
    assert.ok(row.outageStartedAt && row.outageEndedAt);
  });

  // Issue 11 item 4: key types beyond RSA-2048 reach the agent only when the operator allows them.
  it('passes the allowed key types to the agent install, and none by default', async () => {
    const plain = new FakeAgent(pki);
    await rotateOne(context(plain, fakeCa(pki, ['issued']), fakeInstance(), await newJob()));
    assert.deepEqual(plain.allowSeen, [undefined]);
    const allowed = new FakeAgent(pki);
    const ctx = context(allowed, fakeCa(pki, ['issued']), fakeInstance(), await newJob());
    await rotateOne({ ...ctx, options: { ...ctx.options, allowKeyTypes: ['rsa-3072'] } });
    assert.deepEqual(allowed.allowSeen, [['rsa-3072']]);
  });

  // Vendor (mid-unified-keystore.md, install-mid-mutual-auth.md step 8): invalidate a validated MID
  // before its pair is replaced; never during a renewal of a MID already on mutual TLS.
  it('invalidates before the install only when converting to mutual TLS, never on a renewal', async () => {
    const order: string[] = [];
    const withInvalidate = (): InstancePort & { calls: string[] } => {
      const inst = fakeInstance();
      return { ...inst, calls: inst.calls, async publishLeaf() { inst.calls.push('leaf'); }, async invalidateForConversion() { inst.calls.push('invalidate'); } };
    };
    const agent = new FakeAgent(pki);
    const origInstall = agent.install.bind(agent);
    const conv = withInvalidate();
    agent.install = async (...args: Parameters<FakeAgent['install']>) => { order.push(...conv.calls.splice(0), 'install'); return origInstall(...args); };
    const ctx = context(agent, fakeCa(pki, ['issued']), conv, await newJob());
    assert.equal((await rotateOne({ ...ctx, options: { ...ctx.options, mode: 'enable-mutual' } })).state, 'verified');
    assert.deepEqual(order, ['chain', 'leaf', 'invalidate', 'install']);
    const renewal = withInvalidate();
    await rotateOne(context(new FakeAgent(pki), fakeCa(pki, ['issued']), renewal, await newJob()));
    assert.ok(!renewal.calls.includes('invalidate'), renewal.calls.join());
    const refusing = { ...fakeInstance(), async invalidateForConversion() { throw new MidcertError('INSTANCE_TIMEOUT', 'delete_mid_keypair was not processed in time'); } };
    const failedAgent = new FakeAgent(pki);
    const c3 = context(failedAgent, fakeCa(pki, ['issued']), refusing, await newJob());
    const failed = await rotateOne({ ...c3, options: { ...c3.options, mode: 'enable-mutual' } });
    assert.equal(failed.state, 'failed');
    assert.equal(failed.failedStep, 'invalidate');
    assert.equal(failedAgent.installs, 0, 'nothing imported after a failed invalidation');
  });

  it('polls a pending CA request until it is issued', async () => {
    const ca = fakeCa(pki, ['pending', 'pending', 'issued']);
    const record = await rotateOne(context(new FakeAgent(pki), ca, fakeInstance(), await newJob()));
    assert.equal(record.state, 'verified');
    assert.equal(ca.submits, 1);
    assert.equal(ca.polls, 2);
  });

  for (const [kind, code] of [['rejected', 'CA_REJECTED'], ['unreachable', 'CA_UNREACHABLE']] as const) {
    it(`stops before touching the MID when the CA answers ${kind}`, async () => {
      const agent = new FakeAgent(pki);
      const instance = fakeInstance();
      const jobId = await newJob();
      const record = await rotateOne(context(agent, fakeCa(pki, [kind]), instance, jobId));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, code);
      assert.equal(agent.installs, 0);
      assert.deepEqual(instance.calls, []);
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'failed');
    });
  }

  it('reports an install the agent rolled back as a failure with the agent\'s code', async () => {
    const record = await rotateOne(context(new FakeAgent(pki, true), fakeCa(pki, ['issued']), fakeInstance(), await newJob()));
    assert.equal(record.state, 'failed');
    assert.equal(record.failedStep, 'install:verify-health');
    assert.equal(record.errorCode, 'HEALTH_CHECK_FAILED');
    assert.match(record.errorMessage ?? '', /rolled back/);
  });

  for (const killAt of ['submitted', 'issued', 'published', 'installed'] as const) {
    it(`a controller killed after "${killAt}" resumes from the store without repeating earlier steps`, async () => {
      const agent = new FakeAgent(pki);
      const ca = fakeCa(pki, killAt === 'submitted' ? ['pending', 'issued'] : ['issued']);
      const instance = fakeInstance();
      const jobId = await newJob();
      const ctx = context(agent, ca, instance, jobId);
      // The first controller dies right after saving `killAt`.
      let dead = false;
      const dying = async (r: RotationRecord): Promise<void> => {
        if (dead) throw new Error('killed');
        await ctx.save(r);
        if (r.state === killAt) { dead = true; throw new Error('killed'); }
      };
      await rotateOne({ ...ctx, save: dying }).catch(() => undefined);
      assert.ok(dead, `never reached ${killAt}`);
      const record = await rotateOne(context(agent, ca, instance, jobId));
      assert.equal(record.state, 'verified', JSON.stringify(record));
      assert.equal(agent.prepares, 1, 'one key and CSR');
      assert.equal(ca.submits, 1, 'one CA request');
      assert.equal(agent.installs, 1, 'installed once');
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'succeeded');
    });
  }

  it('writes the CSR with the CA\'s answer and the publication with the install\'s start: three writes, each a state to resume from', async () => {
    const jobId = await newJob();
    const ctx = context(new FakeAgent(pki), fakeCa(pki, ['issued']), fakeInstance(), jobId);
    const seen: string[] = [];
    const updates = await writesOf(async () => {
      const record = await rotateOne({ ...ctx, save: async (r) => { await ctx.save(r); seen.push(`${r.state}:${(await store.jobAgents.require(jobId, 'mid01')).state}`); } });
      assert.equal(record.state, 'verified');
    });
    assert.deepEqual(seen, ['issued:issued', 'published:installing', 'installed:installing', 'verified:succeeded']);
    assert.deepEqual(updates, ['preparing→csr_ready→issued', 'published→installing', 'succeeded']);
  });

  it('with no instance, writes the certificate with the install\'s start: two writes; killed in between, it submits once more and installs once', async () => {
    const jobId = await newJob();
    const ctx = { ...context(new FakeAgent(pki), fakeCa(pki, ['issued']), fakeInstance(), jobId), instance: undefined };
    const updates = await writesOf(async () => { assert.equal((await rotateOne(ctx)).state, 'verified'); });
    assert.deepEqual(updates, ['preparing→csr_ready→issued→published→installing', 'succeeded']);
    const row = await store.jobAgents.require(jobId, 'mid01');
    assert.match(row.certificatePem ?? '', /BEGIN CERTIFICATE/, 'the certificate is stored');

    // Killed at that write: nothing stored, nothing sent to the host; the resumed run asks the CA again.
    const agent = new FakeAgent(pki);
    const ca = fakeCa(pki, ['issued', 'issued']);
    const second = await newJob();
    const base = { ...context(agent, ca, fakeInstance(), second), instance: undefined };
    let dead = false;
    const dying = async (r: RotationRecord): Promise<void> => { dead ||= r.state === 'published'; if (dead) throw new Error('killed'); await base.save(r); };
    await assert.rejects(rotateOne({ ...base, save: dying }), /killed/);
    assert.equal((await store.jobAgents.require(second, 'mid01')).state, 'pending');
    assert.equal(agent.installs, 0, 'no install before its write');
    assert.equal((await rotateOne({ ...context(agent, ca, fakeInstance(), second), instance: undefined })).state, 'verified');
    assert.equal(ca.submits, 2, 'the lost certificate is asked for again');
    assert.equal(agent.installs, 1);
  });

  it('a CA-chain rotation\'s staging without an instance still writes its certificate before stopping', async () => {
    const jobId = await newJob();
    const ctx = { ...context(new FakeAgent(pki), fakeCa(pki, ['issued']), fakeInstance(), jobId), instance: undefined };
    const record = await rotateOne({ ...ctx, options: { ...ctx.options, stopAfter: 'published' as const } });
    assert.equal(record.state, 'published');
    const row = await store.jobAgents.require(jobId, 'mid01');
    assert.equal(row.state, 'published');
    assert.match(row.certificatePem ?? '', /BEGIN CERTIFICATE/);
  });

  describe('the preparation permit (run-rotation.ts: at most a few MIDs between first step and install at once)', () => {
    /** An agent that notes, at each call, how many permits are out. */
    class WatchedAgent extends FakeAgent {
      out: string[] = [];
      constructor(private readonly permits: Permits) { super(pki); }
      override async prepare(renewalId: string) { this.out.push(`prepare:${this.permits.inUse}`); return super.prepare(renewalId); }
      override async install(renewalId: string, certificatePem: string, chain = '', progress: unknown = undefined, allow?: readonly string[]) { this.out.push(`install:${this.permits.inUse}`); return super.install(renewalId, certificatePem, chain, progress, allow); }
    }

    it('is held from the first step and given back with the install\'s first write, before the install is sent', async () => {
      const permits = new Permits(1);
      const agent = new WatchedAgent(permits);
      const record = await rotateOne({ ...context(agent, fakeCa(pki, ['issued']), fakeInstance(), await newJob()), preparing: permits });
      assert.equal(record.state, 'verified');
      assert.deepEqual(agent.out, ['prepare:1', 'install:0']);
      assert.equal(permits.inUse, 0);
    });

    it('waits for a free permit before asking anything of the agent', async () => {
      const permits = new Permits(1);
      const other = await permits.acquire();
      const agent = new WatchedAgent(permits);
      const running = rotateOne({ ...context(agent, fakeCa(pki, ['issued']), fakeInstance(), await newJob()), preparing: permits });
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(agent.out, [], 'nothing asked while the only permit is out');
      other.release();
      assert.equal((await running).state, 'verified');
      assert.deepEqual(agent.out, ['prepare:1', 'install:0']);
    });

    it('is given back while a request the CA keeps pending is polled (approval may take hours)', async () => {
      const permits = new Permits(1);
      const ca = fakeCa(pki, ['pending', 'pending', 'issued']);
      const inUseAtPoll: number[] = [];
      const watchedCa: CaPort = { submit: (csr, req) => ca.submit(csr, req), poll: async (cookie) => { inUseAtPoll.push(permits.inUse); return ca.poll(cookie); } };
      const record = await rotateOne({ ...context(new FakeAgent(pki), watchedCa, fakeInstance(), await newJob()), preparing: permits });
      assert.equal(record.state, 'verified');
      assert.deepEqual(inUseAtPoll, [0, 0]);
    });

    it('is given back when the MID fails before its install, or the step throws', async () => {
      const permits = new Permits(1);
      const rejectedRun = await rotateOne({ ...context(new FakeAgent(pki), fakeCa(pki, ['rejected']), fakeInstance(), await newJob()), preparing: permits });
      assert.equal(rejectedRun.state, 'failed');
      assert.equal(permits.inUse, 0);
      const broken = new FakeAgent(pki);
      broken.prepare = async () => { throw lost(); };
      const lostRun = await rotateOne({ ...context(broken, fakeCa(pki, ['issued']), fakeInstance(), await newJob()), preparing: permits });
      assert.equal(lostRun.errorCode, 'UNAVAILABLE');
      assert.equal(permits.inUse, 0);
    });

    it('is not asked for by a MID resumed past its preparation', async () => {
      const permits = new Permits(1);
      const held = await permits.acquire();
      const jobId = await newJob();
      const agent = new FakeAgent(pki);
      const ctx = context(agent, fakeCa(pki, ['issued']), fakeInstance(), jobId);
      let dead = false;
      const dying = async (r: RotationRecord): Promise<void> => { if (dead) throw new Error('killed'); dead = r.state === 'published'; await ctx.save(r); };
      await assert.rejects(rotateOne({ ...ctx, save: dying }), /killed/); // stored `installing`, killed before the install's end
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'installing');
      const resumed = await rotateOne({ ...context(agent, fakeCa(pki, []), fakeInstance(), jobId), preparing: permits });
      assert.equal(resumed.state, 'verified', 'went on although every permit was out');
      assert.equal(agent.installs, 1);
      held.release();
    });
  });

  it('a controller killed before the CA answered asks the agent again for the same renewal (PrepareRenewal is idempotent by id)', async () => {
    const agent = new FakeAgent(pki);
    const instance = fakeInstance();
    const jobId = await newJob();
    const ctx = context(agent, fakeCa(pki, ['issued']), instance, jobId);
    let dead = false;
    const dying = async (r: RotationRecord): Promise<void> => { if (dead) throw new Error('killed'); await ctx.save(r); };
    const killedCa: CaPort = { async submit() { dead = true; throw new Error('killed'); }, async poll() { throw new Error('unused'); } };
    await assert.rejects(rotateOne({ ...ctx, ca: killedCa, save: dying }), /killed/);
    assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'pending', 'nothing written before the CA answered');
    const ca = fakeCa(pki, ['issued']);
    assert.equal((await rotateOne(context(agent, ca, instance, jobId))).state, 'verified');
    assert.deepEqual(agent.prepareIds, [`job${jobId}-mid01`, `job${jobId}-mid01`], 'the same renewal asked again');
    assert.equal(ca.submits, 1);
    assert.equal(agent.installs, 1);
  });

  it('a controller killed while publishing publishes again on resume, and asks the CA nothing new', async () => {
    const agent = new FakeAgent(pki);
    const ca = fakeCa(pki, ['issued']);
    const instance = fakeInstance();
    const jobId = await newJob();
    const ctx = context(agent, ca, instance, jobId);
    let dead = false;
    const dying = async (r: RotationRecord): Promise<void> => { if (dead) throw new Error('killed'); await ctx.save(r); };
    const dyingInstance: InstancePort = { ...instance, async publishLeaf() { dead = true; throw new Error('killed'); } };
    await assert.rejects(rotateOne({ ...ctx, instance: dyingInstance, save: dying }), /killed/);
    assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'issued');
    assert.equal((await rotateOne(context(agent, ca, instance, jobId))).state, 'verified');
    assert.deepEqual(instance.calls, ['chain', 'chain', 'leaf', 'up', 'retire'], 'the chain from both runs, the leaf from the second');
    assert.equal(ca.submits, 1);
    assert.equal(agent.prepares, 1);
    assert.equal(agent.installs, 1);
  });

  describe('an install stream that breaks: the controller asks the agent (GetRenewal) and records what the host did', () => {
    it('records success with the new leaf when the agent, back after two refused dials, says INSTALLED', async () => {
      const agent = new FakeAgent(pki);
      agent.breakStream = lost();
      agent.answers = [lost(), lost()]; // the agent is restarting
      const jobId = await newJob();
      const events: string[] = [];
      const record = await rotateOne(context(agent, fakeCa(pki, ['issued']), fakeInstance(), jobId, events));
      assert.equal(record.state, 'verified', JSON.stringify(record));
      assert.equal(record.newSha256, shaOf(record.certificatePem as string));
      assert.equal(agent.queries, 3, 'asked until the agent answered');
      assert.equal(agent.installCalls, 1, 'the install was not sent again');
      const row = await store.jobAgents.require(jobId, 'mid01');
      assert.equal(row.state, 'succeeded');
      assert.equal(row.errorCode, null);
    });

    it('records the agent\'s own failure when it says ROLLED_BACK', async () => {
      const agent = new FakeAgent(pki);
      agent.breakStream = lost();
      agent.answers = [{ state: 'rolled-back', failedStep: 'verify-health', errorCode: 'HEALTH_CHECK_FAILED', errorMessage: 'the MID did not come back Up', leafSha256: 'old' }];
      const jobId = await newJob();
      const record = await rotateOne(context(agent, fakeCa(pki, ['issued']), fakeInstance(), jobId));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, 'HEALTH_CHECK_FAILED');
      assert.equal(record.failedStep, 'install:verify-health');
      assert.match(record.errorMessage ?? '', /rolled back/);
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).errorCode, 'HEALTH_CHECK_FAILED');
    });

    it('fails UNAVAILABLE only after the agent stayed unreachable for the whole reconnect window', async () => {
      const agent = new FakeAgent(pki);
      agent.breakStream = lost();
      agent.answers = Array.from({ length: 1000 }, lost);
      const ctx = context(agent, fakeCa(pki, ['issued']), fakeInstance(), await newJob());
      const t0 = Date.now();
      const record = await rotateOne({ ...ctx, options: { ...ctx.options, reconnectMs: 400, reconnectBackoffMs: 20 } });
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, 'UNAVAILABLE');
      assert.equal(record.failedStep, 'install');
      assert.match(record.errorMessage ?? '', /stayed unreachable/);
      assert.ok(Date.now() - t0 >= 300, 'waited for (most of) the window');
      assert.ok(agent.queries >= 3 && agent.queries < 40, `re-dialled with backoff (${agent.queries} queries)`);
    });

    it('refuses an INSTALLED answer that names another leaf than the one sent (RENEWAL_MISMATCH)', async () => {
      const agent = new FakeAgent(pki);
      agent.breakStream = lost();
      agent.answers = [{ state: 'installed', leafSha256: 'ab'.repeat(32) }];
      const record = await rotateOne(context(agent, fakeCa(pki, ['issued']), fakeInstance(), await newJob()));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, 'RENEWAL_MISMATCH');
    });

    it('sends the install again when the agent says PREPARED (the request never reached the host)', async () => {
      const agent = new FakeAgent(pki);
      const ctx = context(agent, fakeCa(pki, ['issued']), fakeInstance(), await newJob());
      let first = true;
      const port: AgentPort = Object.assign(Object.create(agent) as FakeAgent, {
        install: async (id: string, pem: string) => {
          if (first) { first = false; agent.installCalls++; throw lost(); } // lost before the agent saw it
          return agent.install(id, pem);
        },
      });
      const record = await rotateOne({ ...ctx, agent: port });
      assert.equal(record.state, 'verified', JSON.stringify(record));
      assert.equal(agent.installs, 1);
      assert.equal(agent.installCalls, 2);
    });

    it('a non-connection error (RENEWAL_BUSY) is not reconciled: it fails at once with its code', async () => {
      const agent = new FakeAgent(pki);
      agent.breakStream = new MidcertError('RENEWAL_BUSY', 'another renewal is in progress');
      const record = await rotateOne(context(agent, fakeCa(pki, ['issued']), fakeInstance(), await newJob()));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, 'RENEWAL_BUSY');
      assert.equal(agent.queries, 0);
    });
  });

  describe('resuming an install that was in flight when the controller died asks GetRenewal first', () => {
    async function diedDuringInstall(agent: FakeAgent): Promise<{ jobId: number; ca: ReturnType<typeof fakeCa>; instance: ReturnType<typeof fakeInstance> }> {
      const ca = fakeCa(pki, ['issued']);
      const instance = fakeInstance();
      const jobId = await newJob();
      const ctx = context(agent, ca, instance, jobId);
      // The controller dies while the install stream is open: the row stays `installing`.
      const dying: AgentPort = Object.assign(Object.create(agent) as FakeAgent, {
        install: async (id: string, pem: string) => { await agent.install(id, pem); throw new Error('controller killed'); },
      });
      await rotateOne({ ...ctx, agent: dying, save: async (r: RotationRecord) => { if (r.state === 'failed') throw new Error('killed'); await ctx.save(r); } }).catch(() => undefined);
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'installing');
      return { jobId, ca, instance };
    }

    it('the agent finished it: recorded succeeded, InstallCertificate not sent again', async () => {
      const agent = new FakeAgent(pki);
      const { jobId, ca, instance } = await diedDuringInstall(agent);
      const callsBefore = agent.installCalls;
      const record = await rotateOne(context(agent, ca, instance, jobId));
      assert.equal(record.state, 'verified', JSON.stringify(record));
      assert.equal(agent.installCalls, callsBefore, 'resume asked, it did not re-send');
      assert.equal(agent.queries, 1);
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'succeeded');
    });

    it('the agent rolled it back: recorded failed with the agent\'s code', async () => {
      const agent = new FakeAgent(pki, true);
      const { jobId, ca, instance } = await diedDuringInstall(agent);
      const record = await rotateOne(context(agent, ca, instance, jobId));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, 'HEALTH_CHECK_FAILED');
      assert.equal(agent.installs, 1);
      assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'failed');
    });

    it('the agent has no record of it: recorded failed RENEWAL_NOT_FOUND, nothing installed', async () => {
      const agent = new FakeAgent(pki);
      const { jobId, ca, instance } = await diedDuringInstall(agent);
      agent.answers = [{ state: 'unknown', errorCode: 'RENEWAL_NOT_FOUND', errorMessage: 'no record' }];
      const callsBefore = agent.installCalls;
      const record = await rotateOne(context(agent, ca, instance, jobId));
      assert.equal(record.state, 'failed');
      assert.equal(record.errorCode, 'RENEWAL_NOT_FOUND');
      assert.equal(record.failedStep, 'install');
      assert.equal(agent.installCalls, callsBefore);
    });
  });
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
    const store = await openStore(dir, { actor: 'test' });
    await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
    let statusCalls = 0;
    const abort = new AbortController();
    const healthy = fakeAgentPort(300);
    const port = fakeAgentPort(300, {
      status: async () => { statusCalls++; return healthy.status(); },
      events: async function* (signal) {
        await new Promise((r) => setTimeout(r, 100));
        yield { type: 'keystore-changed', message: 'security/agent_keystore' };
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      },
    });
    const served = serve(store, serveDeps(store, port), SERVE_ROTATION, { intervalMs: 60_000, jitterMs: 0, windows: [], renewWithinDays: 30 }, pino({ level: 'silent' }), abort.signal);
    try {
      const until = Date.now() + 5000;
      while (statusCalls < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.ok(statusCalls >= 2, `a second pass followed the event (status calls: ${statusCalls})`);
    } finally {
      abort.abort();
      await served;
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('does not gather abort listeners on its signal pass after pass', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'midcert-serve-'));
    const store = await openStore(dir, { actor: 'test' });
    await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
    let passes = 0;
    const abort = new AbortController();
    const healthy = fakeAgentPort(300);
    const port = fakeAgentPort(300, { status: async () => { passes++; return healthy.status(); } });
    const served = serve(store, serveDeps(store, port), SERVE_ROTATION, { intervalMs: 20, jitterMs: 0, windows: [], renewWithinDays: 30 }, pino({ level: 'silent' }), abort.signal);
    try {
      const until = Date.now() + 10_000;
      while (passes < 15 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assert.ok(passes >= 15, `passes: ${passes}`);
      const listeners = getEventListeners(abort.signal, 'abort').length;
      assert.ok(listeners <= 4, `${listeners} abort listeners after ${passes} passes`);
    } finally {
      abort.abort();
      await served;
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
