import assert from 'node:assert/strict';
import { isMidcertError, type MidcertError } from '../../common/errors.js';
import { InstanceClient, type InstanceRequest } from '../../controller/instance/rest.js';
import { InstanceOperations } from '../../controller/instance/operations.js';
import { readableFields, schemaOf } from '../../lab/instance/schema.js';
import type { Identity } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { ADMIN, answeringMid, makePki, start, type LabPki, type StartedInstance } from '../lab/instance-fixtures.js';

const EC = { keySpec: { type: 'ec', curve: 'P-256' } } as const;

async function rejection(promise: Promise<unknown>): Promise<MidcertError> {
  try { await promise; } catch (err) { if (isMidcertError(err)) return err; throw err; }
  throw new Error('expected the call to fail');
}

/** The fields of an encoded query: conditions, ^OR conditions, ORDERBY / ORDERBYDESC. */
function queryFields(query: string): string[] {
  return query.split('^').filter((t) => t !== '' && t !== 'EQ').map((term) => {
    const t = term.startsWith('ORDERBYDESC') ? term.slice(11) : term.startsWith('ORDERBY') ? term.slice(7) : /^OR[a-z_]/.test(term) ? term.slice(2) : term;
    return /^[a-z_][a-z0-9_]*/.exec(t)?.[0] ?? t;
  });
}

