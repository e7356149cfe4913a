import assert from 'node:assert/strict';
import { asAdmin, call, makePki, randomSysId, start, type StartedInstance } from './instance-fixtures.js';

const UNAUTHENTICATED = { error: { message: 'User Not Authenticated', detail: 'Required to provide Auth information' }, status: 'failure' };

describe('lab instance: authentication, ACLs, body bounds and injected faults', function () {
  let instance: StartedInstance;
  const reader: [string, string] = ['itil.reader', 'reader-pass-1'];

  before(async () => {
    instance = await start(await makePki());
    instance.admin.addUser({ userName: reader[0], password: reader[1], roles: ['itil'] });
    instance.admin.addUser({ userName: 'mid.writer', password: 'mid-pass-1', roles: ['mid_server'] });
    instance.admin.addUser({ userName: 'gone', password: 'gone-pass-1', roles: ['admin'] });
    instance.admin.tables.update('sys_user', instance.admin.tables.query('sys_user', 'user_name=gone')[0]?.['sys_id'] as string, { locked_out: 'true' });
  });
  after(async () => { await instance?.close(); });

  describe('401', () => {
    for (const [label, auth, headers] of [
      ['no Authorization header', undefined, {}],
      ['a wrong password', ['admin', 'wrong'], {}],
      ['an unknown user', ['nobody', 'x'], {}],
      ['a locked-out user', ['gone', 'gone-pass-1'], {}],
      ['an unknown bearer token', { bearer: 'never-issued-token-123' }, {}],
      ['an unsupported scheme', undefined, { Authorization: 'Digest abc' }],
    ] as const) {
      it(`answers 401 "User Not Authenticated" for ${label}`, async () => {
        const reply = await call(instance, '/api/now/table/sys_user', { ...(auth ? { auth: auth as never } : {}), headers: { ...headers } });
        assert.equal(reply.status, 401);
        assert.deepEqual(reply.json, UNAUTHENTICATED);
        assert.match(String(reply.headers['www-authenticate']), /^Basic/);
      });
    }

    it('logs why it refused, without the password', async () => {
      await call(instance, '/api/now/table/sys_user', { auth: ['admin', 'Sup3rSecretGuess'] });
      const line = instance.logLines.find((l) => l.includes('wrong password for user "admin"'));
      assert.ok(line, 'the refusal reason is logged');
      assert.equal(instance.logLines.some((l) => l.includes('Sup3rSecretGuess')), false);
    });
  });

  describe('OAuth bearer tokens', () => {
    it('accepts a token added through the admin handle, as its user', async () => {
      instance.admin.addOAuthToken('tok-admin-0123456789', 'admin');
      const reply = await call(instance, '/api/now/table/sys_properties', { auth: { bearer: 'tok-admin-0123456789' }, body: { name: 'via.oauth', value: '1' } });
      assert.equal(reply.status, 201);
    });

    it('refuses an expired token', async () => {
      instance.admin.addOAuthToken('tok-expired-0123456789', 'admin', { expiresInMs: -1 });
      const reply = await call(instance, '/api/now/table/sys_user', { auth: { bearer: 'tok-expired-0123456789' } });
      assert.equal(reply.status, 401);
      assert.ok(instance.logLines.some((l) => l.includes('expired bearer token')));
    });

    it('applies the ACLs of the token user', async () => {
      instance.admin.addOAuthToken('tok-reader-0123456789', reader[0]);
      const reply = await call(instance, '/api/now/table/sys_ca_certificate', { auth: { bearer: 'tok-reader-0123456789' }, body: { name: 'x' } });
      assert.equal(reply.status, 403);
    });
  });

  describe('403', () => {
    it('lets an authenticated non-admin read', async () => {
      assert.equal((await call(instance, '/api/now/table/sys_ca_certificate', { auth: reader })).status, 200);
    });

    for (const table of ['sys_ca_certificate', 'sys_user_certificate', 'sys_user', 'sys_properties']) {
      it(`refuses a non-admin insert into ${table} with 403 and the error body`, async () => {
        const reply = await call(instance, `/api/now/table/${table}`, { auth: reader, body: { name: 'x' } });
        assert.equal(reply.status, 403);
        assert.deepEqual(reply.json, { error: { message: 'Operation Failed', detail: 'ACL Exception Insert Failed due to security constraints' }, status: 'failure' });
        assert.equal(instance.admin.tables.query(table, 'name=x').length, 0);
      });
    }

    it('refuses a non-admin PATCH and DELETE of a certificate record with 403', async () => {
      const record = instance.admin.tables.insert('sys_ca_certificate', { name: 'acl target' });
      const path = `/api/now/table/sys_ca_certificate/${record['sys_id']}`;
      const patch = await call(instance, path, { auth: reader, method: 'PATCH', body: { name: 'hijacked' } });
      assert.equal(patch.status, 403);
      assert.match(patch.json.error.detail, /Update/);
      assert.equal((await call(instance, path, { auth: reader, method: 'DELETE' })).status, 403);
      assert.equal(instance.admin.tables.get('sys_ca_certificate', record['sys_id'] as string)?.['name'], 'acl target');
    });

    it('refuses a non-admin attachment upload to a certificate table with 403', async () => {
      const reply = await call(instance, `/api/now/attachment/file?table_name=sys_ca_certificate&table_sys_id=${randomSysId()}&file_name=a.pem`, {
        auth: reader, raw: 'x', headers: { 'Content-Type': 'text/plain' },
      });
      assert.equal(reply.status, 403);
    });

    it('lets a mid_server user write ecc_queue but not ecc_agent', async () => {
      const mid: [string, string] = ['mid.writer', 'mid-pass-1'];
      assert.equal((await call(instance, '/api/now/table/ecc_queue', { auth: mid, body: { topic: 't' } })).status, 201);
      assert.equal((await call(instance, '/api/now/table/ecc_agent', { auth: mid, body: { name: 'fake' } })).status, 403);
    });

    it('refuses writes to sys_attachment through the Table API, even for admin', async () => {
      assert.equal((await call(instance, '/api/now/table/sys_attachment', { auth: asAdmin, body: { file_name: 'x' } })).status, 403);
    });
  });

  describe('413', () => {
    it('refuses a JSON body over 1 MiB with 413 and the error body, and the connection stays usable for the answer', async () => {
      const big = { name: 'big', value: 'x'.repeat(1024 * 1024) };
      const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, body: big });
      assert.equal(reply.status, 413);
      assert.equal(reply.json.status, 'failure');
      assert.equal(reply.json.error.message, 'Request entity too large');
      assert.equal(instance.admin.tables.query('sys_properties', 'name=big').length, 0);
    });

    it('accepts a JSON body just under 1 MiB', async () => {
      const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, body: { name: 'almost', value: 'x'.repeat(1024 * 1024 - 100) } });
      assert.equal(reply.status, 201);
    });

    it('refuses an attachment over 64 KiB with 413', async () => {
      const reply = await call(instance, `/api/now/attachment/file?table_name=ecc_queue&table_sys_id=${randomSysId()}&file_name=big.bin`, {
        auth: asAdmin, raw: Buffer.alloc(64 * 1024 + 1, 0x41), headers: { 'Content-Type': 'application/octet-stream' },
      });
      assert.equal(reply.status, 413);
      assert.equal(reply.json.status, 'failure');
    });
  });

  describe('injected faults and latency', () => {
    afterEach(() => { instance.admin.clearFaults(); instance.admin.setLatency(0); });

    it('answers 429 with Retry-After for the next N requests, then normally', async () => {
      instance.admin.setFault({ status: 429, count: 2, retryAfterSeconds: 7 });
      for (let i = 0; i < 2; i += 1) {
        const reply = await call(instance, '/api/now/table/sys_user', { auth: asAdmin });
        assert.equal(reply.status, 429);
        assert.equal(reply.headers['retry-after'], '7');
        assert.equal(reply.headers['server'], 'snow_adc');
        assert.equal(reply.json.status, 'failure');
      }
      assert.equal((await call(instance, '/api/now/table/sys_user', { auth: asAdmin })).status, 200);
    });

    it('defaults Retry-After to 1 second for 429', async () => {
      instance.admin.setFault({ status: 429, count: 1 });
      assert.equal((await call(instance, '/adcv2/server')).headers['retry-after'], '1');
    });

    for (const status of [500, 503] as const) {
      it(`injects ${status} only on requests under the given path prefix`, async () => {
        instance.admin.setFault({ status, count: 1, path: '/api/now/attachment' });
        assert.equal((await call(instance, '/api/now/table/sys_user', { auth: asAdmin })).status, 200, 'other paths are not affected');
        const reply = await call(instance, '/api/now/attachment', { auth: asAdmin });
        assert.equal(reply.status, status);
        assert.equal(reply.json.status, 'failure');
        assert.equal((await call(instance, '/api/now/attachment', { auth: asAdmin })).status, 200, 'the fault is used up');
      });
    }

    it('refuses a fault it cannot inject', () => {
      assert.throws(() => instance.admin.setFault({ status: 418 as 429, count: 1 }), RangeError);
      assert.throws(() => instance.admin.setFault({ status: 429, count: 0 }), RangeError);
    });

    it('adds latency to every request', async () => {
      instance.admin.setLatency(300);
      const began = Date.now();
      assert.equal((await call(instance, '/adcv2/server')).status, 200);
      assert.ok(Date.now() - began >= 290, `took ${Date.now() - began} ms`);
    });
  });
});
