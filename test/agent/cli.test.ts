import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LIMITS } from '../../common/limits.js';
import { renderConfigXml } from '../../lab/mid/config-xml.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { beginLine, PRIVATE_KEY_LABEL } from '../helpers/pem-text.js';
import { run, runOk, type RunResult } from '../helpers/run.js';
import { releaseFifoReaders } from '../helpers/special-files.js';

const AGENT = resolve('bin/midcert-agent');

describe('midcert-agent CLI (host-local tools)', function () {
  this.timeout(120_000);
  let dir: string;
  let pki: LabPki;
  const file = (name: string): string => join(dir, name);
  const agent = (...args: string[]): Promise<RunResult> => run(AGENT, args, { cwd: dir });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-cli-'));
    pki = await makeLabPki();
    await writeFile(file('root.pem'), pki.ca.root.certPem);
    await writeFile(file('intermediate.pem'), pki.ca.intermediate.certPem);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  describe('csr', () => {
    it('writes a 0600 PKCS#8 key and a CSR that `openssl req -verify` accepts', async () => {
      const res = await agent('csr', '--subject', 'CN=mid01,O=Org,OU=ITOM', '--san', 'DNS:mid01.example.com', '--key-out', 'k.pem', '--csr-out', 'c.csr', '--json');
      assert.equal(res.code, 0, res.stderr);
      const out = JSON.parse(res.stdout);
      assert.equal(out.subject, 'CN=mid01,O=Org,OU=ITOM');
      assert.equal(out.keyType, 'RSA');
      assert.equal(out.keyBits, 2048);
      assert.equal((await stat(file('k.pem'))).mode & 0o777, 0o600);
      assert.ok((await readFile(file('k.pem'), 'utf8')).startsWith(`${beginLine(PRIVATE_KEY_LABEL)}\n`), 'unencrypted PKCS#8');
      const verify = await runOk('openssl', ['req', '-in', file('c.csr'), '-noout', '-verify', '-text', '-nameopt', 'RFC2253']);
      assert.match(verify.stderr + verify.stdout, /verify OK/i);
      assert.match(verify.stdout, /Subject: CN=mid01,O=Org,OU=ITOM/);
      assert.match(verify.stdout, /TLS Web Client Authentication/);
      assert.match(verify.stdout, /Digital Signature, Key Encipherment/);
      assert.match(verify.stdout, /sha256WithRSAEncryption/);
      assert.match(verify.stdout, /DNS:mid01.example.com/);
    });

    it('makes EC P-384 keys on request', async () => {
      const res = await agent('csr', '--subject', '/O=Org/CN=mid02', '--key-type', 'ec', '--bits', '384', '--key-out', 'ec.pem', '--csr-out', 'ec.csr');
      assert.equal(res.code, 0, res.stderr);
      const text = (await runOk('openssl', ['req', '-in', file('ec.csr'), '-noout', '-text'])).stdout;
      assert.match(text, /NIST CURVE: P-384|secp384r1/);
      assert.match(text, /ecdsa-with-SHA256/);
    });

    it('refuses to overwrite an existing key without --force', async () => {
      const before = await readFile(file('k.pem'));
      const res = await agent('csr', '--subject', 'CN=x', '--key-out', 'k.pem', '--csr-out', 'again.csr');
      assert.equal(res.code, 4);
      assert.match(res.stderr, /^midcert-agent: error \[OUTPUT_FAILED\] .*--force/);
      assert.deepEqual(await readFile(file('k.pem')), before);
    });

    it('rejects bad input with a one-line coded error and writes nothing', async () => {
      const cases: [string[], number, string][] = [
        [['--subject', 'CN=a,XX=b'], 3, 'SUBJECT_INVALID'],
        [['--subject', 'CN=a', '--bits', '1024'], 3, 'KEY_UNSUPPORTED'],
        [['--subject', 'CN=a', '--key-type', 'dsa'], 2, 'USAGE'],
        [['--subject', 'CN=a', '--san', 'FTP:x'], 3, 'SAN_INVALID'],
      ];
      for (const [args, code, error] of cases) {
        const res = await agent('csr', ...args, '--key-out', 'bad.key', '--csr-out', 'bad.csr');
        assert.equal(res.code, code, `${args.join(' ')}: ${res.stderr}`);
        assert.match(res.stderr, new RegExp(`^midcert-agent: error \\[${error}\\] `));
        assert.equal(res.stderr.trim().split('\n').length, 1);
        await assert.rejects(access(file('bad.key')));
      }
    });
  });

  describe('bundle build', () => {
    before(async () => {
      await writeFile(file('leaf.pem'), pki.leaf.certPem);
      await writeFile(file('leaf.key'), pki.leaf.keyPem);
    });

    it('orders any inputs into leaf, intermediate, root, key; openssl verifies it; keytool imports it', async () => {
      await runOk('openssl', ['x509', '-in', file('root.pem'), '-outform', 'DER', '-out', file('root.der')]);
      const pkcs1 = await runOk('openssl', ['rsa', '-in', file('leaf.key'), '-traditional']);
      await writeFile(file('leaf-pkcs1.key'), pkcs1.stdout);
      const res = await agent('bundle', 'build', '--cert', 'leaf.pem', '--key', 'leaf-pkcs1.key', '--chain', 'root.der', '--chain', 'intermediate.pem', '-o', 'bundle.pem', '--json');
      assert.equal(res.code, 0, res.stderr);
      const out = JSON.parse(res.stdout);
      assert.equal(out.ok, true);
      assert.deepEqual(out.chain.map((c: { subject: string }) => c.subject), [pki.leaf.cert.subjectText, pki.ca.intermediate.cert.subjectText, pki.ca.root.cert.subjectText]);
      const bundle = await readFile(file('bundle.pem'), 'utf8');
      assert.equal(bundle, pki.leaf.certPem + pki.ca.intermediate.certPem + pki.ca.root.certPem + pki.leaf.keyPem);
      assert.equal((await stat(file('bundle.pem'))).mode & 0o777, 0o600);
      await runOk('openssl', ['verify', '-CAfile', file('root.pem'), '-untrusted', file('intermediate.pem'), file('bundle.pem')]);
      await runOk('openssl', ['pkcs12', '-export', '-in', file('bundle.pem'), '-name', 'defaultsecuritykeypairhandle', '-out', file('b.p12'), '-passout', 'pass:changeit']);
      await runOk('keytool', ['-importkeystore', '-noprompt', '-srckeystore', file('b.p12'), '-srcstoretype', 'PKCS12', '-srcstorepass', 'changeit',
        '-destkeystore', file('ks.jks'), '-deststoretype', 'JKS', '-deststorepass', 'changeit', '-destkeypass', 'changeit']);
      const list = await runOk('keytool', ['-list', '-v', '-keystore', file('ks.jks'), '-storepass', 'changeit', '-alias', 'defaultsecuritykeypairhandle']);
      assert.match(list.stdout, /Certificate chain length: 3/);
    });

    it('builds from an encrypted key with the password from a file', async () => {
      await runOk('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', file('leaf.key'), '-out', file('enc.key'), '-passout', 'pass:s3cret']);
      await writeFile(file('pw.txt'), 's3cret\n');
      const res = await agent('bundle', 'build', '--cert', 'leaf.pem', '--key', 'enc.key', '--key-password-file', 'pw.txt', '--chain', 'intermediate.pem', '--chain', 'root.pem', '-o', 'from-enc.pem');
      assert.equal(res.code, 0, res.stderr);
      assert.doesNotMatch(res.stdout + res.stderr, /s3cret/);
      const wrong = await run(AGENT, ['bundle', 'build', '--cert', 'leaf.pem', '--key', 'enc.key', '--chain', 'root.pem', '-o', 'x.pem'], { cwd: dir, env: { ...process.env, MIDCERT_KEY_PASSWORD: 'nope' } });
      assert.equal(wrong.code, 3);
      assert.match(wrong.stderr, /\[KEY_PASSWORD\]/);
    });

    it('writes nothing and exits 1 when the result would not lint clean', async () => {
      const res = await agent('bundle', 'build', '--cert', 'leaf.pem', '--key', 'leaf.key', '--chain', 'intermediate.pem', '-o', 'incomplete.pem', '--json');
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^midcert-agent: error \[BUNDLE_INVALID\] .*CHAIN_INCOMPLETE/);
      const out = JSON.parse(res.stdout);
      assert.equal(out.ok, false);
      assert.ok(out.findings.some((f: { code: string }) => f.code === 'CHAIN_INCOMPLETE'));
      await assert.rejects(access(file('incomplete.pem')));
    });

    it('builds from a PFX, legacy and modern', async () => {
      for (const legacy of [true, false]) {
        const pfx = file(`mid-${legacy}.pfx`);
        await runOk('openssl', ['pkcs12', '-export', ...(legacy ? ['-legacy'] : []), '-in', file('leaf.pem'), '-inkey', file('leaf.key'), '-certfile', file('intermediate.pem'), '-out', pfx, '-passout', 'pass:pfxpw']);
        const res = await run(AGENT, ['bundle', 'build', '--pfx', pfx, '--chain', 'root.pem', '-o', `pfx-${legacy}.pem`], { cwd: dir, env: { ...process.env, MIDCERT_PFX_PASSWORD: 'pfxpw' } });
        assert.equal(res.code, 0, res.stderr);
        assert.equal(await readFile(file(`pfx-${legacy}.pem`), 'utf8'), pki.leaf.certPem + pki.ca.intermediate.certPem + pki.ca.root.certPem + pki.leaf.keyPem);
      }
    });

    it('explains usage mistakes', async () => {
      const both = await agent('bundle', 'build', '--pfx', 'x.pfx', '--cert', 'leaf.pem', '-o', 'o.pem');
      assert.equal(both.code, 2);
      assert.match(both.stderr, /\[USAGE\] give either --pfx, or --cert and --key/);
      const missing = await agent('bundle', 'build', '--cert', 'nope.pem', '--key', 'leaf.key', '-o', 'o.pem');
      assert.equal(missing.code, 4);
      assert.match(missing.stderr, /\[INPUT_UNREADABLE\] cannot read certificate file nope.pem: ENOENT/);
    });
  });

  describe('bundle lint', () => {
    it('exits 0 with ok JSON for a clean bundle', async () => {
      const res = await agent('bundle', 'lint', 'bundle.pem', '--json');
      assert.equal(res.code, 0);
      assert.deepEqual(JSON.parse(res.stdout), { ok: true, findings: [] });
    });

    it('exits 1 with coded findings for a broken one', async () => {
      await writeFile(file('crlf.pem'), (await readFile(file('bundle.pem'), 'utf8')).replace(/\n/g, '\r\n'));
      const res = await agent('bundle', 'lint', 'crlf.pem', '--json');
      assert.equal(res.code, 1);
      const out = JSON.parse(res.stdout);
      assert.equal(out.ok, false);
      assert.deepEqual(Object.keys(out.findings[0]).sort(), ['code', 'fix', 'message', 'severity']);
      assert.equal(out.findings[0].code, 'CRLF');
      const human = await agent('bundle', 'lint', 'crlf.pem');
      assert.equal(human.code, 1);
      assert.match(human.stdout, /error\s+CRLF: .*\n\s+fix: /);
    });

    it('exits 0 when there are only warnings', async () => {
      await writeFile(file('warn.pem'), `${pki.leaf.certPem}\n${pki.ca.chainPem}${pki.leaf.keyPem}`);
      const res = await agent('bundle', 'lint', 'warn.pem', '--json');
      assert.equal(res.code, 0);
      assert.deepEqual(JSON.parse(res.stdout).findings.map((f: { code: string }) => f.code), ['BLANK_LINES']);
    });

    it('refuses inputs over the size bound', async () => {
      await writeFile(file('huge.pem'), Buffer.alloc(2 * 1024 * 1024, 0x41));
      const res = await agent('bundle', 'lint', 'huge.pem');
      assert.equal(res.code, 3);
      assert.match(res.stderr, /\[INPUT_TOO_LARGE\]/);
    });
  });

  describe('keystore show', () => {
    it('lists a keytool-made JKS with the contract JSON shape and matching fingerprints', async () => {
      const res = await agent('keystore', 'show', '--keystore', 'ks.jks', '--json');
      assert.equal(res.code, 0, res.stderr);
      const out = JSON.parse(res.stdout);
      assert.equal(out.type, 'JKS');
      assert.equal(out.entries.length, 1);
      const [entry] = out.entries;
      assert.deepEqual(Object.keys(entry).sort(), ['alias', 'chain', 'kind']);
      assert.equal(entry.alias, 'defaultsecuritykeypairhandle');
      assert.equal(entry.kind, 'PrivateKeyEntry');
      assert.deepEqual(entry.chain.map((c: { sha256: string }) => c.sha256), [pki.leaf.cert.sha256, pki.ca.intermediate.cert.sha256, pki.ca.root.cert.sha256]);
      assert.deepEqual(Object.keys(entry.chain[0]).sort(), ['issuer', 'notAfter', 'notBefore', 'serial', 'sha256', 'subject']);
      assert.match(entry.chain[0].notAfter, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      assert.match(entry.chain[0].sha256, /^[0-9a-f]{64}$/);
    });

    it('refuses a wrong store password with KEYSTORE_PASSWORD', async () => {
      const res = await agent('keystore', 'show', '--keystore', 'ks.jks', '--storepass', 'Sup3rSecretX');
      assert.equal(res.code, 3);
      assert.match(res.stderr, /^midcert-agent: error \[KEYSTORE_PASSWORD\]/);
      assert.doesNotMatch(res.stderr, /Sup3rSecretX/);
    });
  });

  describe('keystore show and status on broken or special keystores', () => {
    const fifos: string[] = [];
    afterEach(() => releaseFifoReaders(fifos));

    it('a truncated keytool JKS is KEYSTORE_MALFORMED with a sentence, never the runtime\'s "offset is out of range"', async () => {
      await runOk('keytool', ['-genkeypair', '-keystore', file('whole.jks'), '-storetype', 'JKS', '-storepass', 'changeit', '-keypass', 'changeit',
        '-alias', 'defaultsecuritykeypairhandle', '-dname', 'CN=mid01', '-keyalg', 'RSA', '-keysize', '2048', '-validity', '30']);
      const whole = await readFile(file('whole.jks'));
      // 100 and 1000 bytes cut inside the certificate chain (where jks-js reads past the end),
      // the others inside the key and the digest.
      for (const cut of [100, 1000, Math.floor(whole.length / 2), whole.length - 10]) {
        await writeFile(file('cut.jks'), whole.subarray(0, cut));
        const res = await agent('keystore', 'show', '--keystore', 'cut.jks');
        assert.equal(res.code, 3, `cut at ${cut}: ${res.stderr}`);
        assert.match(res.stderr, /^midcert-agent: error \[KEYSTORE_MALFORMED\] .*(truncated|trailing)/, `cut at ${cut}`);
        assert.doesNotMatch(res.stderr, /offset|out of range|Received|RangeError|buffer bounds/i, `cut at ${cut}`);
        assert.equal(res.stderr.trim().split('\n').length, 1);
      }
    });

    it('refuses a keystore that is a symlink to /dev/zero or a FIFO at once, with INPUT_UNREADABLE (exit 4)', async () => {
      await symlink('/dev/zero', file('zero.jks'));
      await runOk('mkfifo', [file('fifo.jks')]);
      fifos.push(file('fifo.jks'));
      for (const [name, kind] of [['zero.jks', 'a character device'], ['fifo.jks', 'a FIFO \\(named pipe\\)']]) {
        const res = await run(AGENT, ['keystore', 'show', '--keystore', name as string], { cwd: dir, timeoutMs: 20_000 });
        assert.equal(res.code, 4, `${name}: ${res.stderr}`);
        assert.match(res.stderr, new RegExp(`^midcert-agent: error \\[INPUT_UNREADABLE\\] keystore ${name} is ${kind}, not a regular file`));
      }
    });

    it('`status` answers with a coded keystore error when the keystore is a symlink to /dev/zero, and still reports config.xml', async () => {
      const home = file('mid-zero');
      await mkdir(join(home, 'agent', 'security'), { recursive: true });
      await writeFile(join(home, 'agent', 'config.xml'), renderConfigXml({ url: 'https://acme.service-now.com/', name: 'mid11', auth: 'mutual' }));
      await symlink('/dev/zero', join(home, 'agent', 'security', 'agent_keystore'));
      await writeFile(file('agent-zero.yaml'), [
        'mid:', `  home: ${JSON.stringify(home)}`,
        'service:', '  manager: command', '  start: [/bin/true]', '  stop: [/bin/true]', '  status: [/bin/true]', '  timeoutSeconds: 5',
        `stateDir: ${JSON.stringify(file('state-zero'))}`, '',
      ].join('\n'));
      const started = Date.now();
      const res = await run(AGENT, ['status', '--config', file('agent-zero.yaml'), '--json'], { cwd: dir, timeoutMs: 30_000 });
      assert.equal(res.code, 0, res.stderr);
      assert.ok(Date.now() - started < 30_000);
      const out = JSON.parse(res.stdout);
      assert.equal(out.keystore.error.code, 'KEYSTORE_UNREADABLE');
      assert.match(out.keystore.error.message, /agent_keystore is a character device, not a regular file/);
      assert.equal(out.certificate.present, false);
      assert.equal(out.config.midName, 'mid11');
      assert.equal('error' in out.config, false);
    });
  });

  describe('one certificate-count bound for cert show and bundle lint', () => {
    before(async () => {
      await writeFile(file('certs-64.pem'), pki.leaf.certPem.repeat(LIMITS.certsPerInput));
      await writeFile(file('certs-65.pem'), pki.leaf.certPem.repeat(LIMITS.certsPerInput + 1));
      await writeFile(file('certs-200.pem'), pki.leaf.certPem.repeat(200) + pki.leaf.keyPem);
    });

    it('cert show refuses 65 certificates and shows 64', async () => {
      const over = await agent('cert', 'show', 'certs-65.pem');
      assert.equal(over.code, 3);
      assert.match(over.stderr, /^midcert-agent: error \[INPUT_TOO_LARGE\] 65 certificates in one input; the limit is 64\n$/);
      const at = await agent('cert', 'show', 'certs-64.pem', '--json');
      assert.equal(at.code, 0, at.stderr);
      assert.equal(JSON.parse(at.stdout).certificates.length, 64);
    });

    it('bundle lint refuses 65 (and 200) certificates with the same error, and lints 64', async () => {
      for (const [name, count] of [['certs-65.pem', 65], ['certs-200.pem', 200]] as const) {
        const res = await agent('bundle', 'lint', name, '--json');
        assert.equal(res.code, 3, `${name}: ${res.stderr}`);
        assert.match(res.stderr, new RegExp(`^midcert-agent: error \\[INPUT_TOO_LARGE\\] ${count} certificates in one input; the limit is 64\n$`));
        assert.deepEqual(JSON.parse(res.stdout), { ok: false, error: { code: 'INPUT_TOO_LARGE', message: `${count} certificates in one input; the limit is 64` } });
      }
      const at = await agent('bundle', 'lint', 'certs-64.pem', '--json');
      assert.equal(at.code, 1, 'findings (no key, duplicates), but not refused');
      assert.ok(JSON.parse(at.stdout).findings.length > 0);
    });
  });

  describe('cert show and help', () => {
    it('shows certificates from a PKCS#7 file', async () => {
      await runOk('openssl', ['crl2pkcs7', '-nocrl', '-certfile', file('bundle.pem'), '-outform', 'DER', '-out', file('chain.p7b')]);
      const res = await agent('cert', 'show', 'chain.p7b', '--json');
      assert.equal(res.code, 0, res.stderr);
      assert.equal(JSON.parse(res.stdout).certificates.length, 3);
    });

    it('refuses a DER certificate with trailing bytes, saying how many', async () => {
      await writeFile(file('leaf.der'), pki.leaf.cert.der);
      const clean = await agent('cert', 'show', 'leaf.der', '--json');
      assert.equal(clean.code, 0, clean.stderr);
      assert.equal(JSON.parse(clean.stdout).certificates[0].sha256, pki.leaf.cert.sha256);
      for (const [extra, words] of [[Buffer.from([0x00, 0x00, 0x0a]), '3 trailing bytes'], [Buffer.from([0x30]), '1 trailing byte'], [pki.ca.root.cert.der, `${pki.ca.root.cert.der.length} trailing bytes`]] as const) {
        await writeFile(file('trailing.der'), Buffer.concat([pki.leaf.cert.der, extra]));
        const res = await agent('cert', 'show', 'trailing.der');
        assert.equal(res.code, 3, res.stderr);
        assert.equal(res.stderr, `midcert-agent: error [CERT_MALFORMED] ${words} after the certificate\n`);
      }
      await runOk('openssl', ['crl2pkcs7', '-nocrl', '-certfile', file('bundle.pem'), '-outform', 'DER', '-out', file('chain2.p7b')]);
      await writeFile(file('trailing.p7b'), Buffer.concat([await readFile(file('chain2.p7b')), Buffer.from('junk')]));
      const p7 = await agent('cert', 'show', 'trailing.p7b');
      assert.equal(p7.code, 3);
      assert.match(p7.stderr, /\[CERT_MALFORMED\] 4 trailing bytes after the PKCS#7 data/);
    });

    it('documents exit codes in --help', async () => {
      const res = await agent('--help');
      assert.equal(res.code, 0);
      assert.match(res.stdout, /Exit codes:/);
      assert.match(res.stdout, /bundle/);
    });

    it('reports unknown commands as usage errors', async () => {
      const res = await agent('frobnicate');
      assert.equal(res.code, 2);
      assert.match(res.stderr, /^midcert-agent: error \[USAGE\]/);
    });
  });
});
