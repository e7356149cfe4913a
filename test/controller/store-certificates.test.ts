import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { openStore, type Store } from '../../controller/store/index.js';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { readCertificates } from '../../pki/certificate.js';
import { PROFILES } from '../../pki/issue.js';

const code = (expected: string) => (err: MidcertError): boolean => {
  assert.equal(err.code, expected, err.message);
  return true;
};

describe('controller/store: certificates', () => {
  let dir: string;
  let store: Store;
  let ca: LabCa;
  let clock: number;
  const leaf = async (cn: string): Promise<string> => (await ca.issueIdentity(`CN=${cn},O=Acme`, PROFILES.client, { keySpec: { type: 'ec', curve: 'P-256' } })).certPem;

  before(async () => { ca = await createLabCa('Store Test'); });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-store-certs-'));
    clock = Date.parse('2030-06-01T10:00:00Z');
    store = await openStore(dir, { now: () => new Date((clock += 1000)) });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records an issued leaf with fields read from the certificate itself', async () => {
    const pem = await leaf('mid01');
    const cert = readCertificates(Buffer.from(pem))[0];
    assert.ok(cert);
    const job = await store.jobs.create({ kind: 'rotate' });
    // A chain after the leaf is ignored: the record is the leaf.
    const rec = await store.certificates.recordIssued({ agentName: 'mid01', pem: pem + ca.chainPem, jobId: job.id });
    assert.equal(rec.sha256, cert.sha256);
    assert.equal(rec.subject, 'CN=mid01,O=Acme');
    assert.equal(rec.issuer, cert.issuerText);
    assert.equal(rec.serial, cert.serial);
    assert.equal(rec.notAfter, cert.notAfter.toISOString());
    assert.equal(rec.status, 'issued');
    assert.equal(rec.jobId, job.id);
    assert.equal(rec.pem, pem);
    assert.deepEqual(await store.certificates.get(cert.sha256.toUpperCase()), rec);
    await assert.rejects(store.certificates.recordIssued({ agentName: 'mid01', pem: 'not a pem' }), code('CERT_MALFORMED'));
  });

  it('is idempotent for the same agent and refuses the same certificate for another', async () => {
    const pem = await leaf('mid01');
    const first = await store.certificates.recordIssued({ agentName: 'mid01', pem });
    assert.deepEqual(await store.certificates.recordIssued({ agentName: 'mid01', pem }), first);
    await assert.rejects(store.certificates.recordIssued({ agentName: 'mid02', pem }), code('RECORD_CONFLICT'));
    assert.equal((await store.certificates.history('mid01')).length, 1);
  });

  it('moves issued → installed → retired and refuses other status changes', async () => {
    const a = await store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    const b = await store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    await assert.rejects(store.certificates.setStatus(a.sha256, 'issued'), code('STATE_TRANSITION_INVALID'));
    const installed = await store.certificates.setStatus(a.sha256, 'installed');
    assert.ok(installed.installedAt);
    await assert.rejects(store.certificates.setStatus(a.sha256, 'installed'), code('STATE_TRANSITION_INVALID'));
    const retired = await store.certificates.setStatus(a.sha256, 'retired');
    assert.ok(retired.retiredAt);
    await assert.rejects(store.certificates.setStatus(a.sha256, 'installed'), code('STATE_TRANSITION_INVALID'));
    assert.equal((await store.certificates.setStatus(b.sha256, 'retired')).status, 'retired'); // never installed
    await assert.rejects(store.certificates.setStatus('00'.repeat(32), 'retired'), code('CERTIFICATE_NOT_FOUND'));
    // With the status the caller read (`from`): still compare-and-set, and still named when it is gone.
    await assert.rejects(store.certificates.setStatus(installed.sha256, 'retired', 'installed'), code('STATE_TRANSITION_INVALID'), 'it is retired by now');
    await assert.rejects(store.certificates.setStatus('00'.repeat(32), 'installed', 'issued'), code('CERTIFICATE_NOT_FOUND'));
  });

  it('records a rotated leaf issued and installed in one write, with the same audit rows as the two steps', async () => {
    const pem = await leaf('mid01');
    const job = await store.jobs.create({ kind: 'rotate' });
    const rec = await store.certificates.recordInstalled({ agentName: 'mid01', pem, jobId: job.id });
    assert.equal(rec.status, 'installed');
    assert.ok(rec.installedAt);
    assert.equal(rec.issuedAt, rec.installedAt);
    assert.equal(rec.jobId, job.id);
    assert.deepEqual(await store.certificates.get(rec.sha256), rec);
    const issue = await store.audit.list({ target: 'agent:mid01', action: 'certificate.issue' });
    assert.deepEqual(issue.map((a) => [a.result, a.params.sha256, a.params.jobId]), [['ok', rec.sha256, job.id]]);
    const status = await store.audit.list({ target: `certificate:${rec.sha256}`, action: 'certificate.status' });
    assert.deepEqual(status.map((a) => [a.result, a.params.to]), [['ok', 'installed']]);
    // A resumed job records it again: the same record, no new audit rows.
    assert.deepEqual(await store.certificates.recordInstalled({ agentName: 'mid01', pem, jobId: job.id }), rec);
    assert.equal((await store.audit.list({ action: 'certificate.issue' })).length, 1);
    await assert.rejects(store.certificates.recordInstalled({ agentName: 'mid02', pem }), code('RECORD_CONFLICT'));
    await assert.rejects(store.certificates.recordInstalled({ agentName: 'mid01', pem: 'not a pem' }), code('CERT_MALFORMED'));
    // Recorded as issued before (an older controller): it moves to installed.
    const older = await store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    const moved = await store.certificates.recordInstalled({ agentName: 'mid01', pem: older.pem });
    assert.equal(moved.status, 'installed');
    assert.equal(moved.issuedAt, older.issuedAt);
    // A retired one is not brought back.
    await store.certificates.setStatus(moved.sha256, 'retired');
    await assert.rejects(store.certificates.recordInstalled({ agentName: 'mid01', pem: older.pem }), code('STATE_TRANSITION_INVALID'));
  });

  it('answers the latest certificate per agent, per status, and the history newest first', async () => {
    const r1 = await store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    await store.certificates.setStatus(r1.sha256, 'installed');
    const r2 = await store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    const other = await store.certificates.recordIssued({ agentName: 'mid02', pem: await leaf('mid02') });
    assert.equal((await store.certificates.latest('mid01'))?.sha256, r2.sha256);
    assert.equal((await store.certificates.latest('mid01', 'installed'))?.sha256, r1.sha256);
    assert.equal(await store.certificates.latest('mid03'), undefined);
    assert.deepEqual((await store.certificates.history('mid01')).map((c) => c.sha256), [r2.sha256, r1.sha256]);
    assert.deepEqual((await store.certificates.latestPerAgent()).map((c) => [c.agentName, c.sha256]), [['mid01', r2.sha256], ['mid02', other.sha256]]);
    assert.deepEqual((await store.certificates.latestPerAgent('installed')).map((c) => c.sha256), [r1.sha256]);
    const audit = await store.audit.list({ target: 'agent:mid01', action: 'certificate.issue' });
    assert.equal(audit.length, 2);
    assert.equal(audit[0]?.params.sha256, r2.sha256);
  });
});
