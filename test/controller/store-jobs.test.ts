import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { JOB_AGENT_STATES, JOB_AGENT_TRANSITIONS, JOB_STATES, JOB_TRANSITIONS, openStore, type Store } from '../../controller/store/index.js';

const code = (expected: string) => (err: MidcertError): boolean => {
  assert.equal(err.code, expected, err.message);
  return true;
};
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';
const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('controller/store: jobs, job agents and steps', () => {
  let dir: string;
  let store: Store;
  let clock: number;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-store-jobs-'));
    clock = Date.parse('2030-06-01T10:00:00Z');
    store = await openStore(dir, { actor: 'user:ops', now: () => new Date((clock += 1000)) });
    for (const name of ['mid01', 'mid02', 'mid03']) await store.agents.add({ name, address: `${name}.example:7443` });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a planned job with pending agents in waves, atomically', async () => {
    const job = await store.jobs.create({ kind: 'rotate', params: { canary: 1, batch: 2 }, agents: [{ name: 'mid02', wave: 1 }, { name: 'mid01', wave: 0 }, 'mid03'] });
    assert.equal(job.state, 'planned');
    assert.equal(job.createdBy, 'user:ops');
    assert.deepEqual(job.params, { canary: 1, batch: 2 });
    assert.deepEqual((await store.jobAgents.list(job.id)).map((a) => [a.agentName, a.wave, a.state]), [['mid01', 0, 'pending'], ['mid03', 0, 'pending'], ['mid02', 1, 'pending']]);
    // An unknown agent fails the whole creation: no job, no rows.
    await assert.rejects(store.jobs.create({ kind: 'rotate', agents: ['ghost'] }), code('AGENT_NOT_FOUND'));
    await assert.rejects(store.jobs.create({ kind: 'rotate', agents: ['mid01', 'mid01'] }), code('AGENT_INVALID'));
    assert.equal((await store.jobs.list()).length, 1);
    const audit = await store.audit.list({ action: 'job.create' });
    assert.equal(audit.find((a) => a.result === 'ok')?.target, `job:${job.id}`);
  });

  it('refuses to put an agent in two unfinished jobs (the CLI and the daemon cannot both rotate it)', async () => {
    const first = await store.jobs.create({ kind: 'rotate', agents: ['mid01', 'mid02'] });
    await assert.rejects(store.jobs.create({ kind: 'renew', agents: ['mid03', 'mid02'] }), (err: MidcertError) => err.code === 'AGENT_BUSY' && /mid02 \(job 1\)/.test(err.message));
    await store.jobs.transition(first.id, 'running');
    await store.jobAgents.advance(first.id, 'mid02', 'skipped');
    // mid02 is settled in job 1, so it may join another while job 1 still runs; mid01 may not.
    assert.equal((await store.jobs.create({ kind: 'renew', agents: ['mid02'] })).state, 'planned');
    await assert.rejects(store.jobs.create({ kind: 'renew', agents: ['mid01'] }), code('AGENT_BUSY'));
  });

  it('follows the job state machine and refuses every transition it does not list', async () => {
    for (const from of JOB_STATES) {
      for (const to of JOB_STATES) {
        const job = await store.jobs.create({ kind: 'rotate' });
        const path: Record<string, Array<typeof to>> = { planned: [], running: ['running'], succeeded: ['running', 'succeeded'], failed: ['failed'], partial: ['running', 'partial'], cancelled: ['cancelled'] };
        for (const step of path[from] ?? []) await store.jobs.transition(job.id, step);
        assert.equal((await store.jobs.require(job.id)).state, from);
        if (JOB_TRANSITIONS[from].includes(to)) {
          assert.equal((await store.jobs.transition(job.id, to)).state, to, `${from} → ${to}`);
        } else {
          await assert.rejects(store.jobs.transition(job.id, to), code('STATE_TRANSITION_INVALID'), `${from} → ${to}`);
          assert.equal((await store.jobs.require(job.id)).state, from);
        }
      }
    }
  });

  it('stamps started_at and finished_at, keeps the error, and settles pending agents at the end', async () => {
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01', 'mid02'] });
    const running = await store.jobs.transition(job.id, 'running');
    assert.ok(running.startedAt && running.finishedAt === null);
    await store.jobAgents.advance(job.id, 'mid01', 'preparing');
    // Not while an agent is in flight…
    await assert.rejects(store.jobs.transition(job.id, 'failed', { code: 'CA_UNREACHABLE', message: 'x' }), (err: MidcertError) => err.code === 'STATE_TRANSITION_INVALID' && /mid01/.test(err.message));
    await store.jobAgents.advance(job.id, 'mid01', 'failed', { errorCode: 'CA_UNREACHABLE', errorMessage: 'the CA did not answer' });
    const failed = await store.jobs.transition(job.id, 'failed', { code: 'CA_UNREACHABLE', message: 'failure budget spent' });
    assert.equal(failed.errorCode, 'CA_UNREACHABLE');
    assert.equal(failed.errorMessage, 'failure budget spent');
    assert.ok(failed.finishedAt && failed.finishedAt > (running.startedAt as string));
    assert.deepEqual((await store.jobAgents.list(job.id)).map((a) => [a.agentName, a.state]), [['mid01', 'failed'], ['mid02', 'skipped']]);
    const cancelled = await store.jobs.create({ kind: 'rotate', agents: ['mid03'] });
    await store.jobs.transition(cancelled.id, 'cancelled');
    assert.equal((await store.jobAgents.require(cancelled.id, 'mid03')).state, 'cancelled');
    await assert.rejects(store.jobs.transition(999, 'running'), code('JOB_NOT_FOUND'));
  });

  it('walks an agent through a rotation, storing what a resumed controller needs at each state', async () => {
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    await assert.rejects(store.jobAgents.advance(job.id, 'mid01', 'preparing'), (err: MidcertError) => err.code === 'STATE_TRANSITION_INVALID' && /planned/.test(err.message));
    await store.jobs.transition(job.id, 'running');
    await store.jobAgents.advance(job.id, 'mid01', 'preparing');
    await assert.rejects(store.jobAgents.advance(job.id, 'mid01', 'csr_ready', { renewalId: 'r-1' }), (err: MidcertError) => err.code === 'STATE_TRANSITION_INVALID' && /csrPem/.test(err.message));
    await store.jobAgents.advance(job.id, 'mid01', 'csr_ready', { renewalId: 'r-1', csrPem: CSR });
    await store.jobAgents.advance(job.id, 'mid01', 'ca_pending', { caCookie: 'ReqID=17' });
    await store.jobAgents.advance(job.id, 'mid01', 'ca_pending', { caCookie: 'ReqID=17;poll=2' });
    await store.jobAgents.advance(job.id, 'mid01', 'issued', { certificatePem: CERT, chainPem: CERT });
    await store.jobAgents.advance(job.id, 'mid01', 'published');
    const installing = await store.jobAgents.advance(job.id, 'mid01', 'installing');
    assert.ok(installing.outageStartedAt);
    await assert.rejects(store.jobAgents.advance(job.id, 'mid01', 'cancelled'), code('STATE_TRANSITION_INVALID'));
    // A fresh connection (a restarted controller) sees everything the steps stored.
    const resumed = await openStore(dir);
    const row = await resumed.jobAgents.require(job.id, 'mid01');
    await resumed.close();
    assert.deepEqual([row.state, row.renewalId, row.csrPem, row.caCookie, row.certificatePem], ['installing', 'r-1', CSR, 'ReqID=17;poll=2', CERT]);
    const done = await store.jobAgents.advance(job.id, 'mid01', 'succeeded');
    assert.ok(done.outageEndedAt && done.outageEndedAt > (done.outageStartedAt as string));
    await assert.rejects(store.jobAgents.advance(job.id, 'mid01', 'installing'), code('STATE_TRANSITION_INVALID'));
    assert.equal((await store.jobs.transition(job.id, 'succeeded')).state, 'succeeded');
    await assert.rejects(store.jobAgents.advance(job.id, 'mid01', 'failed', { errorCode: 'X' }), code('STATE_TRANSITION_INVALID'));
    assert.deepEqual((await store.jobs.agentCounts(job.id)).succeeded, 1);
  });

  it('refuses every job-agent transition the table does not list', async () => {
    const fill = { renewalId: 'r', csrPem: CSR, caCookie: 'c', certificatePem: CERT, errorCode: 'E' };
    const routes: Record<string, string[]> = {
      pending: [], preparing: ['preparing'], csr_ready: ['preparing', 'csr_ready'], ca_pending: ['preparing', 'csr_ready', 'ca_pending'],
      issued: ['preparing', 'csr_ready', 'issued'], published: ['preparing', 'csr_ready', 'issued', 'published'],
      installing: ['preparing', 'csr_ready', 'issued', 'published', 'installing'], succeeded: ['preparing', 'csr_ready', 'issued', 'published', 'installing', 'succeeded'],
      failed: ['failed'], skipped: ['skipped'], cancelled: ['cancelled'],
    };
    let refused = 0;
    for (const from of JOB_AGENT_STATES) {
      for (const to of JOB_AGENT_STATES) {
        const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
        await store.jobs.transition(job.id, 'running');
        for (const step of routes[from] ?? []) await store.jobAgents.advance(job.id, 'mid01', step as typeof to, fill);
        if (JOB_AGENT_TRANSITIONS[from].includes(to)) {
          assert.equal((await store.jobAgents.advance(job.id, 'mid01', to, fill)).state, to, `${from} → ${to}`);
        } else {
          refused++;
          await assert.rejects(store.jobAgents.advance(job.id, 'mid01', to, fill), code('STATE_TRANSITION_INVALID'), `${from} → ${to}`);
          assert.equal((await store.jobAgents.require(job.id, 'mid01')).state, from);
        }
        const settled = (await store.jobAgents.require(job.id, 'mid01')).state;
        if (!['succeeded', 'failed', 'skipped', 'cancelled'].includes(settled)) await store.jobAgents.advance(job.id, 'mid01', 'failed', fill);
        await store.jobs.transition(job.id, 'failed');
      }
    }
    assert.ok(refused > 80, `only ${refused} refusals exercised`);
  });

  it('records steps with attempts, and lists jobs and an agent history newest first', async () => {
    const a = await store.jobs.create({ kind: 'rotate', agents: ['mid01', 'mid02'] });
    await store.jobs.transition(a.id, 'running');
    const s1 = await store.jobSteps.start(a.id, 'mid01', 'submit');
    await store.jobSteps.finish(s1.id, 'failed', { errorCode: 'CA_UNREACHABLE', errorMessage: 'timeout', detail: '{"url":"https://ca"}' });
    const s2 = await store.jobSteps.start(a.id, 'mid01', 'submit');
    assert.equal(s2.attempt, 2);
    assert.equal((await store.jobSteps.finish(s2.id, 'succeeded')).state, 'succeeded');
    await assert.rejects(store.jobSteps.finish(s2.id, 'failed'), code('STATE_TRANSITION_INVALID'));
    const chain = await store.jobSteps.start(a.id, null, 'publish-chain');
    assert.equal(chain.attempt, 1);
    await assert.rejects(store.jobSteps.start(999, 'mid01', 'submit'), code('JOB_NOT_FOUND'));
    assert.deepEqual((await store.jobSteps.list(a.id, 'mid01')).map((s) => [s.step, s.attempt, s.state, s.errorCode]), [['submit', 1, 'failed', 'CA_UNREACHABLE'], ['submit', 2, 'succeeded', null]]);
    assert.deepEqual((await store.jobSteps.list(a.id, null)).map((s) => s.step), ['publish-chain']);
    assert.equal((await store.jobSteps.list(a.id)).length, 3);
    for (const name of ['mid01', 'mid02']) await store.jobAgents.advance(a.id, name, 'skipped');
    await store.jobs.transition(a.id, 'succeeded');
    const b = await store.jobs.create({ kind: 'renew', agents: ['mid01'] });
    const c = await store.jobs.create({ kind: 'rotate-ca', agents: ['mid03'] });
    assert.deepEqual((await store.jobs.list()).map((j) => j.id), [c.id, b.id, a.id]);
    assert.deepEqual((await store.jobs.list({ limit: 2 })).map((j) => j.id), [c.id, b.id]);
    assert.deepEqual((await store.jobs.list({ agent: 'mid01' })).map((j) => j.id), [b.id, a.id]);
    assert.deepEqual((await store.jobs.list({ kind: 'rotate-ca' })).map((j) => j.id), [c.id]);
    assert.deepEqual((await store.jobs.unfinished()).map((j) => j.id), [b.id, c.id]);
    assert.deepEqual((await store.jobAgents.agentHistory('mid01')).map((h) => [h.jobId, h.kind, h.agentState]), [[b.id, 'renew', 'pending'], [a.id, 'rotate', 'skipped']]);
  });

  it('finds each agent\'s newest job in one pass, as agentHistory\'s first entry, for more names than one query takes', async () => {
    const many = Array.from({ length: 620 }, (_, i) => `bulk${String(i).padStart(3, '0')}`);
    await store.transaction(async () => { for (const name of many) await store.agents.add({ name, address: `${name}.example:7443` }); });
    const older = await store.jobs.create({ kind: 'rotate', agents: ['mid01', ...many.slice(0, 600)] });
    await store.jobs.transition(older.id, 'running');
    await store.jobAgents.advance(older.id, 'bulk599', 'preparing');
    await store.jobAgents.advance(older.id, 'bulk599', 'failed', { errorCode: 'CA_REJECTED', errorMessage: 'no' });
    await store.jobs.transition(older.id, 'failed', { code: 'CA_REJECTED', message: 'no' });
    const newer = await store.jobs.create({ kind: 'renew', agents: ['mid01', 'bulk001'] });
    const latest = await store.jobAgents.latestFor(['mid01', 'mid02', ...many]);
    assert.equal(latest.size, 601, 'mid02 and bulk600… were never in a job');
    assert.equal(latest.has('mid02'), false);
    assert.equal(latest.has('bulk600'), false);
    for (const name of ['mid01', 'bulk001', 'bulk000', 'bulk599']) {
      assert.deepEqual(latest.get(name), (await store.jobAgents.agentHistory(name, { limit: 1 }))[0], name);
    }
    assert.equal(latest.get('mid01')?.jobId, newer.id);
    assert.deepEqual([latest.get('bulk000')?.jobId, latest.get('bulk000')?.agentState], [older.id, 'skipped']);
    assert.deepEqual([latest.get('bulk599')?.agentState, latest.get('bulk599')?.errorCode], ['failed', 'CA_REJECTED']);
    assert.equal((await store.jobAgents.latestFor([])).size, 0);
  });

  it('advances along several steps in one write, checking each, all or nothing', async () => {
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    await store.jobs.transition(job.id, 'running');
    const seen: string[] = [];
    const row = await store.jobAgents.advanceAlong(job.id, 'mid01', (current) => {
      seen.push(current.state);
      return [{ to: 'preparing' }, { to: 'csr_ready', patch: { renewalId: 'r-1', csrPem: CSR } }, { to: 'issued', patch: { certificatePem: CERT } }];
    });
    assert.deepEqual(seen, ['pending']);
    assert.equal(row.state, 'issued');
    assert.deepEqual([row.renewalId, row.csrPem, row.certificatePem], ['r-1', CSR, CERT]);
    // A step the state machine forbids (issued → succeeded skips published and installing) refuses the whole path.
    await assert.rejects(store.jobAgents.advanceAlong(job.id, 'mid01', () => [{ to: 'published' }, { to: 'succeeded' }]), code('STATE_TRANSITION_INVALID'));
    assert.equal((await store.jobAgents.require(job.id, 'mid01')).state, 'issued', 'nothing of it was stored');
    assert.equal((await store.jobAgents.advanceAlong(job.id, 'mid01', () => [])).state, 'issued');
    const done = await store.jobAgents.advanceAlong(job.id, 'mid01', () => [{ to: 'published' }, { to: 'installing' }, { to: 'succeeded' }]);
    assert.equal(done.state, 'succeeded');
    assert.ok(done.outageStartedAt && done.outageEndedAt, 'the outage is stamped at both ends');
    await assert.rejects(store.jobAgents.advanceAlong(job.id, 'ghost', () => []), code('AGENT_NOT_FOUND'));
  });

  it('bounds what it stores: an oversized CSR is refused, a long error message is cut', async () => {
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    await store.jobs.transition(job.id, 'running');
    await store.jobAgents.advance(job.id, 'mid01', 'preparing');
    await assert.rejects(store.jobAgents.advance(job.id, 'mid01', 'csr_ready', { renewalId: 'r', csrPem: 'A'.repeat(2 * 1024 * 1024) }), code('INPUT_TOO_LARGE'));
    const failed = await store.jobAgents.advance(job.id, 'mid01', 'failed', { errorCode: 'X', errorMessage: 'e'.repeat(10_000) });
    assert.ok((failed.errorMessage ?? '').length <= 2001);
    await assert.rejects(store.jobs.create({ kind: 'rotate', params: { blob: 'x'.repeat(70_000) } }), code('INPUT_TOO_LARGE'));
  });
});
