import assert from 'node:assert/strict';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstCertificateSha256, isIssuedBy, parseCertificate, readCertificates, type Certificate } from '../../pki/certificate.js';
import { publicKeysEqual } from '../../pki/keys.js';
import { spkiDer } from '../../pki/spki.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { runOk } from '../helpers/run.js';

describe('pki/spki, key comparison, issuer checks and unparsed certificate fingerprints', () => {
  let pki: LabPki;
  let dir: string;
  before(async () => {
    pki = await makeLabPki();
    dir = await mkdtemp(join(tmpdir(), 'midcert-spki-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('gives the SubjectPublicKeyInfo openssl derives, the same for a private key and its certificate, every time', async () => {
    await writeFile(join(dir, 'leaf.key'), pki.leaf.keyPem, { mode: 0o600 });
    const pem = (await runOk('openssl', ['pkey', '-in', join(dir, 'leaf.key'), '-pubout'])).stdout;
    const openssl = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    assert.deepEqual(spkiDer(pki.leaf.key), openssl);
    assert.deepEqual(spkiDer(pki.leaf.cert.publicKey), openssl);
    assert.equal(spkiDer(pki.leaf.key), spkiDer(pki.leaf.key), 'remembered per key object');
    assert.deepEqual(spkiDer(createPublicKey(pki.leaf.keyPem)), openssl, 'a new object of the same key');
    assert.equal(publicKeysEqual(pki.leaf.key, pki.leaf.cert.publicKey), true);
    assert.equal(publicKeysEqual(pki.leaf.key, pki.ca.intermediate.cert.publicKey), false);
  });

  it('compares two public keys by their material, without encoding either, as the SPKI comparison does', () => {
    const fresh = createPublicKey(pki.leaf.keyPem); // a new object: nothing remembered for it
    const exported = new Map<string, number>();
    const original = fresh.export.bind(fresh);
    fresh.export = ((...args: Parameters<typeof fresh.export>) => { exported.set('fresh', (exported.get('fresh') ?? 0) + 1); return original(...args); }) as typeof fresh.export;
    assert.equal(publicKeysEqual(fresh, pki.leaf.cert.publicKey), true);
    assert.equal(publicKeysEqual(fresh, pki.ca.intermediate.cert.publicKey), false);
    assert.equal(exported.get('fresh'), undefined, 'two public keys: not encoded');
    for (const [a, b] of [[fresh, pki.leaf.cert.publicKey], [fresh, pki.ca.root.cert.publicKey], [pki.leaf.cert.publicKey, pki.ca.intermediate.cert.publicKey]] as const) {
      assert.equal(publicKeysEqual(a, b), spkiDer(a).equals(spkiDer(b)), 'same answer as the SPKI DER comparison');
    }
  });

  it('verifies a certificate\'s signature by a given issuer once, and a failed check every time', () => {
    const leaf = parseCertificate(Buffer.from(pki.leaf.cert.der));
    const intermediate = parseCertificate(Buffer.from(pki.ca.intermediate.cert.der));
    const root = parseCertificate(Buffer.from(pki.ca.root.cert.der));
    let verifies = 0;
    const verify = leaf.x509.verify.bind(leaf.x509);
    Object.defineProperty(leaf.x509, 'verify', { value: (key: KeyObject) => { verifies += 1; return verify(key); } });
    assert.equal(isIssuedBy(leaf, intermediate), true);
    assert.equal(isIssuedBy(leaf, intermediate), true);
    assert.equal(verifies, 1, 'the verified pair is remembered');
    // Same name as the intermediate, another key: refused, and asked again each time.
    const impostor = { ...intermediate, publicKey: root.publicKey } as Certificate;
    assert.equal(isIssuedBy(leaf, impostor), false);
    assert.equal(isIssuedBy(leaf, impostor), false);
    assert.equal(verifies, 3);
    assert.equal(isIssuedBy(leaf, root), false, 'another name: not even verified');
    assert.equal(verifies, 3);
    // A copy that can still change is not remembered, even when it did sign.
    const copy = { ...intermediate } as Certificate;
    assert.equal(isIssuedBy(leaf, copy), true);
    assert.equal(isIssuedBy(leaf, copy), true);
    assert.equal(verifies, 5);
  });

  it('fingerprints the first certificate without parsing it, as readCertificates and openssl do', async () => {
    const chain = pki.leaf.certPem + pki.ca.chainPem;
    assert.equal(firstCertificateSha256(Buffer.from(chain)), readCertificates(Buffer.from(chain))[0]?.sha256);
    await writeFile(join(dir, 'leaf.pem'), pki.leaf.certPem);
    const out = (await runOk('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-fingerprint', '-sha256'])).stdout;
    assert.equal(firstCertificateSha256(Buffer.from(pki.leaf.certPem)), out.trim().split('=')[1]?.replace(/:/g, '').toLowerCase());
    assert.equal(firstCertificateSha256(pki.leaf.cert.der), createHash('sha256').update(pki.leaf.cert.der).digest('hex'), 'DER input');
    assert.equal(firstCertificateSha256(Buffer.from(pki.leaf.keyPem)), undefined, 'no certificate in it');
  });
});
