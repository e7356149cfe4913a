import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MidcertError } from '../../common/errors.js';
import { openStore, storePath, type Store } from '../../controller/store/index.js';
import { beginLine, PRIVATE_KEY_LABEL } from '../helpers/pem-text.js';

describe('controller/store: audit log', () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-store-audit-'));
    store = await openStore(dir, { actor: 'user:alice' });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses UPDATE and DELETE by trigger, even through raw SQL', async () => {
    await store.audit.record({ action: 'init', target: 'data-dir' });
    // Raw SQL on the store's own connection, bypassing the repositories: the schema refuses.
    await assert.rejects(store.sql.run("UPDATE audit SET actor = 'mallory'"), /append-only/);
    await assert.rejects(store.sql.run('DELETE FROM audit'), /append-only/);
    await assert.rejects(store.sql.run('DELETE FROM audit WHERE id = 1'), /append-only/);
    assert.equal(await store.sql.run("INSERT INTO audit (at, actor, action, result) VALUES ('t', 'raw', 'x', 'ok')"), 1);
    if (store.sql.dialect === 'sqlite') {
      // And through a connection that is not midcert's at all.
      const raw = new Database(storePath(dir));
      try {
        assert.throws(() => raw.prepare("UPDATE audit SET actor = 'mallory'").run(), /append-only/);
        assert.throws(() => raw.prepare('DELETE FROM audit').run(), /append-only/);
        assert.throws(() => raw.prepare('DELETE FROM audit WHERE id = 1').run(), /append-only/);
        raw.prepare("INSERT INTO audit (at, actor, action, result) VALUES ('t', 'raw2', 'x', 'ok')").run();
      } finally {
        raw.close();
      }
    }
    const expected = store.sql.dialect === 'sqlite' ? ['raw2', 'raw', 'user:alice'] : ['raw', 'user:alice'];
    assert.deepEqual((await store.audit.list()).map((a) => a.actor), expected);
  });

  it('records who, what, target and result; lists newest first with filters', async () => {
    await store.agents.add({ name: 'mid01', address: '10.0.0.1:7443' });
    await assert.rejects(store.agents.add({ name: 'mid01', address: '10.0.0.1:7443' }));
    await store.audit.record({ action: 'agent-identity.sign', target: 'agent:mid01', params: { days: 730 }, actor: 'user:bob' });
    const all = await store.audit.list();
    assert.deepEqual(all.map((a) => [a.actor, a.action, a.result, a.errorCode]), [
      ['user:bob', 'agent-identity.sign', 'ok', null],
      ['user:alice', 'agent.add', 'error', 'AGENT_EXISTS'],
      ['user:alice', 'agent.add', 'ok', null],
    ]);
    assert.ok(all.every((a) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(a.at)));
    assert.equal((await store.audit.list({ limit: 1 })).length, 1);
    assert.equal((await store.audit.list({ action: 'agent.add' })).length, 2);
    assert.deepEqual((await store.audit.list({ afterId: all[1]?.id })).map((a) => a.action), ['agent-identity.sign']);
  });

  it('keeps secrets out of params and bounds their size', async () => {
    const rec = await store.audit.record({
      action: 'instance.configure',
      params: { url: 'https://x', password: 'hunter2', nested: { clientToken: 'abc', keyPem: beginLine(PRIVATE_KEY_LABEL) }, note: 'n'.repeat(2000) },
    });
    const text = JSON.stringify(rec.params);
    assert.doesNotMatch(text, /hunter2|abc/);
    assert.ok(!text.includes(PRIVATE_KEY_LABEL), 'no key armour in the audit row');
    assert.equal(rec.params.url, 'https://x');
    assert.ok((rec.params.note as string).length < 600);
    const big = await store.audit.record({ action: 'x', params: { list: Array.from({ length: 200 }, () => 'y'.repeat(500)) } });
    assert.equal(big.params.truncated, true);
    await assert.rejects(store.audit.record({ action: 'Not A Verb' }), (err: MidcertError) => err.code === 'INTERNAL');
  });

  it('an audited mutation and its audit row commit or roll back together', async () => {
    await assert.rejects(store.audit.audited({ action: 'agent.add', target: 'agent:x' }, async () => {
      assert.equal(await store.sql.run("INSERT INTO agents (name, address, server_name, created_at, updated_at) VALUES ('x', 'x:1', 'x', 't', 't')"), 1);
      throw new MidcertError('AGENT_INVALID', 'refused after writing');
    }));
    assert.equal(await store.agents.get('x'), undefined);
    assert.deepEqual((await store.audit.list()).map((a) => [a.result, a.errorCode]), [['error', 'AGENT_INVALID']]);
  });
});
