import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromJson } from '@bufbuild/protobuf';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { clearHostInfoCache, hostInfo, mountFor } from '../../agent/host-info.js';
import type { LastResult } from '../../agent/journal.js';
import { resolveMidPaths, resolveStorepass } from '../../agent/mid-install.js';
import { RenewalEngine } from '../../agent/renewal/engine.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { collectStatus, statusToJson, type StatusSources } from '../../agent/status.js';
import { LIMITS } from '../../common/limits.js';
import { VERSION } from '../../common/version.js';
import { renderConfigXml } from '../../lab/mid/config-xml.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
import { AgentStatusSchema } from '../../proto/gen/midcert/v1/agent_pb.js';
import { pathsOf, startMidWorld, type MidWorld } from '../helpers/mid-world.js';
import { runOk } from '../helpers/run.js';
import { releaseFifoReaders, within } from '../helpers/special-files.js';

function agentConfig(home: string, dir: string, extra = ''): AgentConfig {
  const yaml = [
    'mid:', `  home: ${JSON.stringify(home)}`,
    'service:', '  manager: command', '  start: [/bin/true]', '  stop: [/bin/true]', '  status: [/bin/true]', '  timeoutSeconds: 1',
    `stateDir: ${JSON.stringify(join(dir, 'state'))}`, extra,
  ].join('\n');
  return parseAgentConfig(yaml, join(dir, 'agent.yaml'));
}

const idleEngine = { state: async () => ({ state: 'idle' as const, renewalId: '', lastResult: undefined }) };
const activeService = (unit = 'mid'): ServiceManager => ({ manager: 'command', unit, start: async () => undefined, stop: async () => undefined, isActive: async () => true });
const fixedHost = async (): Promise<{ hostname: string }> => ({ hostname: 'test-host' });

