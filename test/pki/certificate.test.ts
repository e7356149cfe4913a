import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { readCertificates, summarize } from '../../pki/certificate.js';
import { buildChain } from '../../pki/chain.js';
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
});
