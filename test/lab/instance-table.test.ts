import assert from 'node:assert/strict';
import { ADMIN, asAdmin, call, makePki, randomSysId, start, type StartedInstance } from './instance-fixtures.js';

const SNOW_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

describe('lab instance: ADCv2 endpoints and the Table API', function () {
  let instance: StartedInstance;

  before(async () => {
    instance = await start(await makePki());
    for (const [name, value, type] of [['mid.a', '3', 'integer'], ['mid.b', '1', 'integer'], ['mid.c', '2', 'string'], ['other.d', '10', 'string']]) {
      instance.admin.tables.insert('sys_properties', { name, value, type });
    }
  });
  after(async () => { await instance?.close(); });

  const names = (reply: { json: any }): string[] => reply.json.result.map((r: { name: string }) => r.name);

  describe('ADCv2 prerequisites (DESIGN §4)', () => {
    it('answers GET /adcv2/server with Server: snow_adc, without credentials', async () => {
      const reply = await call(instance, '/adcv2/server');
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['server'], 'snow_adc');
    });

    it('answers GET /adcv2/supports_tls with true, and with the value set through the admin handle', async () => {
      assert.equal((await call(instance, '/adcv2/supports_tls')).text, 'true');
      instance.admin.setSupportsTls('mixed');
      assert.equal((await call(instance, '/adcv2/supports_tls')).text, 'mixed');
      instance.admin.setSupportsTls('false');
      assert.equal((await call(instance, '/adcv2/supports_tls')).text, 'false');
      instance.admin.setSupportsTls('true');
      assert.throws(() => instance.admin.setSupportsTls('yes' as 'true'), RangeError);
    });

    it('sends Server: snow_adc on errors too', async () => {
      const reply = await call(instance, '/api/now/table/sys_user');
      assert.equal(reply.status, 401);
      assert.equal(reply.headers['server'], 'snow_adc');
    });
  });

  describe('reads', () => {
    it('lists a table in {"result": [...]} with string values and ServiceNow date-times', async () => {
      const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin });
      assert.equal(reply.status, 200);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      const record = reply.json.result.find((r: { name: string }) => r.name === 'mid.a');
      assert.equal(record.value, '3');
      assert.match(record.sys_id, /^[0-9a-f]{32}$/);
      assert.match(record.sys_created_on, SNOW_TIME);
      assert.match(record.sys_updated_on, SNOW_TIME);
      for (const value of Object.values(record)) assert.equal(typeof value, 'string');
    });

    // vendor-facts §1: sys_plugins has the plugin ID in `source` (SND c_GlidePluginManagerScopedAPI.md), no `id`; v_plugin has `id`.
    it('seeds glide.outbound.tls_sni.enabled=true and an active com.glide.auth.mutual plugin (ID in sys_plugins.source, v_plugin.id)', async () => {
      const prop = await call(instance, '/api/now/table/sys_properties?sysparm_query=name=glide.outbound.tls_sni.enabled', { auth: asAdmin });
      assert.equal(prop.json.result[0].value, 'true');
      const plugin = await call(instance, '/api/now/table/sys_plugins?sysparm_query=source=com.glide.auth.mutual', { auth: asAdmin });
      assert.equal(plugin.json.result.length, 1);
      assert.equal(plugin.json.result[0].source, 'com.glide.auth.mutual');
      assert.equal(plugin.json.result[0].active, 'true');
      assert.equal('id' in plugin.json.result[0], false, 'sys_plugins has no id field');
      const view = await call(instance, '/api/now/table/v_plugin?sysparm_query=id=com.glide.auth.mutual&sysparm_fields=id,active', { auth: asAdmin });
      assert.deepEqual(view.json.result, [{ id: 'com.glide.auth.mutual', active: 'true' }]);
    });

    it('filters with field=value, ^ (AND), != and IN', async () => {
      const q = async (query: string): Promise<string[]> =>
        names(await call(instance, `/api/now/table/sys_properties?sysparm_query=${encodeURIComponent(query)}`, { auth: asAdmin }));
      assert.deepEqual(await q('name=mid.a'), ['mid.a']);
      assert.deepEqual(await q('type=integer^value=1'), ['mid.b']);
      assert.deepEqual(await q('nameINmid.a,mid.c,nope'), ['mid.a', 'mid.c']);
      assert.deepEqual(await q('nameSTARTSWITHmid.^type!=integer'), ['mid.c']);
      assert.deepEqual(await q('name=mid.a^ORname=other.d'), ['mid.a', 'other.d']);
      assert.deepEqual(await q('nameNOT INmid.a,mid.b^nameLIKEmid'), ['mid.c']);
    });

    it('orders with ORDERBY and ORDERBYDESC (numbers as numbers)', async () => {
      const base = '/api/now/table/sys_properties?sysparm_query=';
      assert.deepEqual(names(await call(instance, `${base}nameSTARTSWITHmid.^ORDERBYvalue`, { auth: asAdmin })), ['mid.b', 'mid.c', 'mid.a']);
      assert.deepEqual(names(await call(instance, `${base}typeINinteger,string^ORDERBYDESCvalue`, { auth: asAdmin })), ['other.d', 'mid.a', 'mid.c', 'mid.b']);
    });

    it('returns only sysparm_fields, and at most sysparm_limit records with X-Total-Count', async () => {
      const reply = await call(instance, '/api/now/table/sys_properties?sysparm_query=nameSTARTSWITHmid.^ORDERBYname&sysparm_fields=name,value,nosuch&sysparm_limit=2', { auth: asAdmin });
      assert.deepEqual(reply.json.result, [{ name: 'mid.a', value: '3' }, { name: 'mid.b', value: '1' }]);
      assert.equal(reply.headers['x-total-count'], '3');
      const next = await call(instance, '/api/now/table/sys_properties?sysparm_query=nameSTARTSWITHmid.^ORDERBYname&sysparm_fields=name&sysparm_limit=2&sysparm_offset=2', { auth: asAdmin });
      assert.deepEqual(next.json.result, [{ name: 'mid.c' }]);
    });

    it('gets one record by sys_id, and 404 with the error body for an unknown one', async () => {
      const [record] = instance.admin.tables.query('sys_properties', 'name=mid.a');
      const reply = await call(instance, `/api/now/table/sys_properties/${record?.['sys_id']}`, { auth: asAdmin });
      assert.equal(reply.status, 200);
      assert.equal(reply.json.result.name, 'mid.a');
      const missing = await call(instance, `/api/now/table/sys_properties/${randomSysId()}`, { auth: asAdmin });
      assert.equal(missing.status, 404);
      assert.deepEqual(missing.json, { error: { message: 'No Record found', detail: "Record doesn't exist or ACL restricts the record retrieval" }, status: 'failure' });
    });

    it('answers 404 for an unknown table', async () => {
      const reply = await call(instance, '/api/now/table/u_no_such_table', { auth: asAdmin });
      assert.equal(reply.status, 404);
      assert.equal(reply.json.status, 'failure');
      assert.equal(reply.json.error.message, 'Invalid table u_no_such_table');
    });

    // SND api-reference/rest-apis/c_TableAPI.md: "if part of a query is invalid, such as an invalid
    // field name, the instance ignores the invalid part" — never a 400 for an unknown field (the lab's
    // old 400 was wrong; it survives only as option invalidQuery: 'strict'). Malformed syntax stays 400.
    for (const [query, why] of [['name~~x', 'no operator'],
      ['^ORname=x', 'OR with nothing before it'], ['nameISEMPTYx', 'ISEMPTY with a value']] as const) {
      it(`answers 400 "Invalid query" for ${why} (${query})`, async () => {
        const reply = await call(instance, `/api/now/table/sys_user?sysparm_query=${encodeURIComponent(query)}`, { auth: asAdmin });
        assert.equal(reply.status, 400);
        assert.equal(reply.json.error.message, 'Invalid query');
        assert.equal(typeof reply.json.error.detail, 'string');
        assert.equal(reply.json.status, 'failure');
      });
    }

    it('answers 400 for a sysparm_limit that is not a number', async () => {
      const reply = await call(instance, '/api/now/table/sys_user?sysparm_limit=ten', { auth: asAdmin });
      assert.equal(reply.status, 400);
      assert.equal(reply.json.error.message, 'Invalid sysparm_limit');
    });

    it('answers 400 for a path that is no resource, 405 for an unsupported method', async () => {
      assert.equal((await call(instance, '/api/now/nothing', { auth: asAdmin })).status, 400);
      assert.equal((await call(instance, '/api/now/table/sys_user', { auth: asAdmin, method: 'DELETE' })).status, 405);
    });
  });

  describe('writes', () => {
    it('inserts (201) with a client-chosen sys_id, as public automation does, and stamps the sys fields', async () => {
      const sysId = randomSysId();
      const reply = await call(instance, '/api/now/table/ecc_queue', { auth: asAdmin, body: { sys_id: sysId, topic: 'Heartbeat', name: 'n1', ignored_field: 'x' } });
      assert.equal(reply.status, 201);
      assert.equal(reply.json.result.sys_id, sysId);
      assert.equal(reply.json.result.topic, 'Heartbeat');
      assert.equal(reply.json.result.state, 'ready');
      assert.equal('ignored_field' in reply.json.result, false);
      assert.match(reply.json.result.sys_created_on, SNOW_TIME);
      assert.equal(instance.admin.tables.get('ecc_queue', sysId)?.['name'], 'n1');
    });

    it('coerces numbers and booleans to strings, like the real API', async () => {
      const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, body: { name: 'coerce', value: 42, description: true } });
      assert.equal(reply.json.result.value, '42');
      assert.equal(reply.json.result.description, 'true');
    });

    for (const [label, body, message] of [
      ['a malformed sys_id', { sys_id: 'ABC', name: 'x' }, 'Invalid sys_id'],
      ['an object value', { name: { nested: true } }, 'Invalid value'],
      ['an array value', { name: ['a'] }, 'Invalid value'],
    ] as const) {
      it(`answers 400 for ${label}`, async () => {
        const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, body });
        assert.equal(reply.status, 400);
        assert.equal(reply.json.error.message, message);
      });
    }

    it('answers 400 for a duplicate sys_id', async () => {
      const [record] = instance.admin.tables.query('sys_properties', 'name=mid.a');
      const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, body: { sys_id: record?.['sys_id'], name: 'dup' } });
      assert.equal(reply.status, 400);
      assert.equal(instance.admin.tables.query('sys_properties', 'name=dup').length, 0);
    });

    for (const [label, raw] of [['bad JSON', '{"name": '], ['a JSON array', '[1,2]'], ['an empty body', '']] as const) {
      it(`answers 400 with the error body for ${label}`, async () => {
        const reply = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, method: 'POST', raw, headers: { 'Content-Type': 'application/json' } });
        assert.equal(reply.status, 400);
        assert.equal(reply.json.status, 'failure');
        assert.equal(reply.json.error.message, 'Exception while reading request');
      });
    }

    it('updates with PATCH (fields merged, sys_updated_on kept current) and deletes with 204', async () => {
      const created = await call(instance, '/api/now/table/sys_properties', { auth: asAdmin, body: { name: 'patch.me', value: 'a', type: 'string' } });
      const id = created.json.result.sys_id;
      const patched = await call(instance, `/api/now/table/sys_properties/${id}`, { auth: asAdmin, method: 'PATCH', body: { value: 'b', sys_created_on: '1999-01-01 00:00:00' } });
      assert.equal(patched.status, 200);
      assert.equal(patched.json.result.value, 'b');
      assert.equal(patched.json.result.type, 'string');
      assert.equal(patched.json.result.sys_created_on, created.json.result.sys_created_on);
      const deleted = await call(instance, `/api/now/table/sys_properties/${id}`, { auth: asAdmin, method: 'DELETE' });
      assert.equal(deleted.status, 204);
      assert.equal(deleted.text, '');
      assert.equal(instance.admin.tables.get('sys_properties', id), undefined);
      assert.equal((await call(instance, `/api/now/table/sys_properties/${id}`, { auth: asAdmin, method: 'PATCH', body: { value: 'c' } })).status, 404);
      assert.equal((await call(instance, `/api/now/table/sys_properties/${id}`, { auth: asAdmin, method: 'DELETE' })).status, 404);
    });

    it('never returns or stores a password in the sys_user row, yet the password works for Basic auth', async () => {
      const reply = await call(instance, '/api/now/table/sys_user', { auth: asAdmin, body: { user_name: 'api.user', user_password: 'S3cret-pass' } });
      assert.equal(reply.status, 201);
      assert.equal('user_password' in reply.json.result, false);
      assert.equal(instance.admin.tables.get('sys_user', reply.json.result.sys_id)?.['user_password'], '');
      assert.equal((await call(instance, '/api/now/table/sys_user?sysparm_limit=1', { auth: ['api.user', 'S3cret-pass'] })).status, 200);
      assert.equal((await call(instance, '/api/now/table/sys_user', { auth: asAdmin, body: { user_name: 'api.user' } })).status, 400, 'user_name is unique');
    });

    it('renders reference fields as {link, value} unless sysparm_exclude_reference_link=true', async () => {
      const [admin] = instance.admin.tables.query('sys_user', `user_name=${ADMIN.username}`);
      const path = `/api/now/table/sys_user_has_role?sysparm_query=user=${admin?.['sys_id']}^role=admin`;
      const linked = await call(instance, path, { auth: asAdmin });
      assert.deepEqual(linked.json.result[0].user, { link: `${instance.url}/api/now/table/sys_user/${admin?.['sys_id']}`, value: admin?.['sys_id'] });
      const plain = await call(instance, `${path}&sysparm_exclude_reference_link=true`, { auth: asAdmin });
      assert.equal(plain.json.result[0].user, admin?.['sys_id']);
    });
  });
});
