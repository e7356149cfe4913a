import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { buildCsr, parseCsr } from '../../pki/csr.js';
import { describeKey, generateKey, keySpecFrom, readPrivateKey, toPkcs8Pem } from '../../pki/keys.js';
import { runOk } from '../helpers/run.js';

describe('pki/keys and pki/csr', () => {
  let dir: string;
  const file = (name: string): string => join(dir, name);
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-csr-')); });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const [type, bits, label] of [['rsa', 2048, 'RSA 2048'], ['rsa', 3072, 'RSA 3072'], ['ec', 256, 'EC P-256'], ['ec', 384, 'EC P-384']] as const) {
    it(`${label}: CSR verifies with openssl req -verify and asks for clientAuth`, async () => {
      const key = await generateKey(keySpecFrom(type, bits));
      assert.equal(describeKey(key).bits, bits);
      await writeFile(file('req.csr'), buildCsr(key, { subject: 'CN=mid01,O=Org,OU=ITOM', sans: ['DNS:mid01', 'IP:10.1.2.3', 'IP:::1'] }));
      const res = await runOk('openssl', ['req', '-in', file('req.csr'), '-noout', '-verify', '-text']);
      assert.match(res.stderr + res.stdout, /verify OK/);
      assert.match(res.stdout, /TLS Web Client Authentication/);
      assert.match(res.stdout, /IP Address:10.1.2.3/);
      assert.match(res.stdout, /IP Address:0:0:0:0:0:0:0:1/);
      assert.match(res.stdout, /Digital Signature/);
      assert.equal(/Key Encipherment/.test(res.stdout), type === 'rsa');
    });
  }

  it('reads CSRs made by openssl with SHA-1, SHA-256 and SHA-384 and checks the signature', async () => {
    await runOk('openssl', ['genpkey', '-algorithm', 'RSA', '-out', file('o.key')]);
    for (const digest of ['-sha1', '-sha256', '-sha384']) {
      await runOk('openssl', ['req', '-new', '-key', file('o.key'), digest, '-subj', '/O=Org/CN=mid09', '-out', file('o.csr')]);
      const csr = parseCsr(await readFile(file('o.csr')));
      assert.equal(csr.signatureValid, true, digest);
      assert.equal(csr.subjectText, 'CN=mid09,O=Org');
    }
    const tampered = Buffer.from(await readFile(file('o.csr'), 'utf8'));
    const der = Buffer.from(tampered.toString().replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    der[40] = (der[40] as number) ^ 0x01;
    assert.equal(parseCsr(der).signatureValid, false);
  });

  it('reads PKCS#1, PKCS#8, encrypted PKCS#8 and DER keys to the same key', async () => {
    const key = await generateKey();
    await writeFile(file('k8.pem'), toPkcs8Pem(key));
    const expected = toPkcs8Pem(key);
    const pkcs1 = (await runOk('openssl', ['rsa', '-in', file('k8.pem'), '-traditional'])).stdout;
    const enc = (await runOk('openssl', ['pkcs8', '-topk8', '-in', file('k8.pem'), '-v2', 'aes-256-cbc', '-passout', 'pass:pw'])).stdout;
    await runOk('openssl', ['pkcs8', '-topk8', '-in', file('k8.pem'), '-nocrypt', '-outform', 'DER', '-out', file('k8.der')]);
    await runOk('openssl', ['rsa', '-in', file('k8.pem'), '-traditional', '-outform', 'DER', '-out', file('k1.der')]);
    assert.equal(readPrivateKey(Buffer.from(pkcs1)).encoding, 'pkcs1');
    assert.equal(toPkcs8Pem(readPrivateKey(Buffer.from(pkcs1)).key), expected);
    assert.equal(toPkcs8Pem(readPrivateKey(Buffer.from(enc), 'pw').key), expected);
    assert.equal(toPkcs8Pem(readPrivateKey(await readFile(file('k8.der'))).key), expected);
    assert.equal(toPkcs8Pem(readPrivateKey(await readFile(file('k1.der'))).key), expected);
    assert.throws(() => readPrivateKey(Buffer.from(enc)), (e: unknown) => e instanceof MidcertError && e.code === 'KEY_PASSWORD');
    // A wrong password sometimes fails the padding check and sometimes yields unparsable ASN.1:
    // both must read as KEY_PASSWORD.
    for (let i = 0; i < 40; i++) {
      assert.throws(() => readPrivateKey(Buffer.from(enc), `wrong-${i}`), (e: unknown) => e instanceof MidcertError && e.code === 'KEY_PASSWORD');
    }
  });

  it('says which blocks it found when a PEM file holds no CSR', async () => {
    await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file('x.key'), '-out', file('x.pem'), '-subj', '/CN=x', '-days', '1']);
    const pem = await readFile(file('x.pem'));
    assert.throws(() => parseCsr(pem), (e: unknown) => e instanceof MidcertError && e.code === 'CERT_MALFORMED' && /found: CERTIFICATE\)/.test(e.message));
  });

  it('refuses unsupported key specs', () => {
    for (const [type, bits] of [['rsa', 1024], ['ec', 521], ['dsa', 2048]] as const) {
      assert.throws(() => keySpecFrom(type, bits), (e: unknown) => e instanceof MidcertError && e.code === 'KEY_UNSUPPORTED');
    }
  });
});
