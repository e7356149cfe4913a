import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaAdapter } from '../../controller/ca/adapter.js';
import { createCaAdapter } from '../../controller/ca/index.js';
import { keyIdOf } from '../../controller/ca/verify.js';
import type { CaConfig } from '../../controller/config.js';
import { startAdcs, type RunningAdcs } from '../../lab/adcs/index.js';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { assertIssued, assertOutcome, caConfig, freePort, newCsr, tempDir } from './ca-fixtures.js';

const USER = 'LAB\\mid-enroll';
const PASSWORD = 'correct horse battery';

describe('controller/ca adcs: certsrv web enrollment against the ADCS lab', function () {
  this.timeout(60_000);
  let dir: string;
  let ca: LabCa;
  let adcs: RunningAdcs;

  before(async () => {
    dir = await tempDir('ca-adcs');
    ca = await createLabCa('ADCS Adapter Test');
    const server = await ca.issueIdentity('CN=adcs.lab.local', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    adcs = await startAdcs({
      ca,
      tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem },
      users: [{ username: USER, password: PASSWORD }],
      clientCaPem: ca.chainPem,
      templates: {
        MIDServerClient: { profile: 'client', validityDays: 365, mode: 'issue' },
        MIDServerApproval: { profile: 'client', validityDays: 365, mode: 'pending' },
        WebServer: { profile: 'server', validityDays: 730, mode: 'issue' },
        Blocked: { profile: 'client', validityDays: 365, mode: 'deny' },
      },
    });
    await writeFile(join(dir, 'password'), `${PASSWORD}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'wrong-password'), 'Tr0ub4dor&3\n', { mode: 0o600 });
    await writeFile(join(dir, 'trust.pem'), ca.root.certPem);
    await writeFile(join(dir, 'chain.pem'), ca.chainPem);
    const client = await ca.issueIdentity('CN=midcert-controller', PROFILES.client);
    await writeFile(join(dir, 'client.pem'), client.certPem);
    await writeFile(join(dir, 'client.key'), client.keyPem, { mode: 0o600 });
  });

  after(async () => {
    await adcs?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const config = (extra: Partial<CaConfig> = {}): CaConfig => caConfig({
    type: 'adcs', url: adcs.url, template: 'MIDServerClient', username: USER, passwordFile: join(dir, 'password'), caFile: join(dir, 'trust.pem'), ...extra,
  });
  const adapter = (extra: Partial<CaConfig> = {}): Promise<CaAdapter> => createCaAdapter(config(extra), { dataDir: dir });
  const pathsSince = (start: number): string[] => adcs.accessLog().slice(start).map((e) => e.path);

  it('issues from the template and builds the chain from certcarc.asp + certnew.p7b', async () => {
    const ca1 = await adapter();
    assert.equal(ca1.type, 'adcs');
    const { key, csr } = await newCsr('CN=mid11,O=Acme');
    const start = adcs.accessLog().length;
    const { leaf, chain } = assertIssued(await ca1.submit(csr, { subject: 'CN=mid11,O=Acme' }), key, ca.root.cert.sha256);
    assert.equal(leaf.subjectText, 'CN=mid11,O=Acme');
    assert.deepEqual(chain.map((c) => c.sha256), [ca.intermediate.cert.sha256, ca.root.cert.sha256]);
    const row = adcs.requests().at(-1);
    assert.equal(row?.template, 'MIDServerClient');
    assert.equal(row?.requester, USER);
    const paths = pathsSince(start);
    assert.deepEqual(paths.map((p) => p.split('?')[0]), ['/certsrv/certfnsh.asp', '/certsrv/certnew.cer', '/certsrv/certcarc.asp', '/certsrv/certnew.p7b']);
    assert.match(paths[1] as string, /ReqID=\d+&Enc=b64/);
    assert.match(paths[3] as string, /ReqID=CACert&Renewal=0&Enc=bin/);
    for (const entry of adcs.accessLog().slice(start)) assert.match(entry.userAgent, /^Mozilla\/5\.0/);
  });

  it('asks certnew.p7b for the newest CA renewal after the CA was renewed', async () => {
    const renewals = await adcs.renewCa();
    const { key, csr } = await newCsr();
    const start = adcs.accessLog().length;
    assertIssued(await (await adapter()).submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
    assert.ok(pathsSince(start).some((p) => p.includes(`Renewal=${renewals}&`)), `Renewal=${renewals} requested`);
  });

  it('uses chainFile instead of asking the CA for its chain when one is configured', async () => {
    const { key, csr } = await newCsr();
    const start = adcs.accessLog().length;
    assertIssued(await (await adapter({ chainFile: join(dir, 'chain.pem') })).submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
    assert.ok(!pathsSince(start).some((p) => p.includes('certnew.p7b') || p.includes('certcarc.asp')));
  });

  it('holds a request pending for approval and issues it on the poll after the CA manager approves', async () => {
    const ca1 = await adapter({ template: 'MIDServerApproval' });
    const { key, csr } = await newCsr();
    const pending = assertOutcome(await ca1.submit(csr, { subject: 'CN=mid01' }), 'pending');
    const row = adcs.requests().at(-1);
    assert.equal(row?.status, 'pending');
    assert.match(pending.cookie, new RegExp(`^adcs:${row?.id}:`), 'the cookie carries the certsrv request id');
    assertOutcome(await ca1.poll(pending.cookie), 'pending');
    await adcs.approve(row?.id as number);
    assertIssued(await ca1.poll(pending.cookie), key, ca.root.cert.sha256);
  });

  it('turns an officer denial of a pending request into rejected with the disposition', async () => {
    const ca1 = await adapter({ template: 'MIDServerApproval' });
    const { csr } = await newCsr();
    const pending = assertOutcome(await ca1.submit(csr, { subject: 'CN=mid01' }), 'pending');
    const id = adcs.requests().at(-1)?.id as number;
    await adcs.deny(id, 'not a MID host');
    assertOutcome(await ca1.poll(pending.cookie), 'rejected', new RegExp(`denied request ${id}: Denied by .*not a MID host`));
  });

  it('rejects with the policy module disposition when the template denies', async () => {
    const { csr } = await newCsr();
    assertOutcome(await (await adapter({ template: 'Blocked' })).submit(csr, { subject: 'CN=mid01' }), 'rejected', /ADCS refused the request \(template Blocked\): Denied by Policy Module/);
  });

  it('rejects an unknown template with the CA\'s own words', async () => {
    const { csr } = await newCsr();
    assertOutcome(await (await adapter({ template: 'NoSuchTemplate' })).submit(csr, { subject: 'CN=mid01' }), 'rejected', /not supported by the Active Directory Certificate Services Policy: NoSuchTemplate/);
  });

  it('catches a template without Client Authentication (WebServer) by the EKU check', async () => {
    const { csr } = await newCsr();
    const outcome = await (await adapter({ template: 'WebServer' })).submit(csr, { subject: 'CN=mid01' });
    assertOutcome(outcome, 'rejected', /the CA issued a certificate without Client Authentication \(EKU: serverAuth; template WebServer\?\)/);
    assert.equal(adcs.requests().at(-1)?.status, 'issued', 'ADCS did issue it; the adapter refused to pass it on');
  });

  it('rejects a wrong password as an authentication failure without retrying or echoing it', async () => {
    const { csr } = await newCsr();
    const start = adcs.accessLog().length;
    const outcome = assertOutcome(await (await adapter({ passwordFile: join(dir, 'wrong-password') })).submit(csr, { subject: 'CN=mid01' }), 'rejected', /authentication to the CA at https:\/\/127\.0\.0\.1:\d+ failed \(HTTP 401\); check ca\.username and ca\.passwordFile/);
    assert.ok(!outcome.reason.includes('Tr0ub4dor'));
    assert.equal(adcs.accessLog().length - start, 1, 'one attempt only');
  });

  it('authenticates with a client certificate instead of a password', async () => {
    const ca1 = await adapter({ username: undefined, passwordFile: undefined, clientCertFile: join(dir, 'client.pem'), clientKeyFile: join(dir, 'client.key') });
    const { key, csr } = await newCsr();
    assertIssued(await ca1.submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
    const row = adcs.requests().at(-1);
    assert.equal(row?.authMethod, 'client-certificate');
    assert.equal(row?.requester, 'midcert-controller');
  });

  it('refuses configs it cannot work with, at creation', async () => {
    const invalid = (extra: Partial<CaConfig>, message: RegExp): Promise<void> =>
      assert.rejects(adapter(extra), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && message.test(err.message));
    await invalid({ template: undefined }, /ca\.template is required/);
    await invalid({ username: undefined, passwordFile: undefined }, /needs credentials/);
    await invalid({ passwordFile: undefined }, /go together/);
    await invalid({ clientCertFile: join(dir, 'client.pem') }, /clientCertFile and ca\.clientKeyFile go together/);
  });

  it('does not trust the CA\'s TLS certificate without caFile (system roots) and says so', async () => {
    const { csr } = await newCsr();
    assertOutcome(await (await adapter({ caFile: undefined })).submit(csr, { subject: 'CN=mid01' }), 'unreachable', /not trusted .*ca\.caFile/);
  });

  it('refuses a poll cookie from another adapter, and a cookie whose certificate has another key', async () => {
    const ca1 = await adapter({ template: 'MIDServerApproval' });
    assertOutcome(await ca1.poll('est:AAAA'), 'rejected', /not one this adcs adapter handed out/);
    const { csr } = await newCsr();
    const pending = assertOutcome(await ca1.submit(csr, { subject: 'CN=mid01' }), 'pending');
    await adcs.approve(adcs.requests().at(-1)?.id as number);
    const other = await newCsr();
    const forged = pending.cookie.replace(/:[^:]+$/, `:${keyIdOf(other.key)}`);
    assertOutcome(await ca1.poll(forged), 'rejected', /different public key than the CSR's/);
  });

  it('is unreachable when nothing listens', async () => {
    const port = await freePort();
    const { csr } = await newCsr();
    assertOutcome(await (await adapter({ url: `https://127.0.0.1:${port}/certsrv` })).submit(csr, { subject: 'CN=mid01' }), 'unreachable', /ECONNREFUSED/);
  });
});
