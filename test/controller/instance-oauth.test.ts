import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MidcertError } from '../../common/errors.js';
import { parseControllerConfig } from '../../controller/config.js';
import { InstanceClient } from '../../controller/instance/rest.js';
import { ADMIN, makePki, start, type LabPki, type StartedInstance } from '../lab/instance-fixtures.js';

/** instance.oauth: tokens from the lab's /oauth_token.do that expire every 2 s, renewed by the client. */

const CLIENT = { clientId: 'midcert', clientSecret: 'controller-client-secret' };
const FAST = { baseMs: 10, maxMs: 40, maxRetryAfterMs: 1000 };

async function rejection(promise: Promise<unknown>): Promise<MidcertError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MidcertError, `expected a MidcertError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

describe('controller instance client: OAuth (oauth.ts)', function () {
  this.timeout(60_000);
  let pki: LabPki;
  let instance: StartedInstance;
  let dir: string;
  const clients: InstanceClient[] = [];

  const client = (extra: { clientSecret?: string; grant?: 'password' | 'client_credentials'; username?: string; refreshMarginMs?: number } = {}): InstanceClient => {
    const grant = extra.grant ?? 'password';
    const c = new InstanceClient({
      url: instance.url, caPem: pki.ca.root.certPem, timeoutMs: 5000, retries: 1, backoff: FAST, proxy: false,
      auth: {
        kind: 'oauth', clientId: CLIENT.clientId, clientSecret: extra.clientSecret ?? CLIENT.clientSecret, grant,
        ...(grant === 'password' ? { username: extra.username ?? ADMIN.username, password: ADMIN.password } : {}),
        ...(extra.refreshMarginMs !== undefined ? { refreshMarginMs: extra.refreshMarginMs } : {}),
      },
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    pki = await makePki('OAuth Client');
    instance = await start(pki, { oauthTokenSeconds: 2, oauthClients: [{ ...CLIENT, applicationUser: 'midcert.app' }] });
    instance.admin.addUser({ userName: 'midcert.app', roles: ['admin'] });
    instance.admin.setProperty('glide.oauth.inbound.client.credential.grant_type.enabled', 'true');
    dir = await mkdtemp(join(tmpdir(), 'midcert-oauth-'));
  });
  after(async () => {
    for (const c of clients) c.close();
    await instance?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a serve-like loop across four token expiries keeps working, renewing with the refresh token', async () => {
    const c = client();
    const started = Date.now();
    let calls = 0;
    while (Date.now() - started < 8500) {
      const rows = await c.tableGet('sys_properties', { limit: 1, fields: ['name'] });
      assert.equal(rows.length, 1);
      calls += 1;
      await sleep(200);
    }
    const stats = c.oauthStats();
    assert.ok(stats, 'oauth stats');
    assert.equal(stats.grants, 1, JSON.stringify(stats));
    assert.ok(stats.refreshes >= 4, `refreshed ${stats.refreshes} times in 8.5 s of 2-s tokens: ${JSON.stringify(stats)}`);
    assert.equal(c.stats.byStatus['401'] ?? 0, 0, 'renewed before expiry, never refused');
    assert.ok(calls >= 20);
  });

  it('without a renewal margin the expired token gets a 401: one new token, one retry (POST too)', async () => {
    // The lab's tokens live 2 s: on a loaded machine one may expire on its own between the calls,
    // and the client then renews it without any 401. Up to three tries, each with a fresh client.
    for (let attempt = 1; ; attempt++) {
      const name = `midcert.oauth.retry${attempt}`;
      const c = client({ refreshMarginMs: 0 });
      await c.tableGet('sys_properties', { limit: 1 });
      instance.admin.revokeOAuthTokens({ access: true });
      const inserted = await c.tableInsert('sys_properties', { name, value: '1' });
      assert.match(inserted['sys_id'] ?? '', /^[0-9a-f]{32}$/);
      assert.equal(instance.admin.tables.query('sys_properties', `name=${name}`).length, 1, 'the POST ran once');
      if (c.stats.byStatus['401'] === undefined && attempt < 3) continue;
      assert.equal(c.stats.byStatus['401'], 1);
      assert.equal(c.oauthStats()?.retriedAfter401, 1);
      break;
    }
  });

  it('a refused refresh token falls back to a new grant', async () => {
    const c = client();
    await c.tableGet('sys_properties', { limit: 1 });
    instance.admin.revokeOAuthTokens({ refresh: true, access: true });
    await sleep(2100);
    await c.tableGet('sys_properties', { limit: 1 });
    const stats = c.oauthStats();
    assert.equal(stats?.refreshRefused, 1, JSON.stringify(stats));
    assert.equal(stats?.grants, 2);
  });

  it('a 401 that a new token does not cure fails after one retry, never a loop', async () => {
    const user = instance.admin.addUser({ userName: 'oauth.locked', password: ADMIN.password, roles: ['admin'] });
    const c = client({ username: 'oauth.locked', refreshMarginMs: 0 });
    await c.tableGet('sys_properties', { limit: 1 });
    instance.admin.tables.update('sys_user', user['sys_id'] as string, { locked_out: 'true' });
    const err = await rejection(c.tableGet('sys_properties', { limit: 1 }));
    assert.equal(err.code, 'INSTANCE_AUTH');
    assert.equal(c.stats.byStatus['401'], 1, 'one refused REST call, then the token endpoint refused too');
    assert.match(err.message, /OAuth password grant for OAuth client "midcert"/);
  });

  it('a wrong client secret: one line INSTANCE_AUTH naming the OAuth client, no secret', async () => {
    const err = await rejection(client({ clientSecret: 'not-the-secret-at-all' }).tableGet('sys_properties', { limit: 1 }));
    assert.equal(err.code, 'INSTANCE_AUTH');
    assert.match(err.message, /^the instance refused the OAuth password grant for OAuth client "midcert" \(POST \/oauth_token\.do: HTTP 401 server_error: access_denied\); check instance\.oauth\.clientId and clientSecretFile/);
    assert.ok(!err.message.includes('\n') && !err.message.includes('not-the-secret') && !err.message.includes(ADMIN.password));
  });

  it('client_credentials: renews with a new grant (no refresh token)', async () => {
    const c = client({ grant: 'client_credentials' });
    await c.tableGet('sys_properties', { limit: 1 });
    await sleep(2200);
    await c.tableGet('sys_properties', { limit: 1 });
    assert.deepEqual([c.oauthStats()?.grants, c.oauthStats()?.refreshes], [2, 0]);
  });

  it('fromConfig: instance.oauth from controller.yaml (secret files relative to it); oauth with oauthTokenFile is refused', async () => {
    await writeFile(join(dir, 'client.secret'), `${CLIENT.clientSecret}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'admin.password'), `${ADMIN.password}\n`, { mode: 0o600 });
    const yaml = [
      'ca: {type: local}', 'instance:', `  url: ${instance.url}`, `  caFile: ${JSON.stringify(join(dir, 'root.pem'))}`,
      '  oauth:', `    clientId: ${CLIENT.clientId}`, '    clientSecretFile: client.secret', '    grant: password', `    username: ${ADMIN.username}`, '    passwordFile: admin.password',
    ].join('\n');
    await writeFile(join(dir, 'root.pem'), pki.ca.root.certPem);
    const cfg = parseControllerConfig(yaml, join(dir, 'controller.yaml'));
    assert.equal(cfg.instance?.oauth?.clientSecretFile, join(dir, 'client.secret'));
    const c = await InstanceClient.fromConfig(cfg.instance!, { proxy: false });
    clients.push(c);
    assert.equal((await c.tableGet('sys_properties', { limit: 1 })).length, 1);
    assert.equal(c.oauthStats()?.grants, 1);
    assert.ok(!JSON.stringify(c).includes(CLIENT.clientSecret));
    const both = await rejection(InstanceClient.fromConfig({ ...cfg.instance!, oauthTokenFile: join(dir, 'client.secret') }));
    assert.equal(both.code, 'CONFIG_INVALID');
  });
});
