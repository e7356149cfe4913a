import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { keyTypeLabel, lintBundle } from '../../pki/lint.js';
import { generateKey, keySpecFrom } from '../../pki/keys.js';
import { LINT_CODES, type LintCode } from '../../pki/lint-codes.js';
import { DAY, issueLeaf, makeLabPki, weakRsaKey, type LabPki } from '../helpers/lab-pki.js';
import { armour, beginLine, PRIVATE_KEY_LABEL } from '../helpers/pem-text.js';
import { runOk } from '../helpers/run.js';

function codes(text: string | Buffer): LintCode[] {
  return lintBundle(typeof text === 'string' ? Buffer.from(text, 'latin1') : text).findings.map((f) => f.code);
}

function assertOnly(text: string | Buffer, expected: LintCode[]): void {
  assert.deepEqual([...new Set(codes(text))].sort(), [...expected].sort());
}

describe('pki/lint: bundle linter', () => {
  let pki: LabPki;
  let dir: string;
  const file = (name: string): string => join(dir, name);
  const openssl = async (...args: string[]): Promise<string> => (await runOk('openssl', args)).stdout;

  before(async () => {
    pki = await makeLabPki();
    dir = await mkdtemp(join(tmpdir(), 'midcert-lint-'));
    await writeFile(file('leaf.pem'), pki.leaf.certPem);
    await writeFile(file('key.pem'), pki.leaf.keyPem);
    await writeFile(file('chain.pem'), pki.ca.chainPem);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('passes a correct bundle with no findings', () => {
    const report = lintBundle(Buffer.from(pki.bundle));
    assert.deepEqual(report, { ok: true, findings: [] });
  });

  it('gives every finding a severity from the code table, a message and a fix', () => {
    const report = lintBundle(Buffer.from(`junk\r\n${pki.ca.chainPem}${pki.leaf.certPem}`));
    assert.ok(report.findings.length >= 4);
    for (const f of report.findings) {
      assert.equal(f.severity, LINT_CODES[f.code]);
      assert.ok(f.message.length > 10 && !f.message.includes('\n'));
      assert.ok(f.fix.length > 10);
    }
  });

  describe('key defects', () => {
    it('KEY_NOT_PKCS8: PKCS#1 key as written by `openssl rsa -traditional`', async () => {
      const pkcs1 = await openssl('rsa', '-in', file('key.pem'), '-traditional');
      assert.ok(pkcs1.includes(beginLine(`RSA ${PRIVATE_KEY_LABEL}`)), 'PKCS#1 armour');
      assertOnly(pki.leaf.certPem + pki.ca.chainPem + pkcs1, ['KEY_NOT_PKCS8']);
    });

    it('KEY_NOT_PKCS8: SEC1 EC key as written by `openssl ecparam -genkey`', async () => {
      const ecKey = await openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout');
      assert.ok(ecKey.includes(beginLine(`EC ${PRIVATE_KEY_LABEL}`)), 'SEC1 armour');
      assert.ok(codes(pki.leaf.certPem + pki.ca.chainPem + ecKey).includes('KEY_NOT_PKCS8'));
    });

    it('KEY_ENCRYPTED: encrypted PKCS#8 and legacy Proc-Type encrypted keys', async () => {
      const pkcs8 = await openssl('pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', file('key.pem'), '-passout', 'pass:secret');
      assertOnly(pki.leaf.certPem + pki.ca.chainPem + pkcs8, ['KEY_ENCRYPTED']);
      const legacy = await openssl('rsa', '-in', file('key.pem'), '-traditional', '-aes256', '-passout', 'pass:secret');
      assert.match(legacy, /Proc-Type: 4,ENCRYPTED/);
      assert.ok(codes(pki.leaf.certPem + pki.ca.chainPem + legacy).includes('KEY_ENCRYPTED'));
    });

    it('KEY_MISSING: certificates only', () => {
      assertOnly(pki.leaf.certPem + pki.ca.chainPem, ['KEY_MISSING']);
    });

    it('KEY_MULTIPLE: the old and the new key pasted together', async () => {
      const old = await issueLeaf(pki.ca);
      assert.ok(codes(pki.bundle + old.keyPem).includes('KEY_MULTIPLE'));
    });

    it('KEY_MISMATCH: the key from a different CSR', async () => {
      const other = await issueLeaf(pki.ca);
      assertOnly(pki.leaf.certPem + pki.ca.chainPem + other.keyPem, ['KEY_MISMATCH']);
    });

    it('KEY_WEAK: RSA-1024', async () => {
      const weak = await issueLeaf(pki.ca, { key: weakRsaKey() });
      assertOnly(weak.certPem + pki.ca.chainPem + weak.keyPem, ['KEY_WEAK']);
    });

    it('KEY_NOT_LAST (warning): key first, as `openssl pkcs12 -nodes` output often is', () => {
      const report = lintBundle(Buffer.from(pki.leaf.keyPem + pki.leaf.certPem + pki.ca.chainPem));
      assert.deepEqual(report.findings.map((f) => f.code), ['KEY_NOT_LAST']);
      assert.equal(report.ok, true);
    });

    it('KEY_UNREADABLE: a key block whose body is not a key', () => {
      const broken = armour(PRIVATE_KEY_LABEL, 'TUlEIHNlcnZlcg=='); // "MID server", not a key
      assert.ok(codes(pki.leaf.certPem + pki.ca.chainPem + broken).includes('KEY_UNREADABLE'));
    });
  });

  describe('file-shape defects', () => {
    it('CRLF: saved with Windows line endings', () => {
      assertOnly(pki.bundle.replace(/\n/g, '\r\n'), ['CRLF']);
    });

    it('EOF_MARKER: 0x1A appended by `copy /b a+b bundle.pem`', () => {
      assertOnly(`${pki.bundle}\x1a`, ['EOF_MARKER']);
    });

    it('EOF_MARKER: other stray bytes (a UTF-8 BOM)', () => {
      assert.ok(codes(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(pki.bundle)])).includes('EOF_MARKER'));
    });

    it('TEXT_OUTSIDE_PEM (warning): "Bag Attributes" from `openssl pkcs12 -nodes`', async () => {
      await openssl('pkcs12', '-export', '-in', file('leaf.pem'), '-inkey', file('key.pem'), '-certfile', file('chain.pem'), '-out', file('mid.pfx'), '-passout', 'pass:pw');
      const dump = await openssl('pkcs12', '-in', file('mid.pfx'), '-nodes', '-passin', 'pass:pw');
      assert.match(dump, /Bag Attributes/);
      const report = lintBundle(Buffer.from(dump));
      assert.ok(report.findings.some((f) => f.code === 'TEXT_OUTSIDE_PEM' && f.severity === 'warning'));
    });

    it('BLANK_LINES (warning): files joined with blank lines between them', () => {
      const report = lintBundle(Buffer.from([pki.leaf.certPem, pki.ca.chainPem, pki.leaf.keyPem].join('\n')));
      assert.deepEqual(report.findings.map((f) => f.code), ['BLANK_LINES']);
      assert.equal(report.ok, true);
    });

    it('NOT_PEM: a DER or PFX file given instead of a bundle', async () => {
      assertOnly(await readFile(file('mid.pfx')), ['NOT_PEM']);
    });

    it('PEM_MALFORMED: a block cut off before its END line', () => {
      assertOnly(pki.bundle.slice(0, pki.bundle.length - 40), ['PEM_MALFORMED']);
    });

    it('NO_CERTIFICATE: only a key', () => {
      assertOnly(pki.leaf.keyPem, ['NO_CERTIFICATE']);
    });

    it('CERT_UNREADABLE: a certificate block whose body is not a certificate', () => {
      const broken = armour('CERTIFICATE', 'TUlEIHNlcnZlcg==');
      assert.ok(codes(broken + pki.bundle).includes('CERT_UNREADABLE'));
    });

    it('UNEXPECTED_BLOCK: the CSR pasted into the bundle', async () => {
      const csr = await openssl('req', '-new', '-key', file('key.pem'), '-subj', '/CN=mid01');
      assertOnly(pki.bundle + csr, ['UNEXPECTED_BLOCK']);
    });
  });

  describe('chain defects', () => {
    it('CHAIN_ORDER: root first, as `openssl pkcs7 -print_certs` may list a .p7b', () => {
      const reversed = pki.ca.root.certPem + pki.ca.intermediate.certPem + pki.leaf.certPem + pki.leaf.keyPem;
      assertOnly(reversed, ['CHAIN_ORDER']);
    });

    it('CHAIN_INCOMPLETE: leaf and intermediate without the root', () => {
      assertOnly(pki.leaf.certPem + pki.ca.intermediate.certPem + pki.leaf.keyPem, ['CHAIN_INCOMPLETE']);
    });

    it('CHAIN_INCOMPLETE: the leaf alone', () => {
      assertOnly(pki.leaf.certPem + pki.leaf.keyPem, ['CHAIN_INCOMPLETE']);
    });

    it('CHAIN_BROKEN: CA certificates of a different CA with the same names (renewed CA key)', async () => {
      const impostor = await createLabCa('midcert Test');
      assertOnly(pki.leaf.certPem + impostor.chainPem + pki.leaf.keyPem, ['CHAIN_BROKEN']);
    });

    it('CHAIN_BROKEN: the chain of another CA altogether', async () => {
      const other = await createLabCa('Other Corp');
      assert.ok(codes(pki.leaf.certPem + other.chainPem + pki.leaf.keyPem).includes('CHAIN_BROKEN'));
    });

    it('CA_FLAG_MISSING: an issuing certificate without basicConstraints CA:TRUE', async () => {
      const ca = await createLabCa('No Flag');
      const notCa = await ca.issueIdentity('CN=Not A CA,O=Lab', { ca: false, keyUsage: ['keyCertSign', 'digitalSignature'] });
      const leaf = await issueLeaf({ ...ca, intermediate: notCa });
      assert.ok(codes(leaf.certPem + notCa.certPem + ca.root.certPem + leaf.keyPem).includes('CA_FLAG_MISSING'));
    });

    it('DUPLICATE_CERT (warning): the intermediate twice', () => {
      const report = lintBundle(Buffer.from(pki.leaf.certPem + pki.ca.intermediate.certPem + pki.ca.chainPem + pki.leaf.keyPem));
      assert.deepEqual(report.findings.map((f) => f.code), ['DUPLICATE_CERT']);
      assert.equal(report.ok, true);
    });

    it('UNRELATED_CERT (warning): a stray certificate from elsewhere', async () => {
      const other = await createLabCa('Elsewhere');
      const report = lintBundle(Buffer.from(pki.leaf.certPem + pki.ca.chainPem + other.root.certPem + pki.leaf.keyPem));
      assert.ok(report.findings.some((f) => f.code === 'UNRELATED_CERT'));
    });
  });

  describe('leaf defects', () => {
    it('LEAF_SELF_SIGNED: `openssl req -x509` instead of a CA-signed certificate', async () => {
      await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('self.key'), '-out', file('self.pem'), '-subj', '/CN=mid01', '-days', '30',
        '-addext', 'extendedKeyUsage=clientAuth', '-addext', 'keyUsage=digitalSignature,keyEncipherment');
      const found = codes((await readFile(file('self.pem'), 'utf8')) + (await readFile(file('self.key'), 'utf8')));
      assert.ok(found.includes('LEAF_SELF_SIGNED'));
      assert.ok(!found.includes('KEY_MISMATCH'));
    });

    it('LEAF_IS_CA: a CA certificate and its key bundled as the client identity', () => {
      const caAsLeaf = pki.ca.intermediate.certPem + pki.ca.root.certPem + pki.ca.intermediate.keyPem;
      assert.ok(codes(caAsLeaf).includes('LEAF_IS_CA'));
    });

    it('EKU_CLIENT_AUTH_MISSING: issued from a web-server template', async () => {
      const server = await issueLeaf(pki.ca, { profile: PROFILES.server });
      assertOnly(server.certPem + pki.ca.chainPem + server.keyPem, ['EKU_CLIENT_AUTH_MISSING']);
    });

    it('KEY_USAGE_MISSING: no digitalSignature', async () => {
      const leaf = await issueLeaf(pki.ca, { profile: { ca: false, keyUsage: ['keyEncipherment'], extKeyUsage: PROFILES.client.extKeyUsage } });
      assertOnly(leaf.certPem + pki.ca.chainPem + leaf.keyPem, ['KEY_USAGE_MISSING']);
    });

    it('WEAK_SIGNATURE (warning): a SHA-1 signed leaf', async () => {
      await writeFile(file('int.key'), pki.ca.intermediate.keyPem);
      await writeFile(file('int.pem'), pki.ca.intermediate.certPem);
      const csr = await openssl('req', '-new', '-key', file('key.pem'), '-subj', '/CN=mid01');
      await writeFile(file('sha1.csr'), csr);
      await writeFile(file('ext.cnf'), 'keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
      const sha1 = await openssl('x509', '-req', '-in', file('sha1.csr'), '-CA', file('int.pem'), '-CAkey', file('int.key'), '-sha1', '-days', '90', '-extfile', file('ext.cnf'));
      assertOnly(sha1 + pki.ca.chainPem + pki.leaf.keyPem, ['WEAK_SIGNATURE']);
    });
  });

  describe('validity', () => {
    it('CERT_EXPIRED: leaf past notAfter', async () => {
      const old = await issueLeaf(pki.ca, { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) });
      assertOnly(old.certPem + pki.ca.chainPem + old.keyPem, ['CERT_EXPIRED']);
    });

    it('CERT_NOT_YET_VALID: a CA clock ahead of this host', async () => {
      const future = await issueLeaf(pki.ca, { notBefore: new Date(Date.now() + 2 * DAY) });
      assertOnly(future.certPem + pki.ca.chainPem + future.keyPem, ['CERT_NOT_YET_VALID']);
    });

    it('CERT_EXPIRING (warning): under 30 days left by default, configurable', async () => {
      const soon = await issueLeaf(pki.ca, { notAfter: new Date(Date.now() + 10 * DAY) });
      const text = Buffer.from(soon.certPem + pki.ca.chainPem + soon.keyPem);
      const report = lintBundle(text);
      assert.deepEqual(report.findings.map((f) => [f.code, f.severity]), [['CERT_EXPIRING', 'warning']]);
      assert.equal(report.ok, true);
      assert.deepEqual(lintBundle(text, { expiringDays: 5 }).findings, []);
    });

    it('judges validity at the given time', () => {
      const later = new Date(pki.leaf.cert.notAfter.getTime() + DAY);
      assert.ok(lintBundle(Buffer.from(pki.bundle), { now: later }).findings.some((f) => f.code === 'CERT_EXPIRED'));
    });
  });

  // docs/vendor-facts.md §4: the vendor's only key command is `openssl req -newkey rsa:2048 …` and its
  // sample bundle key is RSA 2048 (SND:servicenow-platform/mid-server/mid-unified-keystore.md); the
  // documents are silent on EC and RSA 3072/4096. Anything else is KEY_TYPE_UNVERIFIED (a warning).
  describe('KEY_TYPE_UNVERIFIED: any key but RSA 2048 (vendor material shows RSA 2048 only)', () => {
    const bundleWith = async (key: Awaited<ReturnType<typeof generateKey>>): Promise<string> => {
      const leaf = await issueLeaf(pki.ca, { key });
      return leaf.certPem + pki.ca.chainPem + leaf.keyPem;
    };

    it('RSA 2048 (the default, and the vendor sample): no finding', () => {
      assert.ok(!codes(pki.bundle).includes('KEY_TYPE_UNVERIFIED'));
      assert.equal(keyTypeLabel(pki.leaf.key), 'rsa-2048');
    });

    for (const [label, spec] of [['rsa-3072', keySpecFrom('rsa', 3072)], ['rsa-4096', keySpecFrom('rsa', 4096)], ['ec-p256', keySpecFrom('ec')]] as const) {
      it(`${label}: a warning naming the key type and how to allow it; the bundle still lints ok`, async () => {
        const report = lintBundle(Buffer.from(await bundleWith(await generateKey(spec))));
        const hit = report.findings.find((f) => f.code === 'KEY_TYPE_UNVERIFIED');
        assert.ok(hit, JSON.stringify(report.findings));
        assert.equal(hit.severity, 'warning');
        assert.equal(LINT_CODES.KEY_TYPE_UNVERIFIED, 'warning');
        assert.match(hit.message, new RegExp(`${label}.*only RSA 2048`));
        assert.match(hit.fix, new RegExp(`install\\.allowKeyTypes: \\["${label}"\\].*--allow-key-type ${label}`));
        assert.equal(report.ok, true);
      });
    }
  });
});
