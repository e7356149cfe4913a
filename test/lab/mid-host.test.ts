import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  parameterValue, parseConfigXml, PLACEHOLDERS, renderConfigXml, setParameterValueInText, type ConfigParameter,
} from '../../lab/mid/config-xml.js';
import { createMidHost, midHostPaths } from '../../lab/mid/host.js';

const execFileAsync = promisify(execFile);

function param(params: ConfigParameter[], name: string): ConfigParameter | undefined {
  return params.find((p) => p.name === name);
}

async function keytoolList(keystore: string, storepass: string): Promise<string> {
  const { stdout } = await execFileAsync('keytool', ['-list', '-keystore', keystore, '-storepass:env', 'KS_PASS'], { env: { ...process.env, KS_PASS: storepass } });
  return stdout;
}

describe('lab MID host tree', function () {
  let root: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mid-host-'));
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lays out agent/ as the vendor does, with an empty JKS keystore made by keytool', async () => {
    const host = await createMidHost({ home: join(root, 'plain') });
    assert.deepEqual(host, midHostPaths(join(root, 'plain')));
    assert.equal(host.keystorePath, join(root, 'plain', 'agent', 'security', 'agent_keystore'));
    assert.ok((await stat(host.backupDir)).isDirectory());
    assert.equal((await stat(host.logPath)).size, 0);
    assert.equal((await stat(host.scriptPath)).mode & 0o111, 0o111, 'script is executable');
    assert.equal((await stat(host.configPath)).mode & 0o777, 0o600);
    assert.equal((await stat(host.securityDir)).mode & 0o777, 0o700);
    const ks = await readFile(host.keystorePath);
    assert.equal(ks.subarray(0, 4).toString('hex'), 'feedfeed', 'JKS magic');
    assert.equal((await stat(host.keystorePath)).mode & 0o777, 0o600);
    assert.match(await keytoolList(host.keystorePath, 'changeit'), /Keystore type: JKS[\s\S]*contains 0 entries/);
  });

  it('writes config.xml with the vendor placeholders when no values are given', async () => {
    const host = midHostPaths(join(root, 'plain'));
    const text = await readFile(host.configPath, 'utf8');
    assert.match(text, /^<\?xml version="1.0" encoding="UTF-8"/);
    assert.match(text, /<!-- /, 'carries explanatory comments like the vendor file');
    const params = parseConfigXml(text);
    assert.equal(parameterValue(params, 'url'), PLACEHOLDERS.url);
    assert.equal(parameterValue(params, 'name'), 'YOUR_MIDSERVER_NAME_GOES_HERE');
    assert.equal(parameterValue(params, 'mid.instance.username'), 'YOUR_INSTANCE_USER_NAME_HERE');
    assert.deepEqual(param(params, 'mid.instance.password'), { name: 'mid.instance.password', value: 'YOUR_INSTANCE_PASSWORD_HERE', secure: true });
    assert.equal(parameterValue(params, 'mid_sys_id'), '');
    assert.equal(parameterValue(params, 'mid.proxy.use_proxy'), 'false');
    assert.equal(param(params, 'mid.proxy.password')?.secure, true);
    assert.equal(parameterValue(params, 'mid.ssl.bootstrap.default.check_cert_revocation'), 'false');
    // one parameter per line: the form the line-based editors (manage-certificates -m/-b) rely on
    for (const line of text.split('\n').filter((l) => l.includes('<parameter '))) assert.match(line, /^ {4}<parameter name="[^"]+"( secure="true")? value="[^"]*"\/>$/);
  });

  it('fills in given values, escaping them, and drops the credentials for mutual auth', async () => {
    const basic = await createMidHost({
      home: join(root, 'basic'), name: 'mid01', instanceUrl: 'https://acme.service-now.com/', midSysId: 'abc',
      auth: { username: 'svc_mid', password: 'p&ss"<w>rd' }, proxy: { host: 'proxy.acme', port: 3128, username: 'pu', password: 'pp' },
      checkCertRevocation: true, keystoreFileName: 'agent_keystore.jks', storepass: 'secret-pass',
    });
    const params = parseConfigXml(await readFile(basic.configPath, 'utf8'));
    assert.equal(parameterValue(params, 'name'), 'mid01');
    assert.equal(parameterValue(params, 'url'), 'https://acme.service-now.com/');
    assert.equal(parameterValue(params, 'mid_sys_id'), 'abc');
    assert.equal(parameterValue(params, 'mid.instance.username'), 'svc_mid');
    assert.equal(parameterValue(params, 'mid.instance.password'), 'p&ss"<w>rd');
    assert.equal(parameterValue(params, 'mid.proxy.use_proxy'), 'true');
    assert.equal(parameterValue(params, 'mid.proxy.port'), '3128');
    assert.equal(parameterValue(params, 'mid.ssl.bootstrap.default.check_cert_revocation'), 'true');
    assert.equal(basic.keystorePath, join(root, 'basic', 'agent', 'security', 'agent_keystore.jks'));
    assert.match(await keytoolList(basic.keystorePath, 'secret-pass'), /contains 0 entries/);
    await assert.rejects(keytoolList(basic.keystorePath, 'changeit'), 'the store password is the one given');

    const mutual = parseConfigXml(renderConfigXml({ name: 'mid02', auth: 'mutual' }));
    assert.equal(param(mutual, 'mid.instance.username'), undefined);
    assert.equal(param(mutual, 'mid.instance.password'), undefined);
    assert.equal(parameterValue(mutual, 'name'), 'mid02');
  });

  it('refuses to overwrite an existing install and a too-short store password', async () => {
    await assert.rejects(createMidHost({ home: join(root, 'plain') }), /already exists/);
    await assert.rejects(createMidHost({ home: join(root, 'short'), storepass: 'abc' }), /at least 6/);
  });

  it('parses config.xml without resolving entities and within a size bound', () => {
    const xxe = '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><parameters><parameter name="url" value="&x;"/></parameters>';
    assert.throws(() => parseConfigXml(xxe), /DOCTYPE/);
    const undefinedEntity = '<parameters><parameter name="url" value="a&x;b&amp;c"/></parameters>';
    assert.equal(parameterValue(parseConfigXml(undefinedEntity), 'url'), 'a&x;b&c');
    assert.throws(() => parseConfigXml(`<parameters>${' '.repeat(300 * 1024)}</parameters>`), /limit/);
    assert.throws(() => parseConfigXml('<other/>'), /no <parameters>/);
  });

  it('edits one parameter line and leaves every other byte alone', () => {
    const text = renderConfigXml({ name: 'mid01' }).replace(/\n/g, '\r\n');
    const edited = setParameterValueInText(text, 'mid_sys_id', '0123456789abcdef0123456789abcdef');
    assert.ok(edited);
    const before = text.split('\n');
    const after = edited.split('\n');
    assert.equal(after.length, before.length);
    const changed = after.map((l, i) => (l === before[i] ? -1 : i)).filter((i) => i >= 0);
    assert.equal(changed.length, 1);
    assert.equal(after[changed[0] as number], '    <parameter name="mid_sys_id" value="0123456789abcdef0123456789abcdef"/>\r');
    assert.equal(setParameterValueInText(text, 'no.such.parameter', 'x'), undefined);
    assert.throws(() => setParameterValueInText('<parameters><parameter name="a" value="1"/><parameter name="b" value="2"/></parameters>', 'a', 'x'), /not alone/);
  });
});
