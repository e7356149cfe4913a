import assert from 'node:assert/strict';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import forge from 'node-forge';
import { MidcertError, type ErrorCode } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { fromDerBuffer, latin1, toDer } from '../../pki/asn1.js';
import { readCertificates } from '../../pki/certificate.js';
import { childrenOf, readTlv, slice, type Tlv } from '../../pki/der.js';
import { readPrivateKey } from '../../pki/keys.js';
import { matchKeyToCertificate, readPkcs12, type Pkcs12Contents } from '../../pki/pkcs12.js';
import { makeLab, pseudoRandomBytes, truncations, type Lab } from '../helpers/pki-fixtures.js';

const asn1 = forge.asn1;

/** PFX files made by `openssl pkcs12 -export` in before(); name → [extra args, password]. */
const EXPORTS: Record<string, { args: string[]; password: string }> = {
  'modern-rsa': { args: ['-in', 'leaf.pem', '-inkey', 'leaf.key', '-certfile', 'chain.pem', '-name', 'mid01'], password: 'secret' },
  'legacy-rsa': { args: ['-legacy', '-in', 'leaf.pem', '-inkey', 'leaf.key', '-certfile', 'chain.pem', '-name', 'mid01'], password: 'secret' },
  'modern-ec': { args: ['-in', 'leaf-ec.pem', '-inkey', 'leaf-ec.key', '-certfile', 'chain.pem'], password: 'secret' },
  'legacy-ec': { args: ['-legacy', '-in', 'leaf-ec.pem', '-inkey', 'leaf-ec.key', '-certfile', 'chain.pem'], password: 'secret' },
  'modern-empty': { args: ['-in', 'leaf.pem', '-inkey', 'leaf.key'], password: '' },
  'legacy-empty': { args: ['-legacy', '-in', 'leaf.pem', '-inkey', 'leaf.key'], password: '' },
  'modern-nomac': { args: ['-nomac', '-in', 'leaf.pem', '-inkey', 'leaf.key'], password: 'secret' },
  unencrypted: { args: ['-keypbe', 'NONE', '-certpbe', 'NONE', '-in', 'leaf.pem', '-inkey', 'leaf.key'], password: '' },
  'iter-100k': { args: ['-iter', '100000', '-in', 'leaf.pem', '-inkey', 'leaf.key'], password: 'secret' },
  'utf8-password': { args: ['-in', 'leaf.pem', '-inkey', 'leaf.key'], password: 'pässwörd€' },
  'certs-only': { args: ['-nokeys', '-in', 'chain.pem'], password: 'secret' },
};

