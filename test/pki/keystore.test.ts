import assert from 'node:assert/strict';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { MidcertError, type ErrorCode } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readPrivateKey } from '../../pki/keys.js';
import { findEntry, keystoreToJson, readKeystore, type Keystore } from '../../pki/keystore.js';
import { keytoolList, makeLab, pseudoRandomBytes, truncations, type KeytoolEntry, type Lab } from '../helpers/pki-fixtures.js';

const STOREPASS = 'changeit';
const MID_ALIAS = 'DefaultSecurityKeyPairHandle';

describe('pki/keystore', function () {
  let lab: Lab;
  const files: Record<string, Buffer> = {};
  const listed: Record<string, KeytoolEntry[]> = {};
  const fp: Record<string, string> = {};

  before(async function () {
    lab = await makeLab();
    const kt = (args: string[]): Promise<string> => lab.keytool([...args, '-storepass', STOREPASS]);
    const genkeypair = (store: string, type: string): Promise<string> =>
      kt(['-genkeypair', '-alias', MID_ALIAS, '-keyalg', 'RSA', '-keysize', '2048', '-dname', 'CN=mid-gen,O=midcert lab', '-validity', '30',
        '-storetype', type, '-keystore', store, '-keypass', STOREPASS]);
    const importRoot = (store: string, type: string): Promise<string> =>
      kt(['-importcert', '-noprompt', '-alias', 'LabRoot', '-file', 'root.pem', '-storetype', type, '-keystore', store]);
    const exportPfx = (name: string, leaf: string, certfile: string, alias: string): Promise<string> =>
      lab.openssl(['pkcs12', '-export', '-in', `${leaf}.pem`, '-inkey', `${leaf}.key`, '-certfile', certfile, '-name', alias, '-passout', `pass:${STOREPASS}`, '-out', name]);
    // manage-certificates' path: an OpenSSL PKCS12 converted into the MID's JKS by keytool.
    const importPfx = (src: string): Promise<string> =>
      lab.keytool(['-importkeystore', '-noprompt', '-srckeystore', src, '-srcstoretype', 'PKCS12', '-srcstorepass', STOREPASS,
        '-destkeystore', 'mid.jks', '-deststoretype', 'JKS', '-deststorepass', STOREPASS]);
    const list = async (name: string): Promise<void> => {
      listed[name] = await keytoolList(lab, name, STOREPASS);
    };

    await Promise.all([
      genkeypair('gen.jks', 'JKS').then(() => importRoot('gen.jks', 'JKS')).then(() => list('gen.jks')),
      genkeypair('gen.p12', 'PKCS12').then(() => importRoot('gen.p12', 'PKCS12')).then(() => list('gen.p12')),
      (async () => {
        await exportPfx('mid.p12', 'leaf', 'chain.pem', MID_ALIAS);
        await exportPfx('mid-ec.p12', 'leaf-ec', 'chain.pem', 'mid-ec');
        await exportPfx('mid-reversed.p12', 'leaf', 'chain-reversed.pem', MID_ALIAS);
        await Promise.all([list('mid.p12'), importPfx('mid.p12').then(() => importPfx('mid-ec.p12')).then(() => list('mid.jks'))]);
      })(),
      importRoot('trust.jks', 'JKS'),
      importRoot('trust.jceks', 'JCEKS'),
    ]);
    for (const name of ['gen.jks', 'gen.p12', 'mid.p12', 'mid-ec.p12', 'mid-reversed.p12', 'mid.jks', 'trust.jks', 'trust.jceks']) files[name] = await lab.read(name);
    for (const name of ['root', 'intermediate', 'leaf', 'leaf-ec']) fp[name] = await lab.fingerprint(`${name}.pem`);
  });

  after(async () => lab?.cleanup());

  const read = (name: string, storepass = STOREPASS): Keystore => readKeystore(files[name] as Buffer, storepass);
  const keyFromFile = async (name: string): Promise<KeyObject> => readPrivateKey(await lab.read(name)).key;

  /** Our view next to keytool's, both sorted by alias (neither tool promises an order). */
  function assertSameAsKeytool(ks: Keystore, name: string): void {
    const ours = ks.entries.map((e) => ({ alias: e.alias, kind: e.kind, sha256: e.chain.map((c) => c.sha256) }));
    const byAlias = (a: { alias: string }, b: { alias: string }): number => a.alias.localeCompare(b.alias);
    assert.ok((listed[name] ?? []).length > 0, `keytool listed ${name}`);
    assert.deepEqual(ours.sort(byAlias), [...(listed[name] ?? [])].sort(byAlias));
  }

  it('reads a JKS made by keytool -genkeypair and -importcert as keytool -list -v shows it', () => {
    const ks = read('gen.jks');
    assert.equal(ks.type, 'JKS');
    assertSameAsKeytool(ks, 'gen.jks');
    assert.deepEqual(ks.entries.map((e) => [e.alias, e.kind]).sort(), [['defaultsecuritykeypairhandle', 'PrivateKeyEntry'], ['labroot', 'trustedCertEntry']]);
  });

  it('reads a PKCS12 made by keytool (Java 17 defaults) as keytool -list -v shows it', async () => {
    const info = await lab.opensslStderr(['pkcs12', '-info', '-noout', '-in', 'gen.p12', '-passin', `pass:${STOREPASS}`]);
    assert.match(info, /MAC: sha256/);
    assert.match(info, /PBES2, PBKDF2, AES-256-CBC/);
    const ks = read('gen.p12');
    assert.equal(ks.type, 'PKCS12');
    assertSameAsKeytool(ks, 'gen.p12');
  });

  for (const name of ['gen.jks', 'gen.p12']) {
    it(`recovers the private key of ${name} and dates its entries`, () => {
      const entry = findEntry(read(name), MID_ALIAS);
      assert.ok(entry?.privateKey && entry.chain[0]);
      assert.deepEqual(spki(entry.privateKey), spki(entry.chain[0].publicKey));
      assert.equal(entry.chain[0].subjectText, 'CN=mid-gen,O=midcert lab');
      // JKS stores a date per entry; keytool's PKCS12 keeps it in the key's localKeyId ("Time <ms>").
      const age = Date.now() - (entry.created?.getTime() ?? 0);
      assert.ok(age >= 0 && age < 3_600_000, `created ${entry.created?.toISOString()}`);
      assert.equal(findEntry(read(name), 'labroot')?.privateKey, undefined);
    });
  }

  it("reads the MID's JKS after keytool -importkeystore of OpenSSL PKCS12s (RSA and EC)", async () => {
    const ks = read('mid.jks');
    assertSameAsKeytool(ks, 'mid.jks');
    const rsa = findEntry(ks, MID_ALIAS);
    assert.equal(rsa?.kind, 'PrivateKeyEntry');
    assert.deepEqual(rsa?.chain.map((c) => c.sha256), [fp.leaf, fp.intermediate, fp.root]);
    assert.deepEqual(spki(rsa?.privateKey as KeyObject), spki(await keyFromFile('leaf.key')));
    const ec = findEntry(ks, 'mid-ec');
    assert.deepEqual(ec?.chain.map((c) => c.sha256), [fp['leaf-ec'], fp.intermediate, fp.root]);
    assert.equal(ec?.privateKey?.asymmetricKeyType, 'ec');
    assert.deepEqual(spki(ec?.privateKey as KeyObject), spki(await keyFromFile('leaf-ec.key')));
  });

  it('reads an OpenSSL PKCS12 as keytool does: one key entry, -certfile CAs only in its chain', () => {
    const ks = read('mid.p12');
    assertSameAsKeytool(ks, 'mid.p12');
    assert.equal(ks.entries.length, 1);
    assert.equal(ks.entries[0]?.alias, 'defaultsecuritykeypairhandle');
  });

  it('orders the chain leaf → root whatever order -certfile gave', () => {
    const entry = findEntry(read('mid-reversed.p12'), MID_ALIAS);
    assert.deepEqual(entry?.chain.map((c) => c.sha256), [fp.leaf, fp.intermediate, fp.root]);
  });

  it('finds an entry by alias case-insensitively, as Java compares aliases', () => {
    for (const name of ['mid.jks', 'gen.p12', 'mid.p12']) {
      const ks = read(name);
      const lower = findEntry(ks, 'defaultsecuritykeypairhandle');
      assert.ok(lower);
      assert.equal(findEntry(ks, 'DefaultSecurityKeyPairHandle'), lower);
      assert.equal(findEntry(ks, 'DEFAULTSECURITYKEYPAIRHANDLE'), lower);
      assert.equal(findEntry(ks, 'defaultsecuritykeypair'), undefined);
    }
  });

  it('keystoreToJson has exactly the documented shape', () => {
    const json = JSON.parse(JSON.stringify(keystoreToJson(read('mid.jks')))) as Record<string, unknown>;
    assert.deepEqual(Object.keys(json), ['type', 'entries']);
    assert.equal(json.type, 'JKS');
    const entries = json.entries as Record<string, unknown>[];
    assert.equal(entries.length, 2);
    const mid = entries.find((e) => e.alias === 'defaultsecuritykeypairhandle') as Record<string, unknown>;
    assert.deepEqual(Object.keys(mid), ['alias', 'kind', 'chain']);
    assert.equal(mid.kind, 'PrivateKeyEntry');
    const chain = mid.chain as Record<string, string>[];
    assert.equal(chain.length, 3);
    for (const item of chain) {
      assert.deepEqual(Object.keys(item), ['subject', 'issuer', 'serial', 'notBefore', 'notAfter', 'sha256']);
      assert.match(item.sha256 as string, /^[0-9a-f]{64}$/);
      assert.match(item.serial as string, /^[0-9a-f]+$/);
      assert.equal(new Date(item.notBefore as string).toISOString(), item.notBefore);
      assert.equal(new Date(item.notAfter as string).toISOString(), item.notAfter);
    }
    assert.deepEqual(chain.map((c) => c.sha256), [fp.leaf, fp.intermediate, fp.root]);
    assert.equal(chain[0]?.subject, 'CN=mid01,O=midcert lab');
    assert.equal(chain[0]?.issuer, 'CN=Lab Intermediate CA,O=midcert lab');
    assert.equal(chain[2]?.subject, chain[2]?.issuer);
  });

  for (const name of ['gen.jks', 'mid.jks', 'gen.p12', 'mid.p12']) {
    it(`refuses a wrong or empty store password on ${name} with KEYSTORE_PASSWORD`, () => {
      assert.throws(() => read(name, 'changeme'), code('KEYSTORE_PASSWORD'));
      assert.throws(() => read(name, ''), code('KEYSTORE_PASSWORD'));
    });
  }

  describe('JKS with an empty store password', () => {
    it('reads it only when the digest was made with the empty password', () => {
      const empty = withJksDigest(files['trust.jks'] as Buffer, '');
      const ks = readKeystore(empty, '');
      assert.deepEqual(ks.entries.map((e) => [e.alias, e.kind, e.chain[0]?.sha256]), [['labroot', 'trustedCertEntry', fp.root]]);
      assert.throws(() => readKeystore(empty, STOREPASS), code('KEYSTORE_PASSWORD'));
    });

    it('still verifies the digest: a tampered body is refused', () => {
      const tampered = withJksDigest(files['trust.jks'] as Buffer, '');
      const at = tampered.length - 100; // inside the certificate
      tampered[at] = (tampered[at] as number) ^ 1;
      assert.throws(() => readKeystore(tampered, ''), code('KEYSTORE_PASSWORD'));
    });

    it('names the key when the key password is not the store password', () => {
      const err = catchError(() => readKeystore(withJksDigest(files['gen.jks'] as Buffer, ''), ''));
      assert.equal(err.code, 'KEYSTORE_PASSWORD');
      assert.match(err.message, /private key of entry "defaultsecuritykeypairhandle"/);
    });
  });

  it('refuses JCEKS with a clear KEYSTORE_MALFORMED', () => {
    const err = catchError(() => read('trust.jceks'));
    assert.equal(err.code, 'KEYSTORE_MALFORMED');
    assert.match(err.message, /JCEKS keystores are not supported/);
  });

  describe('hostile and damaged input', () => {
    it('refuses every truncation of a JKS with KEYSTORE_MALFORMED (not a password error)', () => {
      for (const name of ['gen.jks', 'mid.jks']) {
        for (const cut of truncations(files[name] as Buffer)) assert.throws(() => readKeystore(cut, STOREPASS), code('KEYSTORE_MALFORMED'), `${name} cut at ${cut.length}`);
      }
    });

    it('says in a sentence that a cut keystore is truncated, never with runtime text ("offset" out of range, forge, OpenSSL)', () => {
      const runtime = /offset|out of range|Received|buffer bounds|Too few bytes|Unparsed DER|routines::|Invalid keystore format|bits supported/;
      const sentences = new Set<string>();
      for (const name of ['gen.jks', 'mid.jks', 'gen.p12']) {
        for (const cut of truncations(files[name] as Buffer)) {
          assert.throws(() => readKeystore(cut, STOREPASS), (err: unknown) => {
            assert.ok(err instanceof MidcertError);
            assert.doesNotMatch(err.message, runtime, `${name} cut at ${cut.length}`);
            sentences.add(err.message);
            return true;
          });
        }
      }
      // A cut in the certificate data is where jks-js used to throw 'The value of "offset" is out of range'.
      assert.ok(sentences.has('the keystore is truncated or is not a JKS or PKCS12 file'), [...sentences].join(' | '));
    });

    it('refuses trailing bytes after a JKS digest with KEYSTORE_MALFORMED', () => {
      assert.throws(() => readKeystore(Buffer.concat([files['gen.jks'] as Buffer, Buffer.alloc(3)]), STOREPASS), code('KEYSTORE_MALFORMED'));
    });

    it('refuses every truncation of a PKCS12 keystore with KEYSTORE_MALFORMED', () => {
      for (const cut of truncations(files['gen.p12'] as Buffer, 97)) {
        assert.throws(() => readKeystore(cut, STOREPASS), code('KEYSTORE_MALFORMED'), `cut at ${cut.length}`);
      }
    });

    it('refuses random bytes behind any magic with a typed error only', () => {
      const magics = [[], [0xfe, 0xed, 0xfe, 0xed], [0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2], [0x30], [0xce, 0xce, 0xce, 0xce]];
      for (let seed = 1; seed <= 250; seed++) {
        const magic = magics[seed % magics.length] as number[];
        const bytes = Buffer.concat([Buffer.from(magic), pseudoRandomBytes((seed * 53) % 2000, seed)]);
        assert.throws(() => readKeystore(bytes, STOREPASS), code('KEYSTORE_MALFORMED'), `seed ${seed}`);
      }
      assert.throws(() => readKeystore(new Uint8Array(0), STOREPASS), code('KEYSTORE_MALFORMED'));
    });

    it('survives huge counts and lengths in a JKS quickly', () => {
      const started = Date.now();
      const header = (count: number): Buffer => Buffer.from([0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, ...u32(count)]);
      assert.throws(() => readKeystore(Buffer.concat([header(0xffffffff), Buffer.alloc(64)]), STOREPASS), code('KEYSTORE_MALFORMED'));
      const bigCert = Buffer.concat([header(1), u32(2), utf('x'), Buffer.alloc(8), utf('X.509'), u32(0x7fffffff), Buffer.alloc(40)]);
      assert.throws(() => readKeystore(bigCert, STOREPASS), code('KEYSTORE_MALFORMED'));
      assert.ok(Date.now() - started < 2000);
    });

    it('refuses an oversized protected key before jks-js spends quadratic time on it', () => {
      // A well-formed, correctly digested JKS whose key blob is 1 MiB: recovering it would take minutes.
      const body = Buffer.concat([Buffer.from([0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]), u32(1), u32(1), utf('big'), Buffer.alloc(8),
        u32(1 << 20), Buffer.alloc(1 << 20), u32(0)]);
      const started = Date.now();
      assert.throws(() => readKeystore(withJksDigest(Buffer.concat([body, Buffer.alloc(20)]), STOREPASS), STOREPASS), code('KEYSTORE_MALFORMED'));
      assert.ok(Date.now() - started < 2000);
    });

    it('refuses a keystore over LIMITS.keystoreBytes before parsing it', () => {
      assert.throws(() => readKeystore(Buffer.alloc(LIMITS.keystoreBytes + 1, 0xfe), STOREPASS), code('INPUT_TOO_LARGE'));
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

function catchError(fn: () => unknown): MidcertError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MidcertError, String(err));
    return err;
  }
  assert.fail('expected an error');
}

function spki(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function utf(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
}

/** Replaces a JKS trailer with the digest Java would write for `password` (see JavaKeyStore). */
function withJksDigest(jks: Buffer, password: string): Buffer {
  const body = jks.subarray(0, jks.length - 20);
  const digest = createHash('sha1').update(Buffer.from(password, 'utf16le').swap16()).update('Mighty Aphrodite').update(body).digest();
  return Buffer.concat([body, digest]);
}
