import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaAdapter } from '../../controller/ca/adapter.js';
import { createCaAdapter } from '../../controller/ca/index.js';
import { retryAfterSeconds } from '../../controller/ca/http.js';
import type { CaConfig } from '../../controller/config.js';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { assertIssued, assertOutcome, caConfig, freePort, newCsr, tempDir } from './ca-fixtures.js';
import { startEstServer, type RunningEst } from './ca-est-server.js';

const USER: [string, string] = ['mid-enroll', 's3cret-est-pass'];

describe('controller/ca est: RFC 7030 simpleenroll against the stand-in EST server', function () {
  this.timeout(60_000);
  let dir: string;
  let ca: LabCa;
  let est: RunningEst;

  before(async () => {
    dir = await tempDir('ca-est');
    ca = await createLabCa('EST Test');
    const server = await ca.issueIdentity('CN=est.lab.local', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    est = await startEstServer({ ca, tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem }, user: USER, clientCaPem: ca.chainPem });
    await writeFile(join(dir, 'password'), `${USER[1]}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'wrong-password'), 'nope-nope\n', { mode: 0o600 });
    await writeFile(join(dir, 'trust.pem'), ca.root.certPem);
    await writeFile(join(dir, 'chain.pem'), ca.chainPem);
    const client = await ca.issueIdentity('CN=midcert-controller', PROFILES.client);
    await writeFile(join(dir, 'client.pem'), client.certPem);
    await writeFile(join(dir, 'client.key'), client.keyPem, { mode: 0o600 });
  });

  after(async () => {
    await est?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const adapter = (extra: Partial<CaConfig> = {}): Promise<CaAdapter> => createCaAdapter(caConfig({
    type: 'est', url: est.url, username: USER[0], passwordFile: join(dir, 'password'), caFile: join(dir, 'trust.pem'), ...extra,
  }), { dataDir: dir });

  it('200: enrolls with a base64 PKCS#10 body and builds the chain from /cacerts', async () => {
    const ca1 = await adapter();
    assert.equal(ca1.type, 'est');
    const { key, csr } = await newCsr('CN=mid31,O=Acme');
    const start = est.requests.length;
    const { leaf, chain } = assertIssued(await ca1.submit(csr, { subject: 'CN=mid31,O=Acme' }), key, ca.root.cert.sha256);
    assert.equal(leaf.subjectText, 'CN=mid31,O=Acme');
    assert.deepEqual(chain.map((c) => c.sha256), [ca.intermediate.cert.sha256, ca.root.cert.sha256]);
    const [enroll, cacerts] = est.requests.slice(start);
    assert.deepEqual([enroll?.method, enroll?.path, enroll?.status], ['POST', '/.well-known/est/simpleenroll', 200]);
    assert.equal(enroll?.contentType, 'application/pkcs10');
    assert.equal(enroll?.transferEncoding, 'base64');
    assert.ok((enroll?.longestLine ?? 99) <= 76, 'RFC 2045 base64 lines');
    assert.equal(enroll?.auth, 'basic');
    assert.deepEqual([cacerts?.method, cacerts?.path], ['GET', '/.well-known/est/cacerts']);
  });

  it('202 + Retry-After: pending, and each poll repeats the same request until it is issued', async () => {
    const ca1 = await adapter({ profile: 'pending' });
    const { key, csr } = await newCsr();
    const start = est.requests.length;
    const first = assertOutcome(await ca1.submit(csr, { subject: 'CN=mid01' }), 'pending');
    assert.equal(first.retryAfterSeconds, 1);
    assert.match(first.cookie, /^est:/);
    const second = assertOutcome(await ca1.poll(first.cookie), 'pending');
    assertIssued(await ca1.poll(second.cookie), key, ca.root.cert.sha256);
    const enrolls = est.requests.slice(start).filter((r) => r.path === '/.well-known/est/pending/simpleenroll');
    assert.deepEqual(enrolls.map((r) => r.status), [202, 202, 200]);
    assert.equal(new Set(enrolls.map((r) => r.csrSha256)).size, 1, 'the same CSR every time');
  });

  it('401: a wrong password is rejected as an authentication failure, password not echoed', async () => {
    const { csr } = await newCsr();
    const outcome = assertOutcome(await (await adapter({ passwordFile: join(dir, 'wrong-password') })).submit(csr, { subject: 'CN=mid01' }), 'rejected', /authentication to the CA at https:\/\/127\.0\.0\.1:\d+ failed \(HTTP 401\)/);
    assert.ok(!outcome.reason.includes('nope-nope'));
  });

  it('authenticates with a TLS client certificate', async () => {
    const { key, csr } = await newCsr();
    const start = est.requests.length;
    assertIssued(await (await adapter({ username: undefined, passwordFile: undefined, clientCertFile: join(dir, 'client.pem'), clientKeyFile: join(dir, 'client.key') }))
      .submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
    assert.equal(est.requests[start]?.auth, 'client-certificate');
  });

  it('rejects a certificate without clientAuth from the server\'s profile', async () => {
    const { csr } = await newCsr();
    assertOutcome(await (await adapter({ profile: 'server' })).submit(csr, { subject: 'CN=mid01' }), 'rejected', /without Client Authentication \(EKU: serverAuth/);
  });

  it('takes the chain from chainFile when one is configured (no /cacerts call)', async () => {
    const { key, csr } = await newCsr();
    const start = est.requests.length;
    assertIssued(await (await adapter({ chainFile: join(dir, 'chain.pem') })).submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
    assert.ok(!est.requests.slice(start).some((r) => r.path.endsWith('/cacerts')));
  });

  it('503 + Retry-After is unreachable with the server\'s delay; a closed port is unreachable', async () => {
    const { csr } = await newCsr();
    const busy = assertOutcome(await (await adapter({ profile: 'busy' })).submit(csr, { subject: 'CN=mid01' }), 'unreachable', /HTTP 503: the CA is busy/);
    assert.equal(busy.retryAfterSeconds, 5);
    const port = await freePort();
    assertOutcome(await (await adapter({ url: `https://127.0.0.1:${port}` })).submit(csr, { subject: 'CN=mid01' }), 'unreachable', /ECONNREFUSED/);
  });

  it('refuses plain http:// and a label with a slash (CONFIG_INVALID)', async () => {
    await assert.rejects(adapter({ url: 'http://127.0.0.1:1' }), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /https/.test(err.message));
    await assert.rejects(adapter({ profile: 'a/b' }), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID');
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(retryAfterSeconds({ 'retry-after': '120' }, now), 120);
    assert.equal(retryAfterSeconds({ 'retry-after': 'Thu, 01 Jan 2026 00:01:30 GMT' }, now), 90);
    assert.equal(retryAfterSeconds({ 'retry-after': 'soon' }, now), undefined);
  });
});
