import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAgentConfig } from '../../agent/config.js';
import { resolveMidPaths } from '../../agent/mid-install.js';
import { runPreflight, type PreflightCheckInit, type PreflightReportInit, type PreflightSources } from '../../agent/preflight.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { renderConfigXml, type ConfigXmlOptions } from '../../lab/mid/config-xml.js';
import { freePort, tempDir } from '../controller/ca-fixtures.js';
import { startMidWorld, type MidWorld } from '../helpers/mid-world.js';

/**
 * Host preflight through the real proxies of scripts/peers/ (config.xml mid.proxy.*): tinyproxy
 * with Basic auth (the checks pass through the tunnel) and squid ssl-bump presenting its own CA
 * (tls-interception must flag it). Peers stopped by PID in after().
 */
const run = promisify(execFile);
const PEERS = join(resolve(import.meta.dirname, '../..'), 'scripts/peers');
const USER = 'midproxy';
const PASSWORD = 'Pr0xy-pass-4410';
const service: ServiceManager = { manager: 'command', unit: 'mid', start: async () => undefined, stop: async () => undefined, isActive: async () => true };

function check(report: PreflightReportInit, name: string): PreflightCheckInit {
  const found = report.checks?.find((c) => c.name === name);
  assert.ok(found, `no ${name} check`);
  return found;
}

describe('agent preflight through real proxies (tinyproxy, squid ssl-bump)', function () {
  this.timeout(120_000);
  let world: MidWorld;
  let dir: string;
  let tinyPort: number;
  let squidPort: number;

  async function sources(proxy: ConfigXmlOptions['proxy'], name: string): Promise<PreflightSources> {
    const home = join(dir, name);
    await mkdir(join(home, 'agent'), { recursive: true });
    await writeFile(join(home, 'agent', 'config.xml'), renderConfigXml({ url: `${world.instance.url}/`, name: 'mid01', auth: 'mutual', proxy }));
    const yaml = [
      'mid:', `  home: ${JSON.stringify(home)}`, 'service:', '  manager: command', '  start: [/bin/true]', '  stop: [/bin/true]', '  status: [/bin/true]',
      `stateDir: ${JSON.stringify(join(dir, `${name}-state`))}`, 'preflight:', `  instanceCaFile: ${JSON.stringify(join(world.dir, 'root.pem'))}`, '  timeoutSeconds: 5',
    ].join('\n');
    const cfg = parseAgentConfig(yaml, join(dir, `${name}.yaml`));
    return { cfg, paths: await resolveMidPaths(cfg), storepass: 'changeit', service };
  }

  before(async () => {
    world = await startMidWorld('mid01');
    dir = await tempDir('midcert-preflight-peers-');
    await writeFile(join(dir, 'proxy.password'), PASSWORD, { mode: 0o600 });
    [tinyPort, squidPort] = [await freePort(), await freePort()];
    await run('bash', [join(PEERS, 'start-proxy.sh'), dir, String(tinyPort), USER, join(dir, 'proxy.password')]);
    await run('bash', [join(PEERS, 'start-intercepting-proxy.sh'), dir, String(squidPort)]);
  });
  after(async () => {
    if (dir) await run('bash', [join(PEERS, 'stop.sh'), dir]).catch(() => undefined);
    await world?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('through tinyproxy with the credentials from config.xml: reachable, clock, ADCv2 and no interception', async () => {
    const report = await runPreflight(await sources({ host: '127.0.0.1', port: tinyPort, username: USER, password: PASSWORD }, 'tiny'));
    for (const name of ['instance-reachable', 'clock', 'adcv2', 'tls-interception']) assert.equal(check(report, name).ok, true, JSON.stringify(check(report, name)));
    assert.match(check(report, 'instance-reachable').message ?? '', new RegExp(`through the proxy 127\\.0\\.0\\.1:${tinyPort} \\(with proxy credentials\\)`));
    assert.match(await readFile(join(dir, 'tinyproxy.log'), 'utf8'), new RegExp(`CONNECT 127\\.0\\.0\\.1:${world.instance.port}`));
    assert.ok(!JSON.stringify(report).includes(PASSWORD));
  });

  it('through tinyproxy with a wrong password: PROXY_REFUSED naming the proxy, no secret', async () => {
    const report = await runPreflight(await sources({ host: '127.0.0.1', port: tinyPort, username: USER, password: 'wrong-proxy-password' }, 'tiny-wrong'));
    const reachable = check(report, 'instance-reachable');
    assert.deepEqual([reachable.ok, reachable.code], [false, 'PROXY_REFUSED']);
    assert.match(reachable.message ?? '', new RegExp(`the proxy 127\\.0\\.0\\.1:${tinyPort} refused the tunnel`));
    assert.ok(!JSON.stringify(report).includes('wrong-proxy-password'));
  });

  it('through squid bumping TLS with its own CA: tls-interception flags TLS_INTERCEPTED (an error)', async () => {
    const report = await runPreflight(await sources({ host: '127.0.0.1', port: squidPort }, 'squid'));
    const interception = check(report, 'tls-interception');
    assert.deepEqual([interception.ok, interception.severity, interception.code], [false, 'error', 'TLS_INTERCEPTED'], interception.message);
    assert.match(interception.message ?? '', /issued by "[^"]*midcert test intercepting proxy CA/);
    assert.equal(report.ok, false);
    assert.equal(check(report, 'instance-reachable').code, 'INSTANCE_TLS_UNTRUSTED');
    assert.match(check(report, 'instance-reachable').message ?? '', /the proxy intercepts TLS/);
  });
});
