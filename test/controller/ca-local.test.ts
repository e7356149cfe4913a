import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCaAdapter, initLocalCa } from '../../controller/ca/index.js';
import { createLabCa, saveLabCa, type LabCa } from '../../lab/lab-ca.js';
import { readCertificates } from '../../pki/certificate.js';
import { scanPem, toPem } from '../../pki/pem.js';
import { assertIssued, assertOutcome, caConfig, newCsr, tempDir } from './ca-fixtures.js';

const DAY = 86_400_000;
const execFileAsync = promisify(execFile);

describe('controller/ca local: the file CA in the data dir', function () {
  this.timeout(60_000);
  let dataDir: string;

  before(async () => {
    dataDir = await tempDir('ca-local');
  });
  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('initLocalCa creates root and intermediate with private keys 0600, and leaves an existing CA alone', async () => {
    const first = await initLocalCa(dataDir);
    assert.deepEqual(first, { dir: join(dataDir, 'ca'), created: true });
    for (const key of ['root.key', 'intermediate.key']) assert.equal((await stat(join(first.dir, key))).mode & 0o777, 0o600, key);
    assert.equal((await stat(first.dir)).mode & 0o777, 0o700);
    const root = await readFile(join(first.dir, 'root.pem'), 'utf8');
    const second = await initLocalCa(dataDir);
    assert.equal(second.created, false);
    assert.equal(await readFile(join(first.dir, 'root.pem'), 'utf8'), root, 'the root was not replaced');
  });

  it('refuses to "repair" a CA directory that lost files (no new keys over old ones)', async () => {
    const other = await tempDir('ca-local-partial');
    try {
      await initLocalCa(other);
      await unlink(join(other, 'ca', 'chain.pem'));
      const key = await readFile(join(other, 'ca', 'root.key'), 'utf8');
      await assert.rejects(initLocalCa(other), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /missing chain\.pem/.test(err.message));
      assert.equal(await readFile(join(other, 'ca', 'root.key'), 'utf8'), key);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('throws CONFIG_INVALID naming `midcert init` when the data dir has no CA', async () => {
    const empty = await tempDir('ca-local-empty');
    try {
      await assert.rejects(createCaAdapter(caConfig({ type: 'local' }), { dataDir: empty }),
        (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /midcert init/.test(err.message));
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('issues a client certificate for the CSR key, with validityDays and the chain to the local root', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'local', validityDays: 30 }), { dataDir });
    assert.equal(adapter.type, 'local');
    const { key, csr } = await newCsr('CN=mid07,O=Acme');
    const rootPem = await readFile(join(dataDir, 'ca', 'root.pem'));
    const outcome = await adapter.submit(csr, { subject: 'CN=mid07,O=Acme', midName: 'mid07' });
    const { leaf, chain } = assertIssued(outcome, key, readCertificates(rootPem)[0]?.sha256);
    assert.equal(leaf.subjectText, 'CN=mid07,O=Acme');
    assert.deepEqual(leaf.keyUsage, ['digitalSignature', 'keyEncipherment']);
    assert.equal(chain.length, 2, 'intermediate + root');
    const days = (leaf.notAfter.getTime() - leaf.notBefore.getTime()) / DAY;
    assert.ok(Math.abs(days - 30) < 0.01, `validity ${days} days`);

    // A real peer agrees: openssl verifies it as an SSL client certificate.
    const dir = await tempDir('ca-local-verify');
    try {
      const issued = outcome as { certificatePem: string; chainPem: string };
      const [intermediate, root] = scanPem(issued.chainPem).map((b) => toPem('CERTIFICATE', b.der));
      await writeFile(join(dir, 'leaf.pem'), issued.certificatePem);
      await writeFile(join(dir, 'int.pem'), intermediate as string);
      await writeFile(join(dir, 'root.pem'), root as string);
      const { stdout } = await execFileAsync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'int.pem'), join(dir, 'leaf.pem')]);
      assert.match(stdout, /leaf\.pem: OK/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('never issues past the issuing CA certificate', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'local', validityDays: 3650 }), { dataDir });
    const { key, csr } = await newCsr();
    const { leaf, chain } = assertIssued(await adapter.submit(csr, { subject: 'CN=mid01' }), key);
    assert.ok(leaf.notAfter.getTime() <= (chain[0]?.notAfter.getTime() ?? 0));
  });

  it('signs from a lab CA directory given as ca.dir', async () => {
    const labDir = await tempDir('ca-local-lab');
    try {
      const lab: LabCa = await createLabCa('Pointed');
      await saveLabCa(lab, labDir);
      const adapter = await createCaAdapter(caConfig({ type: 'local', dir: labDir }), { dataDir });
      const { key, csr } = await newCsr();
      const { leaf } = assertIssued(await adapter.submit(csr, { subject: 'CN=mid01' }), key, lab.root.cert.sha256);
      assert.equal(leaf.issuerText, lab.intermediate.cert.subjectText);
    } finally {
      await rm(labDir, { recursive: true, force: true });
    }
  });

  it('rejects a CSR whose signature does not verify, and one that is not a CSR', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'local' }), { dataDir });
    const { csr } = await newCsr();
    const der = Buffer.from(scanPem(csr)[0]?.der ?? []);
    der[der.length - 5] = (der[der.length - 5] as number) ^ 0xff; // inside the signature bits
    assertOutcome(await adapter.submit(toPem('CERTIFICATE REQUEST', der), { subject: 'CN=mid01' }), 'rejected', /signature does not verify/);
    assertOutcome(await adapter.submit('hello', { subject: 'CN=mid01' }), 'rejected', /CSR cannot be parsed/);
  });

  it('has nothing to poll', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'local' }), { dataDir });
    assertOutcome(await adapter.poll('local:1'), 'rejected', /never leaves a request pending/);
  });
});