describe('agent status from a simulated MID', function () {
  this.timeout(120_000);
  let world: MidWorld;
  let cfg: AgentConfig;

  before(async () => {
    world = await startMidWorld('mid01');
    cfg = agentConfig(world.host.home, world.dir);
  });
  after(async () => { await world?.close(); });

  function sources(overrides: Partial<StatusSources> = {}): StatusSources {
    const effects = world.effects();
    return {
      cfg, paths: pathsOf(world.host), storepass: 'changeit', service: effects.service,
      engine: new RenewalEngine(effects), startedAt: new Date(Date.now() - 42_000), ...overrides,
    };
  }

  it('reports the keystore leaf, chain, config.xml, service, host and agent as they are on the host', async () => {
    const store = readKeystore(await readFile(world.host.keystorePath), 'changeit');
    const entry = findEntry(store, 'defaultsecuritykeypairhandle');
    assert.ok(entry?.chain[0]);
    const status = await collectStatus(sources());

    assert.equal(status.midName, 'mid01');
    const cert = status.certificate!;
    assert.equal(cert.present, true);
    assert.equal(cert.leaf?.sha256, entry.chain[0].sha256);
    assert.equal(cert.leaf?.subject, 'CN=mid01,O=midcert Lab');
    assert.deepEqual(cert.chain?.map((c) => c.sha256), entry.chain.map((c) => c.sha256));
    assert.deepEqual(cert.chain?.map((c) => c.subject), ['CN=mid01,O=midcert Lab', world.ca.intermediate.cert.subjectText, world.ca.root.cert.subjectText]);
    assert.equal(cert.leaf?.notAfter, entry.chain[0].notAfter.toISOString());
    assert.ok(cert.daysLeft === 19 || cert.daysLeft === 20, `daysLeft ${cert.daysLeft}`);
    // The world's leaf is issued for 20 days: the linter warns, and finds nothing worse.
    assert.deepEqual(cert.findings?.map((f) => [f.code, f.severity]), [['CERT_EXPIRING', 'warning']]);

    const ks = status.keystore!;
    assert.equal(ks.path, world.host.keystorePath);
    assert.equal(ks.type, 'JKS');
    assert.equal(ks.aliasPresent, true);
    assert.equal(ks.entryKind, 'PrivateKeyEntry');
    assert.equal(ks.modifiedAt, (await stat(world.host.keystorePath)).mtime.toISOString());
    assert.equal(ks.error, undefined);

    const config = status.config!;
    assert.equal(config.path, world.host.configPath);
    assert.equal(config.instanceUrl, world.instance.url);
    assert.equal(config.midName, 'mid01');
    assert.equal(config.authMode, 'mutual');
    assert.equal(config.basicCredentialsPresent, false);
    assert.equal(config.proxy?.enabled, false);
    assert.equal(config.error, undefined);

    assert.deepEqual({ ...status.service }, { manager: 'command', unit: 'mid01', active: true, since: '' });
    assert.equal(status.agent?.version, VERSION);
    assert.equal(status.agent?.renewalState, 'idle');
    assert.ok(status.agent?.uptimeSeconds === 42 || status.agent?.uptimeSeconds === 43, String(status.agent?.uptimeSeconds));
    assert.ok(status.host?.hostname, 'hostname');
    assert.ok((status.host?.memoryTotalBytes ?? 0) > 0, 'memory');
    assert.ok(status.host?.diskMount && world.host.home.startsWith(status.host.diskMount), `disk mount ${status.host?.diskMount}`);
    assert.ok(Math.abs(Date.parse(status.observedAt ?? '') - Date.now()) < 10_000);
  });

  it('reports the service as inactive once the MID is stopped', async () => {
    await world.runner.stop('mid01');
    try {
      const status = await collectStatus(sources({ hostInfo: fixedHost }));
      assert.equal(status.service?.active, false);
      assert.equal(status.service?.error, undefined);
      assert.equal(status.certificate?.present, true);
    } finally {
      await world.runner.start('mid01');
    }
  });

  it('with a wrong store password: a keystore error, and config and service still reported', async () => {
    const status = await collectStatus(sources({ storepass: 'not-the-password', hostInfo: fixedHost }));
    assert.equal(status.keystore?.error?.code, 'KEYSTORE_PASSWORD');
    assert.equal(status.keystore?.type, '');
    assert.equal(status.keystore?.aliasPresent ?? false, false);
    assert.ok(status.keystore?.modifiedAt, 'the file was found, so its time is known');
    assert.equal(status.certificate?.present, false);
    assert.equal(status.config?.midName, 'mid01');
    assert.equal(status.config?.instanceUrl, world.instance.url);
    assert.equal(status.service?.active, true);
    assert.equal(status.midName, 'mid01');
    assert.ok(!JSON.stringify(statusToJson(status)).includes('not-the-password'));
  });

  it('prints JSON with every field, identical to protobuf JSON, and free of the store password', async () => {
    const status = await collectStatus(sources({ hostInfo: fixedHost }));
    const json = statusToJson(status) as Record<string, any>;
    assert.equal(json.certificate.leaf.sha256, status.certificate?.leaf?.sha256);
    assert.equal(json.service.since, '', 'implicit scalars are emitted');
    assert.equal(json.agent.renewalId, '');
    assert.deepEqual(json.config.placeholders, ['mid.proxy.host', 'mid.proxy.port', 'mid.proxy.username', 'mid.proxy.password']);
    assert.equal(json.host.cpuCores, 0);
    assert.equal('error' in json.keystore, false, 'no error message field when there is no error');
    assert.equal(typeof json.agent.uptimeSeconds, 'number');
    assert.deepEqual(statusToJson(fromJson(AgentStatusSchema, json)), json, 'JSON round-trips through the schema');
    assert.ok(!JSON.stringify(json).includes('changeit'));
  });
});

