import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createCaAdapter } from '../../controller/ca/index.js';
import type { CaConfig } from '../../controller/config.js';
import { startAdcs, type RunningAdcs } from '../../lab/adcs/index.js';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { assertIssued, assertOutcome, caConfig, freePort, newCsr, tempDir } from '../controller/ca-fixtures.js';

/**
 * The adcs adapter's Windows Integrated Authentication against real peers (scripts/peers/):
 * an MIT Kerberos KDC + Apache httpd with mod_auth_gssapi (Negotiate), and our go-ntlm
 * acceptor (NTLMv2, connection-bound), both reverse proxies in front of the lab ADCS.
 * Every peer process is stopped by its recorded PID in after(), whatever happened.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const PEERS = join(ROOT, 'scripts/peers');
const MIDCERT = join(ROOT, 'bin/midcert');
const LAB_USER = 'LAB\\mid-enroll';
const LAB_PASSWORD = 'lab upstream password';

function readEnv(text: string): Record<string, string> {
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('peers: adcs adapter through Negotiate (MIT KDC + Apache mod_auth_gssapi) and NTLMv2 (go-ntlm)', function () {
  this.timeout(120_000);
  let dir: string;
  let ca: LabCa;
  let adcs: RunningAdcs;
  let krb: Record<string, string>;
  let ntlm: Record<string, string>;
  const savedEnv = { KRB5_CONFIG: process.env.KRB5_CONFIG, KRB5CCNAME: process.env.KRB5CCNAME, KRB5_CLIENT_KTNAME: process.env.KRB5_CLIENT_KTNAME };

  before(async () => {
    const started = Date.now();
    dir = await tempDir('peers');
    ca = await createLabCa('Peer Auth Test');
    const server = await ca.issueIdentity('CN=adcs.lab.local', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    adcs = await startAdcs({
      ca,
      tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem },
      users: [{ username: LAB_USER, password: LAB_PASSWORD }],
      templates: { MIDServerClient: { profile: 'client', validityDays: 365, mode: 'issue' } },
    });
    await writeFile(join(dir, 'upstream-ca.pem'), ca.root.certPem);
    const upstream = new URL(adcs.url).origin.replace('127.0.0.1', 'localhost');
    const basic = `${LAB_USER}:${LAB_PASSWORD}`;
    const [kdcPort, httpPort, ntlmPort] = [await freePort(), await freePort(), await freePort()];
    await run('bash', [join(PEERS, 'start-kerberos.sh'), dir, String(kdcPort), String(httpPort), upstream, join(dir, 'upstream-ca.pem'), basic]);
    await run('bash', [join(PEERS, 'start-ntlm.sh'), dir, String(ntlmPort), upstream, join(dir, 'upstream-ca.pem'), basic]);
    krb = readEnv(await readFile(join(dir, 'peers-kerberos.env'), 'utf8'));
    ntlm = readEnv(await readFile(join(dir, 'peers-ntlm.env'), 'utf8'));
    process.env.KRB5_CONFIG = krb.KRB5_CONFIG;
    await writeFile(join(dir, 'wrong.password'), 'not-the-password\n', { mode: 0o600 });
    process.stderr.write(`      (peers started in ${Date.now() - started} ms)\n`);
  });

  after(async () => {
    if (dir) await run('bash', [join(PEERS, 'stop.sh'), dir]).catch(() => undefined);
    await adcs?.close();
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (dir && process.env.MIDCERT_KEEP_PEER_LOGS !== '1') await rm(dir, { recursive: true, force: true });
  });

  const negotiate = (extra: Partial<CaConfig> = {}): CaConfig => caConfig({ type: 'adcs', url: krb.NEGOTIATE_URL, template: 'MIDServerClient', auth: 'negotiate', ...extra });
  const ntlmConfig = (extra: Partial<CaConfig> = {}): CaConfig => caConfig({
    type: 'adcs', url: ntlm.NTLM_URL, template: 'MIDServerClient', auth: 'ntlm', username: 'LAB\\mid-enroll', passwordFile: ntlm.NTLM_PASSWORD_FILE, ...extra,
  });
  const httpdAccess = async (): Promise<string[]> => (await readFile(join(dir, 'httpd-access.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const acceptorLog = async (): Promise<string[]> => (await readFile(join(dir, 'ntlm-acceptor.log'), 'utf8')).split('\n').filter(Boolean);
  const useCcache = (): void => { process.env.KRB5CCNAME = krb.CLIENT_CCACHE; delete process.env.KRB5_CLIENT_KTNAME; };

  it('negotiate with the ticket in KRB5CCNAME: issues through Apache, which saw the Kerberos user', async () => {
    useCcache();
    const adapter = await createCaAdapter(negotiate(), { dataDir: dir });
    const { key, csr } = await newCsr('CN=mid-krb,O=Acme');
    assertIssued(await adapter.submit(csr, { subject: 'CN=mid-krb,O=Acme' }), key, ca.root.cert.sha256);
    assert.equal(adcs.requests().at(-1)?.requester, LAB_USER);
    const seen = await httpdAccess();
    assert.ok(seen.some((l) => l.includes(` ${krb.PRINCIPAL} "POST /certsrv/certfnsh.asp`)), `httpd access log names ${krb.PRINCIPAL}:\n${seen.join('\n')}`);
  });

  it('negotiate with its own ticket from ca.keytab + ca.principal (no KRB5CCNAME)', async () => {
    process.env.KRB5CCNAME = `FILE:${join(dir, 'no-such-ccache')}`;
    const adapter = await createCaAdapter(negotiate({ keytab: krb.CLIENT_KEYTAB, principal: krb.PRINCIPAL }), { dataDir: dir });
    const { key, csr } = await newCsr('CN=mid-keytab');
    assertIssued(await adapter.submit(csr, { subject: 'CN=mid-keytab' }), key, ca.root.cert.sha256);
  });

  it('negotiate without a ticket: one clear rejection, nothing sent to the CA', async () => {
    process.env.KRB5CCNAME = `FILE:${join(dir, 'no-such-ccache')}`;
    delete process.env.KRB5_CLIENT_KTNAME;
    const before = (await httpdAccess()).length;
    const adapter = await createCaAdapter(negotiate(), { dataDir: dir });
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /^Kerberos: no ticket: KRB5CCNAME holds none .*run kinit, or set ca\.keytab \+ ca\.principal/);
    assert.equal((await httpdAccess()).length, before, 'no request reached the CA');
  });

  it('negotiate with a wrong SPN names it', async () => {
    useCcache();
    const adapter = await createCaAdapter(negotiate({ spn: 'HTTP@wrong.example' }), { dataDir: dir });
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /^Kerberos: wrong SPN: the KDC knows no principal HTTP@wrong\.example/);
  });

  it('negotiate refuses an IP address host (the SPN would be HTTP@127.0.0.1) at creation', async () => {
    await assert.rejects(createCaAdapter(negotiate({ url: krb.NEGOTIATE_URL?.replace('localhost', '127.0.0.1') }), { dataDir: dir }), /IP address.*set ca\.spn/);
  });

  it('Basic against a Negotiate-only certsrv: says Basic is disabled, once', async () => {
    const adapter = await createCaAdapter(negotiate({ auth: 'basic', username: 'LAB\\mid-enroll', passwordFile: krb.USER_PASSWORD_FILE }), { dataDir: dir });
    const before = (await httpdAccess()).length;
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /does not accept Basic authentication \(HTTP 401; it offers Negotiate\): Basic is disabled in IIS; set ca\.auth: negotiate/);
    // httpd writes its access line just after answering: give it a moment, then count.
    for (let i = 0; i < 20 && (await httpdAccess()).length === before; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200));
    const lines = (await httpdAccess()).slice(before);
    assert.equal(lines.length, 1, `one request, no retry:\n${lines.join('\n')}`);
    assert.match(lines[0] as string, /" 401$/);
  });

  it('ntlm (DOMAIN\\user): issues several certificates concurrently over the one kept-alive connection', async () => {
    const adapter = await createCaAdapter(ntlmConfig(), { dataDir: dir });
    const csrs = await Promise.all([1, 2, 3].map((i) => newCsr(`CN=mid-ntlm${i}`)));
    const outcomes = await Promise.all(csrs.map(({ csr }, i) => adapter.submit(csr, { subject: `CN=mid-ntlm${i + 1}` })));
    outcomes.forEach((o, i) => assertIssued(o, (csrs[i] as { key: import('node:crypto').KeyObject }).key, ca.root.cert.sha256));
    const log = await acceptorLog();
    assert.ok(log.filter((l) => l.includes('as LAB\\mid-enroll (NTLMv2)')).length >= 3, log.join('\n'));
    assert.ok(!log.some((l) => /bad NTLMv2|without a type 1/.test(l)), log.join('\n'));
  });

  it('ntlm (user@domain UPN form) issues', async () => {
    const adapter = await createCaAdapter(ntlmConfig({ username: 'mid-enroll@lab.local' }), { dataDir: dir });
    const { key, csr } = await newCsr('CN=mid-upn');
    assertIssued(await adapter.submit(csr, { subject: 'CN=mid-upn' }), key, ca.root.cert.sha256);
  });

  it('ntlm with a wrong password: one handshake, one clear rejection, no retry, password not echoed', async () => {
    const before = (await acceptorLog()).length;
    const adapter = await createCaAdapter(ntlmConfig({ passwordFile: join(dir, 'wrong.password') }), { dataDir: dir });
    const { csr } = await newCsr();
    const outcome = assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /^NTLM authentication to the CA at http:\/\/localhost:\d+ failed \(HTTP 401\); check ca\.username \(LAB\\mid-enroll\) and ca\.passwordFile .*not retried/);
    assert.ok(!outcome.reason.includes('not-the-password'));
    const attempts = (await acceptorLog()).slice(before).filter((l) => l.includes('bad NTLMv2 response'));
    assert.equal(attempts.length, 1, 'exactly one Type 3');
  });

  it('`midcert ca probe --json` answers the contract for negotiate, ntlm and a wrong password', async () => {
    const probe = async (ca: CaConfig, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; doc: Record<string, unknown> }> => {
      const dataDir = await tempDir('probe');
      try {
        const yaml = `ca:\n${Object.entries(ca).filter(([, v]) => v !== undefined).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join('\n')}\n`;
        await writeFile(join(dataDir, 'controller.yaml'), yaml);
        const child = await run(MIDCERT, ['--data-dir', dataDir, 'ca', 'probe', '--json'], { env: { ...process.env, ...env } }).then((r) => ({ code: 0, stdout: r.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }));
        return { code: child.code, doc: JSON.parse(child.stdout) as Record<string, unknown> };
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    };
    const ok = await probe(negotiate(), { KRB5CCNAME: krb.CLIENT_CCACHE, KRB5_CONFIG: krb.KRB5_CONFIG });
    assert.equal(ok.code, 0);
    assert.deepEqual(Object.keys(ok.doc).sort(), ['auth', 'authenticated', 'code', 'message', 'ok', 'type', 'url']);
    assert.deepEqual({ ...ok.doc, message: undefined }, { ok: true, type: 'adcs', url: krb.NEGOTIATE_URL, auth: 'negotiate', authenticated: true, code: 'OK', message: undefined });
    const viaNtlm = await probe(ntlmConfig());
    assert.equal(viaNtlm.code, 0);
    assert.equal(viaNtlm.doc.authenticated, true);
    assert.equal(viaNtlm.doc.auth, 'ntlm');
    const wrong = await probe(ntlmConfig({ passwordFile: join(dir, 'wrong.password') }));
    assert.equal(wrong.code, 1);
    assert.equal(wrong.doc.ok, false);
    assert.equal(wrong.doc.authenticated, false);
    assert.equal(wrong.doc.code, 'CA_AUTH_FAILED');
    assert.match(String(wrong.doc.message), /NTLM authentication .* failed \(HTTP 401\)/);
    const noTicket = await probe(negotiate(), { KRB5CCNAME: `FILE:${join(dir, 'no-such-ccache')}`, KRB5_CONFIG: krb.KRB5_CONFIG });
    assert.equal(noTicket.code, 1);
    assert.equal(noTicket.doc.code, 'CA_AUTH_FAILED');
    assert.match(String(noTicket.doc.message), /no ticket/);
  });

  it('`midcert preflight --json` carries the same check as ca-auth', async () => {
    const dataDir = await tempDir('preflight');
    try {
      await run(MIDCERT, ['--data-dir', dataDir, 'init', '--ca-type', 'adcs', '--ca-url', ntlm.NTLM_URL as string, '--json']);
      const c = ntlmConfig();
      await writeFile(join(dataDir, 'controller.yaml'), `ca:\n  type: adcs\n  url: ${c.url}\n  template: ${c.template}\n  auth: ntlm\n  username: ${JSON.stringify(c.username)}\n  passwordFile: ${c.passwordFile}\n`);
      const { stdout } = await run(MIDCERT, ['--data-dir', dataDir, 'preflight', '--json']);
      const doc = JSON.parse(stdout) as { ok: boolean; ca: { name: string; ok: boolean; code: string }[] };
      assert.equal(doc.ok, true);
      assert.deepEqual(doc.ca.map((c) => [c.name, c.ok, c.code]), [['ca-auth', true, 'OK']]);
      await writeFile(join(dataDir, 'controller.yaml'), `ca:\n  type: adcs\n  url: ${c.url}\n  template: ${c.template}\n  auth: ntlm\n  username: ${JSON.stringify(c.username)}\n  passwordFile: ${join(dir, 'wrong.password')}\n`);
      const failed = await run(MIDCERT, ['--data-dir', dataDir, 'preflight', '--json']).then(() => assert.fail('preflight passed with a wrong password'), (e: { code: number; stdout: string }) => e);
      assert.equal(failed.code, 1);
      const bad = JSON.parse(failed.stdout) as { ok: boolean; ca: { ok: boolean; code: string }[] };
      assert.deepEqual([bad.ok, bad.ca[0]?.ok, bad.ca[0]?.code], [false, false, 'CA_AUTH_FAILED']);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
