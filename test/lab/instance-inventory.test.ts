import assert from 'node:assert/strict';
import { readableFields, schemaOf } from '../../lab/instance/schema.js';
import { INVENTORY_FIELDS } from '../../controller/instance/inventory.js';
import { asAdmin, call, makePki, start, type LabPki, type StartedInstance } from './instance-fixtures.js';

/** The lab's Certificate Inventory and Management tables, from the vendor's documents (docs/vendor-facts.md §16). */
describe('lab instance: cmdb_ci_certificate and CI relationships (vendor-facts §16)', function () {
  this.timeout(30_000);
  let pki: LabPki;
  let instance: StartedInstance;
  const pkiAdmin: [string, string] = ['pki.admin', 'pki-admin-password-1'];
  const other: [string, string] = ['cert.admin', 'cert-admin-password-1'];

  before(async () => {
    pki = await makePki('Inventory lab');
    instance = await start(pki);
    instance.admin.addUser({ userName: pkiAdmin[0], password: pkiAdmin[1], roles: ['sn_disco_certmgmt.pki_admin'] });
    instance.admin.addUser({ userName: other[0], password: other[1], roles: ['sso_config_admin'] });
  });
  after(async () => { await instance.close(); });

  it('has the documented columns, and every column the product reads or writes', () => {
    const schema = schemaOf('cmdb_ci_certificate');
    assert.ok(schema);
    for (const f of ['fingerprint', 'fingerprint_algorithm', 'serial_number', 'signature_algorithm', 'issuer_distinguished_name', 'subject_distinguished_name',
      'subject_common_name', 'valid_from', 'valid_to', 'state', 'issuer', 'root_issuer', 'subject_alternative_name', 'key_size', 'issuer_common_name']) {
      assert.ok(schema.fields.includes(f), f);
    }
    for (const f of INVENTORY_FIELDS) assert.ok(readableFields(schema).includes(f), f);
    assert.deepEqual(schemaOf('cmdb_rel_ci')?.fields, ['parent', 'child', 'type']);
    assert.ok(schemaOf('cmdb_ci_computer')?.fields.includes('name'));
  });

  it('seeds the relation types the documents name (Uses::Used by, Hosts::Hosted on)', async () => {
    const reply = await call(instance, '/api/now/table/cmdb_rel_type?sysparm_query=name%3DUses%3A%3AUsed%20by&sysparm_fields=sys_id,name', { auth: asAdmin });
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.json.result.map((r: { name: string }) => r.name), ['Uses::Used by']);
    assert.equal(instance.admin.tables.query('cmdb_rel_type', 'name=Hosts::Hosted on').length, 1);
  });

  it('sn_disco_certmgmt.pki_admin inserts and changes state; a user without it gets 403; unknown fields are dropped', async () => {
    const fingerprint = 'ab'.repeat(32);
    const inserted = await call(instance, '/api/now/table/cmdb_ci_certificate', { auth: pkiAdmin, body: { name: 'mid01', fingerprint, state: 'installed', not_a_column: 'x' } });
    assert.equal(inserted.status, 201, inserted.text);
    assert.equal(inserted.json.result.fingerprint, fingerprint);
    assert.equal(inserted.json.result.not_a_column, undefined);
    const sysId = inserted.json.result.sys_id as string;
    const refused = await call(instance, '/api/now/table/cmdb_ci_certificate', { auth: other, body: { name: 'mid02', fingerprint: 'cd'.repeat(32) } });
    assert.equal(refused.status, 403);
    const patchRefused = await call(instance, `/api/now/table/cmdb_ci_certificate/${sysId}`, { method: 'PATCH', auth: other, body: { state: 'retired' } });
    assert.equal(patchRefused.status, 403);
    const patched = await call(instance, `/api/now/table/cmdb_ci_certificate/${sysId}`, { method: 'PATCH', auth: pkiAdmin, body: { state: 'retired' } });
    assert.equal(patched.status, 200);
    assert.equal(patched.json.result.state, 'retired');
    const found = await call(instance, `/api/now/table/cmdb_ci_certificate?sysparm_query=fingerprint%3D${fingerprint}&sysparm_fields=sys_id,state`, { auth: other });
    assert.deepEqual(found.json.result, [{ sys_id: sysId, state: 'retired' }]);
  });

  it('cmdb_rel_ci references parent, child and type (rendered as links unless excluded)', async () => {
    const host = instance.admin.tables.insert('cmdb_ci_computer', { name: 'midhost01' });
    const cert = instance.admin.tables.insert('cmdb_ci_certificate', { name: 'mid01', fingerprint: 'ef'.repeat(32) });
    const type = instance.admin.tables.query('cmdb_rel_type', 'name=Uses::Used by')[0] as Record<string, string>;
    const rel = await call(instance, '/api/now/table/cmdb_rel_ci', { auth: asAdmin, body: { parent: host['sys_id'], child: cert['sys_id'], type: type['sys_id'] } });
    assert.equal(rel.status, 201, rel.text);
    assert.equal(rel.json.result.parent.value, host['sys_id']);
    assert.match(rel.json.result.type.link, /\/api\/now\/table\/cmdb_rel_type\//);
  });
});
