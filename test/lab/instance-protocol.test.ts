import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { LAB_TEST_SECRET } from '../../lab/instance/agents.js';
import { PROFILES } from '../../pki/issue.js';
import { asAdmin, call, enrolMid, makePki, poll, publishChain, start, type LabPki, type StartedInstance } from './instance-fixtures.js';

/** The instance half of docs/lab/mid-instance-protocol.md (vendor-facts §5, §7). */
describe('lab instance: MID <-> instance protocol', function () {
  let pki: LabPki;
  const opened: StartedInstance[] = [];
  const launch = async (options: Parameters<typeof start>[1] = {}): Promise<StartedInstance> => {
    const instance = await start(pki, { publishDelayMs: 30, ...options });
    opened.push(instance);
    return instance;
  };
  const rsa = (): { publicKey: string; privateKey: string } => generateKeyPairSync('rsa', {
    modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const basic: [string, string] = ['mid.basic01', 'mid-password-1'];
  const agentOf = (instance: StartedInstance, name: string): Record<string, string> | undefined => instance.admin.tables.query('ecc_agent', `name=${name}`)[0];

  before(async () => { pki = await makePki('Protocol'); });
  after(async () => { for (const i of opened) await i.close(); });

  it('§4/§5: a basic-auth MID poll stores public_key, auto-validates, and gets the credential probe (RSA-OAEP SHA-256) it can decrypt', async () => {
    const instance = await launch();
    instance.admin.addUser({ userName: basic[0], password: basic[1], roles: ['mid_server'] });
    const keys = rsa();
    const first = await poll(instance, { auth: basic }, { name: 'basic01', starting: true, public_key: keys.publicKey });
    assert.equal(first.status, 200);
    assert.equal(first.json.result.status, 'Up');
    assert.equal(first.json.result.validated, 'true');
    assert.deepEqual(first.json.result.commands, []);
    const agent = agentOf(instance, 'basic01');
    assert.equal(agent?.['public_key'], keys.publicKey);
    assert.equal(agent?.['is_using_custom_cert'], 'false');
    const secret = privateDecrypt({ key: keys.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(first.json.result.credential, 'base64'));
    assert.equal(secret.toString(), LAB_TEST_SECRET);
    // A user without mid_server is refused (401).
    instance.admin.addUser({ userName: 'nobody', password: 'nobody-password', roles: [] });
    assert.equal((await poll(instance, { auth: ['nobody', 'nobody-password'] }, { name: 'basic01' })).status, 401);
    // credential_ok:false is logged (ecc_agent unchanged).
    await poll(instance, { auth: basic }, { name: 'basic01', credential_ok: false });
    assert.ok(instance.logLines.some((l) => l.includes('cannot decrypt the credential probe')));
  });

  it('§4: autoValidate=false leaves a basic-auth MID validated=false (no credential); an admin setting validating completes on the next poll', async () => {
    const instance = await launch({ autoValidate: false });
    instance.admin.addUser({ userName: basic[0], password: basic[1], roles: ['mid_server'] });
    const keys = rsa();
    const reply = await poll(instance, { auth: basic }, { name: 'basic01', starting: true, public_key: keys.publicKey });
    assert.equal(reply.json.result.validated, 'false');
    assert.equal(reply.json.result.credential, undefined);
    instance.admin.tables.update('ecc_agent', agentOf(instance, 'basic01')?.['sys_id'] as string, { validated: 'validating' });
    assert.equal((await poll(instance, { auth: basic }, { name: 'basic01' })).json.result.validated, 'true');
  });

  it('§5: an EC key gets no credential probe, with a log line', async () => {
    const instance = await launch();
    instance.admin.addUser({ userName: basic[0], password: basic[1], roles: ['mid_server'] });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const reply = await poll(instance, { auth: basic }, { name: 'basic01', starting: true, public_key: ec.publicKey });
    assert.equal(reply.json.result.credential, undefined);
    assert.ok(instance.logLines.some((l) => l.includes('no credential probe') && l.includes('not RSA')));
  });

  it('§2/§7: commands in ecc_queue are delivered (ready → processing) and a response becomes an input row (output → processed)', async () => {
    const instance = await launch();
    instance.admin.addUser({ userName: basic[0], password: basic[1], roles: ['mid_server'] });
    await poll(instance, { auth: basic }, { name: 'basic01', starting: true });
    const inserted = await call(instance, '/api/now/table/ecc_queue', { auth: asAdmin, body: { agent: 'mid.server.basic01', queue: 'output', state: 'ready', topic: 'SystemCommand', name: 'midcert.ping', source: 'midcert' } });
    const id = inserted.json.result.sys_id;
    const delivered = await poll(instance, { auth: basic }, { name: 'basic01' });
    assert.deepEqual(delivered.json.result.commands.map((c: any) => [c.sys_id, c.name]), [[id, 'midcert.ping']]);
    assert.equal(instance.admin.tables.get('ecc_queue', id)?.['state'], 'processing');
    await poll(instance, { auth: basic }, { name: 'basic01', responses: [{ response_to: id, topic: 'SystemCommand', name: 'midcert.ping', payload: '<result/>' }] });
    assert.equal(instance.admin.tables.get('ecc_queue', id)?.['state'], 'processed');
    const answer = await call(instance, `/api/now/table/ecc_queue?sysparm_query=response_to=${id}^queue=input&sysparm_fields=queue,state,response_to,agent,payload`, { auth: asAdmin });
    assert.deepEqual(answer.json.result, [{ queue: 'input', state: 'processed', response_to: id, agent: 'mid.server.basic01', payload: '<result/>' }]);
  });

  it('§6: invalidate (validated=false over REST) queues SystemCommand delete_mid_keypair; an mTLS MID cannot be validated again', async () => {
    const instance = await launch();
    await publishChain(instance, pki.ca.chainPem);
    const mid = await enrolMid(instance, 'mtls01', { identity: await pki.ca.issueIdentity('CN=mtls01,O=midcert Lab', PROFILES.client) });
    const first = await poll(instance, { client: mid.identity }, { name: 'mtls01', starting: true });
    assert.equal(first.json.result.validated, 'true', 'an mTLS MID auto-validates on connect (SND mid-build-docker-linux.md)');
    const agent = agentOf(instance, 'mtls01') as Record<string, string>;
    assert.equal(agent['is_using_custom_cert'], 'true');
    const patched = await call(instance, `/api/now/table/ecc_agent/${agent['sys_id']}`, { method: 'PATCH', auth: asAdmin, body: { validated: 'false' } });
    assert.equal(patched.status, 200);
    const commands = instance.admin.tables.query('ecc_queue', 'agent=mid.server.mtls01^source=delete_mid_keypair');
    assert.deepEqual(commands.map((c) => [c['topic'], c['name'], c['queue'], c['state']]), [['SystemCommand', 'Invalidate', 'output', 'ready']]);
    const refused = await call(instance, `/api/now/table/ecc_agent/${agent['sys_id']}`, { method: 'PATCH', auth: asAdmin, body: { validated: 'true' } });
    assert.equal(refused.status, 400);
    assert.match(refused.json.error.detail, /cannot be validated/);
    const delivered = await poll(instance, { client: mid.identity }, { name: 'mtls01' });
    assert.equal(delivered.json.result.commands[0].source, 'delete_mid_keypair');
  });

  it('§3: statuses Paused / Upgrading / Upgrade Failed are kept by ordinary polls, starting:true → Up; other values are refused', async () => {
    const instance = await launch();
    instance.admin.addUser({ userName: basic[0], password: basic[1], roles: ['mid_server'] });
    await poll(instance, { auth: basic }, { name: 'basic01', starting: true });
    for (const status of ['Paused', 'Upgrading', 'Upgrade Failed'] as const) {
      instance.admin.setAgentStatus('basic01', status);
      assert.equal((await poll(instance, { auth: basic }, { name: 'basic01' })).json.result.status, status);
      instance.admin.runMonitor();
      assert.equal(agentOf(instance, 'basic01')?.['status'], status, 'the monitor probes only Up MIDs');
    }
    assert.equal((await poll(instance, { auth: basic }, { name: 'basic01', starting: true })).json.result.status, 'Up');
    const id = agentOf(instance, 'basic01')?.['sys_id'];
    assert.equal((await call(instance, `/api/now/table/ecc_agent/${id}`, { method: 'PATCH', auth: asAdmin, body: { status: 'Starting' } })).status, 400);
    assert.equal((await call(instance, `/api/now/table/ecc_agent/${id}`, { method: 'PATCH', auth: asAdmin, body: { validated: 'yes' } })).status, 400);
  });

  it('§3/§7: with timeScale the monitor period is 300 s × timeScale; a MID answering its probes stays Up, a silent one goes Down', async () => {
    const instance = await launch({ timeScale: 0.001 }); // 300 ms
    instance.admin.addUser({ userName: basic[0], password: basic[1], roles: ['mid_server'] });
    await poll(instance, { auth: basic }, { name: 'basic01', starting: true });
    await poll(instance, { auth: basic }, { name: 'quiet01', starting: true });
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      const reply = await poll(instance, { auth: basic }, { name: 'basic01' });
      const responses = reply.json.result.commands.map((c: any) => ({ response_to: c.sys_id, topic: c.topic, name: c.name, payload: '<result/>' }));
      if (responses.length) await poll(instance, { auth: basic }, { name: 'basic01', responses });
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.equal(agentOf(instance, 'basic01')?.['status'], 'Up');
    assert.equal(agentOf(instance, 'quiet01')?.['status'], 'Down');
  });

  it('§4: mtlsKeyUpdate=update stores a new key presented over mTLS; keep keeps the old one', async () => {
    for (const mode of ['update', 'keep'] as const) {
      const instance = await launch({ mtlsKeyUpdate: mode });
      await publishChain(instance, pki.ca.chainPem);
      const mid = await enrolMid(instance, 'mtls02', { identity: await pki.ca.issueIdentity('CN=mtls02,O=midcert Lab', PROFILES.client) });
      const [a, b] = [rsa(), rsa()];
      await poll(instance, { client: mid.identity }, { name: 'mtls02', starting: true, public_key: a.publicKey });
      await poll(instance, { client: mid.identity }, { name: 'mtls02', starting: true, public_key: b.publicKey });
      assert.equal(agentOf(instance, 'mtls02')?.['public_key'], mode === 'update' ? b.publicKey : a.publicKey, mode);
    }
  });
});
