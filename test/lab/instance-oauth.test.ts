import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ADMIN, call, makePki, start, type LabPki, type Reply, type StartedInstance } from './instance-fixtures.js';

/** The lab instance's /oauth_token.do (lab/instance/oauth.ts, docs/vendor-facts.md §15). */

const CLIENT = { clientId: 'midcert-lab', clientSecret: 'lab-client-secret-1' };
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };

describe('lab instance: OAuth /oauth_token.do', function () {
  this.timeout(30_000);
  let pki: LabPki;
  let instance: StartedInstance;

  const token = (fields: Record<string, string>, headers: Record<string, string> = FORM): Promise<Reply> =>
    call(instance, '/oauth_token.do', { method: 'POST', raw: new URLSearchParams(fields).toString(), headers });
  const password = (extra: Record<string, string> = {}): Promise<Reply> => token({
    grant_type: 'password', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret, username: ADMIN.username, password: ADMIN.password, ...extra,
  });

  before(async () => {
    pki = await makePki('OAuth Lab');
    instance = await start(pki, { oauthTokenSeconds: 2, oauthClients: [{ ...CLIENT, applicationUser: 'oauth.app' }] });
    instance.admin.addUser({ userName: 'oauth.app', roles: ['admin'] });
  });
  after(async () => { await instance?.close(); });

  it('password grant: access and refresh token, Bearer, expires_in; the token works on the Table API', async () => {
    const reply = await password();
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.token_type, 'Bearer');
    assert.equal(reply.json.scope, 'useraccount');
    assert.equal(reply.json.expires_in, 2);
    assert.match(reply.json.access_token, /^[\w-]{40,}$/);
    assert.match(reply.json.refresh_token, /^[\w-]{40,}$/);
    const table = await call(instance, '/api/now/table/sys_properties?sysparm_limit=1', { auth: { bearer: reply.json.access_token } });
    assert.equal(table.status, 200);
  });

  it('a second password grant within the lifetime answers the current tokens (vendor behaviour)', async () => {
    const [a, b] = [await password(), await password()];
    assert.equal(a.json.access_token, b.json.access_token);
    assert.equal(a.json.refresh_token, b.json.refresh_token);
  });

  it('refresh_token grant: a new access token only; the expired one gets 401 with invalid_token', async () => {
    const first = await password();
    await sleep(3200);
    const expired = await call(instance, '/api/now/table/sys_properties?sysparm_limit=1', { auth: { bearer: first.json.access_token } });
    assert.equal(expired.status, 401);
    assert.match(String(expired.headers['www-authenticate']), /^Bearer .*error="invalid_token"/);
    assert.match(expired.text, /invalid_token/);
    const refreshed = await token({ grant_type: 'refresh_token', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret, refresh_token: first.json.refresh_token });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.notEqual(refreshed.json.access_token, first.json.access_token);
    assert.equal(refreshed.json.refresh_token, undefined);
    const ok = await call(instance, '/api/now/table/sys_properties?sysparm_limit=1', { auth: { bearer: refreshed.json.access_token } });
    assert.equal(ok.status, 200);
  });

  it('every refusal is 401 {"error_description":"access_denied","error":"server_error"}; the reason is only logged', async () => {
    const refusals = [
      await password({ client_secret: 'wrong-secret-000' }),
      await password({ client_id: 'nobody' }),
      await password({ password: 'wrong-password' }),
      await token({ grant_type: 'refresh_token', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret, refresh_token: 'no-such-refresh-token' }),
      await token({ grant_type: 'password', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret }, { 'Content-Type': 'application/json' }),
      await token({ grant_type: 'client_credentials', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret }),
    ];
    for (const r of refusals) {
      assert.equal(r.status, 401, r.text);
      assert.deepEqual(r.json, { error_description: 'access_denied', error: 'server_error' });
    }
    const log = instance.logLines.join('\n');
    assert.match(log, /wrong client secret for OAuth client "midcert-lab"/);
    assert.match(log, /is not application\/x-www-form-urlencoded/);
    assert.match(log, /glide\.oauth\.inbound\.client\.credential\.grant_type\.enabled is not true/);
    assert.ok(!log.includes(CLIENT.clientSecret) && !log.includes(ADMIN.password), 'no secret in the log');
  });

  it('client_credentials: with the property and an application user, an access token and no refresh token', async () => {
    instance.admin.setProperty('glide.oauth.inbound.client.credential.grant_type.enabled', 'true');
    const reply = await token({ grant_type: 'client_credentials', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.refresh_token, undefined);
    const table = await call(instance, '/api/now/table/sys_properties?sysparm_limit=1', { auth: { bearer: reply.json.access_token } });
    assert.equal(table.status, 200);
  });

  it('revoked refresh tokens are refused; a new password grant starts over', async () => {
    const first = await password();
    instance.admin.revokeOAuthTokens({ refresh: true });
    const refused = await token({ grant_type: 'refresh_token', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret, refresh_token: first.json.refresh_token });
    assert.equal(refused.status, 401);
    const again = await password();
    assert.equal(again.status, 200);
    assert.notEqual(again.json.refresh_token, first.json.refresh_token);
  });
});
