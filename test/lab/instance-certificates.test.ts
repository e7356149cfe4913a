import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { PROFILES } from '../../pki/issue.js';
import { asAdmin, call, eventually, makePki, publishChain, randomSysId, start, uploadCertificate, type LabPki, type StartedInstance } from './instance-fixtures.js';

const SNOW_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

describe('lab instance: attachments and certificate publishing', function () {
  let pki: LabPki;
  let instance: StartedInstance;
  let midUser: string;

  before(async () => {
    pki = await makePki();
    instance = await start(pki, { publishDelayMs: 150, publishWord: 'Exists' });
    midUser = instance.admin.addUser({ userName: 'svc_mid', roles: ['mid_server'] })['sys_id'] as string;
  });
  after(async () => { await instance?.close(); });

  const statusOf = (table: string, id: string): string | undefined => instance.admin.tables.get(table, id)?.['publish_status'];

  describe('Attachment API', () => {
    it('stores a raw-body upload and returns the attachment record, lists it by table_sys_id and downloads it', async () => {
      const owner = randomSysId();
      const reply = await call(instance, `/api/now/attachment/file?table_name=ecc_queue&table_sys_id=${owner}&file_name=note.txt`, {
        auth: asAdmin, raw: 'hello attachment', headers: { 'Content-Type': 'text/plain' },
      });
      assert.equal(reply.status, 201);
      const record = reply.json.result;
      assert.deepEqual(
        { table_name: record.table_name, table_sys_id: record.table_sys_id, file_name: record.file_name, content_type: record.content_type, size_bytes: record.size_bytes },
        { table_name: 'ecc_queue', table_sys_id: owner, file_name: 'note.txt', content_type: 'text/plain', size_bytes: '16' },
      );
      assert.match(record.sys_id, /^[0-9a-f]{32}$/);
      const listed = await call(instance, `/api/now/attachment?sysparm_query=table_sys_id=${owner}`, { auth: asAdmin });
      assert.deepEqual(listed.json.result.map((a: { sys_id: string }) => a.sys_id), [record.sys_id]);
      const file = await call(instance, `/api/now/attachment/${record.sys_id}/file`, { auth: asAdmin });
      assert.equal(file.status, 200);
      assert.equal(file.text, 'hello attachment');
      assert.equal(file.headers['content-type'], 'text/plain');
      assert.equal((await call(instance, `/api/now/attachment/${record.sys_id}`, { auth: asAdmin })).json.result.file_name, 'note.txt');
      assert.equal((await call(instance, `/api/now/attachment/${randomSysId()}/file`, { auth: asAdmin })).status, 404);
    });

    it('deletes an attachment (204) and its content', async () => {
      const added = instance.admin.attach({ tableName: 'ecc_queue', tableSysId: randomSysId(), fileName: 'x.txt', contentType: 'text/plain', body: 'bye' });
      assert.equal((await call(instance, `/api/now/attachment/${added['sys_id']}`, { auth: asAdmin, method: 'DELETE' })).status, 204);
      assert.equal((await call(instance, `/api/now/attachment/${added['sys_id']}/file`, { auth: asAdmin })).status, 404);
    });

    for (const [label, query, contentType] of [
      ['an unknown table_name', 'table_name=u_nope&table_sys_id=00000000000000000000000000000000&file_name=a', 'text/plain'],
      ['a table_sys_id that is no sys_id', 'table_name=ecc_queue&table_sys_id=xyz&file_name=a', 'text/plain'],
      ['no file_name', 'table_name=ecc_queue&table_sys_id=00000000000000000000000000000000', 'text/plain'],
      ['no Content-Type', 'table_name=ecc_queue&table_sys_id=00000000000000000000000000000000&file_name=a', ''],
    ] as const) {
      it(`answers 400 for ${label}`, async () => {
        const reply = await call(instance, `/api/now/attachment/file?${query}`, { auth: asAdmin, raw: 'data', headers: contentType ? { 'Content-Type': contentType } : {} });
        assert.equal(reply.status, 400);
        assert.equal(reply.json.status, 'failure');
      });
    }

    const keyForms: Array<[string, () => Buffer]> = [
      ['a PKCS#8 PEM key', () => Buffer.from(pki.server.keyPem)],
      ['a bundle (certificate + PKCS#8 key)', () => Buffer.from(pki.server.certPem + pki.server.keyPem)],
      ['a PKCS#1 "RSA PRIVATE KEY"', () => Buffer.from(createPrivateKey(pki.server.keyPem).export({ format: 'pem', type: 'pkcs1' }) as string)],
      ['an encrypted PKCS#8 PEM key', () => Buffer.from(createPrivateKey(pki.server.keyPem).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }) as string)],
      ['a DER PKCS#8 key', () => createPrivateKey(pki.server.keyPem).export({ format: 'der', type: 'pkcs8' }) as Buffer],
    ];
    for (const [label, body] of keyForms) {
      it(`refuses ${label} with 400 and never stores it`, async () => {
        const owner = randomSysId();
        const reply = await call(instance, `/api/now/attachment/file?table_name=sys_user_certificate&table_sys_id=${owner}&file_name=mid.pem`, {
          auth: asAdmin, raw: body(), headers: { 'Content-Type': 'application/x-pem-file' },
        });
        assert.equal(reply.status, 400);
        assert.equal(reply.json.error.message, 'Invalid attachment');
        assert.match(reply.json.error.detail, /private key/);
        assert.equal(instance.admin.tables.query('sys_attachment', `table_sys_id=${owner}`).length, 0);
        assert.ok(instance.logLines.some((l) => l.includes('it holds a private key')));
      });
    }
  });

  describe('certificate records (attachment first, then insert with that sys_id)', () => {
    it('fills the read-only fields from the attachment and publishes after the delay, with the word "Exists"', async () => {
      const leaf = await pki.ca.issueIdentity('CN=mid-publish,O=midcert Lab', PROFILES.client, { keySpec: { type: 'ec', curve: 'P-256' } });
      const began = Date.now();
      const record = await uploadCertificate(instance, 'sys_user_certificate', leaf.certPem, { user: midUser });
      assert.equal(record.publish_status, 'Pending');
      assert.equal(record.type, 'client_cert');
      assert.equal(record.format, 'pem');
      assert.equal(record.active, 'true');
      assert.equal(record.subject, 'CN=mid-publish,O=midcert Lab');
      assert.equal(record.issuer, leaf.cert.issuerText);
      assert.equal(record.sha256_fingerprint, leaf.cert.sha256);
      assert.match(record.sha256_fingerprint, /^[0-9a-f]{64}$/);
      assert.match(record.expires, SNOW_TIME);
      assert.equal(record.expires, leaf.cert.notAfter.toISOString().slice(0, 19).replace('T', ' '));
      await eventually(() => (statusOf('sys_user_certificate', record.sys_id) === 'Exists' ? true : undefined));
      assert.ok(Date.now() - began >= 140, 'not published before the delay');
    });

    it('uses the configured word "Active" on an instance set up like the community guides', async () => {
      const other = await start(pki, { publishDelayMs: 50, publishWord: 'Active' });
      try {
        const record = await uploadCertificate(other, 'sys_ca_certificate', pki.ca.chainPem);
        assert.equal(record.type, 'trust_store_ca');
        assert.equal(record.subject, pki.ca.intermediate.cert.subjectText, 'the fields describe the first certificate of the chain');
        await eventually(() => (other.admin.tables.get('sys_ca_certificate', record.sys_id)?.['publish_status'] === 'Active' ? true : undefined));
      } finally {
        await other.close();
      }
    });

    it('ignores client writes to the read-only fields', async () => {
      const record = await uploadCertificate(instance, 'sys_ca_certificate', pki.ca.chainPem, {
        publish_status: 'Exists', subject: 'CN=forged', sha256_fingerprint: 'ab'.repeat(32), expires: '2099-01-01 00:00:00', issuer: 'CN=forged',
      });
      assert.equal(record.publish_status, 'Pending');
      assert.equal(record.subject, pki.ca.intermediate.cert.subjectText);
      assert.equal(record.sha256_fingerprint, pki.ca.intermediate.cert.sha256);
      const patched = await call(instance, `/api/now/table/sys_ca_certificate/${record.sys_id}`, { auth: asAdmin, method: 'PATCH', body: { subject: 'CN=forged', name: 'renamed' } });
      assert.equal(patched.json.result.subject, pki.ca.intermediate.cert.subjectText);
      assert.equal(patched.json.result.name, 'renamed');
    });

    it('never publishes a record inserted without an attachment (publish_status stays empty)', async () => {
      const reply = await call(instance, '/api/now/table/sys_user_certificate', { auth: asAdmin, body: { name: 'no attachment', user: midUser } });
      assert.equal(reply.status, 201);
      assert.equal(reply.json.result.publish_status, '');
      assert.equal(reply.json.result.sha256_fingerprint, '');
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(statusOf('sys_user_certificate', reply.json.result.sys_id), '');
      assert.ok(instance.logLines.some((l) => l.includes('saved with no attachment')));
    });

    it('never publishes a record whose certificate was attached only after the insert', async () => {
      const inserted = await call(instance, '/api/now/table/sys_ca_certificate', { auth: asAdmin, body: { name: 'attached too late' } });
      const id = inserted.json.result.sys_id;
      const attach = await call(instance, `/api/now/attachment/file?table_name=sys_ca_certificate&table_sys_id=${id}&file_name=chain.pem`, {
        auth: asAdmin, raw: pki.ca.chainPem, headers: { 'Content-Type': 'application/x-pem-file' },
      });
      assert.equal(attach.status, 201);
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(statusOf('sys_ca_certificate', id), '');
    });

    it('answers 400 when the attachment holds no certificate', async () => {
      const sysId = randomSysId();
      instance.admin.attach({ tableName: 'sys_ca_certificate', tableSysId: sysId, fileName: 'junk.pem', contentType: 'text/plain', body: 'not a certificate' });
      const reply = await call(instance, '/api/now/table/sys_ca_certificate', { auth: asAdmin, body: { sys_id: sysId, name: 'junk' } });
      assert.equal(reply.status, 400);
      assert.equal(reply.json.error.message, 'Invalid certificate');
      assert.equal(instance.admin.tables.get('sys_ca_certificate', sysId), undefined);
    });

    for (const [label, user] of [['no user', undefined], ['a user that is no sys_user', 'f'.repeat(32)]] as const) {
      it(`answers 400 for a sys_user_certificate with ${label}`, async () => {
        const reply = await call(instance, '/api/now/table/sys_user_certificate', { auth: asAdmin, body: { name: 'orphan', ...(user ? { user } : {}) } });
        assert.equal(reply.status, 400);
        assert.equal(reply.json.error.message, 'Invalid user');
      });
    }

    it('refuses to move a sys_user_certificate to a user that does not exist', async () => {
      const record = instance.admin.tables.insert('sys_user_certificate', { name: 'move me', user: midUser });
      const reply = await call(instance, `/api/now/table/sys_user_certificate/${record['sys_id']}`, { auth: asAdmin, method: 'PATCH', body: { user: 'e'.repeat(32) } });
      assert.equal(reply.status, 400);
      assert.equal(instance.admin.tables.get('sys_user_certificate', record['sys_id'] as string)?.['user'], midUser);
    });
  });

  describe('one active CA chain (option oneActiveChain; not vendor behaviour, vendor-facts §10)', () => {
    let instance: StartedInstance;
    before(async () => { instance = await start(pki, { publishDelayMs: 50, oneActiveChain: true }); });
    after(async () => { await instance?.close(); });
    const statusOf = (table: string, sysId: string): string | undefined => instance.admin.tables.get(table, sysId)?.['publish_status'];

    it('deactivates the previously active chain when a new one publishes, and trusts only the new one', async () => {
      const first = await publishChain(instance, pki.ca.chainPem);
      assert.deepEqual(instance.admin.trustAnchors().sort(), [pki.ca.intermediate.cert.sha256, pki.ca.root.cert.sha256].sort());
      const next = await makePki('Next Generation');
      const second = await uploadCertificate(instance, 'sys_ca_certificate', next.ca.chainPem);
      assert.equal(instance.admin.tables.get('sys_ca_certificate', first.sys_id)?.['active'], 'true', 'still active while the new chain is pending');
      await eventually(() => (statusOf('sys_ca_certificate', second.sys_id) === 'Exists' ? true : undefined));
      const live = instance.admin.tables.query('sys_ca_certificate', 'active=true^publish_statusINExists,Active');
      assert.deepEqual(live.map((r) => r['sys_id']), [second.sys_id]);
      assert.equal(instance.admin.tables.get('sys_ca_certificate', first.sys_id)?.['active'], 'false');
      assert.deepEqual(instance.admin.trustAnchors().sort(), [next.ca.intermediate.cert.sha256, next.ca.root.cert.sha256].sort());

      // Re-activating the old chain makes it the only active one again.
      instance.admin.tables.update('sys_ca_certificate', first.sys_id, { active: 'true' });
      assert.equal(instance.admin.tables.get('sys_ca_certificate', second.sys_id)?.['active'], 'false');
      assert.deepEqual(instance.admin.trustAnchors().sort(), [pki.ca.intermediate.cert.sha256, pki.ca.root.cert.sha256].sort());
    });

    it('trusts nothing once the active chain is deleted', async () => {
      for (const record of instance.admin.tables.query('sys_ca_certificate', 'active=true')) instance.admin.tables.delete('sys_ca_certificate', record['sys_id'] as string);
      assert.deepEqual(instance.admin.trustAnchors(), []);
    });
  });
});