describe('agent status when parts of the host are broken', function () {
  this.timeout(60_000);
  let dir: string;

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-status-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('reports each broken part as its own error: no keystore, unparsable config.xml, failing service, unreadable journal', async () => {
    const home = join(dir, 'mid');
    await mkdir(join(home, 'agent'), { recursive: true });
    await writeFile(join(home, 'agent', 'config.xml'), '<parameters><parameter name="url"');
    const cfg = agentConfig(home, dir);
    const status = await collectStatus({
      cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit',
      service: { ...activeService(), isActive: async () => { throw new Error('systemctl: Failed to connect to bus'); } },
      engine: { state: async () => { throw new Error('journal.json: Unexpected token'); } },
      startedAt: new Date(), hostInfo: fixedHost,
    });
    assert.equal(status.keystore?.error?.code, 'KEYSTORE_UNREADABLE');
    assert.match(status.keystore?.error?.message ?? '', /ENOENT/);
    assert.equal(status.certificate?.present, false);
    assert.equal(status.config?.error?.code, 'MID_CONFIG_INVALID');
    assert.equal(status.service?.error?.code, 'SERVICE_FAILED');
    assert.match(status.service?.error?.message ?? '', /Failed to connect to bus/);
    assert.equal(status.agent?.renewalState, 'unknown');
    assert.equal(status.agent?.version, VERSION);
    assert.equal(status.host?.hostname, 'test-host');
    assert.equal(status.midName, '');
  });

  it('bounds a hanging service query by service.timeoutSeconds', async () => {
    const home = join(dir, 'mid');
    await mkdir(join(home, 'agent'), { recursive: true });
    await writeFile(join(home, 'agent', 'config.xml'), renderConfigXml({ url: 'https://acme.service-now.com/', name: 'mid07', auth: 'mutual' }));
    const cfg = agentConfig(home, dir);
    const started = Date.now();
    const status = await collectStatus({
      cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit',
      service: { ...activeService(), isActive: () => new Promise<boolean>(() => undefined) },
      engine: idleEngine, startedAt: new Date(), hostInfo: fixedHost,
    });
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    assert.equal(status.service?.error?.code, 'SERVICE_FAILED');
    assert.equal(status.config?.midName, 'mid07');
  });

  it('never reports instance or proxy credentials from config.xml, nor a store password from a failing source', async () => {
    const home = join(dir, 'mid');
    await mkdir(join(home, 'agent'), { recursive: true });
    await writeFile(join(home, 'agent', 'config.xml'), renderConfigXml({
      url: 'https://acme.service-now.com/', name: 'mid08', auth: { username: 'mid.user', password: 'Instance-S3cret!' },
      proxy: { host: 'proxy.acme.example', port: 3128, username: 'proxyuser', password: 'Proxy-S3cret!' },
    }));
    const cfg = agentConfig(home, dir);
    const status = await collectStatus({
      cfg, paths: await resolveMidPaths(cfg), storepass: async () => { throw new Error('storepass file is missing'); },
      service: activeService(), engine: idleEngine, startedAt: new Date(), hostInfo: fixedHost,
    });
    assert.equal(status.config?.authMode, 'basic');
    assert.equal(status.config?.basicCredentialsPresent, true);
    assert.deepEqual({ ...status.config?.proxy }, { enabled: true, host: 'proxy.acme.example', port: 3128, credentialsPresent: true });
    assert.equal(status.keystore?.error?.code, 'KEYSTORE_UNREADABLE');
    const text = JSON.stringify(statusToJson(status));
    for (const secret of ['Instance-S3cret!', 'Proxy-S3cret!', 'proxyuser']) assert.ok(!text.includes(secret), secret);
  });

  describe('special files in place of the keystore, config.xml or the store password file', () => {
    const fifos: string[] = [];
    afterEach(() => releaseFifoReaders(fifos));

    /** A MID home with a good config.xml; `keystore` / `config` put something else in their place. */
    async function brokenHome(place: { keystore?: (path: string) => Promise<void>; config?: (path: string) => Promise<void> }): Promise<AgentConfig> {
      const home = join(dir, 'mid');
      await mkdir(join(home, 'agent', 'security'), { recursive: true });
      const configPath = join(home, 'agent', 'config.xml');
      if (place.config) await place.config(configPath);
      else await writeFile(configPath, renderConfigXml({ url: 'https://acme.service-now.com/', name: 'mid09', auth: 'mutual' }));
      if (place.keystore) await place.keystore(join(home, 'agent', 'security', 'agent_keystore'));
      return agentConfig(home, dir);
    }
    const fifo = async (path: string): Promise<void> => { await runOk('mkfifo', [path]); fifos.push(path); };
    const specials: [string, (path: string) => Promise<void>, string, RegExp][] = [
      ['a symlink to /dev/zero', (p) => symlink('/dev/zero', p), 'KEYSTORE_UNREADABLE', /is a character device, not a regular file/],
      ['a FIFO', fifo, 'KEYSTORE_UNREADABLE', /is a FIFO \(named pipe\), not a regular file/],
      ['a directory', (p) => mkdir(p), 'KEYSTORE_UNREADABLE', /is a directory, not a regular file/],
      ['a regular file over 4 MiB', (p) => writeFile(p, Buffer.alloc(LIMITS.keystoreBytes + 1, 0xfe)), 'INPUT_TOO_LARGE', /is 4194305 bytes; the limit is 4194304 bytes/],
    ];

    for (const [what, make, code, message] of specials) {
      it(`answers at once with ${code} for a keystore that is ${what}, and still reports config.xml`, async () => {
        const cfg = await brokenHome({ keystore: make });
        const started = Date.now();
        const status = await within(5_000, collectStatus({
          cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService(), engine: idleEngine, startedAt: new Date(), hostInfo: fixedHost,
        }));
        assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms`);
        assert.equal(status.keystore?.error?.code, code);
        assert.match(status.keystore?.error?.message ?? '', message);
        assert.ok(status.keystore?.modifiedAt, 'the file was found, so its time is known');
        assert.equal(status.certificate?.present, false);
        assert.equal(status.config?.midName, 'mid09');
        assert.equal(status.config?.error, undefined);
      });

      it(`answers at once with ${code === 'KEYSTORE_UNREADABLE' ? 'MID_CONFIG_INVALID' : code} for a config.xml that is ${what}`, async () => {
        const cfg = await brokenHome({ config: make });
        const status = await within(5_000, collectStatus({
          cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService(), engine: idleEngine, startedAt: new Date(), hostInfo: fixedHost,
        }));
        assert.equal(status.config?.error?.code, code === 'KEYSTORE_UNREADABLE' ? 'MID_CONFIG_INVALID' : code);
        assert.match(status.config?.error?.message ?? '', code === 'INPUT_TOO_LARGE' ? /is 4194305 bytes; the limit is 262144 bytes/ : message);
        assert.equal(status.midName, '');
        assert.equal(status.keystore?.error?.code, 'KEYSTORE_UNREADABLE', 'no keystore in this home');
        assert.equal(status.service?.active, true);
      });
    }

    it('answers at once with CONFIG_UNREADABLE for a store password file that is a FIFO', async () => {
      const base = await brokenHome({});
      await fifo(join(dir, 'storepass'));
      const cfg: AgentConfig = { ...base, mid: { ...base.mid, storepassFile: join(dir, 'storepass') } };
      const status = await within(5_000, collectStatus({
        cfg, paths: await resolveMidPaths(cfg), storepass: () => resolveStorepass(cfg), service: activeService(), engine: idleEngine, startedAt: new Date(), hostInfo: fixedHost,
      }));
      assert.equal(status.keystore?.error?.code, 'CONFIG_UNREADABLE');
      assert.match(status.keystore?.error?.message ?? '', /^mid\.storepassFile .*storepass is a FIFO/);
      assert.equal(status.config?.midName, 'mid09');
    });

    it('names a config.xml that is not one (passwd-like text, binary data, other XML) without echoing any of its content', async () => {
      const contents: [string, Buffer][] = [
        ['passwd', Buffer.from('QZroot:x:0:0:Hunter2Secret:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n')],
        ['binary', Buffer.concat([Buffer.from('\x7fELF\x02\x01\x01', 'latin1'), Buffer.alloc(16), Buffer.from('Hunter2Secret')])],
        ['other-xml', Buffer.from('<html><head><title>Hunter2Secret</title></head></html>')],
      ];
      for (const [name, bytes] of contents) {
        const target = join(dir, `${name}.data`);
        await writeFile(target, bytes);
        const cfg = await brokenHome({ config: (p) => rm(p, { force: true }).then(() => symlink(target, p)) });
        const status = await collectStatus({
          cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService(), engine: idleEngine, startedAt: new Date(), hostInfo: fixedHost,
        });
        const message = status.config?.error?.message ?? '';
        assert.equal(status.config?.error?.code, 'MID_CONFIG_INVALID', name);
        const configPath = join(cfg.mid.home, 'agent', 'config.xml');
        assert.ok(message.startsWith(`${configPath} is not a MID config.xml: `), `${name}: ${message}`);
        const rest = message.slice(configPath.length);
        for (const piece of ['Q', 'root:', 'Hunter2', 'ELF', '\x7f', 'html', 'title', 'daemon']) assert.ok(!rest.includes(piece), `${name}: "${piece}" echoed in: ${message}`);
        await rm(cfg.mid.home, { recursive: true, force: true });
      }
    });
  });

  it('maps the last renewal result to the OperationResult shape', async () => {
    const last: LastResult = {
      ok: false, renewalId: 'r-7', failedStep: 'import', rolledBack: true, previousSha256: 'aa', currentSha256: 'aa',
      finishedAt: '2025-01-02T03:04:05.000Z', error: { code: 'SCRIPT_FAILED', message: 'manage-certificates failed', detail: 'Could not find valid private key' },
    };
    const cfg = agentConfig(join(dir, 'mid'), dir);
    const status = await collectStatus({
      cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service: activeService(),
      engine: { state: async () => ({ state: 'prepared' as const, renewalId: 'r-8', lastResult: last }) },
      startedAt: new Date(), hostInfo: fixedHost,
    });
    assert.equal(status.agent?.renewalState, 'prepared');
    assert.equal(status.agent?.renewalId, 'r-8');
    const json = statusToJson(status) as Record<string, any>;
    assert.deepEqual(json.agent.lastResult, {
      ok: false, renewalId: 'r-7', failedStep: 'import', rolledBack: true, previousSha256: 'aa', currentSha256: 'aa',
      finishedAt: '2025-01-02T03:04:05.000Z', error: { code: 'SCRIPT_FAILED', message: 'manage-certificates failed', detail: 'Could not find valid private key' },
      warnings: [],
    });
  });
});

describe('host info', () => {
  it('picks the filesystem whose mount is the longest whole-component prefix', () => {
    const fs = [{ mount: '/' }, { mount: '/home' }, { mount: '/home/mid' }, { mount: '/opt' }];
    assert.equal(mountFor(fs, '/home/mid/agent')?.mount, '/home/mid');
    assert.equal(mountFor(fs, '/homework/x')?.mount, '/');
    assert.equal(mountFor(fs, '/opt')?.mount, '/opt');
    assert.equal(mountFor([{ mount: '/srv' }], '/opt/mid'), undefined);
  });

  it('caches per MID home for 60 s, then asks again', async () => {
    clearHostInfoCache();
    const first = hostInfo('/tmp', () => 1_000);
    assert.equal(hostInfo('/tmp', () => 59_000), first);
    const later = hostInfo('/tmp', () => 62_000);
    assert.notEqual(later, first);
    const info = await later;
    assert.ok(info.hostname);
    assert.ok((info.cpuCores ?? 0) >= 1);
    assert.equal(info.diskMount && '/tmp'.startsWith(info.diskMount), true);
  });
});
