import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { InstanceClient, queryValue, type InstanceClientSettings } from '../../controller/instance/rest.js';
import { backoffDelay, retryAfterMs, DEFAULT_BACKOFF } from '../../controller/instance/retry.js';
import { ADMIN, makePki, randomSysId, start, type LabPki, type StartedInstance } from '../lab/instance-fixtures.js';

/** The REST client against the simulated instance (lab/instance), started in-process with the lab CA. */

const FAST = { baseMs: 10, maxMs: 40, maxRetryAfterMs: 30_000 };

async function rejection(promise: Promise<unknown>): Promise<MidcertError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MidcertError, `expected a MidcertError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

describe('controller instance client: REST (rest.ts)', function () {
  let pki: LabPki;
  let instance: StartedInstance;
  const clients: InstanceClient[] = [];

  const client = (settings: Partial<InstanceClientSettings> = {}): InstanceClient => {
    const c = new InstanceClient({
      url: instance.url, auth: { kind: 'basic', username: ADMIN.username, password: ADMIN.password },
      caPem: pki.ca.root.certPem, timeoutMs: 5000, retries: 2, backoff: FAST, ...settings,
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    pki = await makePki('REST Client');
    instance = await start(pki);
  });
  afterEach(() => { instance.admin.clearFaults(); instance.admin.setLatency(0); });
  after(async () => {
    for (const c of clients) c.close();
    await instance?.close();
  });

  describe('Table API', () => {
    it('inserts, reads, lists, patches and deletes a record', async () => {
      const c = client();
      const inserted = await c.tableInsert('sys_properties', { name: 'midcert.test.one', value: '1' });
      assert.match(inserted['sys_id'] ?? '', /^[0-9a-f]{32}$/);
      assert.equal(inserted['value'], '1');
      const one = await c.tableGetOne('sys_properties', inserted['sys_id'] as string, { fields: ['name', 'value'] });
      assert.deepEqual(one, { name: 'midcert.test.one', value: '1' });
      const listed = await c.tableGet('sys_properties', { query: `name=${queryValue('midcert.test.one')}`, fields: ['sys_id', 'value'] });
      assert.deepEqual(listed, [{ sys_id: inserted['sys_id'], value: '1' }]);
      const patched = await c.tablePatch('sys_properties', inserted['sys_id'] as string, { value: '2' });
      assert.equal(patched['value'], '2');
      assert.equal(instance.admin.tables.get('sys_properties', inserted['sys_id'] as string)?.['value'], '2');
      await c.tableDelete('sys_properties', inserted['sys_id'] as string);
      assert.equal(instance.admin.tables.get('sys_properties', inserted['sys_id'] as string), undefined);
    });

    it('inserts with a client-chosen sys_id', async () => {
      const sysId = randomSysId();
      const inserted = await client().tableInsert('sys_properties', { sys_id: sysId, name: 'midcert.test.chosen' });
      assert.equal(inserted['sys_id'], sysId);
    });

    it('always asks for plain reference values (sysparm_exclude_reference_link=true)', async () => {
      const user = instance.admin.addUser({ userName: 'ref.check', roles: ['mid_server'] });
      const rows = await client().tableGet('sys_user_has_role', { query: `user=${user['sys_id']}`, fields: ['user', 'role'] });
      assert.deepEqual(rows, [{ user: user['sys_id'], role: 'mid_server' }]);
    });

    it('honours sysparm_limit', async () => {
      for (let i = 0; i < 3; i += 1) instance.admin.tables.insert('sys_properties', { name: `midcert.limit.${i}` });
      assert.equal((await client().tableGet('sys_properties', { query: 'nameSTARTSWITHmidcert.limit.', limit: 2 })).length, 2);
    });

    it('refuses table names and sys_ids that could reshape the path, before sending', async () => {
      const c = client();
      assert.equal((await rejection(c.tableGet('sys_user/../x'))).code, 'USAGE');
      assert.equal((await rejection(c.tableGetOne('sys_user', 'ABC'))).code, 'USAGE');
      assert.equal(c.stats.attempts, 0);
    });

    it('refuses query values that hold ^ (no escape exists in encoded queries)', () => {
      assert.throws(() => queryValue('mid01^ORname=other'), (err: unknown) => (err as MidcertError).code === 'USAGE');
      assert.equal(queryValue('mid 01.example'), 'mid 01.example');
    });
  });

  describe('Attachment API', () => {
    it('uploads a raw body with its content type, lists it and downloads it', async () => {
      const c = client();
      const sysId = randomSysId();
      const meta = await c.attach('ecc_queue', sysId, 'note.txt', 'text/plain', 'hello instance');
      assert.equal(meta['table_sys_id'], sysId);
      assert.equal(meta['content_type'], 'text/plain');
      const [listed] = await c.listAttachments('ecc_queue', sysId);
      assert.equal(listed?.['sys_id'], meta['sys_id']);
      assert.equal((await c.downloadAttachment(meta['sys_id'] as string)).toString(), 'hello instance');
      await c.deleteAttachment(meta['sys_id'] as string);
      assert.deepEqual(await c.listAttachments('ecc_queue', sysId), []);
    });
  });

  describe('errors map to stable codes with the instance message', () => {
    it('401 → INSTANCE_AUTH, not retried, and the password is nowhere in the error', async () => {
      const secret = 'wrong-secret-Pa55';
      const c = client({ auth: { kind: 'basic', username: ADMIN.username, password: secret } });
      const err = await rejection(c.tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_AUTH');
      assert.match(err.message, /HTTP 401: User Not Authenticated/);
      assert.equal(err.detail, 'Required to provide Auth information');
      const everything = `${err.message} ${err.detail} ${err.stack} ${JSON.stringify(err)}`;
      assert.ok(!everything.includes(secret));
      assert.ok(!everything.includes(Buffer.from(`${ADMIN.username}:${secret}`).toString('base64')));
      assert.equal(c.stats.attempts, 1);
      const { inspect } = await import('node:util');
      const shown = `${JSON.stringify(c)} ${inspect(c, { depth: 5, showHidden: true })}`;
      assert.ok(!shown.includes(secret) && !shown.includes(Buffer.from(`${ADMIN.username}:${secret}`).toString('base64')), 'the client object does not show the credential');
    });

    it('403 → INSTANCE_FORBIDDEN for a user without a write role', async () => {
      instance.admin.addUser({ userName: 'reader.only', password: 'reader-pass-1' });
      const err = await rejection(client({ auth: { kind: 'basic', username: 'reader.only', password: 'reader-pass-1' } })
        .tableInsert('sys_ca_certificate', { name: 'x' }));
      assert.equal(err.code, 'INSTANCE_FORBIDDEN');
      assert.match(err.message, /Operation Failed/);
    });

    it('404 → INSTANCE_NOT_FOUND (record and table)', async () => {
      const c = client();
      const err = await rejection(c.tableGetOne('sys_user', randomSysId()));
      assert.equal(err.code, 'INSTANCE_NOT_FOUND');
      assert.match(err.message, /No Record found/);
      assert.match((await rejection(c.tableGet('no_such_table'))).message, /Invalid table no_such_table/);
    });

    // An unknown field is no 400 on a real instance (SND c_TableAPI.md: the condition is ignored); malformed syntax is used instead.
    it('400 → INSTANCE_BAD_REQUEST (a malformed query)', async () => {
      const err = await rejection(client().tableGet('sys_user', { query: 'name~~x' }));
      assert.equal(err.code, 'INSTANCE_BAD_REQUEST');
      assert.match(err.message, /Invalid query/);
    });
  });

  describe('retries', () => {
    it('retries a 429 after Retry-After, then succeeds', async () => {
      instance.admin.setFault({ status: 429, count: 1, retryAfterSeconds: 1 });
      const c = client();
      const started = Date.now();
      await c.tableGet('sys_user', { limit: 1 });
      assert.ok(Date.now() - started >= 950, 'waited for Retry-After');
      assert.deepEqual({ requests: c.stats.requests, attempts: c.stats.attempts, retries: c.stats.retries }, { requests: 1, attempts: 2, retries: 1 });
      assert.equal(c.stats.byStatus['429'], 1);
      assert.equal(c.stats.byStatus['200'], 1);
    });

    it('caps a long Retry-After', async () => {
      instance.admin.setFault({ status: 429, count: 2, retryAfterSeconds: 120 });
      const c = client({ backoff: { ...FAST, maxRetryAfterMs: 50 } });
      const started = Date.now();
      await c.tableGet('sys_user', { limit: 1 });
      assert.ok(Date.now() - started < 5000);
      assert.equal(c.stats.attempts, 3);
    });

    it('retries a 429 even for POST (the instance refused it unrun), inserting once', async () => {
      instance.admin.setFault({ status: 429, count: 1, retryAfterSeconds: 0 });
      const c = client();
      await c.tableInsert('sys_properties', { name: 'midcert.post.429' });
      assert.equal(c.stats.attempts, 2);
      assert.equal(instance.admin.tables.query('sys_properties', 'name=midcert.post.429').length, 1);
    });

    it('gives up on 429 after the retries → INSTANCE_RATE_LIMITED', async () => {
      instance.admin.setFault({ status: 429, count: 10, retryAfterSeconds: 0 });
      const c = client({ retries: 2 });
      const err = await rejection(c.tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_RATE_LIMITED');
      assert.match(err.message, /Too Many Requests \(after 3 attempts\)/);
      assert.equal(c.stats.attempts, 3);
    });

    it('gives up on 503 after the retries → INSTANCE_UNAVAILABLE', async () => {
      instance.admin.setFault({ status: 503, count: 10 });
      const c = client({ retries: 3 });
      const err = await rejection(c.tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_UNAVAILABLE');
      assert.match(err.message, /HTTP 503: Service Unavailable/);
      assert.equal(c.stats.attempts, 4);
    });

    it('retries a 500 for GET but not for POST', async () => {
      const c = client();
      instance.admin.setFault({ status: 500, count: 1 });
      await c.tableGet('sys_user', { limit: 1 });
      assert.equal(c.stats.attempts, 2);
      c.resetStats();
      instance.admin.setFault({ status: 500, count: 1 });
      const err = await rejection(c.tableInsert('sys_properties', { name: 'midcert.post.500' }));
      assert.equal(err.code, 'INSTANCE_UNAVAILABLE');
      assert.match(err.message, /not repeated/);
      assert.equal(c.stats.attempts, 1);
    });

    it('retries a POST whose connection was refused (it never reached the instance)', async () => {
      const spare = await start(pki);
      const url = spare.url;
      await spare.close();
      const c = client({ url, retries: 2 });
      const err = await rejection(c.tableInsert('sys_properties', { name: 'never' }));
      assert.equal(err.code, 'INSTANCE_UNAVAILABLE');
      assert.match(err.message, /ECONNREFUSED.*after 3 attempts/);
      assert.equal(c.stats.attempts, 3);
    });
  });

  describe('timeouts', () => {
    it('latency beyond the timeout → INSTANCE_TIMEOUT after retrying a GET', async () => {
      instance.admin.setLatency(800);
      const c = client({ timeoutMs: 300, retries: 1 });
      const err = await rejection(c.tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_TIMEOUT');
      assert.equal(c.stats.attempts, 2);
    });

    it('never repeats a POST that timed out after it was sent (the instance may still run it)', async () => {
      instance.admin.setLatency(600);
      const c = client({ timeoutMs: 300, retries: 3 });
      const err = await rejection(c.tableInsert('sys_properties', { name: 'midcert.post.slow' }));
      assert.equal(err.code, 'INSTANCE_TIMEOUT');
      assert.match(err.message, /not repeated/);
      assert.equal(c.stats.attempts, 1);
    });
  });

  describe('transport', () => {
    it('authenticates with an OAuth bearer token; a wrong token → INSTANCE_AUTH without the token', async () => {
      const token = 'oauth-token-0123456789abcdef';
      instance.admin.addOAuthToken(token, ADMIN.username);
      const ok = client({ auth: { kind: 'bearer', token } });
      assert.equal((await ok.tableGet('sys_user', { query: `user_name=${ADMIN.username}`, fields: ['user_name'] }))[0]?.['user_name'], ADMIN.username);
      const bad = 'oauth-token-wrong-000000000';
      const err = await rejection(client({ auth: { kind: 'bearer', token: bad } }).tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_AUTH');
      assert.ok(!`${err.message} ${err.detail}`.includes(bad));
    });

    it('refuses an instance certificate outside caFile → INSTANCE_TLS_UNTRUSTED, not retried', async () => {
      const other = await makePki('Other');
      const c = client({ caPem: other.ca.root.certPem, retries: 3 });
      const err = await rejection(c.tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_TLS_UNTRUSTED');
      assert.equal(c.stats.attempts, 1);
    });

    it('caps the response body → INSTANCE_RESPONSE_INVALID', async () => {
      const err = await rejection(client({ maxResponseBytes: 200 }).tableGet('sys_user'));
      assert.equal(err.code, 'INSTANCE_RESPONSE_INVALID');
      assert.match(err.message, /limit is 200/);
    });

    it('refuses a plain-http instance URL', () => {
      assert.throws(() => new InstanceClient({ url: 'http://example.invalid', auth: { kind: 'bearer', token: 't' } }),
        (err: unknown) => (err as MidcertError).code === 'CONFIG_INVALID');
    });

    it('can read an answer of any status without credentials (preflight probes)', async () => {
      const c = client();
      const res = await c.request('GET', '/adcv2/supports_tls', { authenticate: false, anyStatus: true });
      assert.equal(res.status, 200);
      assert.equal(res.headers['server'], 'snow_adc');
      const missing = await c.request('GET', '/no/such/path', { anyStatus: true });
      assert.equal(missing.status, 400);
    });

    it('sends no Authorization header when asked not to', async () => {
      let seen: string | undefined = 'unset';
      const server = createServer({ cert: pki.server.certPem + pki.ca.intermediate.certPem, key: pki.server.keyPem }, (req, res) => {
        seen = req.headers.authorization;
        res.end('true');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const port = (server.address() as { port: number }).port;
        await client({ url: `https://127.0.0.1:${port}` }).request('GET', '/adcv2/supports_tls', { authenticate: false });
        assert.equal(seen, undefined);
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });

    it('estimates the instance clock offset from the Date header', async () => {
      const c = client();
      assert.equal(c.clockOffsetMs(), undefined);
      await c.tableGet('sys_user', { limit: 1 });
      assert.ok(Math.abs(c.clockOffsetMs() as number) <= 1500, `offset ${c.clockOffsetMs()}`);
    });
  });

  describe('fromConfig', () => {
    let dir: string;
    before(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-instance-')); });
    after(async () => { await rm(dir, { recursive: true, force: true }); });

    it('reads the password file and caFile', async () => {
      await writeFile(join(dir, 'password'), `${ADMIN.password}\n`, { mode: 0o600 });
      await writeFile(join(dir, 'ca.pem'), pki.ca.root.certPem);
      const c = await InstanceClient.fromConfig({
        url: instance.url, username: ADMIN.username, passwordFile: join(dir, 'password'), caFile: join(dir, 'ca.pem'),
        timeoutSeconds: 5, publishTimeoutSeconds: 10, retries: 1,
      });
      clients.push(c);
      assert.equal((await c.tableGet('sys_user', { limit: 1 })).length, 1);
    });

    it('prefers the OAuth token file (the password file is not even read)', async () => {
      const token = 'oauth-token-from-file-123456';
      instance.admin.addOAuthToken(token, ADMIN.username);
      await writeFile(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
      await writeFile(join(dir, 'ca.pem'), pki.ca.root.certPem);
      const c = await InstanceClient.fromConfig({
        url: instance.url, username: ADMIN.username, passwordFile: join(dir, 'no-such-password-file'), oauthTokenFile: join(dir, 'token'),
        caFile: join(dir, 'ca.pem'), timeoutSeconds: 5, publishTimeoutSeconds: 10, retries: 1,
      });
      clients.push(c);
      assert.equal((await c.tableGet('sys_user', { limit: 1 })).length, 1);
    });

    it('refuses a config with no credentials', async () => {
      const err = await rejection(InstanceClient.fromConfig({ url: instance.url, timeoutSeconds: 5, publishTimeoutSeconds: 10, retries: 1 }));
      assert.equal(err.code, 'CONFIG_INVALID');
    });
  });

  describe('backoff', () => {
    it('doubles per retry up to the cap, with jitter in the upper half', () => {
      const s = { baseMs: 100, maxMs: 1000, maxRetryAfterMs: 5000 };
      assert.equal(backoffDelay(1, s, () => 0), 50);
      assert.equal(backoffDelay(1, s, () => 1), 100);
      assert.equal(backoffDelay(3, s, () => 1), 400);
      assert.equal(backoffDelay(10, s, () => 1), 1000);
    });

    it('reads Retry-After as seconds or an HTTP date, capped', () => {
      assert.equal(retryAfterMs('2', DEFAULT_BACKOFF), 2000);
      assert.equal(retryAfterMs('86400', DEFAULT_BACKOFF), DEFAULT_BACKOFF.maxRetryAfterMs);
      const now = Date.parse('2030-01-01T00:00:00Z');
      assert.equal(retryAfterMs('Tue, 01 Jan 2030 00:00:05 GMT', DEFAULT_BACKOFF, now), 5000);
      assert.equal(retryAfterMs('soon', DEFAULT_BACKOFF), undefined);
      assert.equal(retryAfterMs(undefined, DEFAULT_BACKOFF), undefined);
    });
  });
});
