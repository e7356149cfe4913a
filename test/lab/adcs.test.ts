import assert from 'node:assert/strict';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import { buildCsr } from '../../pki/csr.js';
import { PROFILES } from '../../pki/issue.js';
import { generateKey } from '../../pki/keys.js';
import { scanPem, toPem } from '../../pki/pem.js';
import { startAdcs, type RunningAdcs } from '../../lab/adcs/index.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import {
  BROWSER_UA, FETCH_DISPOSITION, PENDING_ID, REQ_ID, SUBMIT_DISPOSITION, call, openssl, submitForm, type CallOptions, type HttpAnswer,
} from './adcs-client.js';

const USER: [string, string] = ['LAB\\mid-enroll', 'correct horse battery'];

describe('lab/adcs: simulated ADCS web enrollment (certsrv)', function () {
  this.timeout(30_000);
  let ca: LabCa;
  let adcs: RunningAdcs;
  let dir: string;
  let key: KeyObject;
  let csr: string;
  let midIdentity: Identity;
  let strangerIdentity: Identity;

  before(async () => {
    ca = await createLabCa('ADCS Test');
    const server = await ca.issueIdentity('CN=adcs.lab.local', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    adcs = await startAdcs({
      ca,
      tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem },
      users: [{ username: USER[0], password: USER[1] }],
      clientCaPem: ca.chainPem,
      templates: {
        MIDServerClient: { profile: 'client', validityDays: 365, mode: 'issue' },
        WebServer: { profile: 'server', validityDays: 730, mode: 'issue' },
        User: { profile: 'user', validityDays: 365, mode: 'issue' },
        MIDServerApproval: { profile: 'client', validityDays: 365, mode: 'pending' },
        MIDServerAuto: { profile: 'client', validityDays: 365, mode: 'pending', autoApproveAfterPolls: 2 },
        Blocked: { profile: 'client', validityDays: 365, mode: 'deny' },
        Restricted: { profile: 'client', validityDays: 365, mode: 'issue', enrollees: ['LAB\\someone-else'] },
      },
    });
    dir = await mkdtemp(join(tmpdir(), 'adcs-lab-'));
    await writeFile(join(dir, 'root.pem'), ca.root.certPem);
    await writeFile(join(dir, 'intermediate.pem'), ca.intermediate.certPem);
    key = await generateKey();
    csr = buildCsr(key, { subject: 'CN=mid01.lab.local,O=midcert Lab' });
    midIdentity = await ca.issueIdentity('CN=mid01', PROFILES.client);
    strangerIdentity = await (await createLabCa('Stranger')).issueIdentity('CN=mid01', PROFILES.client);
  });

  after(async () => {
    await adcs?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, options: CallOptions = {}): Promise<HttpAnswer> => call(`${adcs.url}/${path}`, ca.root.certPem, { auth: USER, ...options });
  const submit = (csrText: string, template: string | null, options: CallOptions = {}): Promise<HttpAnswer> =>
    call(`${adcs.url}/certfnsh.asp`, ca.root.certPem, { auth: USER, method: 'POST', body: submitForm(csrText, template), ...options });

  async function issue(csrText: string, template: string, options: CallOptions = {}): Promise<{ id: number; cert: Certificate; pem: string }> {
    const page = await submit(csrText, template, options);
    assert.equal(page.status, 200);
    const id = REQ_ID.exec(page.text)?.[1];
    assert.ok(id, `no ReqID in the page: ${SUBMIT_DISPOSITION.exec(page.text)?.[1] ?? page.text.slice(0, 200)}`);
    const b64 = await get(`certnew.cer?ReqID=${id}&Enc=b64`, options);
    assert.equal(b64.headers['content-type'], 'application/pkix-cert');
    const cert = readCertificates(b64.body)[0] as Certificate;
    return { id: Number(id), cert, pem: b64.text };
  }

  async function verify(leafPem: string, purpose: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const file = join(dir, `leaf-${Math.random().toString(16).slice(2)}.pem`);
    await writeFile(file, leafPem);
    return openssl(['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'intermediate.pem'), '-purpose', purpose, file]);
  }

  describe('issue flow', () => {
    it('issues from the template, hands out b64 (CRLF PEM) and bin (DER) that verify with openssl', async () => {
      const { id, cert, pem } = await issue(csr, 'MIDServerClient');
      assert.ok(id >= 100);
      assert.match(pem, /^-----BEGIN CERTIFICATE-----\r\n/);
      assert.ok(pem.split('\n').slice(0, -1).every((line) => line.endsWith('\r')), 'every b64 line ends in CRLF');
      const bin = await get(`certnew.cer?ReqID=${id}&Enc=bin`);
      assert.equal(bin.headers['content-type'], 'application/pkix-cert');
      assert.deepEqual(bin.body, cert.der);
      assert.equal(cert.subjectText, 'CN=mid01.lab.local,O=midcert Lab');
      assert.equal(cert.issuerText, ca.intermediate.cert.subjectText);
      assert.ok(cert.publicKey.equals(createPublicKey(key)));
      assert.deepEqual(cert.extKeyUsage, ['clientAuth']);
      assert.deepEqual(cert.keyUsage, ['digitalSignature', 'keyEncipherment']);
      const days = (cert.notAfter.getTime() - Date.now()) / 86_400_000;
      assert.ok(days > 364 && days <= 365.01, `validity ${days} days`);
      assert.ok(Date.now() - cert.notBefore.getTime() >= 9 * 60_000, 'NotBefore is back-dated for clock skew');
      const result = await verify(pem.replace(/\r\n/g, '\n'), 'sslclient');
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /: OK/);
    });

    it('takes KU/EKU from the template, not the CSR: a client CSR sent to WebServer gets serverAuth only', async () => {
      const { cert, pem } = await issue(csr, 'WebServer');
      assert.deepEqual(cert.extKeyUsage, ['serverAuth']);
      const days = (cert.notAfter.getTime() - Date.now()) / 86_400_000;
      assert.ok(days > 729 && days <= 730.01);
      assert.notEqual((await verify(pem, 'sslclient')).code, 0, 'openssl refuses it for client auth');
      assert.equal((await verify(pem, 'sslserver')).code, 0);
    });

    it('gives the User template its stock EKUs (EFS, secure e-mail, client auth)', async () => {
      const { cert } = await issue(csr, 'user');
      assert.deepEqual(cert.extKeyUsage, ['1.3.6.1.4.1.311.10.3.4', 'emailProtection', 'clientAuth']);
    });

    it('accepts a CSR from the real `openssl req`, pasted with CRLF line endings', async () => {
      const keyFile = join(dir, 'openssl.key');
      const csrFile = join(dir, 'openssl.csr');
      const made = await openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-subj', '/O=midcert Lab/CN=mid-openssl', '-out', csrFile]);
      assert.equal(made.code, 0, made.stderr);
      const crlf = (await readFile(csrFile, 'utf8')).replace(/\n/g, '\r\n');
      const { cert } = await issue(crlf, 'MIDServerClient');
      assert.equal(cert.subjectText, 'CN=mid-openssl,O=midcert Lab');
      const keyPem = await readFile(keyFile, 'utf8');
      assert.ok(cert.publicKey.equals(createPublicKey(keyPem)));
    });

    it('accepts bare base64 without BEGIN/END lines', async () => {
      const der = scanPem(csr)[0]?.der as Buffer;
      const { cert } = await issue(der.toString('base64').replace(/.{64}/g, '$&\r\n'), 'MIDServerClient');
      assert.equal(cert.subjectText, 'CN=mid01.lab.local,O=midcert Lab');
    });

    it('honours other CRLF-separated attributes and the ENC= spelling some clients use', async () => {
      const page = await call(`${adcs.url}/certfnsh.asp`, ca.root.certPem, { auth: USER, method: 'POST', body: submitForm(csr, 'MIDServerClient', 'SAN:dns=mid01.lab.local\r\n') });
      const id = REQ_ID.exec(page.text)?.[1];
      assert.ok(id);
      const answer = await call(`${adcs.url.replace('/certsrv', '/CertSrv')}/CertNew.cer?ReqID=${id}&ENC=b64`, ca.root.certPem, { auth: USER });
      assert.equal(answer.headers['content-type'], 'application/pkix-cert');
    });

    it('records who asked, how they authenticated, and their User-Agent', async () => {
      const { id } = await issue(csr, 'MIDServerClient', { userAgent: 'Mozilla/5.0 recorder-check' });
      const row = adcs.requests().find((r) => r.id === id);
      assert.equal(row?.requester, USER[0]);
      assert.equal(row?.authMethod, 'basic');
      assert.equal(row?.userAgent, 'Mozilla/5.0 recorder-check');
      assert.equal(row?.status, 'issued');
      assert.ok(adcs.accessLog().some((e) => e.userAgent === 'Mozilla/5.0 recorder-check' && e.path.startsWith('/certsrv/certnew.cer')));
    });
  });

  describe('pending and denied', () => {
    it('holds a request as pending until an officer approves it', async () => {
      const page = await submit(csr, 'MIDServerApproval');
      assert.equal(page.status, 200);
      assert.equal(REQ_ID.exec(page.text), null);
      assert.match(page.text, /Certificate Pending/);
      const id = Number(PENDING_ID.exec(page.text)?.[1]);
      assert.ok(id >= 100);
      const poll = await get(`certnew.cer?ReqID=${id}&Enc=b64`);
      assert.equal(poll.status, 200);
      assert.equal(poll.headers['content-type'], 'text/html');
      assert.match(poll.text, /Taken Under Submission/);
      assert.equal(FETCH_DISPOSITION.exec(poll.text)?.[1], 'Taken Under Submission');
      const approved = await adcs.approve(id);
      assert.equal(approved.status, 'issued');
      const cert = await get(`certnew.cer?ReqID=${id}&Enc=bin`);
      assert.equal(cert.headers['content-type'], 'application/pkix-cert');
      assert.deepEqual(readCertificates(cert.body)[0]?.extKeyUsage, ['clientAuth']);
      await assert.rejects(adcs.approve(id), /not pending/);
    });

    it('auto-approves after the configured number of polls', async () => {
      const id = Number(PENDING_ID.exec((await submit(csr, 'MIDServerAuto')).text)?.[1]);
      for (let i = 0; i < 2; i++) assert.match((await get(`certnew.cer?ReqID=${id}&Enc=b64`)).text, /Taken Under Submission/);
      assert.equal((await get(`certnew.cer?ReqID=${id}&Enc=b64`)).headers['content-type'], 'application/pkix-cert');
      assert.equal(adcs.requests().find((r) => r.id === id)?.polls, 3);
    });

    it('shows an officer denial as "Denied by" with the disposition message', async () => {
      const id = Number(PENDING_ID.exec((await submit(csr, 'MIDServerApproval')).text)?.[1]);
      await adcs.deny(id, 'wrong subject');
      const page = await get(`certnew.cer?ReqID=${id}&Enc=b64`);
      assert.equal(page.headers['content-type'], 'text/html');
      assert.match(page.text, /Denied by/);
      assert.equal(FETCH_DISPOSITION.exec(page.text)?.[1], 'Denied by LAB\\certadmin: wrong subject');
      assert.match(page.text, /CERTSRV_E_ADMIN_DENIED_REQUEST/);
    });

    it('denies through the policy module for a template in deny mode, and modes switch at run time', async () => {
      const page = await submit(csr, 'Blocked');
      assert.equal(page.status, 200);
      assert.equal(SUBMIT_DISPOSITION.exec(page.text)?.[1], 'Denied by Policy Module');
      const row = adcs.requests().at(-1);
      assert.equal(row?.status, 'denied');
      assert.match((await get(`certnew.cer?ReqID=${row?.id}&Enc=b64`)).text, /Denied by Policy Module/);
      await adcs.setTemplateMode('MIDServerClient', 'deny');
      assert.equal(SUBMIT_DISPOSITION.exec((await submit(csr, 'MIDServerClient')).text)?.[1], 'Denied by Policy Module');
      await adcs.setTemplateMode('MIDServerClient', 'pending');
      assert.match((await submit(csr, 'MIDServerClient')).text, /Certificate Pending/);
      await adcs.setTemplateMode('MIDServerClient', 'issue');
      assert.ok(REQ_ID.test((await submit(csr, 'MIDServerClient')).text));
    });
  });

  describe('request errors (HTTP 200 pages, like the real server)', () => {
    const cases: Array<[string, () => string, string | null, RegExp]> = [
      ['an unknown template', () => csr, 'NoSuchTemplate', /^Denied by Policy Module {2}0x80094800, The request was for a certificate template that is not supported by the Active Directory Certificate Services Policy: NoSuchTemplate\.$/],
      ['no template at all', () => csr, null, /^The request contains no certificate template information\. 0x80094801/],
      ['a template the caller may not enroll for', () => csr, 'Restricted', /0x80094012, The permissions on the certificate template/],
      ['a malformed CSR', () => '-----BEGIN CERTIFICATE REQUEST-----\r\nTUlJQ2Zha2U=\r\n-----END CERTIFICATE REQUEST-----\r\n', 'MIDServerClient', /CRYPT_E_ASN1_BADTAG/],
      ['text that is not base64', () => 'this is not a CSR at all', 'MIDServerClient', /CRYPT_E_ASN1_BADTAG/],
      ['a CSR whose signature does not verify', () => tamperedCsr(csr), 'MIDServerClient', /NTE_BAD_SIGNATURE/],
    ];
    for (const [what, csrText, template, expected] of cases) {
      it(`answers ${what} with a disposition message and no certificate`, async () => {
        const page = await submit(csrText(), template);
        assert.equal(page.status, 200);
        assert.equal(page.headers['content-type'], 'text/html');
        assert.equal(REQ_ID.exec(page.text), null);
        assert.doesNotMatch(page.text, /Certificate Pending/);
        assert.match(SUBMIT_DISPOSITION.exec(page.text)?.[1] ?? '', expected);
      });
    }

    it('answers a form without a CSR, a non-form body, and another Mode with error pages', async () => {
      const noCsr = await submit('', 'MIDServerClient');
      assert.match(SUBMIT_DISPOSITION.exec(noCsr.text)?.[1] ?? '', /CRYPT_E_ASN1_EOD/);
      const json = await submit('', null, { body: JSON.stringify({ CertRequest: csr }), contentType: 'application/json' });
      assert.match(SUBMIT_DISPOSITION.exec(json.text)?.[1] ?? '', /ERROR_INVALID_PARAMETER/, 'ASP reads only urlencoded forms: no Mode');
      const otherMode = await submit('', null, { body: submitForm(csr, 'MIDServerClient').replace('Mode=newreq', 'Mode=chkpnd') });
      assert.match(SUBMIT_DISPOSITION.exec(otherMode.text)?.[1] ?? '', /ERROR_INVALID_PARAMETER/);
      assert.match(otherMode.text, /chkpnd/);
      assert.equal(REQ_ID.exec(otherMode.text), null);
    });

    it('escapes a hostile template name in the page', async () => {
      const page = await submit(csr, '<script>x</script>');
      assert.doesNotMatch(page.text, /<script>x/);
      assert.match(page.text, /&#60;script&#62;x/);
    });

    it('answers an unknown request id with an error page carrying a disposition message', async () => {
      for (const id of ['999999', 'abc', '']) {
        const page = await get(`certnew.cer?ReqID=${id}&Enc=b64`);
        assert.equal(page.status, 200);
        assert.equal(page.headers['content-type'], 'text/html');
        assert.match(FETCH_DISPOSITION.exec(page.text)?.[1] ?? '', /The requested property value is empty\. 0x80094004/);
      }
    });

    it('refuses a form body over 64 KiB with 413', async () => {
      const page = await submit(csr + 'A'.repeat(70 * 1024), 'MIDServerClient');
      assert.equal(page.status, 413);
    });

    it('answers 404 off the certsrv pages and 405 for the wrong verb', async () => {
      assert.equal((await get('certrqxt.aspx')).status, 404);
      assert.equal((await call(adcs.url.replace('/certsrv', '/other'), ca.root.certPem, { auth: USER })).status, 404);
      const wrongVerb = await get('certfnsh.asp');
      assert.equal(wrongVerb.status, 405);
      assert.equal(wrongVerb.headers.allow, 'POST');
    });
  });

  describe('authentication', () => {
    it('answers 401 with IIS challenges (Negotiate, NTLM, Basic) when no credentials are sent', async () => {
      const answer = await get('', { auth: undefined });
      assert.equal(answer.status, 401);
      const challenges = answer.distinct['www-authenticate'] ?? [];
      assert.deepEqual(challenges.map((c) => c.split(' ')[0]), ['Negotiate', 'NTLM', 'Basic']);
      assert.match(challenges[2] ?? '', /^Basic realm="/);
    });

    it('answers 401 for a wrong password, an unknown user, and NTLM (not implemented)', async () => {
      assert.equal((await submit(csr, 'MIDServerClient', { auth: [USER[0], 'wrong'] })).status, 401);
      assert.equal((await submit(csr, 'MIDServerClient', { auth: ['LAB\\nobody', USER[1]] })).status, 401);
      assert.equal((await get('', { auth: 'NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAO5CAAAADw==' })).status, 401);
      assert.equal((await get('', { auth: [USER[0].toLowerCase(), USER[1]] })).status, 200, 'Windows user names are case-insensitive');
    });

    it('accepts a client certificate that chains to the configured client CA', async () => {
      const options: CallOptions = { auth: undefined, cert: midIdentity.certPem, key: midIdentity.keyPem };
      const { id } = await issue(csr, 'MIDServerClient', options);
      const row = adcs.requests().find((r) => r.id === id);
      assert.equal(row?.requester, 'mid01');
      assert.equal(row?.authMethod, 'client-certificate');
    });

    it('refuses a client certificate from another CA with 403.16, even with a good password', async () => {
      const answer = await submit(csr, 'MIDServerClient', { cert: strangerIdentity.certPem, key: strangerIdentity.keyPem });
      assert.equal(answer.status, 403);
      assert.match(answer.text, /403\.16/);
    });

    it('insists on a browser-like User-Agent, as real certsrv clients must send one', async () => {
      const answer = await get('certcarc.asp', { userAgent: null });
      assert.equal(answer.status, 400);
      assert.ok(adcs.accessLog().some((e) => e.status === 400 && e.userAgent === ''));
      assert.equal((await get('certcarc.asp', { userAgent: 'curl/8.5.0' })).status, 400);
      assert.equal((await get('certcarc.asp', { userAgent: 'Mozilla' })).status, 200, 'adcs-issuer sends just "Mozilla"');
      assert.equal((await get('certcarc.asp', { userAgent: BROWSER_UA })).status, 200);
    });
  });

  describe('CA certificate and chain', () => {
    it('publishes nRenewals, and a renewal adds a new CA certificate under the same key', async () => {
      assert.match((await get('certcarc.asp')).text, /var nRenewals=0;/);
      const first = await get('certnew.cer?ReqID=CACert&Renewal=0&Enc=b64');
      assert.equal(first.headers['content-type'], 'application/pkix-cert');
      assert.equal(readCertificates(first.body)[0]?.sha256, ca.intermediate.cert.sha256);
      assert.equal(await adcs.renewCa(), 1);
      const page = await get('certcarc.asp');
      const renewals = /var nRenewals=(\d+);/.exec(page.text)?.[1];
      assert.equal(renewals, '1');
      const renewed = readCertificates((await get(`certnew.cer?ReqID=CACert&Renewal=${renewals}&Enc=bin`)).body)[0] as Certificate;
      assert.notEqual(renewed.sha256, ca.intermediate.cert.sha256);
      assert.equal(renewed.subjectText, ca.intermediate.cert.subjectText);
      assert.ok(renewed.publicKey.equals(ca.intermediate.cert.publicKey));
      assert.ok(renewed.x509.verify(ca.root.cert.publicKey));
      const latest = readCertificates((await get('certnew.cer?ReqID=CACert&Renewal=-1&Enc=b64')).body)[0];
      assert.equal(latest?.sha256, renewed.sha256);
      assert.equal((await get('certnew.cer?ReqID=CACert&Renewal=7&Enc=b64')).headers['content-type'], 'text/html');
    });

    it('serves the CA chain as a DER PKCS#7 that the real openssl reads (issuing CA, root)', async () => {
      const answer = await get('certnew.p7b?ReqID=CACert&Renewal=0&Enc=bin');
      assert.equal(answer.headers['content-type'], 'application/x-pkcs7-certificates');
      const file = join(dir, 'chain.p7b');
      await writeFile(file, answer.body);
      const printed = await openssl(['pkcs7', '-print_certs', '-inform', 'DER', '-in', file, '-noout']);
      assert.equal(printed.code, 0, printed.stderr);
      const subjects = [...printed.stdout.matchAll(/^subject=(.*)$/gm)].map((m) => m[1]);
      assert.deepEqual(subjects, ['O = midcert Lab, CN = ADCS Test Issuing CA', 'O = midcert Lab, CN = ADCS Test Root CA']);
      const certs = readCertificates(answer.body);
      assert.deepEqual(certs.map((c) => c.sha256), [ca.intermediate.cert.sha256, ca.root.cert.sha256]);
    });

    it('serves Enc=b64 as CRLF base64 labelled CERTIFICATE, as Microsoft CAs do for .p7b', async () => {
      const answer = await get('certnew.p7b?ReqID=CACert&Renewal=0&Enc=b64');
      assert.equal(answer.headers['content-type'], 'application/x-pkcs7-certificates');
      assert.match(answer.text, /^-----BEGIN CERTIFICATE-----\r\n[\s\S]+-----END CERTIFICATE-----\r\n$/);
      const file = join(dir, 'chain-b64.p7b');
      await writeFile(file, answer.text.replace(/CERTIFICATE/g, 'PKCS7'));
      const printed = await openssl(['pkcs7', '-print_certs', '-in', file, '-noout']);
      assert.equal(printed.code, 0, printed.stderr);
      assert.equal([...printed.stdout.matchAll(/^subject=/gm)].length, 2);
    });

    it('serves an issued request as leaf + chain via certnew.p7b?ReqID=<n>', async () => {
      const { id, cert } = await issue(csr, 'MIDServerClient');
      const answer = await get(`certnew.p7b?ReqID=${id}&Enc=bin`);
      assert.equal(answer.headers['content-type'], 'application/x-pkcs7-certificates');
      const certs = readCertificates(answer.body);
      assert.equal(certs.length, 3);
      assert.equal(certs[0]?.sha256, cert.sha256);
      assert.equal(certs[2]?.sha256, ca.root.cert.sha256);
    });
  });
});

/** Same CSR with one byte of the signature flipped: parses, but the signature fails. */
function tamperedCsr(pem: string): string {
  const der = Buffer.from(scanPem(pem)[0]?.der as Buffer);
  der[der.length - 1] = (der[der.length - 1] as number) ^ 0xff;
  return toPem('CERTIFICATE REQUEST', der);
}
