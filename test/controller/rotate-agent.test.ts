import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import type { AgentPort, CaPort, InstallOutcome } from '../../controller/orchestrator/ports.js';
import { rotateAgent, type RotationDeps } from '../../controller/orchestrator/rotate-agent.js';
import { openStore, type Store } from '../../controller/store/index.js';
import { readCertificates } from '../../pki/certificate.js';
import { buildCsr } from '../../pki/csr.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { fakeAgentPort } from '../helpers/serve-fixtures.js';

/**
 * One MID inside a job (rotate-agent.ts): the rotated leaf's store record is written after the
 * MID's `succeeded` row; a record that never landed is written when the job is resumed; a leaf
 * recorded for another agent is refused.
 */
describe('controller rotateAgent: the installed leaf\'s record', () => {
  let pki: LabPki;
  let dir: string;
  let store: Store;
  before(async () => { pki = await makeLabPki(); });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-rotagent-'));
    store = await openStore(dir, { actor: 'test' });
    await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
  });
  afterEach(async () => { await store.close(); await rm(dir, { recursive: true, force: true }); });

  const OPTIONS = { caTimeoutMs: 1000, caPollMs: 10, upTimeoutMs: 1000 };

  function agentPort(): AgentPort {
    return fakeAgentPort(5, {
      prepare: async () => ({ csrPem: buildCsr(pki.leaf.key, { subject: 'CN=mid01' }) }),
      install: async (_id, certificatePem): Promise<InstallOutcome> => ({ ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: readCertificates(Buffer.from(certificatePem))[0]?.sha256 ?? '' }),
    });
  }
  const ca: CaPort = {
    submit: async (csrPem) => ({ kind: 'issued', certificatePem: pki.ca.signCsr(csrPem), chainPem: pki.ca.chainPem }),
    poll: async () => ({ kind: 'rejected', reason: 'unused' }),
  };
  const deps = (): RotationDeps => ({ store, dial: () => agentPort(), ca, instance: undefined, onEvent: () => undefined });

  async function newJob(): Promise<number> {
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    await store.jobs.transition(job.id, 'running');
    return job.id;
  }

  it('writes the certificate record once the succeeded row is written, and reports the leaf from it', async () => {
    const jobId = await newJob();
    const order: string[] = [];
    const advanceFrom = store.jobAgents.advanceFrom;
    const recordInstalled = store.certificates.recordInstalled;
    store.jobAgents.advanceFrom = async (expected, plan) => {
      const to = plan(expected).at(-1)?.to;
      if (to === 'succeeded') order.push('succeeded: start');
      const row = await advanceFrom(expected, plan);
      if (to === 'succeeded') order.push('succeeded: done');
      return row;
    };
    store.certificates.recordInstalled = async (input) => { order.push('record: start'); return recordInstalled(input); };
    const record = await rotateAgent(deps(), jobId, { name: 'mid01' } as never, OPTIONS);
    assert.equal(record.state, 'verified');
    assert.deepEqual(order, ['succeeded: start', 'succeeded: done', 'record: start']);
    const cert = await store.certificates.get(record.issued?.sha256 ?? '');
    assert.equal(cert?.status, 'installed');
    assert.equal(cert?.jobId, jobId);
    assert.equal(record.issued?.notAfter, cert?.notAfter);
    assert.equal((await store.jobAgents.require(jobId, 'mid01')).state, 'succeeded');
  });

  it('a job resumed at a succeeded row whose record never landed records it then', async () => {
    const jobId = await newJob();
    const recordInstalled = store.certificates.recordInstalled;
    store.certificates.recordInstalled = async () => { throw new MidcertError('STORE_UNAVAILABLE', 'the database went away'); };
    await assert.rejects(rotateAgent(deps(), jobId, { name: 'mid01' } as never, OPTIONS), /went away/);
    store.certificates.recordInstalled = recordInstalled;
    const row = await store.jobAgents.require(jobId, 'mid01');
    assert.equal(row.state, 'succeeded', 'the MID runs the new leaf: its row says so');
    const sha256 = readCertificates(Buffer.from(row.certificatePem ?? ''))[0]?.sha256 ?? '';
    assert.equal(await store.certificates.get(sha256), undefined);
    const resumed = await rotateAgent(deps(), jobId, { name: 'mid01' } as never, OPTIONS);
    assert.equal(resumed.state, 'verified');
    assert.equal(resumed.issued?.sha256, sha256);
    assert.equal((await store.certificates.get(sha256))?.status, 'installed');
  });

  it('a leaf already recorded for another agent fails the MID\'s report with RECORD_CONFLICT', async () => {
    await store.agents.add({ name: 'mid02', address: '127.0.0.1:2' });
    const jobId = await newJob();
    const fixed = pki.ca.signCsr(buildCsr(pki.leaf.key, { subject: 'CN=mid01' }));
    await store.certificates.recordIssued({ agentName: 'mid02', pem: fixed });
    const sameLeaf: CaPort = { ...ca, submit: async () => ({ kind: 'issued', certificatePem: fixed, chainPem: pki.ca.chainPem }) };
    await assert.rejects(rotateAgent({ ...deps(), ca: sameLeaf }, jobId, { name: 'mid01' } as never, OPTIONS), (err: unknown) => (err as MidcertError).code === 'RECORD_CONFLICT');
  });
});