/** The product's instance client against the lab, pinned to the vendor documents (docs/vendor-facts.md, issue 11). */
describe('controller instance client: vendor behaviour (docs/vendor-facts.md)', function () {
  this.timeout(60_000);
  let pki: LabPki;
  const opened: Array<{ close(): unknown }> = [];
  const launch = async (options: Parameters<typeof start>[1] = {}): Promise<StartedInstance> => {
    const instance = await start(pki, { publishDelayMs: 30, ...options });
    opened.push(instance);
    return instance;
  };
  const operations = (instance: StartedInstance, auth: { username: string; password: string } = ADMIN): InstanceOperations => {
    const client = new InstanceClient({ url: instance.url, auth: { kind: 'basic', ...auth }, caPem: pki.ca.root.certPem, timeoutMs: 5000, retries: 1, backoff: { baseMs: 10, maxMs: 20 } });
    const ops = new InstanceOperations(client, { publishTimeoutMs: 5000, pollIntervalMs: 25 });
    opened.push(ops);
    return ops;
  };
  const leaf = (name: string): Promise<Identity> => pki.ca.issueIdentity(`CN=${name},O=midcert Lab`, PROFILES.client, EC);

  before(async () => { pki = await makePki('Vendor client'); });
  after(async () => { for (const o of opened.reverse()) await o.close(); });

  // vendor-facts §1 (SND c_TableAPI.md): a wrong field name is silently dropped by a real instance,
  // so a field the product invents would pass unnoticed there. Every field it sends must be a real
  // (lab-schema) field of that table.
  it('sends only fields of the lab schema of each table, in every query, field list and body, over preflight + rotation + conversion', async () => {
    const instance = await launch({ timeScale: 0.01 });
    const ops = operations(instance);
    const used: Array<{ table: string; field: string; where: string }> = [];
    const original = ops.client.request.bind(ops.client);
    ops.client.request = (method: string, path: string, options: InstanceRequest = {}) => {
      const table = path.startsWith('/api/now/table/') ? path.split('/')[4] as string : path.startsWith('/api/now/attachment') && method === 'GET' && !/\/file$/.test(path) ? 'sys_attachment' : '';
      if (table) {
        const q = options.query ?? {};
        for (const f of queryFields(String(q['sysparm_query'] ?? ''))) used.push({ table, field: f, where: `${method} sysparm_query` });
        for (const f of String(q['sysparm_fields'] ?? '').split(',').filter(Boolean)) used.push({ table, field: f, where: `${method} sysparm_fields` });
        for (const f of Object.keys((options.json as Record<string, unknown> | undefined) ?? {})) used.push({ table, field: f, where: `${method} body` });
      }
      return original(method, path, options);
    };
    const user = instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
    instance.admin.addUser({ userName: 'mid.basic01', password: 'basic-password-1', roles: ['mid_server'] });
    await ops.preflightInstance(['mid01']);
    await ops.publishCaChain(pki.ca.chainPem, 'midcert CA chain');
    const identity = await leaf('mid01');
    assert.equal((await ops.findMidUser('mid01')).sysId, user['sys_id']);
    await ops.publishLeaf(identity.certPem, user['sys_id'] as string, 'mid01');
    const since = new Date(Date.now() - 2000);
    const mid = answeringMid(instance, { client: identity }, 'mid01');
    const basic = answeringMid(instance, { auth: ['mid.basic01', 'basic-password-1'] }, 'basic01');
    try {
      await ops.waitForMidUp('mid01', { since, timeoutMs: 5000 });
      await ops.retireOldLeaves(user['sys_id'] as string, identity.cert.sha256);
      await ops.midStatus('mid01');
      const next = await makePki('Vendor next');
      await ops.publishCaChain(next.ca.chainPem, 'midcert CA chain 2');
      await ops.retireOtherCaChains(next.ca.chainPem);
      await ops.waitForMidUp('basic01', { timeoutMs: 5000 });
      assert.equal((await ops.invalidateForConversion('basic01', { timeoutMs: 5000 })).invalidated, true);
    } finally {
      await mid.stop();
      await basic.stop();
    }
    assert.ok(used.length > 30, `recorded ${used.length} field uses`);
    const unknown = used.filter(({ table, field }) => {
      const schema = schemaOf(table);
      return !schema || !readableFields(schema).includes(field);
    });
    assert.deepEqual([...new Set(unknown.map((u) => `${u.table}.${u.field} (${u.where})`))], []);
  });

  describe('preflight (vendor-facts §1, §2)', () => {
    it('finds the plugin by sys_plugins.source and re-checks the row: an unrelated plugin returned first does not count', async () => {
      const instance = await launch();
      instance.admin.tables.delete('sys_plugins', instance.admin.tables.query('sys_plugins', 'source=com.glide.auth.mutual')[0]?.['sys_id'] as string);
      instance.admin.setPlugin('com.snc.other', true); // with a dropped condition this is all a query would return
      const checks = await operations(instance).preflightInstance();
      const plugin = checks.find((c) => c.name === 'mutual-auth-plugin');
      assert.equal(plugin?.code, 'MUTUAL_AUTH_PLUGIN_INACTIVE');
      assert.match(plugin?.message ?? '', /not installed/);
    });

    for (const [style, mode] of [['true', 'ignore'], ['1', 'no_rows'], ['active', 'ignore']] as const) {
      it(`interprets active in style ${style} (SND GlidePluginManager "active=0^ORactive=1") under invalid-query mode ${mode}`, async () => {
        const instance = await launch({ pluginActiveStyle: style, invalidQuery: mode });
        const ops = operations(instance);
        const get = async (): Promise<string | undefined> => (await ops.preflightInstance()).find((c) => c.name === 'mutual-auth-plugin')?.code;
        assert.equal(await get(), 'OK');
        instance.admin.setPlugin('com.glide.auth.mutual', false);
        assert.equal(await get(), 'MUTUAL_AUTH_PLUGIN_INACTIVE');
        instance.admin.setPlugin('com.glide.auth.mutual', 'maybe');
        assert.equal(await get(), 'MUTUAL_AUTH_PLUGIN_UNKNOWN');
      });
    }

    it('supports_tls: anything but true is MTLS_NOT_SUPPORTED quoting the body (SND verify-adcv2-inbound-mtls-enabled.md)', async () => {
      const instance = await launch({ supportsTls: 'mixed' });
      const check = (await operations(instance).preflightInstance()).find((c) => c.name === 'supports-tls');
      assert.equal(check?.severity, 'error');
      assert.equal(check?.code, 'MTLS_NOT_SUPPORTED');
      assert.match(check?.message ?? '', /answered HTTP 200 "mixed"/);
    });
  });

  describe('roles (vendor-facts §3)', () => {
    it('INSTANCE_FORBIDDEN names sso_config_admin for a user without it; a least-privilege sso_config_admin user publishes', async () => {
      const instance = await launch();
      instance.admin.addUser({ userName: 'weak', password: 'weak-password-1', roles: ['itil'] });
      instance.admin.addUser({ userName: 'integration', password: 'integration-password-1', roles: ['sso_config_admin', 'agent_admin'] });
      const user = instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
      const identity = await leaf('mid01');
      const err = await rejection(operations(instance, { username: 'weak', password: 'weak-password-1' }).publishLeaf(identity.certPem, user['sys_id'] as string, 'mid01'));
      assert.equal(err.code, 'INSTANCE_FORBIDDEN');
      assert.match(err.message, /needs role sso_config_admin \(or admin\) to write sys_user_certificate/);
      const ops = operations(instance, { username: 'integration', password: 'integration-password-1' });
      assert.equal((await ops.publishCaChain(pki.ca.chainPem, 'chain')).published, true);
      assert.equal((await ops.publishLeaf(identity.certPem, user['sys_id'] as string, 'mid01')).published, true);
    });
  });

  describe('certificates (vendor-facts §11–§13)', () => {
    for (const mode of ['accept', '404'] as const) {
      it(`publishes under attachmentToMissingRecord=${mode} (SND c_AttachmentAPI.md 404; fallback insert inactive → attach → activate)`, async () => {
        const instance = await launch({ attachmentToMissingRecord: mode });
        const ops = operations(instance);
        const chain = await ops.publishCaChain(pki.ca.chainPem, 'chain');
        assert.equal(chain.published, true);
        assert.equal(chain.active, true);
        const user = instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
        const record = await ops.publishLeaf((await leaf('mid01')).certPem, user['sys_id'] as string, 'mid01');
        assert.equal(record.published, true);
        assert.equal(instance.admin.tables.query('sys_user_certificate').length, 1);
      });
    }

    it('names the leaf record after the MID Server (SND install-mid-mutual-auth.md step 9), serial and dates in short_description; type client_cert, CA type from sys_choice "CA Cert"', async () => {
      const instance = await launch();
      const ops = operations(instance);
      instance.admin.tables.update('sys_choice', instance.admin.tables.query('sys_choice', 'name=sys_ca_certificate^label=CA Cert')[0]?.['sys_id'] as string, { value: 'ca_cert_value' });
      const chain = await ops.publishCaChain(pki.ca.chainPem, 'chain');
      assert.equal(instance.admin.tables.get('sys_ca_certificate', chain.sysId)?.['type'], 'ca_cert_value');
      const user = instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
      const identity = await leaf('mid01');
      const record = await ops.publishLeaf(identity.certPem, user['sys_id'] as string, 'mid01');
      const row = instance.admin.tables.get('sys_user_certificate', record.sysId);
      assert.equal(row?.['name'], 'mid01');
      assert.equal(row?.['type'], 'client_cert');
      assert.match(row?.['short_description'] ?? '', new RegExp(`serial ${identity.cert.serial}`));
    });

    it('does not depend on the undocumented sha256_fingerprint field (fingerprintField=false): idempotent publish and retire by content hash', async () => {
      const instance = await launch({ fingerprintField: false });
      const ops = operations(instance);
      const first = await ops.publishCaChain(pki.ca.chainPem, 'chain');
      assert.equal(first.sha256, pki.ca.intermediate.cert.sha256, 'computed from the attachment');
      assert.equal((await ops.publishCaChain(pki.ca.chainPem, 'chain')).sysId, first.sysId);
      assert.equal(instance.admin.tables.query('sys_ca_certificate').length, 1);
      const user = instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
      const [a, b] = [await leaf('mid01'), await leaf('mid01')];
      const old = await ops.publishLeaf(a.certPem, user['sys_id'] as string, 'mid01');
      assert.equal((await ops.publishLeaf(a.certPem, user['sys_id'] as string, 'mid01')).sysId, old.sysId);
      await ops.publishLeaf(b.certPem, user['sys_id'] as string, 'mid01');
      const retired = await ops.retireOldLeaves(user['sys_id'] as string, b.cert.sha256);
      assert.deepEqual(retired.map((r) => r.sysId), [old.sysId]);
    });
  });

  describe('MID health and conversion (vendor-facts §5, §7)', () => {
    it('waitForMidUp: Up with a timestamp after the restart, then the ECC round trip (protocol §7)', async () => {
      const instance = await launch();
      instance.admin.addUser({ userName: 'mid.basic01', password: 'basic-password-1', roles: ['mid_server'] });
      const ops = operations(instance);
      const since = new Date();
      await new Promise((r) => setTimeout(r, 1100)); // timestamps have whole seconds
      const mid = answeringMid(instance, { auth: ['mid.basic01', 'basic-password-1'] }, 'basic01');
      try {
        const up = await ops.waitForMidUp('basic01', { since, timeoutMs: 5000 });
        assert.equal(up.status, 'Up');
        assert.ok(mid.seen.some((c) => c.name === 'midcert.ping'));
      } finally {
        await mid.stop();
      }
    });

    it('invalidateForConversion: a validated basic-auth MID is invalidated and the call returns only once delete_mid_keypair was processed', async () => {
      const instance = await launch();
      instance.admin.addUser({ userName: 'mid.basic01', password: 'basic-password-1', roles: ['mid_server'] });
      const ops = operations(instance);
      const mid = answeringMid(instance, { auth: ['mid.basic01', 'basic-password-1'] }, 'basic01');
      try {
        await ops.waitForMidUp('basic01', { timeoutMs: 5000, eccRoundTrip: false });
        const result = await ops.invalidateForConversion('basic01', { timeoutMs: 5000 });
        assert.equal(result.invalidated, true);
        assert.equal(instance.admin.tables.get('ecc_queue', result.command as string)?.['state'], 'processed');
        assert.ok(mid.seen.some((c) => c.source === 'delete_mid_keypair'));
      } finally {
        await mid.stop();
      }
      // Not validated any more (autoValidate re-validates only on a later poll): nothing to do.
      instance.admin.tables.update('ecc_agent', instance.admin.tables.query('ecc_agent', 'name=basic01')[0]?.['sys_id'] as string, { validated: 'false' });
      assert.equal((await ops.invalidateForConversion('basic01', { timeoutMs: 1000 })).invalidated, false);
    });
  });
});
