import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { InstanceClient, type InstanceRequest } from '../../controller/instance/rest.js';
import { InstanceOperations } from '../../controller/instance/operations.js';
import { glideDateTime } from '../../controller/instance/inventory.js';
import type { AgentPort, CaPort, InstallOutcome, InstancePort } from '../../controller/orchestrator/ports.js';
import { rotateOne, type RotationEvent, type RotationRecord } from '../../controller/orchestrator/rotate-one.js';
import { instancePort } from '../../controller/orchestrator/wiring.js';
import { serve } from '../../controller/serve.js';
import { openStore } from '../../controller/store/index.js';
import { parseControllerConfig } from '../../controller/config.js';
import { readableFields, schemaOf } from '../../lab/instance/schema.js';
import type { Identity } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { ADMIN, makePki, start, type LabPki, type StartedInstance } from '../lab/instance-fixtures.js';

const EC = { keySpec: { type: 'ec', curve: 'P-256' } } as const;
const HOST = 'midhost01.lab.example';

/** The MID host: installs whatever it is sent (the agent is covered by its own suites). */
function fakeAgent(current: () => Identity): AgentPort {
  const ok = (sha: string): InstallOutcome => ({ ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: sha });
  let installed: string | undefined;
  return {
    status: async () => ({ midName: 'mid01', leafSha256: installed ?? current().cert.sha256, leafSubject: '', leafIssuer: '', notBefore: current().cert.notBefore.toISOString(), notAfter: current().cert.notAfter.toISOString(), serviceActive: true, instanceUrl: '' }),
    prepare: async () => ({ csrPem: 'unused' }),
    install: async (_id, pem) => { installed = (await import('../../pki/certificate.js')).readCertificates(Buffer.from(pem))[0]?.sha256 ?? ''; return ok(installed); },
    enableMutualAuth: async () => { throw new Error('unused'); },
    rollback: async () => { throw new Error('unused'); },
    renewal: async () => { throw new Error('unused'); },
    close: () => undefined,
  };
}

