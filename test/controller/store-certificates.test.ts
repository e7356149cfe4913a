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
    store = openStore(dir, { now: () => new Date((clock += 1000)) });
  });
  afterEach(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records an issued leaf with fields read from the certificate itself', async () => {
    const pem = await leaf('mid01');
    const cert = readCertificates(Buffer.from(pem))[0];
    assert.ok(cert);
    const job = store.jobs.create({ kind: 'rotate' });
    // A chain after the leaf is ignored: the record is the leaf.
    const rec = store.certificates.recordIssued({ agentName: 'mid01', pem: pem + ca.chainPem, jobId: job.id });
    assert.equal(rec.sha256, cert.sha256);
    assert.equal(rec.subject, 'CN=mid01,O=Acme');
    assert.equal(rec.issuer, cert.issuerText);
    assert.equal(rec.serial, cert.serial);
    assert.equal(rec.notAfter, cert.notAfter.toISOString());
    assert.equal(rec.status, 'issued');
    assert.equal(rec.jobId, job.id);
    assert.equal(rec.pem, pem);
    assert.deepEqual(store.certificates.get(cert.sha256.toUpperCase()), rec);
    assert.throws(() => store.certificates.recordIssued({ agentName: 'mid01', pem: 'not a pem' }), code('CERT_MALFORMED'));
  });

  it('is idempotent for the same agent and refuses the same certificate for another', async () => {
    const pem = await leaf('mid01');
    const first = store.certificates.recordIssued({ agentName: 'mid01', pem });
    assert.deepEqual(store.certificates.recordIssued({ agentName: 'mid01', pem }), first);
    assert.throws(() => store.certificates.recordIssued({ agentName: 'mid02', pem }), code('RECORD_CONFLICT'));
    assert.equal(store.certificates.history('mid01').length, 1);
  });

  it('moves issued → installed → retired and refuses other status changes', async () => {
    const a = store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    const b = store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    assert.throws(() => store.certificates.setStatus(a.sha256, 'issued'), code('STATE_TRANSITION_INVALID'));
    const installed = store.certificates.setStatus(a.sha256, 'installed');
    assert.ok(installed.installedAt);
    assert.throws(() => store.certificates.setStatus(a.sha256, 'installed'), code('STATE_TRANSITION_INVALID'));
    const retired = store.certificates.setStatus(a.sha256, 'retired');
    assert.ok(retired.retiredAt);
    assert.throws(() => store.certificates.setStatus(a.sha256, 'installed'), code('STATE_TRANSITION_INVALID'));
    assert.equal(store.certificates.setStatus(b.sha256, 'retired').status, 'retired'); // never installed
    assert.throws(() => store.certificates.setStatus('00'.repeat(32), 'retired'), code('CERTIFICATE_NOT_FOUND'));
  });

  it('answers the latest certificate per agent, per status, and the history newest first', async () => {
    const r1 = store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    store.certificates.setStatus(r1.sha256, 'installed');
    const r2 = store.certificates.recordIssued({ agentName: 'mid01', pem: await leaf('mid01') });
    const other = store.certificates.recordIssued({ agentName: 'mid02', pem: await leaf('mid02') });
    assert.equal(store.certificates.latest('mid01')?.sha256, r2.sha256);
    assert.equal(store.certificates.latest('mid01', 'installed')?.sha256, r1.sha256);
    assert.equal(store.certificates.latest('mid03'), undefined);
    assert.deepEqual(store.certificates.history('mid01').map((c) => c.sha256), [r2.sha256, r1.sha256]);
    assert.deepEqual(store.certificates.latestPerAgent().map((c) => [c.agentName, c.sha256]), [['mid01', r2.sha256], ['mid02', other.sha256]]);
    assert.deepEqual(store.certificates.latestPerAgent('installed').map((c) => c.sha256), [r1.sha256]);
    const audit = store.audit.list({ target: 'agent:mid01', action: 'certificate.issue' });
    assert.equal(audit.length, 2);
    assert.equal(audit[0]?.params.sha256, r2.sha256);
  });
});
