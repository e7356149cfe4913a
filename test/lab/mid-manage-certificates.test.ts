import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parameterValue, parseConfigXml } from '../../lab/mid/config-xml.js';
import { createMidHost, runManageCertificates, type MidHost } from '../../lab/mid/host.js';
import { PROFILES } from '../../pki/issue.js';
import { bundleOf, makeMidPki, type MidPki } from './mid-fixtures.js';

const execFileAsync = promisify(execFile);

async function keytoolListVerbose(host: MidHost, storepass = 'changeit'): Promise<string> {
  const { stdout } = await execFileAsync('keytool', ['-list', '-v', '-keystore', host.keystorePath, '-storepass:env', 'KS_PASS'], { env: { ...process.env, KS_PASS: storepass } });
  return stdout;
}

function aliasesIn(listing: string): string[] {
  return [...listing.matchAll(/^Alias name: (.+)$/gm)].map((m) => m[1] as string).sort();
}

/** Lines of `after` that are not in `before`, and the reverse, as multisets in file order. */
function lineDiff(before: string, after: string): { removed: string[]; added: string[] } {
  const a = before.split('\n');
  const b = after.split('\n');
  return { removed: a.filter((l) => !b.includes(l)), added: b.filter((l) => !a.includes(l)) };
}

async function keystoreBackups(host: MidHost): Promise<string[]> {
  return (await readdir(host.backupDir)).filter((n) => /^agent_keystore(\.jks)?\.\d{8}T\d{6}Z/.test(n)).sort();
}