/** cmdb_ci_certificate: real columns for the inventory (vendor-facts §16); the Table API + lab schema. */
describe('controller instance client: certificate inventory (cmdb_ci_certificate, vendor-facts §16)', function () {
  this.timeout(60_000);
  let pki: LabPki;
  const opened: Array<{ close(): unknown }> = [];
  let instance: StartedInstance;
  const leaf = (name: string): Promise<Identity> => pki.ca.issueIdentity(`CN=${name},O=midcert Lab`, PROFILES.client, EC);
  const operations = (options: { inventory?: boolean; auth?: { username: string; password: string } } = {}): InstanceOperations => {
    const client = new InstanceClient({ url: instance.url, auth: { kind: 'basic', ...(options.auth ?? ADMIN) }, caPem: pki.ca.root.certPem, timeoutMs: 5000, retries: 1, backoff: { baseMs: 10, maxMs: 20 } });
    const ops = new InstanceOperations(client, { publishTimeoutMs: 5000, pollIntervalMs: 25, inventory: options.inventory ?? true });
    opened.push(ops);
    return ops;
  };
  /** The requests to a table, and every field used (query, field list, body) for the field audit. */
  const record = (ops: InstanceOperations): { paths: string[]; used: Array<{ table: string; field: string }> } => {
    const seen = { paths: [] as string[], used: [] as Array<{ table: string; field: string }> };
    const original = ops.client.request.bind(ops.client);
    ops.client.request = (method: string, path: string, options: InstanceRequest = {}) => {
      seen.paths.push(`${method} ${path}`);
      if (path.startsWith('/api/now/table/')) {
        const table = path.split('/')[4] as string;
        const q = options.query ?? {};
        const terms = String(q['sysparm_query'] ?? '').split('^').filter(Boolean).map((t) => /^(?:ORDERBYDESC|ORDERBY|OR)?([a-z_][a-z0-9_]*)/.exec(t)?.[1] ?? t);
        for (const f of [...terms, ...String(q['sysparm_fields'] ?? '').split(',').filter(Boolean), ...Object.keys((options.json as object | undefined) ?? {})]) seen.used.push({ table, field: f });
      }
      return original(method, path, options);
    };
    return seen;
  };
  const rows = (table: string): Array<Record<string, string>> => instance.admin.tables.query(table, '') as Array<Record<string, string>>;
  /** One MID through rotateOne against the lab; the MID's Up is not waited for (the agent is a stand-in). */
  const rotate = async (port: InstancePort, current: () => Identity, next: Identity, events: RotationEvent[] = []): Promise<RotationRecord> => {
    const ca: CaPort = { submit: async () => ({ kind: 'issued', certificatePem: next.certPem, chainPem: pki.ca.chainPem }), poll: async () => { throw new Error('unused'); } };
    let saved: RotationRecord | undefined;
    return rotateOne({
      agentName: 'mid01', agent: fakeAgent(current), ca, instance: { ...port, waitForMidUp: async () => undefined },
      load: async () => saved, save: async (r) => { saved = r; }, emit: (e) => events.push(e),
      options: { renewalId: `r-${Math.random()}`, caPollMs: 10, caTimeoutMs: 1000, upTimeoutMs: 1000 },
    });
  };

  before(async () => { pki = await makePki('Inventory'); });
  beforeEach(async () => {
    instance = await start(pki, { publishDelayMs: 20 });
    opened.push(instance);
    instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
    instance.admin.tables.insert('ecc_agent', { name: 'mid01', host_name: HOST, status: 'Up' });
    instance.admin.tables.insert('cmdb_ci_computer', { name: HOST });
  });
  after(async () => { for (const o of opened.reverse()) await o.close(); });

  it('config: instance.inventory is optional and off by default; true is accepted', () => {
    const base = 'ca: { type: local }\ninstance: { url: "https://x.service-now.com" }\n';
    assert.equal(parseControllerConfig(base, '/tmp/c.yaml').instance?.inventory, undefined);
    assert.equal(parseControllerConfig(base.replace('x.service-now.com" }', 'x.service-now.com", inventory: true }'), '/tmp/c.yaml').instance?.inventory, true);
  });

  it('after a rotation: exactly one active record for the MID with the new fingerprint and dates, the old one retired, related to the host CI', async () => {
    const old = await leaf('mid01');
    // Discovery (or an earlier pass) already knows the old leaf.
    instance.admin.tables.insert('cmdb_ci_certificate', { name: 'mid01', fingerprint: old.cert.sha256, fingerprint_algorithm: 'SHA-256', state: 'installed' });
    const next = await leaf('mid01');
    const ops = operations();
    const seen = record(ops);
    const events: RotationEvent[] = [];
    const result = await rotate(instancePort(ops), () => old, next, events);
    assert.equal(result.state, 'verified', JSON.stringify(result));
    const certs = rows('cmdb_ci_certificate');
    const active = certs.filter((r) => r['state'] !== 'retired');
    assert.equal(active.length, 1);
    assert.equal(active[0]?.['fingerprint'], next.cert.sha256);
    assert.equal(active[0]?.['fingerprint_algorithm'], 'SHA-256');
    assert.equal(active[0]?.['state'], 'installed');
    assert.equal(active[0]?.['name'], 'mid01');
    assert.equal(active[0]?.['valid_from'], glideDateTime(next.cert.notBefore));
    assert.equal(active[0]?.['valid_to'], glideDateTime(next.cert.notAfter));
    assert.equal(active[0]?.['subject_common_name'], 'mid01');
    assert.equal(active[0]?.['issuer_distinguished_name'], next.cert.issuerText);
    assert.equal(certs.find((r) => r['fingerprint'] === old.cert.sha256)?.['state'], 'retired');
    const host = rows('cmdb_ci_computer')[0]?.['sys_id'];
    const uses = rows('cmdb_rel_type').find((t) => t['name'] === 'Uses::Used by')?.['sys_id'];
    assert.deepEqual(rows('cmdb_rel_ci').map((r) => [r['parent'], r['child'], r['type']]), [[host, active[0]?.['sys_id'], uses]]);
    assert.ok(events.some((e) => e.step === 'inventory' && e.state === 'info' && /inserted/.test(e.message ?? '')), JSON.stringify(events));
    // Field audit (as in instance-vendor.test.ts): every field sent to a cmdb table is in the lab schema.
    const cmdb = seen.used.filter((u) => u.table.startsWith('cmdb_'));
    assert.ok(cmdb.length > 20, `recorded ${cmdb.length} cmdb field uses`);
    const unknown = seen.used.filter(({ table, field }) => { const s = schemaOf(table); return !s || !readableFields(s).includes(field); });
    assert.deepEqual([...new Set(unknown.map((u) => `${u.table}.${u.field}`))], []);
  });

  it('re-upserts idempotently: a second (and third) pass writes nothing and adds no row or relation', async () => {
    const id = await leaf('mid01');
    const ops = operations();
    const first = await ops.upsertInventory('mid01', id.certPem);
    assert.equal(first.action, 'inserted');
    assert.deepEqual(first.dropped, []);
    const seen = record(ops);
    assert.equal((await ops.upsertInventory('mid01', id.certPem)).action, 'unchanged');
    assert.equal((await ops.upsertInventory('mid01', id.certPem)).action, 'unchanged');
    assert.deepEqual(seen.paths.filter((p) => !p.startsWith('GET ')), []);
    assert.equal(rows('cmdb_ci_certificate').length, 1);
    assert.equal(rows('cmdb_rel_ci').length, 1);
    // Someone set the record retired by hand: the MID still holds it, so the next pass says installed again.
    instance.admin.tables.update('cmdb_ci_certificate', first.sysId, { state: 'retired' });
    assert.equal((await ops.upsertInventory('mid01', id.certPem)).action, 'updated');
    assert.equal(rows('cmdb_ci_certificate')[0]?.['state'], 'installed');
  });

  it('finds a record Discovery wrote with colons and upper case, and does not duplicate it', async () => {
    const id = await leaf('mid01');
    const colons = id.cert.sha256.toUpperCase().match(/../g)?.join(':') as string;
    instance.admin.tables.insert('cmdb_ci_certificate', { name: HOST, fingerprint: colons, state: 'installed' });
    const outcome = await operations().upsertInventory('mid01', id.certPem);
    assert.equal(outcome.action, 'updated');
    assert.equal(rows('cmdb_ci_certificate').length, 1);
    assert.equal(rows('cmdb_ci_certificate')[0]?.['name'], HOST, 'the name Discovery gave is kept');
  });

  it('a field the instance silently drops on write is reported; a dropped fingerprint leaves no (unmatchable) record behind', async () => {
    const ops = operations();
    let drop = ['key_size'];
    const original = ops.client.request.bind(ops.client);
    ops.client.request = (method: string, path: string, options: InstanceRequest = {}) => {
      // A real instance ignores fields it does not have (SND c_TableAPI.md): model that for `drop`.
      const json = options.json && Object.fromEntries(Object.entries(options.json as Record<string, string>).filter(([k]) => !(path.includes('cmdb_ci_certificate') && drop.includes(k))));
      return original(method, path, { ...options, ...(json ? { json } : {}) });
    };
    const outcome = await ops.upsertInventory('mid01', (await leaf('mid01')).certPem);
    assert.deepEqual(outcome.dropped, ['key_size']);
    assert.equal(rows('cmdb_ci_certificate').length, 1);
    drop = ['fingerprint'];
    await assert.rejects(ops.upsertInventory('mid01', (await leaf('mid01')).certPem), (err: Error & { code?: string }) => err.code === 'INSTANCE_RESPONSE_INVALID' && /fingerprint/.test(err.message));
    assert.equal(rows('cmdb_ci_certificate').length, 1, 'the record without a fingerprint was deleted again');
  });

  it('serve: the reconcile pass upserts the leaf the MID holds (known to the store), twice without a duplicate', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'midcert-inv-'));
    try {
      const store = await openStore(dir);
      const id = await leaf('mid01');
      await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
      await store.certificates.recordIssued({ agentName: 'mid01', pem: id.certPem });
      await store.certificates.setStatus(id.cert.sha256, 'installed');
      const deps = { store, dial: () => fakeAgent(() => id), ca: { submit: async () => { throw new Error('unused'); }, poll: async () => { throw new Error('unused'); } }, instance: instancePort(operations()), onEvent: () => undefined };
      const rotation = { force: false, expiringWithinDays: 30, canary: 0, batch: 1, maxFailures: 0, concurrency: 1, dryRun: false, caTimeoutMs: 1000, caPollMs: 10, upTimeoutMs: 1000 };
      const options = { intervalMs: 1000, jitterMs: 0, windows: [], renewWithinDays: 1, once: true };
      for (let pass = 0; pass < 2; pass += 1) await serve(store, deps, rotation, options, pino({ level: 'silent' }), new AbortController().signal);
      const certs = rows('cmdb_ci_certificate');
      assert.equal(certs.length, 1);
      assert.equal(certs[0]?.['fingerprint'], id.cert.sha256);
      assert.equal(rows('cmdb_rel_ci').length, 1);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // Issue 12 part 2: serve keeps working across several OAuth token expiries (expires_in 1 s here,
  // 1799 s on a real instance): each pass reads the instance, the client renews before expiry.
  it('serve passes across four OAuth token expiries keep reconciling, never refused', async () => {
    const CLIENT = { clientId: 'midcert', clientSecret: 'controller-client-secret' };
    const oauthInstance = await start(pki, { publishDelayMs: 20, oauthTokenSeconds: 1, oauthClients: [CLIENT] });
    opened.push(oauthInstance);
    oauthInstance.admin.tables.insert('ecc_agent', { name: 'mid01', host_name: HOST, status: 'Up' });
    oauthInstance.admin.tables.insert('cmdb_ci_computer', { name: HOST });
    const client = new InstanceClient({
      url: oauthInstance.url, caPem: pki.ca.root.certPem, timeoutMs: 5000, retries: 1, backoff: { baseMs: 10, maxMs: 20 }, proxy: false,
      auth: { kind: 'oauth', ...CLIENT, grant: 'password', username: ADMIN.username, password: ADMIN.password },
    });
    const ops = new InstanceOperations(client, { publishTimeoutMs: 5000, pollIntervalMs: 25, inventory: true });
    opened.push(ops);
    const dir = await mkdtemp(join(tmpdir(), 'midcert-inv-oauth-'));
    try {
      const store = await openStore(dir);
      const id = await leaf('mid01');
      await store.agents.add({ name: 'mid01', address: '127.0.0.1:1' });
      await store.certificates.recordIssued({ agentName: 'mid01', pem: id.certPem });
      await store.certificates.setStatus(id.cert.sha256, 'installed');
      const deps = { store, dial: () => fakeAgent(() => id), ca: { submit: async () => { throw new Error('unused'); }, poll: async () => { throw new Error('unused'); } }, instance: instancePort(ops), onEvent: () => undefined };
      const rotation = { force: false, expiringWithinDays: 30, canary: 0, batch: 1, maxFailures: 0, concurrency: 1, dryRun: false, caTimeoutMs: 1000, caPollMs: 10, upTimeoutMs: 1000 };
      const warnings: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => { warnings.push(line); } });
      const started = Date.now();
      let passes = 0;
      while (Date.now() - started < 4500) {
        await serve(store, deps, rotation, { intervalMs: 1000, jitterMs: 0, windows: [], renewWithinDays: 1, once: true }, log, new AbortController().signal);
        passes += 1;
        await new Promise((r) => setTimeout(r, 250));
      }
      await store.close();
      const stats = client.oauthStats();
      assert.ok(passes >= 8, `${passes} passes`);
      assert.ok(stats && stats.refreshes + stats.grants >= 4, `tokens renewed across the expiries: ${JSON.stringify(stats)}`);
      assert.equal(client.stats.byStatus['401'] ?? 0, 0, 'renewed before expiry, never refused');
      assert.deepEqual(warnings, [], 'no pass warned');
      assert.equal(oauthInstance.admin.tables.query('cmdb_ci_certificate', '').filter((r) => r['fingerprint'] === id.cert.sha256).length, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('inventory off: a rotation sends nothing to any cmdb table', async () => {
    const old = await leaf('mid01');
    const ops = operations({ inventory: false });
    const seen = record(ops);
    const port = instancePort(ops);
    assert.equal(port.upsertInventory, undefined);
    assert.equal((await rotate(port, () => old, await leaf('mid01'))).state, 'verified');
    assert.deepEqual(seen.paths.filter((p) => p.includes('/cmdb_')), []);
    assert.equal(rows('cmdb_ci_certificate').length, 0);
  });

  it('a 403 on cmdb_ci_certificate (no sn_disco_certmgmt.pki_admin) is a warning: the rotation still succeeds', async () => {
    instance.admin.addUser({ userName: 'midcert', password: 'integration-pw-1', roles: ['sso_config_admin'] });
    const old = await leaf('mid01');
    const ops = operations({ auth: { username: 'midcert', password: 'integration-pw-1' } });
    const events: RotationEvent[] = [];
    const result = await rotate(instancePort(ops), () => old, await leaf('mid01'), events);
    assert.equal(result.state, 'verified', JSON.stringify(result));
    const warning = events.find((e) => e.step === 'inventory');
    assert.equal(warning?.state, 'warning');
    assert.match(warning?.message ?? '', /INSTANCE_FORBIDDEN.*pki_admin/);
    assert.equal(rows('cmdb_ci_certificate').length, 0);
  });
});
