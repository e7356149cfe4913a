import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createConnection, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { resolveMidPaths } from '../../agent/mid-install.js';
import { PREFLIGHT_CHECKS, preflightToJson, runPreflight, type PreflightCheckInit, type PreflightReportInit, type PreflightSources } from '../../agent/preflight.js';
import { detectInterception } from '../../agent/preflight/interception.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { renderConfigXml, type ConfigXmlOptions } from '../../lab/mid/config-xml.js';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { pathsOf, startMidWorld, type MidWorld } from '../helpers/mid-world.js';

// ---- test peers: an HTTPS server with chosen certificate and headers, a CONNECT proxy, a black hole ----

interface TestHttps {
  url: string;
  requests: number;
  close(): Promise<void>;
}

async function startHttps(ca: LabCa, headers: () => Record<string, string>): Promise<TestHttps> {
  const leaf = await ca.issueIdentity('CN=localhost', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  const state = { requests: 0 };
  const server: HttpsServer = createHttpsServer({ cert: leaf.certPem + ca.intermediate.certPem, key: leaf.keyPem }, (_req, res) => {
    state.requests += 1;
    for (const [name, value] of Object.entries(headers())) res.setHeader(name, value);
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    get requests() { return state.requests; },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

interface TestProxy {
  port: number;
  connects: { target: string; authorization: string | undefined }[];
  close(): Promise<void>;
}

/** A tiny HTTP CONNECT proxy (node:net): 407 without the expected credentials when it wants some. */
async function startConnectProxy(options: { credentials?: string } = {}): Promise<TestProxy> {
  const connects: TestProxy['connects'] = [];
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      const [requestLine = '', ...lines] = head.subarray(0, end).toString('latin1').split('\r\n');
      const [method, target = ''] = requestLine.split(' ');
      const authorization = lines.find((l) => /^proxy-authorization:/i.test(l))?.replace(/^[^:]+:\s*/, '');
      connects.push({ target, authorization });
      if (method !== 'CONNECT') { client.end('HTTP/1.1 405 Method Not Allowed\r\n\r\n'); return; }
      if (options.credentials && authorization !== `Basic ${Buffer.from(options.credentials).toString('base64')}`) {
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
      const upstream = createConnection({ host, port }, () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        const rest = head.subarray(end + 4);
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
      upstream.on('error', () => client.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    connects,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

/** Accepts TCP connections and never says a word (a firewall that swallows packets, almost). */
async function startBlackHole(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => { sockets.add(s); s.on('error', () => undefined); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// ---- helpers ----

function agentConfig(home: string, dir: string, preflight: string[] = []): AgentConfig {
  const yaml = [
    'mid:', `  home: ${JSON.stringify(home)}`,
    'service:', '  manager: command', '  start: [/bin/true]', '  stop: [/bin/true]', '  status: [/bin/true]',
    `stateDir: ${JSON.stringify(join(dir, 'state'))}`,
    ...(preflight.length > 0 ? ['preflight:', ...preflight.map((l) => `  ${l}`)] : []),
  ].join('\n');
  return parseAgentConfig(yaml, join(dir, 'agent.yaml'));
}

const activeService: ServiceManager = { manager: 'command', unit: 'mid', start: async () => undefined, stop: async () => undefined, isActive: async () => true };

function check(report: PreflightReportInit, name: string): PreflightCheckInit {
  const found = report.checks?.find((c) => c.name === name);
  assert.ok(found, `no ${name} check in ${JSON.stringify(report.checks)}`);
  return found;
}

const summary = (report: PreflightReportInit): string => JSON.stringify(report.checks?.map((c) => [c.name, c.ok, c.severity, c.code, c.message]), null, 1);

// ---- tests ----

describe('agent preflight against the simulated instance and MID', function () {
  this.timeout(120_000);
  let world: MidWorld;
  let sources: PreflightSources;

  before(async () => {
    world = await startMidWorld('mid01');
    // instanceCaFile relative to the agent config, like tls paths: the world wrote its root there.
    const cfg = agentConfig(world.host.home, world.dir, ['instanceCaFile: root.pem', 'timeoutSeconds: 5']);
    assert.equal(cfg.preflight.instanceCaFile, join(world.dir, 'root.pem'));
    sources = { cfg, paths: pathsOf(world.host), storepass: 'changeit', service: world.effects().service };
  });
  after(async () => { await world?.close(); });

  it('passes every check (the leaf expiring in 20 days is a warning only)', async () => {
    const report = await runPreflight(sources);
    assert.deepEqual(report.checks?.map((c) => c.name), [...PREFLIGHT_CHECKS]);
    assert.equal(report.ok, true, summary(report));
    for (const c of report.checks ?? []) {
      if (c.name === 'keystore') continue;
      assert.deepEqual([c.name, c.ok, c.severity, c.code], [c.name, true, 'info', 'OK'], summary(report));
    }
    assert.deepEqual([check(report, 'keystore').ok, check(report, 'keystore').severity, check(report, 'keystore').code], [false, 'warning', 'CERT_EXPIRING']);
    assert.match(check(report, 'tls-interception').message ?? '', /issued by "CN=World mid01 Issuing CA,O=midcert Lab"/);
    assert.match(check(report, 'instance-reachable').message ?? '', /answered HTTP \d{3} with a trusted certificate/);
    const json = preflightToJson(report) as { ok: boolean; checks: { name: string; ok: boolean }[] };
    assert.equal(json.ok, true);
    assert.equal(json.checks.length, PREFLIGHT_CHECKS.length);
    assert.ok(!JSON.stringify(json).includes('changeit'));
  });

  it('without the lab root: the instance certificate is untrusted (an error), its issuer still reported', async () => {
    const cfg = agentConfig(world.host.home, world.dir);
    const report = await runPreflight({ ...sources, cfg });
    assert.equal(report.ok, false);
    const reachable = check(report, 'instance-reachable');
    assert.deepEqual([reachable.ok, reachable.severity, reachable.code], [false, 'error', 'INSTANCE_TLS_UNTRUSTED']);
    assert.match(reachable.message ?? '', /issuer "CN=World mid01 Issuing CA,O=midcert Lab"/);
    assert.equal(check(report, 'adcv2').ok, true, 'the headers were still read');
    assert.equal(check(report, 'clock').ok, true);
    assert.equal(check(report, 'tls-interception').ok, true);
  });

  it('reports a wrong store password, an inactive service and a world-readable state dir as errors', async () => {
    const stateDir = join(world.dir, 'open-state');
    await mkdir(stateDir);
    await chmod(stateDir, 0o755);
    const cfg = { ...sources.cfg, stateDir };
    const report = await runPreflight({ ...sources, cfg, storepass: 'wrong-pass', service: { ...activeService, isActive: async () => false } });
    assert.equal(report.ok, false);
    assert.deepEqual([check(report, 'keystore').ok, check(report, 'keystore').code], [false, 'KEYSTORE_PASSWORD']);
    assert.deepEqual([check(report, 'service').ok, check(report, 'service').code], [false, 'SERVICE_INACTIVE']);
    assert.deepEqual([check(report, 'state-dir').ok, check(report, 'state-dir').code], [false, 'STATE_DIR_UNUSABLE']);
    assert.match(check(report, 'state-dir').message ?? '', /0755/);
    assert.ok(!JSON.stringify(report).includes('wrong-pass'));
    await chmod(stateDir, 0o700);
    const fixed = await runPreflight({ ...sources, cfg });
    assert.equal(check(fixed, 'state-dir').ok, true, summary(fixed));
  });

  it('an expired leaf in the keystore is an error', async () => {
    const report = await runPreflight(sources, { now: () => new Date(Date.now() + 40 * 86_400_000) });
    const keystore = check(report, 'keystore');
    assert.deepEqual([keystore.ok, keystore.severity, keystore.code], [false, 'error', 'CERT_EXPIRED']);
    assert.equal(report.ok, false);
  });

  describe('through an HTTP proxy (mid.proxy.*)', () => {
    let proxy: TestProxy;
    let dir: string;
    afterEach(async () => {
      await proxy?.close();
      await rm(dir, { recursive: true, force: true });
    });

    async function midWithProxy(proxyOptions: ConfigXmlOptions['proxy']): Promise<PreflightSources> {
      dir = await mkdtemp(join(tmpdir(), 'midcert-preflight-proxy-'));
      const home = join(dir, 'mid');
      await mkdir(join(home, 'agent'), { recursive: true });
      await writeFile(join(home, 'agent', 'config.xml'), renderConfigXml({ url: `${world.instance.url}/`, name: 'mid01', auth: 'mutual', proxy: proxyOptions }));
      const cfg = agentConfig(home, dir, [`instanceCaFile: ${JSON.stringify(join(world.dir, 'root.pem'))}`, 'timeoutSeconds: 5']);
      return { cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService };
    }

    it('tunnels the instance check through the proxy with CONNECT', async () => {
      proxy = await startConnectProxy();
      const report = await runPreflight(await midWithProxy({ host: '127.0.0.1', port: proxy.port }));
      assert.equal(proxy.connects.length, 1, 'one CONNECT for the one probe');
      assert.equal(proxy.connects[0]?.target, `127.0.0.1:${world.instance.port}`);
      assert.equal(proxy.connects[0]?.authorization, undefined);
      const reachable = check(report, 'instance-reachable');
      assert.equal(reachable.ok, true, summary(report));
      assert.match(reachable.message ?? '', new RegExp(`through the proxy 127\\.0\\.0\\.1:${proxy.port} \\(without proxy credentials\\)`));
      assert.equal(check(report, 'adcv2').ok, true);
      assert.equal(check(report, 'tls-interception').ok, true);
    });

    it('sends the proxy credentials from config.xml, and never reports them', async () => {
      proxy = await startConnectProxy({ credentials: 'proxyuser:Pr0xy-Secret' });
      const report = await runPreflight(await midWithProxy({ host: '127.0.0.1', port: proxy.port, username: 'proxyuser', password: 'Pr0xy-Secret' }));
      assert.equal(proxy.connects.length, 1);
      assert.equal(check(report, 'instance-reachable').ok, true, summary(report));
      assert.match(check(report, 'instance-reachable').message ?? '', /with proxy credentials/);
      assert.ok(!JSON.stringify(report).includes('Pr0xy-Secret'));
    });

    it('a proxy that wants other credentials: PROXY_REFUSED (407), the instance checks skipped', async () => {
      proxy = await startConnectProxy({ credentials: 'someone:else' });
      const report = await runPreflight(await midWithProxy({ host: '127.0.0.1', port: proxy.port, username: 'proxyuser', password: 'Pr0xy-Secret' }));
      const reachable = check(report, 'instance-reachable');
      assert.deepEqual([reachable.ok, reachable.code], [false, 'PROXY_REFUSED']);
      assert.match(reachable.message ?? '', /407/);
      assert.equal(check(report, 'clock').code, 'CHECK_SKIPPED');
      assert.ok(!JSON.stringify(report).includes('Pr0xy-Secret'));
    });
  });
});

describe('agent preflight against other peers', function () {
  this.timeout(60_000);
  let dir: string;
  const closers: (() => Promise<void>)[] = [];

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-preflight-')); });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await rm(dir, { recursive: true, force: true });
  });

  async function mid(config: ConfigXmlOptions | string, preflight: string[] = []): Promise<PreflightSources> {
    const home = join(dir, 'mid');
    await mkdir(join(home, 'agent'), { recursive: true });
    await writeFile(join(home, 'agent', 'config.xml'), typeof config === 'string' ? config : renderConfigXml(config));
    const cfg = agentConfig(home, dir, preflight);
    return { cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService };
  }

  it('a refused port: instance-reachable fails fast with INSTANCE_UNREACHABLE', async () => {
    const port = await closedPort();
    const started = Date.now();
    const report = await runPreflight(await mid({ url: `https://127.0.0.1:${port}/`, name: 'mid01', auth: 'mutual' }, ['timeoutSeconds: 5']));
    assert.ok(Date.now() - started < 5_000);
    const reachable = check(report, 'instance-reachable');
    assert.deepEqual([reachable.ok, reachable.severity, reachable.code], [false, 'error', 'INSTANCE_UNREACHABLE']);
    assert.match(reachable.message ?? '', /ECONNREFUSED/);
    for (const name of ['clock', 'adcv2', 'tls-interception']) assert.equal(check(report, name).code, 'CHECK_SKIPPED');
    assert.equal(report.ok, false);
  });

  it('a host that never answers: instance-reachable fails within the configured timeout', async () => {
    const hole = await startBlackHole();
    closers.push(hole.close);
    const started = Date.now();
    const report = await runPreflight(await mid({ url: `https://127.0.0.1:${hole.port}/`, name: 'mid01', auth: 'mutual' }, ['timeoutSeconds: 1']));
    const took = Date.now() - started;
    assert.ok(took >= 900 && took < 3_000, `took ${took} ms`);
    const reachable = check(report, 'instance-reachable');
    assert.deepEqual([reachable.ok, reachable.code], [false, 'INSTANCE_UNREACHABLE']);
    assert.match(reachable.message ?? '', /did not answer within 1 s \(in the TLS handshake\)/);
  });

  it('vendor placeholders in config.xml are a config error; the instance checks are skipped', async () => {
    const report = await runPreflight(await mid({}));
    const config = check(report, 'config');
    assert.deepEqual([config.ok, config.severity, config.code], [false, 'error', 'MID_CONFIG_INCOMPLETE']);
    assert.match(config.message ?? '', /placeholders in url, mid\.instance\.username, mid\.instance\.password, name/);
    assert.doesNotMatch(config.message ?? '', /mid\.proxy/, 'proxy placeholders do not matter with the proxy off');
    assert.equal(check(report, 'instance-reachable').code, 'CHECK_SKIPPED');
    assert.equal(report.ok, false);
  });

  it('an unreadable config.xml is a config error, and proxy placeholders count once the proxy is on', async () => {
    const broken = await runPreflight(await mid('<parameters><parameter name="url" value="x"/>'));
    assert.deepEqual([check(broken, 'config').ok, check(broken, 'config').code], [false, 'MID_CONFIG_INVALID']);
    await rm(join(dir, 'mid'), { recursive: true });
    const proxyOn = renderConfigXml({ url: 'https://127.0.0.1:9/', name: 'mid01', auth: 'mutual' }).replace('name="mid.proxy.use_proxy" value="false"', 'name="mid.proxy.use_proxy" value="true"');
    const report = await runPreflight(await mid(proxyOn));
    assert.equal(check(report, 'config').code, 'MID_CONFIG_INCOMPLETE');
    assert.match(check(report, 'config').message ?? '', /mid\.proxy\.host, mid\.proxy\.port/);
    assert.match(check(report, 'instance-reachable').message ?? '', /not checked: mid\.proxy\.use_proxy is true but the proxy host or port is not set/);
  });

  it('basic credentials still in config.xml: info "basic auth; conversion possible", never the password', async () => {
    const url = `https://127.0.0.1:${await closedPort()}/`;
    const report = await runPreflight(await mid({ url, name: 'mid01', auth: { username: 'mid.user', password: 'Basic-S3cret' } }, ['timeoutSeconds: 1']));
    const config = check(report, 'config');
    assert.deepEqual([config.ok, config.severity, config.code], [true, 'info', 'BASIC_AUTH']);
    assert.match(config.message ?? '', /basic auth; conversion possible/);
    // No keystore yet on a basic-auth MID: needed for the conversion, so a warning, not an error.
    assert.deepEqual([check(report, 'keystore').ok, check(report, 'keystore').severity, check(report, 'keystore').code], [false, 'warning', 'KEYSTORE_UNREADABLE']);
    assert.match(check(report, 'keystore').message ?? '', /needed before converting to mutual auth/);
    assert.ok(!JSON.stringify(report).includes('Basic-S3cret'));
  });

  it('an instance certificate issued by a Zscaler CA is a tls-interception error naming Zscaler, even when trusted', async () => {
    const zscaler = await createLabCa('Zscaler Intermediate');
    assert.equal(zscaler.root.cert.subjectText, 'CN=Zscaler Intermediate Root CA,O=midcert Lab');
    const server = await startHttps(zscaler, () => ({ Server: 'snow_adc' }));
    closers.push(server.close);
    await writeFile(join(dir, 'zscaler-root.pem'), zscaler.root.certPem);
    const report = await runPreflight(await mid({ url: server.url, name: 'mid01', auth: 'mutual' }, ['instanceCaFile: zscaler-root.pem', 'timeoutSeconds: 5']));
    assert.equal(server.requests, 1);
    assert.equal(check(report, 'instance-reachable').ok, true, summary(report));
    const interception = check(report, 'tls-interception');
    assert.deepEqual([interception.ok, interception.severity, interception.code], [false, 'error', 'TLS_INTERCEPTED']);
    assert.match(interception.message ?? '', /a TLS-intercepting proxy strips the client certificate/);
    assert.match(interception.message ?? '', /issued by "CN=Zscaler Intermediate Issuing CA,O=midcert Lab" \(Zscaler\)/);
    assert.equal(report.ok, false);
  });

  it('an untrusted interception CA: both INSTANCE_TLS_UNTRUSTED and TLS_INTERCEPTED', async () => {
    const fortinet = await createLabCa('Fortinet FortiGate');
    const server = await startHttps(fortinet, () => ({ Server: 'snow_adc' }));
    closers.push(server.close);
    const report = await runPreflight(await mid({ url: server.url, name: 'mid01', auth: 'mutual' }, ['timeoutSeconds: 5']));
    assert.equal(check(report, 'instance-reachable').code, 'INSTANCE_TLS_UNTRUSTED');
    assert.equal(check(report, 'tls-interception').code, 'TLS_INTERCEPTED');
    assert.match(check(report, 'tls-interception').message ?? '', /Fortinet/);
  });

  it('a Date header an hour off is a clock error; a minute off is fine; no snow_adc is a warning', async () => {
    const ca = await createLabCa('Clock Test');
    await writeFile(join(dir, 'root.pem'), ca.root.certPem);
    let offsetMs = 3_600_000;
    const server = await startHttps(ca, () => ({ Date: new Date(Date.now() + offsetMs).toUTCString(), Server: 'nginx' }));
    closers.push(server.close);
    const sources = await mid({ url: server.url, name: 'mid01', auth: 'mutual' }, ['instanceCaFile: root.pem', 'timeoutSeconds: 5']);
    const report = await runPreflight(sources);
    const clock = check(report, 'clock');
    assert.deepEqual([clock.ok, clock.severity, clock.code], [false, 'error', 'CLOCK_SKEW'], summary(report));
    assert.match(clock.message ?? '', /is 3(599|600|601) s behind the instance/);
    const adcv2 = check(report, 'adcv2');
    assert.deepEqual([adcv2.ok, adcv2.severity, adcv2.code], [false, 'warning', 'INSTANCE_NOT_ADCV2']);
    assert.match(adcv2.message ?? '', /Server: nginx/);
    assert.equal(check(report, 'instance-reachable').ok, true);

    offsetMs = -60_000;
    const near = await runPreflight(sources);
    assert.deepEqual([check(near, 'clock').ok, check(near, 'clock').code], [true, 'OK']);
    assert.match(check(near, 'clock').message ?? '', /is (59|60|61) s ahead of the instance/);
    const strict = await runPreflight(sources, { clockSkewSeconds: 30 });
    assert.equal(check(strict, 'clock').code, 'CLOCK_SKEW');
  });

  it('a state dir that does not exist yet under a writable parent is fine', async () => {
    const url = `https://127.0.0.1:${await closedPort()}/`;
    const report = await runPreflight(await mid({ url, name: 'mid01', auth: 'mutual' }, ['timeoutSeconds: 1']));
    const stateDir = check(report, 'state-dir');
    assert.equal(stateDir.ok, true, stateDir.message);
    assert.match(stateDir.message ?? '', /does not exist yet/);
  });
});

describe('TLS interception names', () => {
  it('knows the usual intercepting proxies by their CA names', () => {
    const hit = (issuer: string, chain: string[] = []): string | undefined =>
      detectInterception([{ subject: 'CN=acme.service-now.com', issuer }, ...chain.map((s) => ({ subject: s, issuer: s }))])?.vendor;
    assert.equal(hit('CN=Zscaler Intermediate Root CA (zscaler.net) (t),OU=Zscaler Inc.,O=Zscaler Inc.'), 'Zscaler');
    assert.equal(hit('CN=Palo Alto Networks Firewall CA'), 'Palo Alto Networks');
    assert.equal(hit('CN=Forward Trust,O=Corp', ['CN=BlueCoat ProxySG Root']), 'Blue Coat / Symantec');
    assert.equal(hit('CN=FortiGate CA,O=Fortinet'), 'Fortinet (FortiGate)');
    assert.equal(hit('CN=ca.corp.goskope.com,O=Netskope Inc'), 'Netskope');
    assert.equal(hit('CN=Forcepoint Cloud Web Security'), 'Forcepoint (Websense)');
    assert.equal(hit('CN=Skyhigh Web Gateway'), 'McAfee / Skyhigh Web Gateway');
    assert.equal(hit('CN=Cisco Umbrella Secondary SubCA'), 'Cisco Umbrella');
    assert.equal(hit('CN=Sophos SSL CA_C4B5'), 'Sophos');
    assert.equal(hit('CN=Check Point Outbound Inspection CA'), 'Check Point');
    assert.equal(hit('CN=Barracuda Web Filter CA'), 'Barracuda');
    assert.equal(hit('CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1,O=DigiCert Inc', ['CN=DigiCert Global Root G2']), undefined);
    assert.equal(hit('CN=Symantec Class 3 Secure Server CA - G4,O=Symantec Corporation'), undefined);
    // The instance's own name is not the proxy's.
    assert.equal(detectInterception([{ subject: 'CN=sophos.service-now.com', issuer: 'CN=Entrust Certification Authority - L1K' }]), undefined);
  });
});
