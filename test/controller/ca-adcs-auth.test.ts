import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { adcsAuthMode, kerberosFailure, ntlmIdentity, offeredSchemes, servicePrincipal } from '../../controller/ca/adcs-auth.js';
import { createCaAdapter, probeCa } from '../../controller/ca/index.js';
import { parseControllerConfig, type CaConfig } from '../../controller/config.js';
import { startAdcs, type RunningAdcs } from '../../lab/adcs/index.js';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { assertOutcome, caConfig, newCsr, tempDir } from './ca-fixtures.js';

describe('controller/ca adcs: ca.auth (config, messages, lab)', function () {
  this.timeout(60_000);
  const cfg = (extra: Partial<CaConfig>): CaConfig => caConfig({ type: 'adcs', url: 'https://ca.corp.example/certsrv', template: 'T', ...extra });

  it('defaults: basic with ca.username, client-cert with ca.clientCertFile; explicit ca.auth wins; none is CONFIG_INVALID', () => {
    assert.equal(adcsAuthMode(cfg({ username: 'u' })), 'basic');
    assert.equal(adcsAuthMode(cfg({ clientCertFile: 'c.pem' })), 'client-cert');
    assert.equal(adcsAuthMode(cfg({ username: 'u', clientCertFile: 'c.pem' })), 'basic');
    assert.equal(adcsAuthMode(cfg({ username: 'u', auth: 'ntlm' })), 'ntlm');
    assert.equal(adcsAuthMode(cfg({ auth: 'negotiate' })), 'negotiate');
    assert.throws(() => adcsAuthMode(cfg({})), (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && /needs credentials: set ca\.auth/.test(e.message));
  });

  it('controller.yaml: ca.auth is one of four values; ca.keytab is made absolute', () => {
    const parsed = parseControllerConfig('ca:\n  type: adcs\n  url: https://ca/certsrv\n  auth: negotiate\n  keytab: midcert.keytab\n  principal: svc@CORP\n  spn: HTTP@ca.corp\n', '/etc/midcert/controller.yaml');
    assert.equal(parsed.ca.auth, 'negotiate');
    assert.equal(parsed.ca.keytab, '/etc/midcert/midcert.keytab');
    assert.equal(parsed.ca.spn, 'HTTP@ca.corp');
    assert.throws(() => parseControllerConfig('ca:\n  type: adcs\n  auth: kerberos\n', '/x/controller.yaml'), /auth/);
  });

  it('SPN HTTP@<host of ca.url>, ca.spn overriding (HTTP/host form accepted)', () => {
    assert.equal(servicePrincipal(cfg({}), 'https://ca.corp.example:8443/certsrv'), 'HTTP@ca.corp.example');
    assert.equal(servicePrincipal(cfg({ spn: 'HTTP/pki.corp.example' }), 'https://x/certsrv'), 'HTTP@pki.corp.example');
    assert.equal(servicePrincipal(cfg({ spn: 'HTTP/pki.corp.example@CORP.EXAMPLE' }), 'https://x/certsrv'), 'HTTP@pki.corp.example');
  });

  it('NTLM identities: DOMAIN\\user, user@domain (UPN, domain empty); a bare name is CONFIG_INVALID', () => {
    assert.deepEqual(ntlmIdentity('CORP\\svc-midcert'), { domain: 'CORP', username: 'svc-midcert' });
    assert.deepEqual(ntlmIdentity('svc-midcert@corp.example'), { domain: '', username: 'svc-midcert@corp.example' });
    assert.throws(() => ntlmIdentity('svc-midcert'), /DOMAIN\\user or user@domain/);
  });

  it('GSSAPI messages become one line naming the cause', () => {
    const c = cfg({ auth: 'negotiate' });
    const reason = (m: string, k = c): string => (kerberosFailure(m, 'HTTP@ca.corp.example', k).outcome as { reason: string }).reason;
    assert.match(reason('No Kerberos credentials available (default cache: FILE:/tmp/krb5cc_0)'), /^Kerberos: no ticket: KRB5CCNAME holds none/);
    assert.match(reason('Clock skew too great'), /^Kerberos: clock skew too great .*NTP/);
    assert.match(reason('Server not found in Kerberos database'), /^Kerberos: wrong SPN: the KDC knows no principal HTTP@ca\.corp\.example/);
    assert.match(reason('Ticket expired'), /^Kerberos: the ticket in KRB5CCNAME has expired/);
    assert.match(reason('Preauthentication failed', cfg({ auth: 'negotiate', keytab: '/k', principal: 'svc@CORP' })), /^Kerberos: the KDC rejected the key of svc@CORP/);
    assert.equal(kerberosFailure("Cannot contact any KDC for realm 'CORP'", 'HTTP@x', c).outcome.kind, 'unreachable');
    assert.equal(kerberosFailure('Clock skew too great', 'HTTP@x', c).outcome.kind, 'rejected');
  });

  it('reads the schemes a 401 offers, IIS style', () => {
    const reply = (h: string) => ({ status: 401, headers: { 'www-authenticate': h }, body: Buffer.alloc(0) });
    assert.deepEqual(offeredSchemes(reply('Negotiate, NTLM, Basic realm="ca"')), ['negotiate', 'ntlm', 'basic']);
    assert.deepEqual(offeredSchemes(reply('Negotiate, NTLM')), ['negotiate', 'ntlm']);
    assert.deepEqual(offeredSchemes(reply('Basic realm="a, b"')), ['basic']);
    assert.deepEqual(offeredSchemes(reply('Negotiate, NTLM, Basic realm="LAB"')), ['negotiate', 'ntlm', 'basic']);
    assert.deepEqual(offeredSchemes(reply('NTLM TlRMTVNTUAACAAAA')), ['ntlm']);
  });

  describe('against the ADCS lab (Basic and client certificate only; advertises Negotiate, NTLM)', () => {
    let dir: string;
    let ca: LabCa;
    let adcs: RunningAdcs;
    before(async () => {
      dir = await tempDir('ca-adcs-auth');
      ca = await createLabCa('ADCS Auth Test');
      const server = await ca.issueIdentity('CN=adcs.lab.local', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
      adcs = await startAdcs({ ca, tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem }, users: [{ username: 'LAB\\mid-enroll', password: 'pw' }] });
      await writeFile(join(dir, 'password'), 'pw\n');
      await writeFile(join(dir, 'trust.pem'), ca.root.certPem);
    });
    after(async () => {
      await adcs?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });
    const lab = (extra: Partial<CaConfig>): CaConfig => caConfig({ type: 'adcs', url: adcs.url, template: 'MIDServerClient', caFile: join(dir, 'trust.pem'), username: 'LAB\\mid-enroll', passwordFile: join(dir, 'password'), ...extra });

    it('ntlm where the server answers Type 1 with no challenge: rejected after one request', async () => {
      const start = adcs.accessLog().length;
      const { csr } = await newCsr();
      assertOutcome(await (await createCaAdapter(lab({ auth: 'ntlm' }), { dataDir: dir })).submit(csr, { subject: 'CN=mid01' }), 'rejected', /^NTLM authentication to the CA at .* failed \(HTTP 401\).*not retried/);
      assert.equal(adcs.accessLog().length - start, 1);
    });

    it('probe: basic authenticates (OK); a wrong password is CA_AUTH_FAILED; a missing password file is CONFIG_UNREADABLE', async () => {
      const ok = await probeCa(lab({}));
      assert.deepEqual({ ok: ok.ok, authenticated: ok.authenticated, code: ok.code, auth: ok.auth, type: ok.type, url: ok.url }, { ok: true, authenticated: true, code: 'OK', auth: 'basic', type: 'adcs', url: adcs.url });
      await writeFile(join(dir, 'wrong'), 'nope\n');
      const bad = await probeCa(lab({ passwordFile: join(dir, 'wrong') }));
      assert.equal(bad.code, 'CA_AUTH_FAILED');
      assert.equal(bad.authenticated, false);
      assert.match(bad.message, /failed \(HTTP 401\); check ca\.username and ca\.passwordFile/);
      const missing = await probeCa(lab({ passwordFile: join(dir, 'absent') }));
      assert.equal(missing.code, 'CONFIG_UNREADABLE');
      assert.deepEqual((await probeCa(caConfig({ type: 'local' }))).code, 'CA_PROBE_UNSUPPORTED');
    });
  });
});
