import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { parseConfigXml, resolveAliases, summarizeMidConfig } from '../../agent/mid-config.js';
import { resolveMidPaths } from '../../agent/mid-install.js';
import { runPreflight, type PreflightReportInit } from '../../agent/preflight.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { collectStatus, statusToJson } from '../../agent/status.js';
import { renderConfigXml } from '../../lab/mid/config-xml.js';

const run = promisify(execFile);
const activeService: ServiceManager = { manager: 'command', unit: 'mid', start: async () => undefined, stop: async () => undefined, isActive: async () => true };
const idleEngine = { state: async () => ({ state: 'idle' as const, renewalId: '', lastResult: undefined }) };

/**
 * docs/vendor-facts.md §6: a freshly installed basic-auth MID is not empty — "When the MID Server is
 * created, it generates a keypair" (SND:…/t_RekeyAMIDServer.md), a self-signed
 * defaultsecuritykeypairhandle whose subject holds DC=service-now (public automation, code index id
 * 29713533886). Normal before `convert`; only under mutual auth is a self-signed pair an error
 * (self-signed certificates are for "non-MTLS use cases" — SND:…/mid-unified-keystore.md, §4).
 */
describe('a fresh basic-auth MID with its own self-signed key pair', function () {
  this.timeout(60_000);
  let dir: string;
  let home: string;
  let cfg: AgentConfig;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-fresh-'));
    home = join(dir, 'mid');
    await mkdir(join(home, 'agent', 'security'), { recursive: true });
    await run('keytool', ['-J-XX:TieredStopAtLevel=1', '-genkeypair', '-alias', 'defaultsecuritykeypairhandle', '-keyalg', 'RSA', '-keysize', '2048',
      '-dname', 'CN=mid01,DC=service-now', '-validity', '3650', '-keystore', join(home, 'agent', 'security', 'agent_keystore'),
      '-storetype', 'JKS', '-storepass', 'changeit', '-keypass', 'changeit']);
    cfg = parseAgentConfig(['mid:', `  home: ${JSON.stringify(home)}`, 'service:', '  manager: command', '  start: [/bin/true]', '  stop: [/bin/true]', '  status: [/bin/true]',
      `stateDir: ${JSON.stringify(join(dir, 'state'))}`, 'preflight:', '  timeoutSeconds: 1'].join('\n'), join(dir, 'agent.yaml'));
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  const writeConfig = (auth: { username: string; password: string } | 'mutual'): Promise<void> =>
    writeFile(join(home, 'agent', 'config.xml'), renderConfigXml({ url: 'https://127.0.0.1:9/', name: 'mid01', auth }));

  const keystoreCheck = (report: PreflightReportInit) => report.checks?.find((c) => c.name === 'keystore');

  it('basic auth: status reports selfSigned: true as one info finding, not lint errors', async () => {
    await writeConfig({ username: 'mid.user', password: 'Basic-S3cret' });
    const paths = await resolveMidPaths(cfg);
    const status = statusToJson(await collectStatus({ cfg, paths, storepass: 'changeit', service: activeService, engine: idleEngine, startedAt: new Date(), hostInfo: async () => ({}) })) as Record<string, any>;
    assert.equal(status.certificate.present, true);
    assert.deepEqual(status.certificate.findings.map((f: any) => [f.code, f.severity]), [['MID_SELF_SIGNED', 'info']]);
    assert.match(status.certificate.findings[0].message, /the MID's own self-signed key pair .*DC=service-now.*selfSigned: true/);
  });

  it('basic auth: preflight keystore check passes with MID_SELF_SIGNED (info)', async () => {
    await writeConfig({ username: 'mid.user', password: 'Basic-S3cret' });
    const check = keystoreCheck(await runPreflight({ cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService }, { timeoutMs: 2000 }));
    assert.deepEqual([check?.ok, check?.severity, check?.code], [true, 'info', 'MID_SELF_SIGNED']);
  });

  it('preflight: two credential aliases with different values are a config error CONFIG_ALIAS_CONFLICT (vendor-facts §9)', async () => {
    const text = renderConfigXml({ url: 'https://127.0.0.1:9/', name: 'mid01', auth: { username: 'mid.user', password: 'Basic-S3cret' } })
      .replace('</parameters>', '<parameter name="glide.glidesoap.username" value="other.user"/></parameters>');
    await writeFile(join(home, 'agent', 'config.xml'), text);
    const report = await runPreflight({ cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService }, { timeoutMs: 2000 });
    const config = report.checks?.find((c) => c.name === 'config');
    assert.deepEqual([config?.ok, config?.severity, config?.code], [false, 'error', 'CONFIG_ALIAS_CONFLICT']);
    assert.match(config?.message ?? '', /mid\.instance\.username and glide\.glidesoap\.username/);
    assert.ok(!JSON.stringify(report).includes('other.user') && !JSON.stringify(report).includes('Basic-S3cret'));
  });

  it('mutual auth: the same self-signed pair is an error (LEAF_SELF_SIGNED) in preflight and status', async () => {
    await writeConfig('mutual');
    const paths = await resolveMidPaths(cfg);
    const check = keystoreCheck(await runPreflight({ cfg, paths, storepass: 'changeit', service: activeService }, { timeoutMs: 2000 }));
    assert.deepEqual([check?.ok, check?.severity, check?.code], [false, 'error', 'LEAF_SELF_SIGNED']);
    assert.match(check?.message ?? '', /does not support self-signed certificates/);
    const status = statusToJson(await collectStatus({ cfg, paths, storepass: 'changeit', service: activeService, engine: idleEngine, startedAt: new Date(), hostInfo: async () => ({}) })) as Record<string, any>;
    assert.ok(status.certificate.findings.some((f: any) => f.code === 'LEAF_SELF_SIGNED' && f.severity === 'error'));
  });
});

/**
 * docs/vendor-facts.md §9 (SND:servicenow-platform/mid-server/mid-server-parameters.md): the MID reads
 * "mid.instance.username or glide.glidesoap.username", "mid.instance.password or
 * glide.glidesoap.password", "mid.instance.use_proxy or mid.proxy.use_proxy", and for the upgrade proxy
 * "glide.mid.autoupgrade.proxy_host or glide.glidesoap.proxy_host" (…_port likewise). Which wins when
 * both are present is not documented: report a conflict, never guess.
 */
describe('config.xml parameter aliases', () => {
  const xml = (params: Record<string, string>): string =>
    `<parameters>${Object.entries(params).map(([n, v]) => `<parameter name="${n}" value="${v}"/>`).join('')}</parameters>`;

  it('the glide.glidesoap.* credential names alone are basic auth, and the key in force is reported (never the value)', () => {
    const summary = summarizeMidConfig(parseConfigXml(xml({ url: 'https://x.service-now.com/', name: 'mid01', 'glide.glidesoap.username': 'mid.user', 'glide.glidesoap.password': 'S3cret-pw' })));
    assert.equal(summary.authMode, 'basic');
    assert.deepEqual(summary.keys.username, { key: 'glide.glidesoap.username', set: true, present: ['glide.glidesoap.username'] });
    assert.equal(summary.keys.password.key, 'glide.glidesoap.password');
    assert.deepEqual(summary.conflicts, []);
    assert.ok(!JSON.stringify(summary).includes('S3cret-pw'));
  });

  it('mid.instance.use_proxy turns the proxy on like mid.proxy.use_proxy', () => {
    const summary = summarizeMidConfig(parseConfigXml(xml({ 'mid.instance.use_proxy': 'true', 'mid.proxy.host': 'proxy.corp', 'mid.proxy.port': '3128' })));
    assert.equal(summary.proxy.enabled, true);
    assert.deepEqual(summary.keys.proxy, { useProxy: { key: 'mid.instance.use_proxy', set: true, present: ['mid.instance.use_proxy'] }, host: 'proxy.corp', port: 3128 });
  });

  it('both names with the same value: no conflict; different values: CONFIG_ALIAS_CONFLICT (error for credentials, warning for use_proxy), no key in force', () => {
    assert.deepEqual(resolveAliases(parseConfigXml(xml({ 'mid.instance.username': 'a', 'glide.glidesoap.username': 'a' }))).conflicts, []);
    const { settings, conflicts } = resolveAliases(parseConfigXml(xml({
      'mid.instance.username': 'a', 'glide.glidesoap.username': 'b', 'mid.instance.use_proxy': 'true', 'mid.proxy.use_proxy': 'false',
      'glide.mid.autoupgrade.proxy_host': 'p1', 'glide.glidesoap.proxy_host': 'p2',
    })));
    assert.deepEqual(conflicts.map((c) => [c.setting, c.severity, c.keys]), [
      ['username', 'error', ['mid.instance.username', 'glide.glidesoap.username']],
      ['useProxy', 'warning', ['mid.instance.use_proxy', 'mid.proxy.use_proxy']],
      ['upgradeProxyHost', 'warning', ['glide.mid.autoupgrade.proxy_host', 'glide.glidesoap.proxy_host']],
    ]);
    assert.equal(settings.username.key, '');
    assert.match(conflicts[0]?.message ?? '', /does not document which one the MID uses/);
  });

  it('glide.glidesoap.proxy_host is the upgrade proxy, not the instance proxy', () => {
    const summary = summarizeMidConfig(parseConfigXml(xml({ 'glide.glidesoap.proxy_host': 'upgrade.corp', 'mid.proxy.use_proxy': 'false' })));
    assert.equal(summary.proxy.host, '');
    assert.equal(summary.keys.upgradeProxy.host.key, 'glide.glidesoap.proxy_host');
  });
});
