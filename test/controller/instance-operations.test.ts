import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import { MidcertError } from '../../common/errors.js';
import { InstanceOperations, type InstanceOperationsOptions } from '../../controller/instance/operations.js';
import { waitForMidUp } from '../../controller/instance/agents.js';
import { InstanceClient, type TableRecord } from '../../controller/instance/rest.js';
import type { Identity } from '../../lab/lab-ca.js';
import { certificateToPem, readCertificates } from '../../pki/certificate.js';
import { PROFILES } from '../../pki/issue.js';
import { ADMIN, heartbeat, makePki, start, type LabPki, type StartedInstance } from '../lab/instance-fixtures.js';

/** The domain operations against the simulated instance, started in-process with the lab CA. */

const EC = { keySpec: { type: 'ec', curve: 'P-256' } } as const;

async function rejection(promise: Promise<unknown>): Promise<MidcertError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MidcertError, `expected a MidcertError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

describe('controller instance client: operations', function () {
  let pki: LabPki;
  const opened: Array<{ close(): unknown }> = [];

  const operations = (instance: StartedInstance, options: InstanceOperationsOptions = {}, auth?: { username: string; password: string }): InstanceOperations => {
    const client = new InstanceClient({
      url: instance.url, auth: { kind: 'basic', ...(auth ?? ADMIN) }, caPem: pki.ca.root.certPem,
      timeoutMs: 5000, retries: 2, backoff: { baseMs: 10, maxMs: 40 },
    });
    const ops = new InstanceOperations(client, { publishTimeoutMs: 5000, pollIntervalMs: 25, ...options });
    opened.push(ops);
    return ops;
  };
  const launch = async (options: Parameters<typeof start>[1] = {}): Promise<StartedInstance> => {
    const instance = await start(pki, options);
    opened.push(instance);
    return instance;
  };
  /** Records the method and path of every request the operations send. */
  const trace = (ops: InstanceOperations): string[] => {
    const calls: string[] = [];
    const original = ops.client.request.bind(ops.client);
    ops.client.request = (method, path, options) => {
      calls.push(`${method} ${path}`);
      return original(method, path, options);
    };
    return calls;
  };
  const client = (name: string): Promise<Identity> => pki.ca.issueIdentity(`CN=${name},O=midcert Lab`, PROFILES.client, EC);

  before(async () => { pki = await makePki('Operations'); });
  after(async () => { for (const o of opened.reverse()) await o.close(); });

  describe('findMidUser', () => {
    let instance: StartedInstance;
    let ops: InstanceOperations;
    before(async () => {
      instance = await launch();
      ops = operations(instance);
    });

    it('finds mid.<name> by default, with the mid_server role', async () => {
      const user = instance.admin.addUser({ userName: 'mid.alpha', roles: ['mid_server'] });
      assert.deepEqual(await ops.findMidUser('alpha'), { sysId: user['sys_id'], userName: 'mid.alpha', source: 'pattern' });
    });

    it('takes a configured user over the pattern, and a pattern override', async () => {
      const user = instance.admin.addUser({ userName: 'svc_beta', roles: ['mid_server'] });
      instance.admin.addUser({ userName: 'mid.beta', roles: ['mid_server'] });
      const configured = operations(instance, { midUsers: { users: { beta: 'svc_beta' } } });
      assert.deepEqual(await configured.findMidUser('beta'), { sysId: user['sys_id'], userName: 'svc_beta', source: 'configured' });
      const patterned = operations(instance, { midUsers: { userNamePattern: 'svc_{name}' } });
      assert.equal((await patterned.findMidUser('beta')).userName, 'svc_beta');
    });

    it('follows a user named on the ecc_agent record (by user_name or sys_id)', async () => {
      // The lab's ecc_agent has no user field; host_name stands in for whichever field an instance has.
      const user = instance.admin.addUser({ userName: 'svc_gamma', roles: ['mid_server'] });
      const viaAgent = operations(instance, { midUsers: { agentUserFields: ['host_name'] } });
      instance.admin.tables.insert('ecc_agent', { name: 'gamma', host_name: 'svc_gamma' });
      assert.deepEqual(await viaAgent.findMidUser('gamma'), { sysId: user['sys_id'], userName: 'svc_gamma', source: 'ecc_agent' });
      instance.admin.tables.insert('ecc_agent', { name: 'gamma2', host_name: user['sys_id'] as string });
      assert.equal((await viaAgent.findMidUser('gamma2')).userName, 'svc_gamma');
    });

    it('MID_USER_NOT_FOUND when the user does not exist, or is inactive', async () => {
      const missing = await rejection(ops.findMidUser('nobody'));
      assert.equal(missing.code, 'MID_USER_NOT_FOUND');
      assert.match(missing.message, /"mid\.nobody" does not exist/);
      const user = instance.admin.addUser({ userName: 'mid.sleepy', roles: ['mid_server'] });
      instance.admin.tables.update('sys_user', user['sys_id'] as string, { active: 'false' });
      assert.match((await rejection(ops.findMidUser('sleepy'))).message, /inactive/);
    });

    it('MID_USER_NO_ROLE without mid_server, or with the role row inactive', async () => {
      instance.admin.addUser({ userName: 'mid.plain', roles: ['itil'] });
      assert.equal((await rejection(ops.findMidUser('plain'))).code, 'MID_USER_NO_ROLE');
      const user = instance.admin.addUser({ userName: 'mid.revoked', roles: ['mid_server'] });
      const [grant] = instance.admin.tables.query('sys_user_has_role', `user=${user['sys_id']}`);
      instance.admin.tables.update('sys_user_has_role', grant?.['sys_id'] as string, { state: 'inactive' });
      assert.equal((await rejection(ops.findMidUser('revoked'))).code, 'MID_USER_NO_ROLE');
    });
  });

  describe('publishing, leaves and the MID record', () => {
    let instance: StartedInstance;
    let ops: InstanceOperations;
    let user: Record<string, string>;
    let leafA: Identity;

    before(async () => {
      instance = await launch({ publishDelayMs: 150 });
      ops = operations(instance);
      user = instance.admin.addUser({ userName: 'mid.mid01', roles: ['mid_server'] });
      leafA = await client('mid01');
    });

    it('publishes the CA chain attachment-first and waits until it reads Exists', async () => {
      const calls = trace(ops);
      const started = Date.now();
      const record = await ops.publishCaChain(pki.ca.chainPem, 'Lab chain');
      assert.ok(Date.now() - started >= 140, 'waited for the publish delay');
      const uploadAt = calls.findIndex((c) => c === 'POST /api/now/attachment/file');
      const insertAt = calls.findIndex((c) => c === 'POST /api/now/table/sys_ca_certificate');
      assert.ok(uploadAt >= 0 && insertAt > uploadAt, `attachment before record: ${calls.join(', ')}`);
      assert.equal(record.publishStatus, 'Exists');
      assert.equal(record.published, true);
      assert.equal(record.sha256, pki.ca.intermediate.cert.sha256);
      const stored = instance.admin.tables.get('sys_ca_certificate', record.sysId);
      assert.deepEqual([stored?.['type'], stored?.['format'], stored?.['active'], stored?.['name']], ['trust_store_ca', 'pem', 'true', 'Lab chain']);
      const attachments = instance.admin.tables.query('sys_attachment', `table_sys_id=${record.sysId}`);
      assert.equal(attachments.length, 1);
      assert.equal(attachments[0]?.['table_name'], 'sys_ca_certificate');
      assert.ok(instance.admin.trustAnchors().includes(pki.ca.root.cert.sha256));
    });

    it('is idempotent: the same chain again returns the same record after one read', async () => {
      const before = instance.admin.tables.query('sys_ca_certificate').length;
      const attachmentsBefore = instance.admin.tables.query('sys_attachment').length;
      ops.client.resetStats();
      const first = (await ops.activeCaChain())[0];
      const again = await ops.publishCaChain(pki.ca.chainPem, 'Lab chain (again)');
      assert.equal(again.sysId, first?.sysId);
      assert.equal(instance.admin.tables.query('sys_ca_certificate').length, before);
      assert.equal(instance.admin.tables.query('sys_attachment').length, attachmentsBefore);
      assert.equal(ops.client.stats.byStatus['201'], undefined, 'nothing was created');
    });

    it('reports the active chain with every certificate of its attachment', async () => {
      const [chain, ...rest] = await ops.activeCaChain();
      assert.equal(rest.length, 0);
      assert.deepEqual(chain?.certificates.map((c) => c.sha256), [pki.ca.intermediate.cert.sha256, pki.ca.root.cert.sha256]);
    });

    it('refuses a chain or a leaf that holds a private key, sending nothing', async () => {
      ops.client.resetStats();
      const chainErr = await rejection(ops.publishCaChain(pki.ca.chainPem + pki.ca.intermediate.keyPem, 'with key'));
      assert.equal(chainErr.code, 'PRIVATE_KEY_REFUSED');
      const leafErr = await rejection(ops.publishLeaf(leafA.certPem + leafA.keyPem, user['sys_id'] as string, 'with key'));
      assert.equal(leafErr.code, 'PRIVATE_KEY_REFUSED');
      assert.equal(ops.client.stats.requests, 0);
    });

    it('publishes a leaf for the MID user (client_cert) and the MID heartbeats Up with it', async () => {
      const calls = trace(ops);
      const record = await ops.publishLeaf(leafA.certPem, user['sys_id'] as string, 'mid01 leaf A');
      assert.ok(calls.indexOf('POST /api/now/attachment/file') < calls.indexOf('POST /api/now/table/sys_user_certificate'));
      assert.equal(record.published, true);
      assert.equal(record.user, user['sys_id']);
      assert.equal(record.sha256, leafA.cert.sha256);
      assert.equal(instance.admin.tables.get('sys_user_certificate', record.sysId)?.['type'], 'client_cert');
      assert.equal((await heartbeat(instance, leafA, 'mid01')).status, 200);
    });

    it('is idempotent for leaves, and uploads only the leaf of a PEM that carries its chain', async () => {
      const count = (): number => instance.admin.tables.query('sys_user_certificate').length;
      const before = count();
      const again = await ops.publishLeaf(leafA.certPem, user['sys_id'] as string, 'mid01 leaf A again');
      assert.equal(count(), before);
      assert.equal(again.sha256, leafA.cert.sha256);
      const leafC = await client('mid01-c');
      const withChain = await ops.publishLeaf(leafC.certPem + pki.ca.chainPem, user['sys_id'] as string, 'mid01 leaf C');
      const [attachment] = instance.admin.tables.query('sys_attachment', `table_sys_id=${withChain.sysId}`);
      const body = await ops.client.downloadAttachment(attachment?.['sys_id'] as string);
      assert.deepEqual(readCertificates(body).map((c) => c.sha256), [leafC.cert.sha256]);
      await ops.retireLeaf(withChain.sysId);
    });

    it('lists the user\'s leaves and retires all but the one to keep', async () => {
      const leafB = await client('mid01-b');
      const b = await ops.publishLeaf(leafB.certPem, user['sys_id'] as string, 'mid01 leaf B');
      const listed = await ops.listLeaves(user['sys_id'] as string);
      assert.ok(listed.some((l) => l.sha256 === leafA.cert.sha256 && l.active));
      assert.ok(listed.some((l) => l.sysId === b.sysId && l.active && l.published));
      // Fingerprints compare in any format: colons, upper case.
      const keep = (b.sha256.toUpperCase().match(/../g) as string[]).join(':');
      const retired = await ops.retireOldLeaves(user['sys_id'] as string, keep);
      assert.deepEqual(retired.map((r) => r.sha256), [leafA.cert.sha256]);
      assert.equal(retired[0]?.active, false);
      const after = await ops.listLeaves(user['sys_id'] as string);
      assert.deepEqual(after.filter((l) => l.active).map((l) => l.sysId), [b.sysId]);
      // The instance no longer accepts the retired leaf; the kept one works.
      assert.equal((await heartbeat(instance, leafA, 'mid01')).status, 401);
      assert.equal((await heartbeat(instance, leafB, 'mid01')).status, 200);
      leafA = leafB;
    });

    it('refuses to retire anything while the leaf to keep is not published (LEAF_NOT_PUBLISHED)', async () => {
      const err = await rejection(ops.retireOldLeaves(user['sys_id'] as string, 'ab'.repeat(32)));
      assert.equal(err.code, 'LEAF_NOT_PUBLISHED');
      assert.equal((await ops.listLeaves(user['sys_id'] as string)).filter((l) => l.active).length, 1);
    });

    it('reads the MID record, or undefined for an unknown MID', async () => {
      assert.equal(await ops.midStatus('no-such-mid'), undefined);
      const status = await ops.midStatus('mid01');
      assert.equal(status?.status, 'Up');
      assert.equal(status?.validated, 'true');
      assert.equal(status?.isUsingCustomCert, true);
      assert.equal(status?.hostName, 'mid01.lab.invalid');
      assert.equal(status?.version, 'Xanadu');
      assert.ok(Math.abs((status?.lastRefreshed?.getTime() ?? 0) - Date.now()) < 5000);
    });

    it('waitForMidUp ignores an Up from before `since` and returns on the next heartbeat', async () => {
      assert.equal((await heartbeat(instance, leafA, 'mid01')).status, 200);
      const since = new Date();
      const stale = await rejection(ops.waitForMidUp('mid01', { since, timeoutMs: 400, eccRoundTrip: false }));
      assert.equal(stale.code, 'HEALTH_CHECK_FAILED');
      assert.match(stale.message, /status Up/);
      const waiting = ops.waitForMidUp('mid01', { since, timeoutMs: 10_000, eccRoundTrip: false });
      await new Promise((r) => setTimeout(r, 1100)); // last_refreshed has whole seconds
      assert.equal((await heartbeat(instance, leafA, 'mid01')).status, 200);
      const up = await waiting;
      assert.ok((up.lastRefreshed?.getTime() ?? 0) > since.getTime());
      assert.equal((await ops.waitForMidUp('mid01', { timeoutMs: 1000, eccRoundTrip: false })).status, 'Up', 'without since any Up counts');
      // Up with a fresh timestamp is not enough by default: the ECC round trip must come back (vendor-facts §7, protocol §7).
      const silent = await rejection(ops.waitForMidUp('mid01', { timeoutMs: 600 }));
      assert.match(silent.message, /did not answer the ECC queue command midcert\.ping/);
    });

    it('waitForMidUp times out for a MID that has no record', async () => {
      const err = await rejection(ops.waitForMidUp('ghost', { timeoutMs: 200 }));
      assert.equal(err.code, 'HEALTH_CHECK_FAILED');
      assert.match(err.message, /no ecc_agent record/);
    });

    it('adds capabilities once (the lab has no ecc_agent_capability table: names are stored)', async () => {
      const agent = await ops.midStatus('mid01');
      assert.deepEqual(await ops.addCapabilities('mid01', ['ALL', 'SSH']), { added: ['ALL', 'SSH'], present: [] });
      assert.deepEqual(await ops.addCapabilities('mid01', ['SSH', 'Windows']), { added: ['Windows'], present: ['SSH'] });
      const rows = instance.admin.tables.query('ecc_agent_capability_m2m', `agent=${agent?.sysId}`);
      assert.deepEqual(rows.map((r) => r['capability']).sort(), ['ALL', 'SSH', 'Windows']);
      assert.equal((await rejection(ops.addCapabilities('ghost', ['ALL']))).code, 'MID_NOT_FOUND');
    });

    // vendor-facts §5: invalidating an mTLS MID queues delete_mid_keypair, which deletes its certificate,
    // and it "cannot be re-keyed or validated as a UI action" (SND install-mid-mutual-auth.md). The old
    // test expected validated=false here; the vendor says that was wrong.
    it('never invalidates an mTLS MID (refused, nothing queued)', async () => {
      const err = await rejection(ops.invalidateMid('mid01'));
      assert.equal(err.code, 'USAGE');
      assert.equal((await rejection(ops.invalidateForConversion('mid01'))).code, 'USAGE');
      assert.equal(instance.admin.tables.query('ecc_agent', 'name=mid01')[0]?.['validated'], 'true');
      assert.equal(instance.admin.tables.query('ecc_queue', 'source=delete_mid_keypair').length, 0);
      assert.equal((await rejection(ops.invalidateMid('ghost'))).code, 'MID_NOT_FOUND');
    });
  });

  describe('publish status words and waiting', () => {
    it('treats "Active" as published too', async () => {
      const instance = await launch({ publishWord: 'Active', publishDelayMs: 50 });
      const ops = operations(instance);
      const record = await ops.publishCaChain(pki.ca.chainPem, 'Lab chain');
      assert.equal(record.publishStatus, 'Active');
      assert.equal(record.published, true);
      assert.equal((await ops.activeCaChain()).length, 1);
    });

    it('INSTANCE_PUBLISH_TIMEOUT while Pending; a later call waits for the same record instead of uploading again', async () => {
      const instance = await launch({ publishDelayMs: 1500 });
      const impatient = operations(instance, { publishTimeoutMs: 200 });
      const err = await rejection(impatient.publishCaChain(pki.ca.chainPem, 'Lab chain'));
      assert.equal(err.code, 'INSTANCE_PUBLISH_TIMEOUT');
      assert.match(err.message, /"Pending"/);
      const record = await operations(instance).publishCaChain(pki.ca.chainPem, 'Lab chain');
      assert.equal(record.published, true);
      assert.equal(instance.admin.tables.query('sys_ca_certificate').length, 1);
      assert.equal(instance.admin.tables.query('sys_attachment').length, 1);
    });

    // vendor-facts §10: the instance does not deactivate the old chain; midcert does, explicitly, after the swap.
    it('normalizes what it uploads (no Bag Attributes, no CRLF); both chains stay active until retireOtherCaChains', async () => {
      const instance = await launch({ publishDelayMs: 20 });
      const ops = operations(instance);
      const first = await ops.publishCaChain(pki.ca.chainPem, 'old');
      const next = await makePki('Next');
      const messy = `Bag Attributes\r\n    friendlyName: issuing\r\n${next.ca.chainPem.replace(/\n/g, '\r\n')}`;
      const second = await ops.publishCaChain(messy, 'new');
      const [attachment] = instance.admin.tables.query('sys_attachment', `table_sys_id=${second.sysId}`);
      const body = (await ops.client.downloadAttachment(attachment?.['sys_id'] as string)).toString();
      assert.equal(body, [next.ca.intermediate.cert, next.ca.root.cert].map(certificateToPem).join(''));
      // Both active; their order is by sys_created_on, which has whole seconds (a tie may go either way).
      assert.deepEqual((await ops.activeCaChain()).map((c) => c.sysId).sort(), [second.sysId, first.sysId].sort());
      const retired = await ops.retireOtherCaChains(next.ca.chainPem);
      assert.deepEqual(retired.map((r) => r.sysId), [first.sysId]);
      assert.deepEqual((await ops.activeCaChain()).map((c) => c.sysId), [second.sysId]);
      assert.equal(instance.admin.tables.get('sys_ca_certificate', first.sysId)?.['active'], 'false');
      assert.equal(instance.admin.tables.query('sys_ca_certificate').length, 2, 'deactivated, never deleted');
    });
  });

  describe('preflightInstance', () => {
    let instance: StartedInstance;
    let ops: InstanceOperations;
    const byName = async (mids?: string[], o = ops): Promise<Record<string, { ok: boolean; severity: string; code: string; message: string }>> =>
      Object.fromEntries((await o.preflightInstance(mids)).map((c) => [c.name, c]));

    before(async () => {
      instance = await launch({ publishDelayMs: 20 });
      ops = operations(instance);
      instance.admin.addUser({ userName: 'mid.ready', roles: ['mid_server'] });
    });

    it('passes a fresh instance except for the missing CA chain (a warning), in a fixed order', async () => {
      const checks = await ops.preflightInstance();
      assert.deepEqual(checks.map((c) => c.name), ['adcv2', 'supports-tls', 'mutual-auth-plugin', 'tls-sni', 'ca-chain', 'credentials']);
      const failing = checks.filter((c) => !c.ok);
      assert.deepEqual(failing.map((c) => [c.name, c.severity, c.code]), [['ca-chain', 'warning', 'CA_CHAIN_MISSING']]);
      assert.ok(checks.filter((c) => c.ok).every((c) => c.code === 'OK' && c.severity === 'info'));
    });

    it('ca-chain passes once a chain is published', async () => {
      await ops.publishCaChain(pki.ca.chainPem, 'Lab chain');
      const checks = await byName();
      assert.equal(checks['ca-chain']?.ok, true);
      assert.match(checks['ca-chain']?.message ?? '', /2 certificates/);
    });

    // SND verify-adcv2-inbound-mtls-enabled.md: "anything other than true, inbound mTLS support isn't
    // activated" (vendor-facts §2). The old test passed `mixed`; the vendor says that was wrong.
    it('supports-tls: only true passes; false and mixed are MTLS_NOT_SUPPORTED errors quoting the body', async () => {
      instance.admin.setSupportsTls('false');
      assert.deepEqual(pick((await byName())['supports-tls']), [false, 'error', 'MTLS_NOT_SUPPORTED']);
      instance.admin.setSupportsTls('mixed');
      const mixed = (await byName())['supports-tls'];
      assert.deepEqual(pick(mixed), [false, 'error', 'MTLS_NOT_SUPPORTED']);
      assert.match(mixed?.message ?? '', /"mixed"/);
      instance.admin.setSupportsTls('true');
      assert.equal((await byName())['supports-tls']?.ok, true);
    });

    it('mutual-auth-plugin: inactive is an error; "true" and "active" both pass', async () => {
      instance.admin.setPlugin('com.glide.auth.mutual', false);
      assert.deepEqual(pick((await byName())['mutual-auth-plugin']), [false, 'error', 'MUTUAL_AUTH_PLUGIN_INACTIVE']);
      instance.admin.setPlugin('com.glide.auth.mutual', 'true');
      assert.equal((await byName())['mutual-auth-plugin']?.ok, true);
      instance.admin.setPlugin('com.glide.auth.mutual', true);
      assert.equal((await byName())['mutual-auth-plugin']?.ok, true);
    });

    it('tls-sni: glide.outbound.tls_sni.enabled=false is an error (mTLS MIDs go Down)', async () => {
      instance.admin.setProperty('glide.outbound.tls_sni.enabled', 'false');
      const sni = (await byName())['tls-sni'];
      assert.deepEqual(pick(sni), [false, 'error', 'TLS_SNI_DISABLED']);
      assert.match(sni?.message ?? '', /mTLS MIDs go Down/);
      instance.admin.setProperty('glide.outbound.tls_sni.enabled', 'true');
      assert.equal((await byName())['tls-sni']?.ok, true);
    });

    it('mid-users: every named MID needs its user with mid_server', async () => {
      assert.equal((await byName(['ready']))['mid-users']?.ok, true);
      const users = (await byName(['ready', 'missing']))['mid-users'];
      assert.deepEqual(pick(users), [false, 'error', 'MID_USER_NOT_FOUND']);
      assert.match(users?.message ?? '', /mid\.missing/);
      assert.doesNotMatch(users?.message ?? '', /mid\.ready/);
    });

    it('credentials: a wrong password fails it and skips the checks that need a login, never throwing', async () => {
      const wrong = operations(instance, {}, { username: ADMIN.username, password: 'not-the-password' });
      const checks = await byName(['ready'], wrong);
      assert.deepEqual(pick(checks['credentials']), [false, 'error', 'INSTANCE_AUTH']);
      for (const name of ['mutual-auth-plugin', 'tls-sni', 'ca-chain', 'mid-users']) assert.equal(checks[name]?.code, 'CHECK_SKIPPED', name);
      assert.equal(checks['adcv2']?.ok, true, 'the ADCv2 probes need no login');
      assert.ok(!JSON.stringify(checks).includes('not-the-password'));
    });

    it('adcv2: an endpoint without Server: snow_adc fails it', async () => {
      const server = createServer({ cert: pki.server.certPem + pki.ca.intermediate.certPem, key: pki.server.keyPem }, (_req, res) => {
        res.setHeader('Server', 'nginx');
        res.end('true');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const port = (server.address() as { port: number }).port;
        const plain = new InstanceOperations(new InstanceClient({
          url: `https://127.0.0.1:${port}`, auth: { kind: 'basic', ...ADMIN }, caPem: pki.ca.root.certPem, retries: 0,
        }));
        opened.push(plain);
        const checks = await byName(undefined, plain);
        assert.deepEqual(pick(checks['adcv2']), [false, 'error', 'INSTANCE_NOT_ADCV2']);
        assert.match(checks['adcv2']?.message ?? '', /nginx/);
        assert.equal(checks['supports-tls']?.ok, true);
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });

    it('reports an unreachable instance as findings', async () => {
      const gone = await start(pki);
      const url = gone.url;
      await gone.close();
      const unreachable = new InstanceOperations(new InstanceClient({
        url, auth: { kind: 'basic', ...ADMIN }, caPem: pki.ca.root.certPem, retries: 0,
      }));
      opened.push(unreachable);
      const checks = await unreachable.preflightInstance();
      assert.deepEqual(pick(checks.find((c) => c.name === 'adcv2')), [false, 'error', 'INSTANCE_UNAVAILABLE']);
      assert.deepEqual(pick(checks.find((c) => c.name === 'credentials')), [false, 'error', 'INSTANCE_UNAVAILABLE']);
    });
  });
});

