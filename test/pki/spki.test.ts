import assert from 'node:assert/strict';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstCertificateSha256, readCertificates } from '../../pki/certificate.js';
import { publicKeysEqual } from '../../pki/keys.js';
import { spkiDer } from '../../pki/spki.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { runOk } from '../helpers/run.js';

describe('pki/spki and unparsed certificate fingerprints', () => {
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