describe('pki/pkcs12', function () {
  let lab: Lab;
  const pfx: Record<string, Buffer> = {};
  const fingerprints: Record<string, string> = {};

  before(async function () {
    lab = await makeLab();
    await Promise.all(Object.entries(EXPORTS).map(async ([name, { args, password }]) => {
      await lab.openssl(['pkcs12', '-export', ...args, '-passout', `pass:${password}`, '-out', `${name}.p12`]);
      pfx[name] = await lab.read(`${name}.p12`);
    }));
    for (const name of ['root', 'intermediate', 'leaf', 'leaf-ec']) fingerprints[name] = await lab.fingerprint(`${name}.pem`);
  });

  after(async () => lab?.cleanup());

  const keyFromFile = async (name: string): Promise<KeyObject> => readPrivateKey(await lab.read(name)).key;
  const read = (name: string, password = EXPORTS[name]?.password ?? ''): Pkcs12Contents => readPkcs12(pfx[name] as Buffer, password);

  describe('the files the tests rely on really use the algorithms they claim', () => {
    const info = (name: string, legacy = false): Promise<string> =>
      lab.opensslStderr(['pkcs12', '-info', '-noout', ...(legacy ? ['-legacy'] : []), '-in', `${name}.p12`, '-passin', `pass:${EXPORTS[name]?.password}`]);

    it('modern: PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC and a SHA-256 MAC', async () => {
      const text = await info('modern-rsa');
      assert.match(text, /MAC: sha256/);
      assert.match(text, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
      assert.match(text, /Encrypted data: PBES2, PBKDF2, AES-256-CBC/);
    });

    it('legacy: RC2-40 certificates, 3DES key, SHA-1 MAC', async () => {
      const text = await info('legacy-rsa', true);
      assert.match(text, /MAC: sha1/);
      assert.match(text, /Encrypted data: pbeWithSHA1And40BitRC2-CBC/);
      assert.match(text, /Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC/);
    });
  });

  for (const name of ['modern-rsa', 'legacy-rsa']) {
    it(`reads an RSA ${name.split('-')[0]} export: key, leaf and -certfile chain with their attributes`, () => {
      const contents = read(name);
      assert.equal(contents.keys.length, 1);
      const [key] = contents.keys;
      assert.equal(key?.key.asymmetricKeyType, 'rsa');
      assert.equal(key?.key.type, 'private');
      assert.equal(key?.friendlyName, 'mid01');
      assert.deepEqual(contents.certificates.map((c) => c.cert.sha256), [fingerprints.leaf, fingerprints.intermediate, fingerprints.root]);
      const leaf = contents.certificates[0];
      assert.equal(leaf?.friendlyName, 'mid01');
      assert.match(leaf?.localKeyId ?? '', /^[0-9a-f]{40}$/);
      assert.equal(leaf?.localKeyId, key?.localKeyId);
      assert.equal(contents.certificates[1]?.localKeyId, undefined);
      assert.equal(leaf?.cert.subjectText, 'CN=mid01,O=midcert lab');
    });
  }

  for (const name of ['modern-ec', 'legacy-ec']) {
    it(`reads a P-256 key from a ${name.split('-')[0]} export with node:crypto`, async () => {
      const contents = read(name);
      const key = contents.keys[0]?.key as KeyObject;
      assert.equal(key.asymmetricKeyType, 'ec');
      assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.deepEqual(spki(key), spki(await keyFromFile('leaf-ec.key')));
      assert.equal(contents.certificates[0]?.cert.key.type, 'EC');
    });
  }

  it('keeps every certificate byte-for-byte as openssl wrote it', async () => {
    const expected = readCertificates(Buffer.concat([await lab.read('leaf-ec.pem'), await lab.read('chain.pem')])).map((c) => c.der);
    for (const name of ['modern-ec', 'legacy-ec']) {
      assert.deepEqual(read(name).certificates.map((c) => c.cert.der), expected);
    }
  });

  it('returns the same key that went in (RSA)', async () => {
    assert.deepEqual(spki(read('legacy-rsa').keys[0]?.key as KeyObject), spki(await keyFromFile('leaf.key')));
  });

  for (const name of ['modern-empty', 'legacy-empty', 'unencrypted']) {
    it(`reads an empty-password file (${name}) and refuses a non-empty password`, () => {
      assert.equal(read(name, '').keys.length, 1);
      assert.equal(read(name, '').certificates[0]?.cert.sha256, fingerprints.leaf);
      if (name !== 'unencrypted') assert.throws(() => read(name, 'secret'), code('PKCS12_PASSWORD'));
    });
  }

  it('reads a PFX whose MAC uses the zero-length empty password, with a plain keyBag (as forge writes)', async () => {
    const key = forge.pki.privateKeyFromPem((await lab.read('leaf.key')).toString());
    const cert = forge.pki.certificateFromPem((await lab.read('leaf.pem')).toString());
    const der = toDer(forge.pkcs12.toPkcs12Asn1(key, [cert], null));
    await writeFile(lab.path('forge-null.p12'), der);
    assert.match(await lab.opensslStderr(['pkcs12', '-info', '-noout', '-in', 'forge-null.p12', '-passin', 'pass:']), /Key bag/);
    const contents = readPkcs12(der, '');
    assert.deepEqual(spki(contents.keys[0]?.key as KeyObject), spki(await keyFromFile('leaf.key')));
    assert.equal(contents.certificates[0]?.cert.subjectText, 'CN=mid01,O=midcert lab');
    assert.throws(() => readPkcs12(der, 'secret'), code('PKCS12_PASSWORD'));
  });

  it('reads BER: indefinite lengths and a chunked authSafe OCTET STRING (as NSS writes)', () => {
    const ber = toIndefiniteBer(pfx['modern-rsa'] as Buffer);
    assert.notDeepEqual(ber, pfx['modern-rsa']);
    const contents = readPkcs12(ber, 'secret');
    assert.equal(contents.keys.length, 1);
    assert.deepEqual(contents.certificates.map((c) => c.cert.sha256), [fingerprints.leaf, fingerprints.intermediate, fingerprints.root]);
  });

  it('reads a file without a MAC, and still refuses a wrong password by failed decryption', () => {
    assert.equal(read('modern-nomac').keys.length, 1);
    assert.throws(() => read('modern-nomac', 'wrong'), code('PKCS12_PASSWORD'));
  });

  it('reads a file with 100,000 iterations (older Java defaults) within the work bound', () => {
    assert.equal(read('iter-100k').keys.length, 1);
  });

  it('encodes a non-ASCII password the way OpenSSL does', () => {
    assert.equal(read('utf8-password').keys.length, 1);
    assert.throws(() => read('utf8-password', 'passwörd€'), code('PKCS12_PASSWORD'));
  });

  for (const name of ['modern-rsa', 'legacy-rsa', 'modern-ec']) {
    it(`refuses a wrong password on ${name} with PKCS12_PASSWORD`, () => {
      assert.throws(() => read(name, 'Secret'), code('PKCS12_PASSWORD'));
      assert.throws(() => read(name, ''), code('PKCS12_PASSWORD'));
    });
  }

  describe('matchKeyToCertificate', () => {
    it('finds the leaf whose public key is the key, among CA certificates', () => {
      for (const name of ['legacy-rsa', 'modern-ec']) {
        const contents = read(name);
        const { key, leaf } = matchKeyToCertificate(contents);
        assert.equal(key, contents.keys[0]?.key);
        assert.equal(leaf.sha256, name.endsWith('ec') ? fingerprints['leaf-ec'] : fingerprints.leaf);
      }
    });

    it('finds it by public key even when the leaf is not the first certificate', () => {
      const contents = read('modern-ec');
      const reordered = { keys: contents.keys, certificates: [...contents.certificates].reverse() };
      assert.equal(matchKeyToCertificate(reordered).leaf.sha256, fingerprints['leaf-ec']);
    });

    it('refuses no key, two keys, or a key without its certificate (PKCS12_CONTENT)', () => {
      const certsOnly = read('certs-only');
      assert.equal(certsOnly.keys.length, 0);
      assert.equal(certsOnly.certificates.length, 2);
      assert.throws(() => matchKeyToCertificate(certsOnly), code('PKCS12_CONTENT'));
      const rsa = read('modern-rsa');
      const ec = read('modern-ec');
      assert.throws(() => matchKeyToCertificate({ keys: [...rsa.keys, ...ec.keys], certificates: rsa.certificates }), code('PKCS12_CONTENT'));
      assert.throws(() => matchKeyToCertificate({ keys: ec.keys, certificates: rsa.certificates }), code('PKCS12_CONTENT'));
    });
  });

  describe('hostile and damaged input', () => {
    const READ_ERRORS: ErrorCode[] = ['PKCS12_MALFORMED', 'PKCS12_PASSWORD'];

    for (const name of ['modern-rsa', 'legacy-rsa', 'unencrypted']) {
      it(`refuses every truncation of ${name} with PKCS12_MALFORMED`, () => {
        const cuts = truncations(pfx[name] as Buffer);
        assert.ok(cuts.length > 40);
        for (const cut of cuts) assert.throws(() => readPkcs12(cut, EXPORTS[name]?.password ?? ''), code('PKCS12_MALFORMED'), `cut at ${cut.length}`);
      });
    }

    it('refuses random bytes, with and without a SEQUENCE header, with PKCS12_MALFORMED', () => {
      for (let seed = 1; seed <= 200; seed++) {
        const bytes = pseudoRandomBytes(1 + (seed * 37) % 3000, seed);
        if (seed % 2 === 0) bytes[0] = 0x30;
        assert.throws(() => readPkcs12(bytes, 'secret'), code('PKCS12_MALFORMED'), `seed ${seed}`);
      }
      assert.throws(() => readPkcs12(new Uint8Array(0), ''), code('PKCS12_MALFORMED'));
    });

    it('answers single-byte corruptions with a result or a typed error, never another exception', () => {
      for (const name of ['modern-nomac', 'legacy-rsa']) {
        const original = pfx[name] as Buffer;
        for (let seed = 1; seed <= 100; seed++) {
          const damaged = Buffer.from(original);
          const at = (seed * 7919) % damaged.length;
          damaged[at] = (damaged[at] as number) ^ (1 << (seed % 8));
          try {
            readPkcs12(damaged, EXPORTS[name]?.password ?? '');
          } catch (err) {
            assert.ok(err instanceof MidcertError && READ_ERRORS.includes(err.code), `${name} flip at ${at}: ${String(err)}`);
          }
        }
      }
    });

    it('refuses a file over LIMITS.pfxBytes before parsing it', () => {
      assert.throws(() => readPkcs12(Buffer.alloc(LIMITS.pfxBytes + 1, 0x30), ''), code('INPUT_TOO_LARGE'));
    });

    it('refuses an absurd MAC iteration count without computing it', () => {
      const hostile = patchIterations(pfx['modern-rsa'] as Buffer, 2048, 0x7fffffff);
      assert.notDeepEqual(hostile, pfx['modern-rsa']);
      const started = Date.now();
      assert.throws(() => readPkcs12(hostile, 'secret'), code('INPUT_TOO_LARGE'));
      assert.ok(Date.now() - started < 1000, 'refused before deriving');
    });

    it('refuses an absurd PBKDF2 iteration count without computing it', () => {
      // No MAC here, so the first thing that derives a key is PBES2 decryption.
      const started = Date.now();
      assert.throws(() => readPkcs12(patchIterations(pfx['modern-nomac'] as Buffer, 2048, LIMITS.kdfIterations + 1), 'secret'), code('INPUT_TOO_LARGE'));
      assert.throws(() => readPkcs12(patchIterations(pfx['modern-nomac'] as Buffer, 2048, 2 ** 40), 'secret'), code('INPUT_TOO_LARGE'));
      assert.ok(Date.now() - started < 1000, 'refused before deriving');
    });
  });
});

function code(expected: ErrorCode): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof MidcertError, `expected a MidcertError, got ${String(err)}`);
    assert.equal(err.code, expected, err.message);
    return true;
  };
}