describe('controller instance client: waitForMidUp with a skewed instance clock', () => {
  /** A stand-in client: the instance clock runs 10 s ahead of ours; the MID heartbeated at `beatAt` (instance time). */
  const skewed = (beatAt: number): InstanceClient => ({
    clockOffsetMs: () => 10_000,
    tableGet: async (): Promise<TableRecord[]> => [{
      sys_id: 'a'.repeat(32), name: 'mid01', status: 'Up', validated: 'true',
      last_refreshed: new Date(beatAt).toISOString().replace('T', ' ').slice(0, 19),
    }],
  }) as unknown as InstanceClient;

  it('places `since` on the instance clock, so a heartbeat from before the restart does not count', async () => {
    const since = new Date(Math.floor(Date.now() / 1000) * 1000);
    // 5 s after `since` by the instance's clock is still 5 s before the restart.
    const err = await waitForMidUp(skewed(since.getTime() + 5000), 'mid01', { since, timeoutMs: 50, pollIntervalMs: 10, eccRoundTrip: false }).catch((e: unknown) => e);
    assert.equal((err as MidcertError).code, 'HEALTH_CHECK_FAILED');
    const up = await waitForMidUp(skewed(since.getTime() + 11_000), 'mid01', { since, timeoutMs: 50, pollIntervalMs: 10, eccRoundTrip: false });
    assert.equal(up.status, 'Up');
  });
});

function pick(check: { ok: boolean; severity: string; code: string } | undefined): [boolean | undefined, string | undefined, string | undefined] {
  return [check?.ok, check?.severity, check?.code];
}
