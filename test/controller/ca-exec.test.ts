import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CaAdapter } from '../../controller/ca/adapter.js';
import { createCaAdapter } from '../../controller/ca/index.js';
import type { CaConfig } from '../../controller/config.js';
import { createLabCa, saveLabCa, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { assertIssued, assertOutcome, caConfig, newCsr, tempDir } from './ca-fixtures.js';

const HELPER = join(dirname(fileURLToPath(import.meta.url)), 'ca-exec-helper.sh');
const LOCAL_SUBMIT = '/usr/lib/certmonger/local-submit';
const execFileAsync = promisify(execFile);

describe('controller/ca exec: the certmonger CA-helper protocol', function () {
  this.timeout(60_000);
  let dir: string;
  let ca: LabCa;

  before(async () => {
    dir = await tempDir('ca-exec');
    ca = await createLabCa('Helper Test');
    await saveLabCa(ca, join(dir, 'lab'));
    await writeFile(join(dir, 'lab', 'other-leaf.pem'), (await ca.issueIdentity('CN=someone-else', PROFILES.client)).certPem);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe("certmonger's own local-submit (real helper)", () => {
    let state: string;
    let adapter: CaAdapter;

    before(async () => {
      // -d points local-submit at its own signer state (creds, serial) instead of /var/lib/certmonger/local.
      state = join(dir, 'local-submit');
      await mkdir(state);
      adapter = await createCaAdapter(caConfig({ type: 'exec', command: [LOCAL_SUBMIT, '-d', state] }), { dataDir: dir });
    });

    it('issues, copying the requested clientAuth EKU, with the chain from FETCH-ROOTS', async () => {
      assert.equal(adapter.type, 'exec');
      const { key, csr } = await newCsr('CN=mid21,O=Acme');
      const { leaf, chain } = assertIssued(await adapter.submit(csr, { subject: 'CN=mid21,O=Acme' }), key);
      assert.equal(leaf.subjectText, 'CN=mid21,O=Acme');
      assert.equal(chain.length, 1, 'local-submit signs with a self-signed signer');
      assert.match(chain[0]?.subjectText ?? '', /CN=Local Signing Authority/);
    });

    it('rejects what it signs from a CSR without an EKU request (the helper copies the CSR extensions)', async () => {
      const keyFile = join(dir, 'plain.key');
      const csrFile = join(dir, 'plain.csr');
      await execFileAsync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-subj', '/CN=mid22', '-out', csrFile]);
      const outcome = await adapter.submit(await readFile(csrFile, 'utf8'), { subject: 'CN=mid22' });
      assertOutcome(outcome, 'rejected', /without Client Authentication \(no EKU extension; the helper decides the EKU/);
    });

    it('is unreachable when its state directory is missing (local-submit exits 3: call again)', async () => {
      const broken = await createCaAdapter(caConfig({ type: 'exec', command: [LOCAL_SUBMIT, '-d', join(dir, 'nowhere')] }), { dataDir: dir });
      const { csr } = await newCsr();
      assertOutcome(await broken.submit(csr, { subject: 'CN=mid01' }), 'unreachable', /lockfile/);
    });
  });

  describe('a scripted helper, one exit status at a time', () => {
    const helper = (mode: string, extra: Partial<CaConfig> = {}): Promise<CaAdapter> =>
      createCaAdapter(caConfig({ type: 'exec', command: ['bash', HELPER, mode, join(dir, 'lab')], ...extra }), { dataDir: dir });
    const submit = async (mode: string, extra: Partial<CaConfig> = {}) => (await helper(mode, extra)).submit((await newCsr()).csr, { subject: 'CN=mid01' });

    it('0: takes leaf and chain from stdout', async () => {
      const { key, csr } = await newCsr();
      const { chain } = assertIssued(await (await helper('issue-chain')).submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
      assert.deepEqual(chain.map((c) => c.sha256), [ca.intermediate.cert.sha256, ca.root.cert.sha256]);
    });

    it('0 with the leaf only: the chain from chainFile, else CONFIG_INVALID when the helper cannot FETCH-ROOTS', async () => {
      const { key, csr } = await newCsr();
      assertIssued(await (await helper('issue-leaf', { chainFile: join(dir, 'lab', 'chain.pem') })).submit(csr, { subject: 'CN=mid01' }), key, ca.root.cert.sha256);
      await assert.rejects((await helper('issue-leaf')).submit(csr, { subject: 'CN=mid01' }),
        (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /cannot FETCH-ROOTS .*set ca\.chainFile/.test(err.message));
    });

    it('0 with a certificate that lacks clientAuth, or is for another key: rejected', async () => {
      assertOutcome(await submit('issue-server', { profile: 'MIDServer' }), 'rejected', /without Client Authentication \(EKU: serverAuth; profile MIDServer \(CERTMONGER_CA_PROFILE\)\?\)/);
      assertOutcome(await submit('wrong-key'), 'rejected', /different public key than the CSR's \(CN=someone-else/);
      assertOutcome(await submit('garbage'), 'rejected', /output is not a certificate/);
    });

    it('1 then 5 then 0: pending with the helper cookie, the delay, and POLL with cookie and CSR', async () => {
      await rm(join(dir, 'lab', 'polls.log'), { force: true });
      const adapter = await helper('wait');
      const { key, csr } = await newCsr();
      const first = assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'pending');
      assert.equal(first.retryAfterSeconds, undefined);
      const second = assertOutcome(await adapter.poll(first.cookie), 'pending');
      assert.equal(second.retryAfterSeconds, 7);
      assertIssued(await adapter.poll(second.cookie), key, ca.root.cert.sha256);
      // certmonger hands the cookie back byte for byte, trailing newline included.
      assert.equal(await readFile(join(dir, 'lab', 'polls.log'), 'utf8'), 'req-1\n|req-2\n|');
    });

    it('1 without a cookie and 5 without a delay are broken helpers: rejected', async () => {
      assertOutcome(await submit('no-cookie'), 'rejected', /printed no cookie/);
      assertOutcome(await submit('bad-delay'), 'rejected', /did not print "<seconds>\\n<cookie>"/);
    });

    it('2: rejected with the helper message; 3: unreachable; 17: rejected (rekey); other: rejected', async () => {
      assertOutcome(await submit('reject'), 'rejected', /the CA rejected the request: Request denied: subject not allowed by policy/);
      assertOutcome(await submit('unreachable'), 'unreachable', /could not reach the CA: Server at https:\/\/ca\.example\.com: connection refused/);
      assertOutcome(await submit('rekey'), 'rejected', /requires a new key/);
      assertOutcome(await submit('odd'), 'rejected', /unexpected status 9: what is this/);
    });

    it('4, 6 and 16 are local misconfiguration: CONFIG_INVALID', async () => {
      const invalid = async (mode: string, message: RegExp): Promise<void> =>
        assert.rejects(submit(mode), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && message.test(err.message));
      await invalid('unconfigured', /under-configured \(exit 4\): no CA URL configured/);
      await invalid('unsupported', /does not support SUBMIT\/POLL \(exit 6\)/);
      await invalid('scep', /SCEP data \(exit 16\)/);
      await assert.rejects((await createCaAdapter(caConfig({ type: 'exec', command: [join(dir, 'no-such-helper')] }), { dataDir: dir })).submit((await newCsr()).csr, { subject: 'CN=x' }),
        (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /cannot be run/.test(err.message));
    });

    it('bounds time and output: a slow helper is unreachable, a flood is rejected', async () => {
      assertOutcome(await submit('slow', { timeoutSeconds: 1 }), 'unreachable', /did not finish within 1 s/);
      assertOutcome(await submit('flood'), 'rejected', /wrote more than \d+ bytes/);
    });

    it('passes the documented environment: operation, CSR, subject, SPKI, key type, profile; no stale cookie', async () => {
      const saved = process.env.CERTMONGER_CA_COOKIE;
      process.env.CERTMONGER_CA_COOKIE = 'stale-from-parent';
      try {
        const { key, csr } = await newCsr('CN=mid23,O=Acme');
        await (await helper('env', { profile: 'MIDServerClient' })).submit(csr, { subject: 'CN=mid23,O=Acme' });
        const read = (name: string): Promise<string | undefined> => readFile(join(dir, 'lab', 'env', name), 'utf8').catch(() => undefined);
        assert.equal(await read('OPERATION'), 'SUBMIT');
        assert.equal((await read('CSR'))?.trim(), csr.trim());
        assert.equal(await read('REQ_SUBJECT'), 'CN=mid23,O=Acme');
        assert.equal(await read('KEY_TYPE'), 'RSA');
        assert.equal(await read('CA_PROFILE'), 'MIDServerClient');
        const spki = createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64');
        assert.equal(await read('SPKI'), spki);
        assert.equal(await read('CA_COOKIE'), undefined, 'SUBMIT carries no cookie, not even an inherited one');
      } finally {
        if (saved === undefined) delete process.env.CERTMONGER_CA_COOKIE;
        else process.env.CERTMONGER_CA_COOKIE = saved;
      }
    });

    it('refuses a cookie from another adapter', async () => {
      assertOutcome(await (await helper('wait')).poll('adcs:1:x'), 'rejected', /not one this exec adapter handed out/);
    });
  });
});
