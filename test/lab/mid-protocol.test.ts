import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parameterValue, parseConfigXml } from '../../lab/mid/config-xml.js';
import { createMidHost, midHostPaths, type MidHost } from '../../lab/mid/host.js';
import { MidRunner } from '../../lab/mid/runner.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
import { fingerprintOf, makeMidPki, startTestInstance, type MidPki, type TestInstance } from './mid-fixtures.js';

/**
 * The MID side of docs/lab/mid-instance-protocol.md and the vendor behaviours of issue 11 (B, D, E,
 * F, G), against the stand-in instance of mid-fixtures.ts (so lab/instance changes do not move it).
 */

const TIME_SCALE = 0.0025; // poll 100 ms, start 75 ms

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('lab MID: ECC queue protocol, fresh basic-auth MIDs, vendor log lines, backups, config aliases', function () {
  this.timeout(60_000);
  let root: string;
  let pki: MidPki;
  let instance: TestInstance;
  let runner: MidRunner;
  const hosts: Record<string, MidHost> = {};

  const logs = async (unit: string): Promise<{ agent: string; wrapper: string }> => {
    await runner.mid(unit).flushLog();
    const host = hosts[unit] as MidHost;
    return { agent: await readFile(host.logPath, 'utf8'), wrapper: await readFile(host.wrapperLogPath, 'utf8') };
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mid-proto-'));
    pki = await makeMidPki('mid01');
    instance = await startTestInstance(pki.ca);
    instance.published.add(fingerprintOf(pki.leaf.certPem));
    instance.basicUsers.add('mid.fresh:Fresh-Pw1');
    instance.basicUsers.add('alias_user:Alias-Pw1');
    runner = new MidRunner({ caPem: pki.ca.root.certPem, timeScale: TIME_SCALE, timings: { repeatLogMs: 0 } });
  });

  after(async () => {
    await runner?.close();
    await instance?.close();
    await rm(root, { recursive: true, force: true });
  });

  // vendor-facts §6: "When the MID Server is created, it generates a keypair" (SND:…/t_RekeyAMIDServer.md); the
  // auto-generated certificate carries DC=service-now (public automation); keypairs.mid_id lives in config.xml
  // (SND:…/mid-unified-keystore.md). Protocol §1, §4: starting:true and public_key; autoValidate on first poll.
  it('a fresh basic-auth MID makes its own self-signed RSA-2048 pair on first start, writes keypairs.mid_id, polls with starting and public_key', async () => {
    hosts.fresh = await createMidHost({ home: join(root, 'fresh'), name: 'mid-fresh', instanceUrl: instance.url, auth: { username: 'mid.fresh', password: 'Fresh-Pw1' } });
    runner.register('fresh', hosts.fresh.home);
    const status = await runner.start('fresh');
    assert.equal(status.state, 'active');
    assert.equal(status.auth, 'basic');
    assert.equal(status.leaf?.selfSigned, true);
    const ks = readKeystore(await readFile(hosts.fresh.keystorePath), 'changeit');
    const entry = findEntry(ks, 'defaultsecuritykeypairhandle');
    assert.equal(entry?.kind, 'PrivateKeyEntry');
    const cert = new X509Certificate(entry!.chain[0]!.der);
    assert.equal(cert.subject, cert.issuer, 'self-signed');
    assert.match(cert.subject, /DC=service-now/);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.equal(cert.publicKey.asymmetricKeyType, 'rsa');
    const params = parseConfigXml(await readFile(hosts.fresh.configPath, 'utf8'));
    assert.match(parameterValue(params, 'keypairs.mid_id') ?? '', /^[0-9a-f]{32}$/);
    assert.equal(parameterValue(params, 'mid.instance.username'), 'mid.fresh');
    await until('Up and validated', () => runner.status('fresh').instanceStatus === 'Up' && runner.status('fresh').validated === 'true');
    const polls = instance.polls.get('mid-fresh') ?? [];
    assert.equal(polls[0]?.starting, true, 'first poll says starting');
    assert.equal(polls[0]?.auth, 'basic');
    assert.equal(polls[0]?.public_key, cert.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    await until('a second poll', () => (instance.polls.get('mid-fresh') ?? []).length >= 2);
    assert.equal(instance.polls.get('mid-fresh')![1]!.starting, false);
    // the running MID backs up the keystore it changes ("Starting with the Tokyo release", vendor-facts §14)
    const audit = await readFile(join(hosts.fresh.backupDir, 'keystore_backup_audit_trail.log'), 'utf8');
    assert.match(audit, /live backup agent_keystore\.live\.\d{8}T\d{6}Z keypairs\.mid_id=[0-9a-f]{32} aliases=\n/);
    const second = await runner.restart('fresh');
    assert.equal(second.leaf?.sha256, status.leaf?.sha256, 'a restart keeps the pair');
  });

  // Protocol §5; KB0535234 lines.
  it('decrypts the credential probe with its current key; a probe to another key logs the vendor lines in agent0.log.0 and wrapper.log', async () => {
    instance.probeCredentials = true;
    await until('credential_ok true', () => (instance.polls.get('mid-fresh') ?? []).some((p) => p.credential_ok === true));
    assert.equal(runner.status('fresh').credentialOk, true);
    const other = await makeMidPki('other');
    instance.publicKeys.set('mid-fresh', other.leaf.cert.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    await until('credential_ok false', () => (instance.polls.get('mid-fresh') ?? []).at(-1)?.credential_ok === false);
    const { agent, wrapper } = await logs('fresh');
    for (const text of [agent, wrapper]) {
      assert.match(text, /CredentialsProvider SEVERE \*\*\* ERROR \*\*\* MID Server encryption keys do not match and are no longer valid\. To restore proper functionality, invalidate and re-validate the MID Server\./);
      assert.match(text, /SEVERE \*\*\* ERROR \*\*\* An error occurred while decrypting credentials from instance/);
    }
    assert.match(wrapper, /^INFO {3}\| jvm 1 {4}\| \d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \| \d\d\/\d\d\/\d\d /m, 'wrapper.log lines carry the wrapper prefix');
    instance.probeCredentials = false;
  });

  // Protocol §6–7; vendor-facts §5 (delete_mid_keypair deletes the pair "regardless of whether it is custom or auto-generated").
  it('answers unknown commands with <result/>, answers a HeartbeatProbe, and on delete_mid_keypair makes a new pair, answers and restarts', async () => {
    const before = runner.status('fresh').leaf?.sha256;
    const ping = instance.queue('mid-fresh', { topic: 'SystemCommand', name: 'midcert.ping', source: 'midcert' });
    const probe = instance.queue('mid-fresh', { topic: 'HeartbeatProbe', name: 'HeartbeatProbe' });
    const answers = () => (instance.polls.get('mid-fresh') ?? []).flatMap((p) => p.responses ?? []);
    await until('both answers', () => answers().some((r) => r.response_to === ping) && answers().some((r) => r.response_to === probe));
    assert.equal(answers().find((r) => r.response_to === ping)?.payload, '<result/>');
    assert.match(answers().find((r) => r.response_to === probe)?.payload ?? '', /<heartbeat name="mid-fresh" status="Up"\/>/);
    const del = instance.queue('mid-fresh', { topic: 'SystemCommand', name: 'Invalidate', source: 'delete_mid_keypair' });
    await until('delete answered', () => answers().some((r) => r.response_to === del));
    await until('restarted with a new pair', () => runner.status('fresh').state === 'active' && runner.status('fresh').leaf?.sha256 !== before);
    assert.equal(runner.status('fresh').leaf?.selfSigned, true);
    const { agent } = await logs('fresh');
    assert.match(agent, /Received SystemCommand delete_mid_keypair \(Invalidate\)/);
    assert.match(agent, /ShutdownSequencer MID Server stopped/);
    const live = (await readdir(hosts.fresh!.backupDir)).filter((n) => n.includes('.live.'));
    assert.ok(live.length >= 1 && live.length <= 2, 'mid.keystore.max_live_backups = 2');
  });

  it('an mTLS MID that executes delete_mid_keypair loses its CA-issued certificate and fails the handshake', async () => {
    hosts.mtls = await createMidHost({ home: join(root, 'mtls'), name: 'mid01', instanceUrl: instance.url, auth: 'mutual', bundlePem: pki.bundle });
    runner.register('mtls', hosts.mtls.home);
    await runner.start('mtls');
    await until('Up', () => runner.status('mtls').instanceStatus === 'Up');
    instance.queue('mid01', { topic: 'SystemCommand', name: 'Invalidate', source: 'delete_mid_keypair' });
    await until('Down after restart', () => runner.status('mtls').leaf?.selfSigned === true && runner.status('mtls').instanceStatus === 'Down');
    const { agent, wrapper } = await logs('mtls');
    assert.match(agent, /SSLHandshakeException/);
    assert.match(wrapper, /SSLHandshakeException/);
    await runner.stop('mtls');
  });

  // KB1048088 / SND:…/mid-server-connectivity-issues.md: "User cannot be authenticated or is missing the proper roles."
  it('a refused login (401) logs the vendor sequence: SOAP Response 401, Could not authenticate user, User cannot be authenticated', async () => {
    // A leaf the instance has not published: 401 "User Not Authenticated".
    const other = await makeMidPki('mid01');
    const h = await createMidHost({ home: join(root, 'refused'), name: 'mid-refused', instanceUrl: instance.url, auth: 'mutual', bundlePem: other.bundle });
    hosts.refused = h;
    const r2 = new MidRunner({ caPem: other.ca.root.certPem, timeScale: TIME_SCALE });
    const inst2 = await startTestInstance(other.ca);
    try {
      await writeFile(h.configPath, (await readFile(h.configPath, 'utf8')).replace(/value="https:[^"]+"/, `value="${inst2.url}"`));
      r2.register('refused', h.home);
      await r2.start('refused');
      await until('401', () => r2.status('refused').heartbeatsFailed >= 1);
      await r2.mid('refused').flushLog();
      for (const file of [h.logPath, h.wrapperLogPath]) {
        const text = await readFile(file, 'utf8');
        assert.match(text, /StartupSequencer SOAP Response: Status code=401\n.*StartupSequencer WARNING \*\*\* WARNING \*\*\* Could not authenticate user 'null' on the ServiceNow instance\n.*StartupSequencer SEVERE \*\*\* ERROR \*\*\* test failurejava\.lang\.IllegalStateException: User cannot be authenticated or is missing the proper roles\./);
      }
    } finally {
      await r2.close();
      await inst2.close();
    }
  });

  // vendor-facts §8: Tokyo+ format "2022-10-21T13:08:58.330+0200 INFO (MIDServer) [Main:265] Initializing MID Server".
  it('writes the Tokyo+ line format when asked', async () => {
    const tokyo = new MidRunner({ caPem: pki.ca.root.certPem, timeScale: TIME_SCALE, logFormat: 'tokyo' });
    const h = await createMidHost({ home: join(root, 'tokyo'), name: 'mid-tokyo', instanceUrl: instance.url, auth: 'mutual' });
    try {
      tokyo.register('tokyo', h.home);
      await tokyo.start('tokyo');
      await tokyo.mid('tokyo').flushLog();
      const text = await readFile(h.logPath, 'utf8');
      assert.match(text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} INFO \(StartupSequencer\) \[StartupSequencer:212\] Starting MID server: unit tokyo/m);
      assert.match(text, /^\S+ SEVERE \(MIDServer\) \[Main:265\] \*\*\* ERROR \*\*\* Could not find valid private key$/m);
    } finally {
      await tokyo.close();
    }
  });

  // SND:…/mid-server-parameters.md: "mid.instance.username or glide.glidesoap.username", "… or glide.glidesoap.password",
  // "mid.instance.use_proxy or mid.proxy.use_proxy"; which wins is undocumented (vendor-facts §9): warn, or fail on request.
  it('reads the glide.glidesoap.* credential aliases; a conflicting pair warns (first name wins) or fails start', async () => {
    const home = join(root, 'alias');
    const h = await createMidHost({ home, name: 'mid-alias', instanceUrl: instance.url, auth: 'mutual' });
    hosts.alias = h;
    const text = (await readFile(h.configPath, 'utf8')).replace('</parameters>',
      '    <parameter name="glide.glidesoap.username" value="alias_user"/>\n    <parameter name="glide.glidesoap.password" secure="true" value="Alias-Pw1"/>\n</parameters>');
    await writeFile(h.configPath, text);
    runner.register('alias', home);
    const status = await runner.start('alias');
    assert.equal(status.auth, 'basic');
    await until('Up with the alias credentials', () => runner.status('alias').instanceStatus === 'Up');
    await runner.stop('alias');
    await writeFile(h.configPath, text.replace('<parameter name="mid.proxy.use_proxy" value="false"/>',
      '<parameter name="mid.proxy.use_proxy" value="false"/>\n    <parameter name="mid.instance.use_proxy" value="true"/>'));
    await runner.start('alias');
    const { agent } = await logs('alias');
    assert.match(agent, /WARNING \*\*\* WARNING \*\*\* config\.xml holds both mid\.instance\.use_proxy and mid\.proxy\.use_proxy with different values; using mid\.instance\.use_proxy/);
    await runner.stop('alias');
    const strict = new MidRunner({ caPem: pki.ca.root.certPem, timeScale: TIME_SCALE, aliasConflict: 'fail' });
    try {
      strict.register('alias', home);
      const failed = await strict.start('alias');
      assert.equal(failed.state, 'failed');
      assert.match(failed.lastError ?? '', /both mid\.instance\.use_proxy and mid\.proxy\.use_proxy/);
    } finally {
      await strict.close();
    }
    assert.deepEqual(midHostPaths(home).wrapperLogPath, h.wrapperLogPath);
  });
});
