import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, summarize } from '../../pki/certificate.js';
import { buildChain } from '../../pki/chain.js';
import { lintBundle } from '../../pki/lint.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { runOk } from '../helpers/run.js';

describe('pki/certificate and pki/chain', () => {
  let pki: LabPki;
  let dir: string;
  const file = (name: string): string => join(dir, name);

  before(async () => {
    pki = await makeLabPki();
    dir = await mkdtemp(join(tmpdir(), 'midcert-cert-'));
    await writeFile(file('chain.pem'), pki.leaf.certPem + pki.ca.chainPem);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('summarizes like openssl: subject, issuer, serial, dates, SHA-256, extensions', async () => {
    await writeFile(file('leaf.pem'), pki.leaf.certPem);
    const out = (await runOk('openssl', ['x509', '-in', file('leaf.pem'), '-noout', '-subject', '-issuer', '-serial', '-fingerprint', '-sha256', '-enddate', '-nameopt', 'RFC2253'])).stdout;
    const s = summarize(pki.leaf.cert);
    assert.match(out, new RegExp(`subject=${s.subject}`));
    assert.match(out, new RegExp(`issuer=${s.issuer}`));
    assert.match(out.toLowerCase(), new RegExp(`serial=0*${s.serial}`));
    assert.equal(/Fingerprint=([0-9A-F:]+)/.exec(out)?.[1]?.replace(/:/g, '').toLowerCase(), s.sha256);
    assert.equal(new Date(/notAfter=(.*)/.exec(out)?.[1] ?? '').toISOString(), s.notAfter);
    assert.deepEqual(s.keyUsage, ['digitalSignature', 'keyEncipherment']);
    assert.deepEqual(s.extKeyUsage, ['clientAuth']);
    assert.deepEqual(s.basicConstraints, { ca: false });
    assert.equal(s.keyType, 'RSA');
    assert.equal(s.keyBits, 2048);
    assert.equal(s.selfSigned, false);
    assert.equal(summarize(pki.ca.root.cert).selfSigned, true);
    assert.deepEqual(summarize(pki.ca.intermediate.cert).basicConstraints, { ca: true, pathLen: 0 });
  });

  it('reads PEM, DER, PKCS#7 (DER and PEM) and Microsoft base64 chains labelled CERTIFICATE', async () => {
    await runOk('openssl', ['crl2pkcs7', '-nocrl', '-certfile', file('chain.pem'), '-outform', 'DER', '-out', file('chain.p7b')]);
    const p7der = await readFile(file('chain.p7b'));
    const p7pem = (await runOk('openssl', ['crl2pkcs7', '-nocrl', '-certfile', file('chain.pem')])).stdout;
    const msStyle = p7pem.replace(/PKCS7/g, 'CERTIFICATE').replace(/\n/g, '\r\n');
    const expected = [pki.leaf.cert.sha256, pki.ca.intermediate.cert.sha256, pki.ca.root.cert.sha256].sort();
    for (const input of [Buffer.from(pki.leaf.certPem + pki.ca.chainPem), p7der, Buffer.from(p7pem), Buffer.from(msStyle)]) {
      assert.deepEqual(readCertificates(input).map((c) => c.sha256).sort(), expected);
    }
    assert.equal(readCertificates(pki.leaf.cert.der)[0]?.sha256, pki.leaf.cert.sha256);
  });

  it('reads EC certificates (which node-forge alone cannot)', async () => {
    await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', file('ec.key'), '-out', file('ec.pem'), '-subj', '/CN=ec', '-days', '5']);
    const [cert] = readCertificates(await readFile(file('ec.pem')));
    assert.equal(cert?.key.type, 'EC');
    assert.equal(cert?.key.bits, 384);
    assert.equal(cert?.selfSigned, true);
  });

  it('throws CERT_MALFORMED for junk', () => {
    assert.throws(() => readCertificates(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])), (e: unknown) => e instanceof MidcertError && e.code === 'CERT_MALFORMED');
  });

  it('orders a chain from any order and reports a missing issuer', () => {
    const shuffled = readCertificates(Buffer.from(pki.ca.root.certPem + pki.leaf.certPem + pki.ca.intermediate.certPem));
    const built = buildChain(shuffled);
    assert.deepEqual(built.chain.map((c) => c.sha256), [pki.leaf.cert.sha256, pki.ca.intermediate.cert.sha256, pki.ca.root.cert.sha256]);
    assert.equal(built.complete, true);
    const partial = buildChain(readCertificates(Buffer.from(pki.leaf.certPem + pki.ca.root.certPem)), pki.leaf.key);
    assert.equal(partial.complete, false);
    assert.equal(partial.gap?.kind, 'missing-issuer');
    assert.equal(partial.unused.length, 1);
  });
  it('refuses DER with trailing bytes, in a DER file, a PKCS#7 or a PEM block, saying how many', () => {
    const der = pki.leaf.cert.der;
    const trailing = (bytes: Buffer, words: RegExp) => assert.throws(() => readCertificates(bytes), (err: unknown) => {
      assert.ok(err instanceof MidcertError);
      assert.equal(err.code, 'CERT_MALFORMED');
      assert.match(err.message, words);
      return true;
    });
    trailing(Buffer.concat([der, Buffer.from([0, 0])]), /^2 trailing bytes after the certificate$/);
    trailing(Buffer.concat([der, pki.ca.root.cert.der]), new RegExp(`^${pki.ca.root.cert.der.length} trailing bytes after the certificate$`));
    const pemWithJunk = `-----BEGIN CERTIFICATE-----\n${Buffer.concat([der, Buffer.from('xyz')]).toString('base64')}\n-----END CERTIFICATE-----\n`;
    trailing(Buffer.from(pemWithJunk), /^3 trailing bytes after the certificate$/);
    assert.equal(readCertificates(der)[0]?.sha256, pki.leaf.cert.sha256, 'the exact DER still reads');
  });

  it('one certificate-count bound (LIMITS.certsPerInput) for readCertificates and lintBundle, checked before parsing', () => {
    const many = (n: number): Buffer => Buffer.from(pki.leaf.certPem.repeat(n));
    assert.equal(readCertificates(many(LIMITS.certsPerInput)).length, LIMITS.certsPerInput);
    assert.ok(lintBundle(many(LIMITS.certsPerInput)).findings.length > 0, 'linted (with findings), not refused');
    for (const parse of [readCertificates, lintBundle]) {
      assert.throws(() => parse(many(LIMITS.certsPerInput + 1)), (err: unknown) => err instanceof MidcertError && err.code === 'INPUT_TOO_LARGE'
        && err.message === `${LIMITS.certsPerInput + 1} certificates in one input; the limit is ${LIMITS.certsPerInput}`);
    }
    assert.throws(() => lintBundle(Buffer.from(pki.leaf.certPem.repeat(200) + pki.leaf.keyPem)), /200 certificates in one input; the limit is 64/);
  });

  it('never shows OpenSSL or forge text for an unparsable certificate', () => {
    const broken = Buffer.from(pki.leaf.cert.der);
    broken.fill(0xff, 40, 60);
    assert.throws(() => readCertificates(broken), (err: unknown) => {
      assert.ok(err instanceof MidcertError && err.code === 'CERT_MALFORMED');
      assert.doesNotMatch(err.message, /routines|error:|Too few bytes|Unparsed|ASN\.1 value/);
      assert.match(err.message, /truncated or is not/);
      assert.ok(err.cause, 'the original is kept as the cause');
      return true;
    });
  });
});
