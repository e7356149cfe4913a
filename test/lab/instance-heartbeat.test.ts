import assert from 'node:assert/strict';
import type { Identity } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import {
  asAdmin, call, enrolMid, eventually, heartbeat, makePki, publishChain, refusedConnection, start, uploadCertificate,
  type LabPki, type StartedInstance,
} from './instance-fixtures.js';

const UNAUTHENTICATED = { error: { message: 'User Not Authenticated', detail: 'Required to provide Auth information' }, status: 'failure' };
const EC = { keySpec: { type: 'ec', curve: 'P-256' } } as const;

describe('lab instance: mutual-TLS MID heartbeat', function () {
  let pki: LabPki;
  let foreign: LabPki;
  let instance: StartedInstance;
  let mid: { identity: Identity; user: Record<string, string>; record: any };

  before(async () => {
    [pki, foreign] = await Promise.all([makePki(), makePki('Foreign')]);
    instance = await start(pki, { publishDelayMs: 50 }); // monitor rounds run by hand (admin.runMonitor)
  });
  after(async () => { await instance?.close(); });

  const agent = (name: string): Record<string, string> | undefined => instance.admin.tables.query('ecc_agent', `name=${name}`)[0];

  it('refuses every client certificate while no CA chain is published (even one from the lab CA)', async () => {
    const early = await pki.ca.issueIdentity('CN=early,O=midcert Lab', PROFILES.client, EC);
    const err = await refusedConnection(heartbeat(instance, early, 'early'));
    assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code ?? '') || /socket hang up|alert/.test(err.message), `${err.code} ${err.message}`);
    assert.equal(agent('early'), undefined);
  });

  it('accepts a heartbeat from a mapped, published leaf and makes the ecc_agent Up', async () => {
    await publishChain(instance, pki.ca.chainPem);
    mid = await enrolMid(instance, 'mid01');
    const reply = await heartbeat(instance, mid.identity, 'mid01');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['server'], 'snow_adc');
    assert.equal(reply.json.result.status, 'Up');
    const record = agent('mid01');
    assert.equal(reply.json.result.sys_id, record?.['sys_id']);
    assert.deepEqual(
      { status: record?.['status'], validated: record?.['validated'], host_name: record?.['host_name'], version: record?.['version'], custom: record?.['is_using_custom_cert'] },
      { status: 'Up', validated: 'true', host_name: 'mid01.lab.invalid', version: 'Xanadu', custom: 'true' },
    );
    assert.match(record?.['last_refreshed'] ?? '', /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
    const overRest = await call(instance, '/api/now/table/ecc_agent?sysparm_query=name=mid01&sysparm_fields=status', { auth: asAdmin });
    assert.deepEqual(overRest.json.result, [{ status: 'Up' }]);
  });

  it('accepts a client that also sends its intermediate, and updates the same ecc_agent record', async () => {
    const before = agent('mid01');
    const reply = await heartbeat(instance, { certPem: mid.identity.certPem + pki.ca.intermediate.certPem, keyPem: mid.identity.keyPem }, 'mid01');
    assert.equal(reply.status, 200);
    assert.equal(reply.json.result.sys_id, before?.['sys_id']);
    assert.equal(instance.admin.tables.query('ecc_agent', 'name=mid01').length, 1);
  });

  it('refuses the handshake for a certificate from another CA, answers nothing, and logs why', async () => {
    const stranger = await foreign.ca.issueIdentity('CN=stranger,O=Elsewhere', PROFILES.client, EC);
    const err = await refusedConnection(heartbeat(instance, stranger, 'stranger'));
    assert.ok(err.code === 'ECONNRESET' || /socket hang up/.test(err.message), `${err.code} ${err.message}`);
    assert.equal(agent('stranger'), undefined);
    assert.ok(instance.logLines.some((l) => l.includes('refused TLS handshake') && l.includes('CN=stranger')));
  });

  it('runs nothing for a refused connection, even a request with valid admin credentials', async () => {
    const stranger = await foreign.ca.issueIdentity('CN=intruder,O=Elsewhere', PROFILES.client, EC);
    await refusedConnection(call(instance, '/api/now/table/sys_properties', { auth: asAdmin, client: stranger, body: { name: 'planted' } }));
    assert.equal(instance.admin.tables.query('sys_properties', 'name=planted').length, 0);
  });

  it('refuses the handshake for a lab-CA certificate without the clientAuth EKU', async () => {
    const server = await pki.ca.issueIdentity('CN=serveronly,O=midcert Lab', PROFILES.server, EC);
    await refusedConnection(heartbeat(instance, server, 'serveronly'));
    assert.equal(agent('serveronly'), undefined);
  });

  it('answers 401 to a trusted but unmapped leaf, and logs the reason', async () => {
    const unmapped = await pki.ca.issueIdentity('CN=unmapped,O=midcert Lab', PROFILES.client, EC);
    const reply = await heartbeat(instance, unmapped, 'unmapped');
    assert.equal(reply.status, 401);
    assert.deepEqual(reply.json, UNAUTHENTICATED);
    assert.equal(agent('unmapped'), undefined);
    assert.ok(instance.logLines.some((l) => l.includes('401 POST /api/mid/heartbeat') && l.includes(unmapped.cert.sha256)));
  });

  it('answers 401 to a leaf whose record is still pending or was saved without its attachment', async () => {
    const pending = await pki.ca.issueIdentity('CN=pending,O=midcert Lab', PROFILES.client, EC);
    const slow = await start(pki, { publishDelayMs: 1000 });
    try {
      await publishChain(slow, pki.ca.chainPem);
      const user = slow.admin.addUser({ userName: 'svc_pending', roles: ['mid_server'] });
      const record = await uploadCertificate(slow, 'sys_user_certificate', pending.certPem, { user: user['sys_id'] as string });
      assert.equal((await heartbeat(slow, pending, 'pending')).status, 401);
      assert.equal(slow.admin.tables.get('sys_user_certificate', record.sys_id)?.['publish_status'], 'Pending', 'still pending when refused');
      await eventually(() => (slow.admin.tables.get('sys_user_certificate', record.sys_id)?.['publish_status'] === 'Exists' ? true : undefined));
      assert.equal((await heartbeat(slow, pending, 'pending')).status, 200, 'accepted once published');
    } finally {
      await slow.close();
    }
    const bare = await pki.ca.issueIdentity('CN=bare,O=midcert Lab', PROFILES.client, EC);
    instance.admin.tables.insert('sys_user_certificate', { name: 'bare', user: mid.user['sys_id'] });
    assert.equal((await heartbeat(instance, bare, 'bare')).status, 401);
  });

  it('answers 401 when the mapped user lacks the mid_server role', async () => {
    const noRole = await enrolMid(instance, 'mid-norole', { roles: ['itil'] });
    const reply = await heartbeat(instance, noRole.identity, 'mid-norole');
    assert.equal(reply.status, 401);
    assert.ok(instance.logLines.some((l) => l.includes('lacks the mid_server role')));
  });

  it('answers 401 when the leaf record is deactivated', async () => {
    const revoked = await enrolMid(instance, 'mid-revoked');
    assert.equal((await heartbeat(instance, revoked.identity, 'mid-revoked')).status, 200);
    instance.admin.tables.update('sys_user_certificate', revoked.record.sys_id, { active: 'false' });
    assert.equal((await heartbeat(instance, revoked.identity, 'mid-revoked')).status, 401);
  });

  it('answers 401 to a heartbeat with no client certificate, even with admin Basic credentials', async () => {
    const reply = await call(instance, '/api/mid/heartbeat', { auth: asAdmin, body: { name: 'basic-mid' } });
    assert.equal(reply.status, 401);
    assert.deepEqual(reply.json, UNAUTHENTICATED);
    assert.equal(agent('basic-mid'), undefined);
  });

  it('answers 400 to an authorized heartbeat without a name', async () => {
    const reply = await call(instance, '/api/mid/heartbeat', { client: mid.identity, body: { host_name: 'h' } });
    assert.equal(reply.status, 400);
    assert.equal(reply.json.status, 'failure');
  });

  it('refuses mutual-auth heartbeats with 401 while com.glide.auth.mutual is inactive', async () => {
    instance.admin.setPlugin('com.glide.auth.mutual', false);
    try {
      assert.equal((await heartbeat(instance, mid.identity, 'mid01')).status, 401);
      assert.ok(instance.logLines.some((l) => l.includes('plugin com.glide.auth.mutual is not active')));
      instance.admin.setPlugin('com.glide.auth.mutual', 'true');
      assert.equal((await heartbeat(instance, mid.identity, 'mid01')).status, 200, '"true" reads as active too');
    } finally {
      instance.admin.setPlugin('com.glide.auth.mutual', true);
    }
  });

  it('refuses mutual-auth heartbeats with 401 while glide.outbound.tls_sni.enabled is false', async () => {
    instance.admin.setProperty('glide.outbound.tls_sni.enabled', 'false');
    try {
      assert.equal((await heartbeat(instance, mid.identity, 'mid01')).status, 401);
      assert.ok(instance.logLines.some((l) => l.includes('glide.outbound.tls_sni.enabled is false')));
    } finally {
      instance.admin.setProperty('glide.outbound.tls_sni.enabled', 'true');
    }
    assert.equal((await heartbeat(instance, mid.identity, 'mid01')).status, 200);
  });

  // SND r_MIDServerHeartbeat.md: the Heartbeat probe goes out through the ECC queue every 5 min
  // (× timeScale); "If the instance does not detect a response … marks that MID Server as Down".
  it('reads Down when the HeartbeatProbe of the previous monitor round went unanswered, Up again on the next poll', async () => {
    assert.equal((await heartbeat(instance, mid.identity, 'mid01')).status, 200);
    assert.equal(agent('mid01')?.['status'], 'Up');
    instance.admin.runMonitor(); // round 1: a probe is queued
    const probes = instance.admin.tables.query('ecc_queue', 'agent=mid.server.mid01^topic=HeartbeatProbe^state=ready');
    assert.equal(probes.length, 1);
    assert.equal(agent('mid01')?.['status'], 'Up', 'silence alone is not Down');
    instance.admin.runMonitor(); // round 2: the probe is unanswered
    assert.equal(agent('mid01')?.['status'], 'Down');
    const overRest = await call(instance, '/api/now/table/ecc_agent?sysparm_query=status=Down^name=mid01&sysparm_fields=name', { auth: asAdmin });
    assert.deepEqual(overRest.json.result, [{ name: 'mid01' }]);
    assert.ok(instance.logLines.some((l) => l.includes('ecc_agent "mid01" is Down')));
    const back = await heartbeat(instance, mid.identity, 'mid01');
    assert.equal(back.status, 200);
    assert.equal(agent('mid01')?.['status'], 'Up');
    assert.ok(back.json.result.commands.some((c: any) => c.topic === 'HeartbeatProbe'), 'the pending probe is delivered');
  });

  // vendor-facts §10: nothing documents automatic deactivation; the old chain is refused only once set inactive.
  it('keeps MIDs of the old CA working while both chains are active, refuses them once the old chain is set inactive (CA rotation)', async () => {
    const next = await makePki('Rotated');
    const nextLeaf = await next.ca.issueIdentity('CN=mid01,O=midcert Lab', PROFILES.client, EC);
    const old = instance.admin.tables.query('sys_ca_certificate', 'active=true');
    await publishChain(instance, next.ca.chainPem);
    assert.equal((await heartbeat(instance, mid.identity, 'mid01')).status, 200, 'old chain still trusted');
    for (const record of old) instance.admin.tables.update('sys_ca_certificate', record['sys_id'] as string, { active: 'false' });
    await refusedConnection(heartbeat(instance, mid.identity, 'mid01'));
    const staged = await uploadCertificate(instance, 'sys_user_certificate', nextLeaf.certPem, { user: mid.user['sys_id'] as string });
    await eventually(() => (instance.admin.tables.get('sys_user_certificate', staged.sys_id)?.['publish_status'] === 'Exists' ? true : undefined));
    assert.equal((await heartbeat(instance, nextLeaf, 'mid01')).status, 200);
  });

  it('serves 200 MIDs heartbeating concurrently', async function () {
    // Correctness only: how fast 400 handshakes go is a benchmark figure (docs/lab/instance.md).
    this.timeout(120_000);
    const fleet = await start(pki, { publishDelayMs: 0 });
    try {
      await publishChain(fleet, pki.ca.chainPem);
      const user = fleet.admin.addUser({ userName: 'svc_fleet', roles: ['mid_server'] });
      const mids = await Promise.all(Array.from({ length: 200 }, (_, i) => pki.ca.issueIdentity(`CN=fleet${i},O=midcert Lab`, PROFILES.client, EC)));
      for (const [i, identity] of mids.entries()) {
        const sysId = `${i.toString(16).padStart(8, '0')}${'a'.repeat(24)}`;
        fleet.admin.attach({ tableName: 'sys_user_certificate', tableSysId: sysId, fileName: 'leaf.pem', contentType: 'application/x-pem-file', body: identity.certPem });
        fleet.admin.tables.insert('sys_user_certificate', { sys_id: sysId, name: `fleet${i}`, user: user['sys_id'] });
      }
      await eventually(() => (fleet.admin.tables.query('sys_user_certificate', 'publish_status=Exists').length === 200 ? true : undefined));
      for (let round = 0; round < 2; round += 1) {
        const replies = await Promise.all(mids.map((identity, i) => heartbeat(fleet, identity, `fleet${i}`)));
        assert.deepEqual([...new Set(replies.map((r) => r.status))], [200]);
      }
      assert.equal(fleet.admin.tables.query('ecc_agent', 'status=Up').length, 200);
    } finally {
      await fleet.close();
    }
  });
});
