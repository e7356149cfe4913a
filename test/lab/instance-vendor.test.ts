import assert from 'node:assert/strict';
import { readableFields, schemaOf, tableNames } from '../../lab/instance/schema.js';
import { asAdmin, call, eventually, makePki, publishChain, randomSysId, start, uploadCertificate, type LabPki, type StartedInstance } from './instance-fixtures.js';

/** Lab behaviours pinned to the vendor documents (docs/vendor-facts.md, issue 11). */
describe('lab instance: vendor behaviour (docs/vendor-facts.md)', function () {
  let pki: LabPki;
  const opened: StartedInstance[] = [];
  const launch = async (options: Parameters<typeof start>[1] = {}): Promise<StartedInstance> => {
    const instance = await start(pki, { publishDelayMs: 30, ...options });
    opened.push(instance);
    return instance;
  };
  before(async () => { pki = await makePki('Vendor'); });
  after(async () => { for (const i of opened) await i.close(); });

  describe('invalid queries (SND api-reference/rest-apis/c_TableAPI.md, vendor-facts §1)', () => {
    let instance: StartedInstance;
    before(async () => {
      instance = await launch();
      instance.admin.setProperty('mid.a', '1');
    });
    const count = async (table: string, query: string): Promise<{ status: number; rows: number }> => {
      const reply = await call(instance, `/api/now/table/${table}?sysparm_query=${encodeURIComponent(query)}`, { auth: asAdmin });
      return { status: reply.status, rows: reply.json?.result?.length ?? -1 };
    };

    it('every table: an unknown field is ignored by default ("ignores the invalid part"), never a 400', async () => {
      for (const table of tableNames()) {
        if (table === 'sys_attachment') continue; // Attachment API only (below)
        const all = (await count(table, '')).rows;
        assert.deepEqual(await count(table, 'no_such_field=1'), { status: 200, rows: all }, table);
        assert.deepEqual(await count(table, 'no_such_field=1^ORDERBYno_such_field'), { status: 200, rows: all }, table);
      }
      const valid = readableFields(schemaOf('sys_properties')!)[0] as string;
      assert.equal((await count('sys_properties', `no_such_field=1^${valid}=mid.a`)).rows, 1, 'the valid part still filters');
    });

    it('every table: glide.invalid_query.returns_no_rows=true → no rows for a query with an unknown field', async () => {
      instance.admin.setProperty('glide.invalid_query.returns_no_rows', 'true');
      try {
        for (const table of tableNames()) {
          if (table === 'sys_attachment') continue;
          assert.deepEqual(await count(table, 'no_such_field=1'), { status: 200, rows: 0 }, table);
        }
        const attachments = await call(instance, '/api/now/attachment?sysparm_query=no_such_field=1', { auth: asAdmin });
        assert.deepEqual(attachments.json.result, []);
        assert.equal((await count('sys_properties', 'name=mid.a')).rows, 1, 'valid queries are unaffected');
      } finally {
        instance.admin.setProperty('glide.invalid_query.returns_no_rows', 'false');
      }
    });

    it('option invalidQuery: no_rows and strict (the lab test mode: 400 Invalid query)', async () => {
      const noRows = await launch({ invalidQuery: 'no_rows' });
      assert.equal((await call(noRows, '/api/now/table/sys_user?sysparm_query=nosuch=1', { auth: asAdmin })).json.result.length, 0);
      const strict = await launch({ invalidQuery: 'strict' });
      const reply = await call(strict, '/api/now/table/sys_user?sysparm_query=nosuch=1', { auth: asAdmin });
      assert.equal(reply.status, 400);
      assert.equal(reply.json.error.message, 'Invalid query');
    });
  });

  describe('plugins and /adcv2/supports_tls (vendor-facts §1, §2)', () => {
    it('sys_plugins.active in each style: true/false, 1/0, active/inactive (setPlugin, seed)', async () => {
      for (const [style, on, off] of [['true', 'true', 'false'], ['1', '1', '0'], ['active', 'active', 'inactive']] as const) {
        const instance = await launch({ pluginActiveStyle: style });
        assert.equal(instance.admin.tables.query('sys_plugins', 'source=com.glide.auth.mutual')[0]?.['active'], on);
        instance.admin.setPlugin('com.glide.auth.mutual', false);
        assert.equal(instance.admin.tables.query('sys_plugins', 'source=com.glide.auth.mutual')[0]?.['active'], off);
        assert.equal(instance.admin.tables.query('v_plugin', 'id=com.glide.auth.mutual')[0]?.['active'], off, 'v_plugin mirrors it');
      }
    });

    it('serves supports_tls "true" by default (SND verify-adcv2-inbound-mtls-enabled.md); option supportsTls sets another body', async () => {
      assert.equal((await call(await launch(), '/adcv2/supports_tls')).text, 'true');
      assert.equal((await call(await launch({ supportsTls: 'mixed' }), '/adcv2/supports_tls')).text, 'mixed');
    });
  });

  describe('roles (SND set-up-mutual-auth.md "Role required: sso_config_admin", vendor-facts §3)', () => {
    let instance: StartedInstance;
    before(async () => {
      instance = await launch();
      instance.admin.addUser({ userName: 'sso', password: 'sso-password-1', roles: ['sso_config_admin'] });
      instance.admin.addUser({ userName: 'reader', password: 'reader-password-1', roles: ['itil'] });
      instance.admin.addUser({ userName: 'agents', password: 'agents-password-1', roles: ['agent_admin'] });
    });

    it('sso_config_admin may attach and insert certificate records; a user without it gets 403 with the vendor error body', async () => {
      for (const table of ['sys_ca_certificate', 'sys_user_certificate']) {
        const sysId = randomSysId();
        const refusedAttach = await call(instance, `/api/now/attachment/file?table_name=${table}&table_sys_id=${sysId}&file_name=c.pem`, {
          auth: ['reader', 'reader-password-1'], raw: pki.ca.chainPem, headers: { 'Content-Type': 'application/x-pem-file' },
        });
        assert.equal(refusedAttach.status, 403);
        assert.deepEqual(refusedAttach.json, { error: { message: 'Operation Failed', detail: 'ACL Exception Insert Failed due to security constraints' }, status: 'failure' });
        const refusedInsert = await call(instance, `/api/now/table/${table}`, { auth: ['reader', 'reader-password-1'], body: { name: 'x' } });
        assert.equal(refusedInsert.status, 403);
        const attach = await call(instance, `/api/now/attachment/file?table_name=${table}&table_sys_id=${sysId}&file_name=c.pem`, {
          auth: ['sso', 'sso-password-1'], raw: pki.ca.chainPem, headers: { 'Content-Type': 'application/x-pem-file' },
        });
        assert.equal(attach.status, 201, table);
      }
      const insert = await call(instance, '/api/now/table/sys_ca_certificate', { auth: ['sso', 'sso-password-1'], body: { name: 'chain' } });
      assert.equal(insert.status, 201);
    });

    it('ecc_agent writes need admin or agent_admin (SND t_ValidateAMIDServer.md "Role required: agent_admin, admin")', async () => {
      const agent = instance.admin.tables.insert('ecc_agent', { name: 'mid-roles', status: 'Down' });
      assert.equal((await call(instance, `/api/now/table/ecc_agent/${agent['sys_id']}`, { method: 'PATCH', auth: ['sso', 'sso-password-1'], body: { status: 'Paused' } })).status, 403);
      assert.equal((await call(instance, `/api/now/table/ecc_agent/${agent['sys_id']}`, { method: 'PATCH', auth: ['agents', 'agents-password-1'], body: { status: 'Paused' } })).status, 200);
    });
  });

  describe('certificates (vendor-facts §10–§13)', () => {
    it('§10: a new chain does not deactivate the old one by default (nothing documents it); both are trusted', async () => {
      const instance = await launch();
      const first = await publishChain(instance, pki.ca.chainPem);
      const next = await makePki('Second');
      const second = await publishChain(instance, next.ca.chainPem);
      await eventually(() => (instance.admin.tables.get('sys_ca_certificate', second.sys_id)?.['publish_status'] === 'Exists' ? true : undefined));
      assert.equal(instance.admin.tables.get('sys_ca_certificate', first.sys_id)?.['active'], 'true');
      assert.equal(instance.admin.trustAnchors().length, 4);
      instance.admin.tables.update('sys_ca_certificate', first.sys_id, { active: 'false' });
      assert.deepEqual(instance.admin.trustAnchors().sort(), [next.ca.intermediate.cert.sha256, next.ca.root.cert.sha256].sort());
    });

    it('§13: attachmentToMissingRecord=404 answers 404 as SND c_AttachmentAPI.md documents; insert inactive → attach → activate publishes', async () => {
      const instance = await launch({ attachmentToMissingRecord: '404' });
      const sysId = randomSysId();
      const refused = await call(instance, `/api/now/attachment/file?table_name=sys_ca_certificate&table_sys_id=${sysId}&file_name=c.pem`, {
        auth: asAdmin, raw: pki.ca.chainPem, headers: { 'Content-Type': 'application/x-pem-file' },
      });
      assert.equal(refused.status, 404);
      assert.equal(refused.json.status, 'failure');
      const inserted = await call(instance, '/api/now/table/sys_ca_certificate', { auth: asAdmin, body: { sys_id: sysId, name: 'record first', active: 'false' } });
      assert.equal(inserted.json.result.publish_status, '');
      const attach = await call(instance, `/api/now/attachment/file?table_name=sys_ca_certificate&table_sys_id=${sysId}&file_name=c.pem`, {
        auth: asAdmin, raw: pki.ca.chainPem, headers: { 'Content-Type': 'application/x-pem-file' },
      });
      assert.equal(attach.status, 201);
      await call(instance, `/api/now/table/sys_ca_certificate/${sysId}`, { method: 'PATCH', auth: asAdmin, body: { active: 'true' } });
      await eventually(() => (instance.admin.tables.get('sys_ca_certificate', sysId)?.['publish_status'] === 'Exists' ? true : undefined));
      // The default mode accepts the attachment-first order public automation uses.
      const lenient = await launch();
      assert.ok((await uploadCertificate(lenient, 'sys_ca_certificate', pki.ca.chainPem)).sys_id);
    });

    it('§12: fingerprintField=false hides the invented sha256_fingerprint (not rendered, not queryable)', async () => {
      const instance = await launch({ fingerprintField: false });
      const record = await uploadCertificate(instance, 'sys_ca_certificate', pki.ca.chainPem);
      assert.equal('sha256_fingerprint' in record, false);
      const list = await call(instance, `/api/now/table/sys_ca_certificate?sysparm_query=sha256_fingerprint=nothing`, { auth: asAdmin });
      assert.equal(list.json.result.length, 1, 'the condition on a hidden field is dropped');
    });

    it('§11: warns in the log when a sys_user_certificate is not named after a MID Server', async () => {
      const instance = await launch();
      const user = instance.admin.addUser({ userName: 'svc_x', roles: ['mid_server'] });
      const leaf = await pki.ca.issueIdentity('CN=x,O=midcert Lab', (await import('../../pki/issue.js')).PROFILES.client);
      await uploadCertificate(instance, 'sys_user_certificate', leaf.certPem, { user: user['sys_id'] as string, name: 'not-a-mid' });
      assert.ok(instance.logLines.some((l) => l.includes('is named "not-a-mid", which is no MID Server')));
    });
  });
});