describe('lab manage-certificates.sh (real keytool and openssl)', function () {
  this.timeout(60_000);
  let root: string;
  let pki: MidPki;
  let other: MidPki;
  let host: MidHost;

  const bundleFile = async (name: string, text: string): Promise<string> => {
    const path = join(root, name);
    await writeFile(path, text, { mode: 0o600 });
    return path;
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mid-mc-'));
    [pki, other] = await Promise.all([makeMidPki('mid01'), makeMidPki('other')]);
    host = await createMidHost({ home: join(root, 'mid01'), name: 'mid01', auth: { username: 'svc_mid', password: 'S3cret-Pw' } });
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  // SND:platform-security/client-access-example-5.md: "Installed certificate with alias: <alias> into the MID keystore."
  // (the lab printed its own sentence before issue 11); backups: SND:…/mid-unified-keystore.md (vendor-facts §14).
  it('imports a good bundle under the default alias: chain of 3, key entry, the documented success line, backup + audit entry', async () => {
    const before = await readFile(host.keystorePath);
    const file = await bundleFile('good.pem', `Bag Attributes\n    friendlyName: mid01\n${pki.bundle}`);
    const result = await runManageCertificates(host, ['-a', 'DefaultSecurityKeyPairHandle', file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Installed certificate with alias: DefaultSecurityKeyPairHandle into the MID keystore\.$/m);
    const listing = await keytoolListVerbose(host);
    assert.deepEqual(aliasesIn(listing), ['defaultsecuritykeypairhandle']);
    assert.match(listing, /Entry type: PrivateKeyEntry\nCertificate chain length: 3\n/);
    assert.match(listing, /Owner: CN=mid01, O=midcert Lab/);
    const backups = await keystoreBackups(host);
    assert.equal(backups.length, 1);
    const audit = await readFile(join(host.backupDir, 'keystore_backup_audit_trail.log'), 'utf8');
    assert.match(audit, new RegExp(`^\\S+ backup ${backups[0]} keypairs\\.mid_id=\\S+ aliases=\\n$`), 'file name with a time stamp, keypairs.mid_id, aliases');
    assert.match(backups[0] as string, /^agent_keystore\.\d{8}T\d{6}Z$/);
    assert.deepEqual(await readFile(join(host.backupDir, backups[0] as string)), before);
    assert.ok(!result.stdout.includes('PRIVATE KEY') && !result.stderr.includes('PRIVATE KEY'), 'never echoes the key');
  });

  it('replaces the entry of the same alias, compared case-insensitively', async () => {
    const leaf2 = await pki.ca.issueIdentity('CN=mid01-renewed,O=midcert Lab', PROFILES.client);
    const file = await bundleFile('renewed.pem', bundleOf(pki.ca, leaf2));
    const result = await runManageCertificates(host, ['-a', 'defaultsecuritykeypairhandle', file]);
    assert.equal(result.code, 0, result.stderr);
    const listing = await keytoolListVerbose(host);
    assert.deepEqual(aliasesIn(listing), ['defaultsecuritykeypairhandle']);
    assert.match(listing, /Owner: CN=mid01-renewed/);
    // mid.keystore.backup_overwrite_timespan (default 60 s): a second backup within 60 s replaces the first
    // (the lab kept every backup before issue 11; vendor-facts §14).
    assert.equal((await keystoreBackups(host)).length, 1);
    const audit = (await readFile(join(host.backupDir, 'keystore_backup_audit_trail.log'), 'utf8')).trim().split('\n');
    assert.equal(audit.length, 2);
    assert.match(audit[1] as string, /aliases=defaultsecuritykeypairhandle$/);
  });

  // SND:…/r_MIDServerProperties.md: mid.keystore.max_backups "If it is 0 or negative, no backup will be made", default 3.
  it('prunes its backups to mid.keystore.max_backups (default 3), outside the overwrite window, and makes none at 0', async () => {
    const home = join(root, 'prune');
    const h = await createMidHost({ home, name: 'mid-prune', auth: 'mutual' });
    const config = await readFile(h.configPath, 'utf8');
    await writeFile(h.configPath, config.replace('</parameters>', '    <parameter name="mid.keystore.backup_overwrite_timespan" value="0"/>\n</parameters>'));
    for (let i = 0; i < 5; i++) {
      const result = await runManageCertificates(h, ['-a', `spare${i}`, await bundleFile(`prune${i}.pem`, pki.bundle)]);
      assert.equal(result.code, 0, result.stderr);
    }
    assert.equal((await keystoreBackups(h)).length, 3, 'default mid.keystore.max_backups = 3');
    const audit = (await readFile(join(h.backupDir, 'keystore_backup_audit_trail.log'), 'utf8')).trim().split('\n');
    assert.equal(audit.length, 5, 'the audit trail keeps every entry');
    await writeFile(h.configPath, (await readFile(h.configPath, 'utf8')).replace('</parameters>', '    <parameter name="mid.keystore.max_backups" value="0"/>\n</parameters>'));
    const none = await runManageCertificates(h, ['-a', 'spare9', await bundleFile('prune9.pem', pki.bundle)]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no backup made/);
    assert.equal((await keystoreBackups(h)).length, 3);
  });

  it('refuses keys that are not unencrypted PKCS#8 with "Could not find valid private key"', async () => {
    const before = await readFile(host.keystorePath);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const keys = {
      pkcs1: pki.leaf.key.export({ format: 'pem', type: 'pkcs1' }).toString(),
      sec1: ec.export({ format: 'pem', type: 'sec1' }).toString(),
      encrypted: pki.leaf.key.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }).toString(),
      none: '',
    };
    for (const [kind, keyPem] of Object.entries(keys)) {
      const certs = pki.leaf.certPem + pki.ca.intermediate.certPem + pki.ca.root.certPem;
      const result = await runManageCertificates(host, ['-a', 'defaultsecuritykeypairhandle', await bundleFile(`${kind}.pem`, certs + keyPem)]);
      assert.notEqual(result.code, 0, kind);
      assert.match(result.stderr, /Could not find valid private key/, kind);
    }
    assert.deepEqual(await readFile(host.keystorePath), before, 'keystore untouched');
  });

  it('refuses a chain that does not verify, a missing intermediate, a mismatched key and two keys', async () => {
    const before = await readFile(host.keystorePath);
    const cases: [string, string, RegExp][] = [
      ['foreign-chain', pki.leaf.certPem + other.ca.intermediate.certPem + other.ca.root.certPem + pki.leaf.keyPem, /Certificate chain validation failed/],
      ['no-intermediate', pki.leaf.certPem + pki.ca.root.certPem + pki.leaf.keyPem, /Certificate chain validation failed/],
      ['mismatch', pki.leaf.certPem + pki.ca.intermediate.certPem + pki.ca.root.certPem + other.leaf.keyPem, /private key does not match the leaf certificate \(CN=mid01,O=midcert Lab\)/],
      ['two-keys', pki.bundle + other.leaf.keyPem, /2 private keys/],
      ['no-certs', pki.leaf.keyPem, /no certificate/],
    ];
    for (const [name, text, message] of cases) {
      const result = await runManageCertificates(host, ['-a', 'defaultsecuritykeypairhandle', await bundleFile(`${name}.pem`, text)]);
      assert.notEqual(result.code, 0, name);
      assert.match(result.stderr, message, name);
    }
    assert.deepEqual(await readFile(host.keystorePath), before, 'keystore untouched');
  });

  it('fails like the JVM with a relative classpath when run outside agent/', async () => {
    const result = await runManageCertificates(host, ['-l'], { cwd: host.home });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'Error: Could not find or load main class com.service_now.mid.security.ManageCertificates\n'
      + 'Caused by: java.lang.ClassNotFoundException: com.service_now.mid.security.ManageCertificates\n');
  });

  it('lists (-l), shows (-g), deletes (-d) and clears all but the default pair (-r)', async () => {
    const extra = await pki.ca.issueIdentity('CN=mid01-wss,O=midcert Lab', PROFILES.client);
    const file = await bundleFile('wss.pem', bundleOf(pki.ca, extra));
    for (const alias of ['midwss', 'spare']) assert.equal((await runManageCertificates(host, ['-a', alias, file])).code, 0);
    const listed = await runManageCertificates(host, ['-l']);
    assert.equal(listed.code, 0);
    assert.deepEqual(listed.stdout.trim().split(',').sort(), ['defaultsecuritykeypairhandle', 'midwss', 'spare']);

    const shown = await runManageCertificates(host, ['-g', 'MIDWSS']);
    assert.equal(shown.code, 0);
    assert.match(shown.stdout, /Certificate chain length: 3/);
    assert.match(shown.stdout, /Owner: CN=mid01-wss/);
    assert.notEqual((await runManageCertificates(host, ['-g', 'nosuch'])).code, 0);

    assert.equal((await runManageCertificates(host, ['-d', 'spare'])).code, 0);
    assert.deepEqual(aliasesIn(await keytoolListVerbose(host)), ['defaultsecuritykeypairhandle', 'midwss']);
    assert.notEqual((await runManageCertificates(host, ['-d', 'spare'])).code, 0, 'deleting a missing alias fails');

    const cleared = await runManageCertificates(host, ['-r']);
    assert.equal(cleared.code, 0);
    assert.deepEqual(aliasesIn(await keytoolListVerbose(host)), ['defaultsecuritykeypairhandle']);
  });

  it('-m removes exactly the two credential lines; -b puts them back after the url line', async () => {
    const original = await readFile(host.configPath, 'utf8');
    const mutual = await runManageCertificates(host, ['-m']);
    assert.equal(mutual.code, 0, mutual.stderr);
    const afterM = await readFile(host.configPath, 'utf8');
    const expected = original.split('\n').filter((l) => !/name="mid\.instance\.(username|password)"/.test(l)).join('\n');
    assert.equal(afterM, expected, 'byte-identical apart from the two removed lines');
    assert.equal(original.split('\n').length - afterM.split('\n').length, 2);

    const again = await runManageCertificates(host, ['-m']);
    assert.equal(again.code, 0);
    assert.equal(await readFile(host.configPath, 'utf8'), afterM, 'second -m changes nothing');

    const basic = await runManageCertificates(host, ['-b', 'svc&mid', 'N3w"<Pw>']);
    assert.equal(basic.code, 0, basic.stderr);
    assert.ok(!basic.stdout.includes('N3w') && !basic.stderr.includes('N3w'), 'never echoes the password');
    const afterB = await readFile(host.configPath, 'utf8');
    const { removed, added } = lineDiff(afterM, afterB);
    assert.deepEqual(removed, []);
    assert.deepEqual(added, [
      '    <parameter name="mid.instance.username" value="svc&amp;mid"/>',
      '    <parameter name="mid.instance.password" secure="true" value="N3w&quot;&lt;Pw&gt;"/>',
    ]);
    const lines = afterB.split('\n');
    assert.match(lines[lines.indexOf(added[0] as string) - 1] as string, /name="url"/);
    const params = parseConfigXml(afterB);
    assert.equal(parameterValue(params, 'mid.instance.username'), 'svc&mid');
    assert.equal(parameterValue(params, 'mid.instance.password'), 'N3w"<Pw>');

    const reset = await runManageCertificates(host, ['-b', 'svc2', 'pw2']);
    assert.equal(reset.code, 0);
    const afterReset = await readFile(host.configPath, 'utf8');
    assert.equal(afterReset.split('\n').length, afterB.split('\n').length, 'existing lines are rewritten in place, not duplicated');
    assert.equal(parameterValue(parseConfigXml(afterReset), 'mid.instance.username'), 'svc2');
  });

  // SND:servicenow-platform/mid-server/mid-server-parameters.md: "mid.instance.username or glide.glidesoap.username",
  // "mid.instance.password or glide.glidesoap.password" — under mutual auth neither name may remain (vendor-facts §8, §9).
  it('-m also removes the glide.glidesoap.* credential aliases; -b rewrites an alias line in place', async () => {
    const h = await createMidHost({ home: join(root, 'aliases'), name: 'mid-alias', auth: 'mutual' });
    const text = (await readFile(h.configPath, 'utf8')).replace('</parameters>',
      '    <parameter name="glide.glidesoap.username" value="old_user"/>\n    <parameter name="glide.glidesoap.password" secure="true" value="old_pw"/>\n</parameters>');
    await writeFile(h.configPath, text);
    const mutual = await runManageCertificates(h, ['-m']);
    assert.equal(mutual.code, 0, mutual.stderr);
    const afterM = await readFile(h.configPath, 'utf8');
    assert.doesNotMatch(afterM, /glide\.glidesoap\.(username|password)/);
    await writeFile(h.configPath, text);
    const basic = await runManageCertificates(h, ['-b', 'new_user', 'new_pw1']);
    assert.equal(basic.code, 0, basic.stderr);
    const params = parseConfigXml(await readFile(h.configPath, 'utf8'));
    assert.equal(parameterValue(params, 'glide.glidesoap.username'), 'new_user');
    assert.equal(parameterValue(params, 'glide.glidesoap.password'), 'new_pw1');
    assert.equal(parameterValue(params, 'mid.instance.username'), undefined, 'no second alias added');
  });

  it('-m keeps CRLF line ends, skips commented-out credentials and refuses lines it cannot edit safely', async () => {
    const crlf = [
      '<?xml version="1.0" encoding="UTF-8"?>', '<parameters>',
      '  <!-- <parameter name="mid.instance.username" value="old"/> -->',
      '  <parameter name="url" value="https://x.service-now.com/"/>',
      '  <parameter name="mid.instance.username" value="u"/>',
      '  <parameter name="mid.instance.password" secure="true" value="p"/>',
      '</parameters>',
    ].join('\r\n');
    await writeFile(host.configPath, crlf);
    assert.equal((await runManageCertificates(host, ['-m'])).code, 0);
    assert.equal(await readFile(host.configPath, 'utf8'), [
      '<?xml version="1.0" encoding="UTF-8"?>', '<parameters>',
      '  <!-- <parameter name="mid.instance.username" value="old"/> -->',
      '  <parameter name="url" value="https://x.service-now.com/"/>',
      '</parameters>',
    ].join('\r\n'), 'no final newline added, CRLF kept, comment kept');

    const twoOnALine = '<parameters>\n<parameter name="url" value="u"/><parameter name="mid.instance.username" value="u"/>\n</parameters>\n';
    await writeFile(host.configPath, twoOnALine);
    const refused = await runManageCertificates(host, ['-m']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /not alone on its line/);
    assert.equal(await readFile(host.configPath, 'utf8'), twoOnALine);
  });

  it('prints usage on bad options, validates aliases and files, and runs under sh too', async () => {
    for (const args of [[], ['-x'], ['-a', 'onlyalias'], ['-b', 'user'], ['-l', 'extra']]) {
      const result = await runManageCertificates(host, args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, /^Usage: manage-certificates\.sh/);
    }
    const badAlias = await runManageCertificates(host, ['-a', 'bad alias;rm', join(root, 'good.pem')]);
    assert.notEqual(badAlias.code, 0);
    assert.match(badAlias.stderr, /Invalid alias/);
    const missing = await runManageCertificates(host, ['-a', 'x', join(root, 'missing.pem')]);
    assert.match(missing.stderr, /does not exist/);
    const { stdout } = await execFileAsync('sh', ['bin/scripts/manage-certificates.sh', '-l'], { cwd: host.agentDir });
    assert.equal(stdout.trim(), 'defaultsecuritykeypairhandle');
  });

  it('takes the store password from MIDCERT_LAB_STOREPASS', async () => {
    const custom = await createMidHost({ home: join(root, 'custom'), storepass: 'other-pass', bundlePem: pki.bundle, keystoreFileName: 'agent_keystore.jks' });
    const wrong = await runManageCertificates(custom, ['-l']);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /wrong store password/);
    const right = await runManageCertificates(custom, ['-l'], { storepass: 'other-pass' });
    assert.equal(right.code, 0);
    assert.equal(right.stdout.trim(), 'defaultsecuritykeypairhandle');
    assert.match(await keytoolListVerbose(custom, 'other-pass'), /Certificate chain length: 3/);
  });
});