function spki(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

/**
 * Re-encodes a DER PFX's outer layers as BER the way NSS does: indefinite-length PFX, ContentInfo
 * and [0], and the authSafe content as a constructed OCTET STRING of two chunks. The MAC covers
 * the content octets, not their encoding, so it still verifies.
 */
function toIndefiniteBer(der: Buffer): Buffer {
  const [version, authSafe, macData] = childrenOf(der, readTlv(der));
  const [contentType, wrapper] = childrenOf(der, authSafe as Tlv);
  const octetString = childrenOf(der, wrapper as Tlv)[0] as Tlv;
  const content = der.subarray(octetString.contentStart, octetString.end);
  const half = content.length >> 1;
  const chunk = (bytes: Buffer): Buffer => Buffer.concat([Buffer.from([0x04, 0x82, bytes.length >> 8, bytes.length & 0xff]), bytes]);
  const eoc = Buffer.alloc(2);
  return Buffer.concat([
    Buffer.from([0x30, 0x80]), slice(der, version as Tlv),
    Buffer.from([0x30, 0x80]), slice(der, contentType as Tlv),
    Buffer.from([0xa0, 0x80, 0x24, 0x80]), chunk(content.subarray(0, half)), chunk(content.subarray(half)), eoc, eoc, eoc,
    slice(der, macData as Tlv), eoc,
  ]);
}

/**
 * Rewrites every INTEGER equal to `from` into `to`, descending into OCTET STRINGs that hold DER
 * (the authSafe and its SafeContents), so iteration counts can be made hostile after the fact.
 */
function patchIterations(der: Buffer, from: number, to: number): Buffer {
  const encode = (n: number): string => {
    const hex = n.toString(16);
    const bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
    return latin1((bytes[0] as number) & 0x80 ? Buffer.concat([Buffer.alloc(1), bytes]) : bytes);
  };
  const [fromBytes, toBytes] = [encode(from), encode(to)];
  const walk = (node: forge.asn1.Asn1): void => {
    if (Array.isArray(node.value)) return node.value.forEach(walk);
    if (node.tagClass !== asn1.Class.UNIVERSAL) return;
    if (node.type === asn1.Type.INTEGER && node.value === fromBytes) node.value = toBytes;
    if (node.type === asn1.Type.OCTETSTRING && node.value.length > 16) {
      let inner: forge.asn1.Asn1;
      try {
        inner = fromDerBuffer(Buffer.from(node.value, 'latin1'));
      } catch {
        return; // not DER inside: a salt, a digest or ciphertext
      }
      walk(inner);
      node.value = latin1(toDer(inner));
    }
  };
  const root = fromDerBuffer(der);
  walk(root);
  return toDer(root);
}
