import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { MidcertError } from '../../common/errors.js';
import { httpCall, useCaProxy } from '../../controller/ca/http.js';
import { CaAnswer } from '../../controller/ca/adapter.js';
import type { InstanceConfig } from '../../controller/config.js';
import { InstanceClient } from '../../controller/instance/rest.js';
import { bypasses, proxyFor } from '../../controller/proxy.js';
import { freePort, tempDir } from '../controller/ca-fixtures.js';
import { ADMIN, makePki, start, type LabPki, type StartedInstance } from '../lab/instance-fixtures.js';

/**
 * instance.proxy / ca.proxy / HTTPS_PROXY through real proxies (scripts/peers/): Debian's
 * tinyproxy (CONNECT + Basic auth) and squid-openssl bumping TLS with its own CA. Peers are
 * stopped by their recorded PIDs in after(), whatever happened.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const PEERS = join(ROOT, 'scripts/peers');
const PROXY_USER = 'midproxy';
const PROXY_PASSWORD = 'Pr0xy-pass-7781';
const CLIENT = { clientId: 'midcert', clientSecret: 'proxy-client-secret' };

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  assert.fail('expected the call to fail');
}

describe('peers: controller through HTTP proxies (tinyproxy, squid ssl-bump)', function () {
  this.timeout(60_000);
  let dir: string;
  let pki: LabPki;
  let instance: StartedInstance;
  let tinyPort: number;
  let squidPort: number;
  const clients: InstanceClient[] = [];
  const savedEnv = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };

  const base = (extra: Partial<InstanceConfig> = {}): InstanceConfig => ({
    url: instance.url, username: ADMIN.username, passwordFile: join(dir, 'admin.password'), caFile: join(dir, 'root.pem'),
    timeoutSeconds: 5, publishTimeoutSeconds: 10, retries: 1, ...extra,
  });
  const open = async (cfg: InstanceConfig): Promise<InstanceClient> => {
    const c = await InstanceClient.fromConfig(cfg, { backoff: { baseMs: 10, maxMs: 20, maxRetryAfterMs: 100 } });
    clients.push(c);
    return c;
  };
  const connectCount = async (): Promise<number> => ((await readFile(join(dir, 'tinyproxy.log'), 'utf8')).match(/Connect \(file descriptor/g) ?? []).length;
  /** Connections tinyproxy logged so far; waits a little for a count above `after` (its log lags the request). */
  const connects = async (after = -1): Promise<number> => {
    for (let i = 0; i < 20; i += 1) {
      const n = await connectCount();
      if (n > after) return n;
      await new Promise((r) => setTimeout(r, 50));
    }
    return connectCount();
  };

  before(async () => {
    dir = await tempDir('midcert-proxy-peers-');
    pki = await makePki('Proxy Peers');
    instance = await start(pki, { oauthTokenSeconds: 2, oauthClients: [CLIENT] });
    await writeFile(join(dir, 'root.pem'), pki.ca.root.certPem);
    await writeFile(join(dir, 'admin.password'), ADMIN.password, { mode: 0o600 });
    await writeFile(join(dir, 'proxy.password'), PROXY_PASSWORD, { mode: 0o600 });
    await writeFile(join(dir, 'wrong.password'), 'not-the-proxy-password', { mode: 0o600 });
    await writeFile(join(dir, 'client.secret'), CLIENT.clientSecret, { mode: 0o600 });
    [tinyPort, squidPort] = [await freePort(), await freePort()];
    await run('bash', [join(PEERS, 'start-proxy.sh'), dir, String(tinyPort), PROXY_USER, join(dir, 'proxy.password')]);
    await run('bash', [join(PEERS, 'start-intercepting-proxy.sh'), dir, String(squidPort)]);
    delete process.env.HTTPS_PROXY;
    delete process.env.NO_PROXY;
  });
  after(async () => {
    for (const c of clients) c.close();
    await useCaProxy({});
    for (const [k, v] of Object.entries(savedEnv)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    if (dir) await run('bash', [join(PEERS, 'stop.sh'), dir]).catch(() => undefined);
    await instance?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const proxyCfg = (passwordFile = 'proxy.password') => ({ url: `http://127.0.0.1:${tinyPort}`, username: PROXY_USER, passwordFile: join(dir, passwordFile) });

  it('instance.proxy: the REST client tunnels through tinyproxy with Basic proxy auth (CONNECT, TLS end to end)', async () => {
    const before = await connects();
    const c = await open(base({ proxy: proxyCfg() }));
    const inserted = await c.tableInsert('sys_properties', { name: 'midcert.proxy.one', value: '1' });
    assert.equal((await c.tableGetOne('sys_properties', inserted['sys_id'] as string, { fields: ['value'] }))['value'], '1');
    assert.ok((await connects(before)) > before, 'tinyproxy logged the tunnel');
    const log = await readFile(join(dir, 'tinyproxy.log'), 'utf8');
    assert.match(log, new RegExp(`CONNECT 127\\.0\\.0\\.1:${instance.port}`));
  });

  it('instance.oauth through the proxy: the token endpoint is tunnelled too, across expiries', async () => {
    const c = await open(base({ proxy: proxyCfg(), oauth: { clientId: CLIENT.clientId, clientSecretFile: join(dir, 'client.secret'), grant: 'password', refreshMarginSeconds: 60 } }));
    for (let i = 0; i < 3; i += 1) {
      await c.tableGet('sys_properties', { limit: 1 });
      await new Promise((r) => setTimeout(r, 1200));
    }
    assert.ok((c.oauthStats()?.refreshes ?? 0) >= 1, JSON.stringify(c.oauthStats()));
  });

  it('a wrong proxy password: one line PROXY_REFUSED naming the 407 and instance.proxy, never the password', async () => {
    const c = await open(base({ proxy: proxyCfg('wrong.password') }));
    const err = await rejection(c.tableGet('sys_properties', { limit: 1 }));
    assert.ok(err instanceof MidcertError);
    assert.equal(err.code, 'PROXY_REFUSED');
    assert.match(err.message, new RegExp(`the proxy http://127\\.0\\.0\\.1:${tinyPort} \\(instance\\.proxy\\) requires authentication \\(HTTP 40[17] [^)]*\\).*user "${PROXY_USER}".*instance\\.proxy\\.passwordFile`));
    assert.ok(!err.message.includes('\n') && !err.message.includes('not-the-proxy-password'));
    assert.equal(c.stats.attempts, 1, 'a 407 is not retried');
    const none = await rejection((await open(base({ proxy: { url: `http://127.0.0.1:${tinyPort}` } }))).tableGet('sys_properties', { limit: 1 }));
    assert.match(none.message, /requires authentication .*: set instance\.proxy\.username and instance\.proxy\.passwordFile/);
  });

  it('a proxy that is not listening: INSTANCE_UNAVAILABLE naming the proxy', async () => {
    const port = await freePort();
    const err = await rejection((await open(base({ proxy: { url: `http://127.0.0.1:${port}` } }))).tableGet('sys_properties', { limit: 1 }));
    assert.ok(err instanceof MidcertError);
    assert.equal(err.code, 'INSTANCE_UNAVAILABLE');
    assert.match(err.message, new RegExp(`cannot reach the proxy http://127\\.0\\.0\\.1:${port} \\(instance\\.proxy\\): ECONNREFUSED`));
  });

  it('HTTPS_PROXY (with user-info) is honoured without instance.proxy, and NO_PROXY bypasses it', async () => {
    process.env.HTTPS_PROXY = `http://${PROXY_USER}:${encodeURIComponent(PROXY_PASSWORD)}@127.0.0.1:${tinyPort}`;
    try {
      const before = await connects();
      const c = await open(base());
      assert.equal(c.proxy?.source, 'HTTPS_PROXY');
      assert.equal(c.proxy?.url.href, `http://127.0.0.1:${tinyPort}/`, 'the user-info is kept out of the URL');
      await c.tableGet('sys_properties', { limit: 1 });
      assert.ok((await connects(before)) > before);
      process.env.NO_PROXY = 'localhost,127.0.0.1';
      const direct = await open(base());
      assert.equal(direct.proxy, undefined);
      await direct.tableGet('sys_properties', { limit: 1 });
    } finally {
      delete process.env.HTTPS_PROXY;
      delete process.env.NO_PROXY;
    }
    assert.equal(bypasses('mid.example.com', 443, ['.example.com']), true);
    assert.equal(bypasses('example.com', 443, ['*.example.com']), true);
    assert.equal(bypasses('10.1.2.3', 443, ['10.0.0.0/8']), true);
    assert.equal(bypasses('instance.service-now.com', 443, ['example.com', 'instance.service-now.com:8443']), false);
    assert.equal(proxyFor(new URL('https://x.invalid'), undefined, {}), undefined);
  });

  it('ca.proxy: the CA adapters\' HTTP client tunnels through the proxy; a 407 is a rejected answer naming ca.proxy', async () => {
    const ca = (await readFile(join(dir, 'root.pem'))).toString();
    await useCaProxy({ proxy: proxyCfg() });
    const before = await connects();
    const reply = await httpCall(`${instance.url}/adcv2/server`, { method: 'GET', tls: { ca }, timeoutMs: 5000, maxBytes: 4096 });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'snow_adc');
    assert.ok((await connects(before)) > before);
    await useCaProxy({ proxy: proxyCfg('wrong.password') });
    const err = await rejection(httpCall(`${instance.url}/adcv2/server`, { method: 'GET', tls: { ca }, timeoutMs: 5000, maxBytes: 4096 }));
    assert.ok(err instanceof CaAnswer);
    assert.equal(err.outcome.kind, 'rejected');
    assert.match(err.message, /the proxy http:\/\/127\.0\.0\.1:\d+ \(ca\.proxy\) requires authentication \(HTTP 40[17]/);
    assert.ok(!err.message.includes('not-the-proxy-password'));
    await useCaProxy({});
  });

  it('an intercepting proxy (squid ssl-bump, its own CA): INSTANCE_TLS_UNTRUSTED, not a silent success', async () => {
    const c = await open(base({ proxy: { url: `http://127.0.0.1:${squidPort}` } }));
    const err = await rejection(c.tableGet('sys_properties', { limit: 1 }));
    assert.ok(err instanceof MidcertError);
    assert.equal(err.code, 'INSTANCE_TLS_UNTRUSTED');
  });
});
