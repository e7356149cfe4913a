import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MidcertError } from '../../common/errors.js';
import { parseControllerConfig } from '../../controller/config.js';
import { copyStore } from '../../controller/store/copy.js';
import { MIGRATIONS, SCHEMA_VERSION, openDatabaseAt, openStore, storePath, type Store, type StoreConfig } from '../../controller/store/index.js';
import { makeLabPki } from '../helpers/lab-pki.js';
import { PROFILES } from '../../pki/issue.js';
import { startPostgres, type PgDatabase, type PgPeer } from '../helpers/postgres.js';

const code = (expected: string, text?: RegExp) => (err: MidcertError): boolean => {
  assert.equal(err.code, expected, err.message);
  if (text) assert.match(err.message, text);
  return true;
};

interface Column { table_name: string; column_name: string; is_nullable: string }

/** The store on a real PostgreSQL (scripts/peers/start-postgres.sh): schema parity with SQLite, TLS, credentials, migrations, `store migrate`. */
describe('controller/store on PostgreSQL', function () {
  this.timeout(60_000);
  let peer: PgPeer;
  let dir: string;
  const stores: Store[] = [];
  const pgConfig = (db: PgDatabase, extra: Partial<StoreConfig> = {}): StoreConfig => ({ url: db.url, passwordFile: db.passwordFile, ...extra });
  const open = async (config?: StoreConfig, actor = 'user:test'): Promise<Store> => {
    const store = await openStore(dir, { config, actor });
    stores.push(store);
    return store;
  };

  before(async () => { peer = await startPostgres(); });
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-pg-')); });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('migrates to the same tables and columns as SQLite, once, even when two controllers open a fresh database at once', async () => {
    const db = await peer.createDatabase('schema');
    const [a, b] = await Promise.all([open(pgConfig(db)), open(pgConfig(db))]);
    assert.deepEqual([...a!.migrations.applied, ...b!.migrations.applied].sort(), MIGRATIONS.map((m) => m.version));
    assert.equal(a!.backend, 'postgresql');
    const versions = await a!.sql.all<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(versions.map((v) => v.version), MIGRATIONS.map((m) => m.version));
    assert.equal(a!.migrations.version, SCHEMA_VERSION);

    const pgColumns = await a!.sql.all<Column>(`SELECT table_name, column_name, is_nullable FROM information_schema.columns
      WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`);
    const lite = await open();
    const tables = (await lite.sql.all<{ name: string }>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")).map((t) => t.name);
    const liteColumns: Column[] = [];
    for (const table of tables) {
      for (const c of await lite.sql.all<{ name: string; notnull: number; pk: number }>(`SELECT name, "notnull", pk FROM pragma_table_info('${table}')`)) {
        liteColumns.push({ table_name: table, column_name: c.name, is_nullable: c.notnull || c.pk ? 'NO' : 'YES' });
      }
    }
    const key = (c: Column): string => `${c.table_name}.${c.column_name} null=${c.is_nullable}`;
    assert.deepEqual(pgColumns.map(key).sort(), liteColumns.map(key).sort());
    // The audit log is append-only on PostgreSQL too.
    await a!.audit.record({ action: 'test.write', target: 't' });
    await assert.rejects(a!.sql.run("UPDATE audit SET actor = 'x'"), code('RECORD_CONFLICT', /append-only/));
    await assert.rejects(a!.sql.run('DELETE FROM audit'), code('RECORD_CONFLICT', /append-only/));
  });

  it('runs the repositories: names sort bytewise, ids come from the database, states are compare-and-set', async () => {
    const store = await open(pgConfig(await peer.createDatabase('repo')));
    for (const name of ['mid-b', 'MID-A', 'mid-a', 'mid10', 'mid9']) await store.agents.add({ name, address: `${name}.example:7443`, tags: ['dc:1'] });
    assert.deepEqual((await store.agents.list()).map((a) => a.name), ['MID-A', 'mid-a', 'mid-b', 'mid10', 'mid9']);
    assert.deepEqual((await store.agents.list({ tags: ['dc:1'], names: ['mid9'] })).map((a) => a.name), ['mid9']);
    await assert.rejects(store.agents.list({ names: ['ghost'] }), code('AGENT_NOT_FOUND'));
    await assert.rejects(store.agents.add({ name: 'mid9', address: 'x.example:1' }), code('AGENT_EXISTS'));
    const job = await store.jobs.create({ kind: 'rotate', agents: ['mid9', { name: 'mid10', wave: 1 }] });
    await store.jobs.transition(job.id, 'running');
    const step = await store.jobSteps.start(job.id, null, 'publish-chain');
    await store.jobSteps.finish(step.id, 'succeeded');
    assert.equal((await store.jobSteps.start(job.id, null, 'publish-chain')).attempt, 2);
    await store.jobAgents.advance(job.id, 'mid9', 'preparing');
    await assert.rejects(store.jobAgents.advance(job.id, 'mid9', 'succeeded'), code('STATE_TRANSITION_INVALID'));
    await store.jobAgents.advance(job.id, 'mid9', 'failed', { errorCode: 'CA_REJECTED', errorMessage: 'no' });
    await store.jobs.transition(job.id, 'failed', { code: 'CA_REJECTED', message: 'no' });
    assert.deepEqual((await store.jobAgents.list(job.id)).map((r) => [r.agentName, r.state]), [['mid9', 'failed'], ['mid10', 'skipped']]);
    assert.equal((await store.jobs.agentCounts(job.id)).skipped, 1);
    // Empty IN lists: PostgreSQL refuses a NUL byte in text, so the "no such value" stand-in is not one.
    assert.equal((await store.jobs.holders([])).size, 0);
    assert.deepEqual(await store.jobs.list({ states: [] }), []);
    assert.equal((await store.jobAgents.latestFor([])).size, 0);
    const latest = await store.jobAgents.latestFor(['mid9', 'mid10', 'mid-a']);
    assert.deepEqual([...latest].map(([name, h]) => [name, h.jobId, h.agentState, h.errorCode]).sort(), [['mid10', job.id, 'skipped', null], ['mid9', job.id, 'failed', 'CA_REJECTED']]);
    const pki = await makeLabPki();
    const cert = await store.certificates.recordIssued({ agentName: 'mid9', pem: pki.leaf.certPem, jobId: job.id });
    await store.certificates.setStatus(cert.sha256, 'installed');
    assert.equal((await store.certificates.latestPerAgent('installed'))[0]?.sha256, cert.sha256);
    const snapshot = await store.metrics.snapshot();
    assert.deepEqual(snapshot.rotations.map((r) => [r.kind, r.result, r.count]).sort(), [['rotate', 'failed', 1], ['rotate', 'skipped', 1]]);
    assert.equal(snapshot.installed[0]?.record.sha256, cert.sha256);
    // Issued and installed in one write (ON CONFLICT DO NOTHING), again for a repeat.
    const second = (await pki.ca.issueIdentity('CN=mid10,O=Acme', PROFILES.client, { days: 30 })).certPem;
    const rotated = await store.certificates.recordInstalled({ agentName: 'mid10', pem: second, jobId: job.id });
    assert.deepEqual([rotated.status, rotated.issuedAt === rotated.installedAt], ['installed', true]);
    assert.deepEqual(await store.certificates.recordInstalled({ agentName: 'mid10', pem: second, jobId: job.id }), rotated);
    await assert.rejects(store.certificates.recordInstalled({ agentName: 'mid9', pem: second }), code('RECORD_CONFLICT'));
    assert.deepEqual((await store.audit.list({ target: `certificate:${rotated.sha256}`, action: 'certificate.status' })).map((a) => [a.result, a.params.to]), [['ok', 'installed']]);
    assert.deepEqual((await store.audit.list({ target: 'agent:mid10', action: 'certificate.issue' })).map((a) => [a.result, a.params.sha256, a.params.jobId, a.actor]), [['ok', rotated.sha256, job.id, 'user:test']]);
  });

  it('locks rows FOR NO KEY UPDATE: a certificate record of a job does not wait for a transaction holding the job row', async () => {
    const db = await peer.createDatabase('nokey');
    const store = await open(pgConfig(db));
    const other = await open(pgConfig(db), 'user:other');
    await store.agents.add({ name: 'mid1', address: 'mid1.example:7443' });
    const job = await store.jobs.create({ kind: 'rotate' });
    const pki = await makeLabPki();
    const pem = (await pki.ca.issueIdentity('CN=mid1,O=Acme', PROFILES.client, { days: 30 })).certPem;
    const recorded = await store.sql.writeRows(async () => {
      // What jobs.addAgents and jobs.transition hold while MIDs join or the job moves.
      await store.sql.get(`SELECT id FROM jobs WHERE id = ?${store.sql.forUpdate}`, [job.id]);
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('the certificate record waited for the job row')), 3000); });
      try {
        return await Promise.race([other.certificates.recordInstalled({ agentName: 'mid1', pem, jobId: job.id }), waited]);
      } finally {
        clearTimeout(timer);
      }
    });
    assert.deepEqual([recorded.status, recorded.jobId], ['installed', job.id]);
    // Writers of the row still queue behind the holder.
    const order: string[] = [];
    let second: Promise<void> | undefined;
    await store.sql.writeRows(async () => {
      await store.sql.get(`SELECT id FROM jobs WHERE id = ?${store.sql.forUpdate}`, [job.id]);
      second = other.sql.writeRows(async () => { await other.sql.get(`SELECT id FROM jobs WHERE id = ?${other.sql.forUpdate}`, [job.id]); order.push('second'); });
      await new Promise((r) => setTimeout(r, 200));
      order.push('first');
    });
    await second;
    assert.deepEqual(order, ['first', 'second']);
  });

  it('prepares each statement once per connection, and prepares it again after another process changed the table under it', async () => {
    const db = await peer.createDatabase('prepared');
    const store = await open({ url: db.url, passwordFile: db.passwordFile, maxConnections: 1 });
    await store.agents.add({ name: 'mid1', address: 'mid1.example:7443' });
    const prepared = async (): Promise<number> => Number((await store.sql.get<{ n: number }>("SELECT count(*) AS n FROM pg_prepared_statements WHERE name LIKE 'midcert_%'"))?.n);
    const before = await prepared();
    assert.ok(before > 0, 'the statements so far are prepared');
    for (let i = 0; i < 5; i++) await store.agents.get('mid1');
    await store.agents.get('mid1');
    const steady = await prepared();
    for (let i = 0; i < 5; i++) await store.agents.get('mid1');
    assert.equal(await prepared(), steady, 'asking again prepares nothing new');
    // Long IN lists (one text per length) are not kept as prepared statements.
    await store.jobAgents.latestFor(Array.from({ length: 100 }, (_, i) => `mid${i}`));
    assert.equal(await prepared(), steady, 'a 100-name IN list is not prepared');
    // A newer controller adds a column: the cached plan of SELECT * no longer fits (0A000).
    const other = await open({ url: db.url, passwordFile: db.passwordFile });
    await other.sql.exec('ALTER TABLE agents ADD COLUMN extra_note TEXT');
    assert.equal((await store.agents.get('mid1'))?.name, 'mid1');
    assert.equal((await store.agents.list()).length, 1);
    // Inside a transaction it cannot run again: the transaction fails, saying why, and the next one works.
    await other.sql.exec('ALTER TABLE agents ADD COLUMN other_note TEXT');
    await assert.rejects(store.sql.write(() => store.sql.get('SELECT * FROM agents WHERE name = ?', ['mid1'])),
      (err: MidcertError) => err.code === 'STORE_UNAVAILABLE' && /schema changed under this controller/.test(err.message));
    assert.equal((await store.sql.write(() => store.sql.get<{ name: string }>('SELECT * FROM agents WHERE name = ?', ['mid1'])))?.name, 'mid1');
  });

  it('opens at most store.maxConnections connections, by default rotation.concurrency + 2 (at least 10)', async () => {
    const defaults = (yaml: string) => parseControllerConfig(`ca: { type: local }\n${yaml}`, '/tmp/c.yaml').store.maxConnections;
    assert.equal(defaults(''), 12, 'rotation.concurrency defaults to 10');
    assert.equal(defaults('rotation: { concurrency: 50 }\n'), 52);
    assert.equal(defaults('rotation: { concurrency: 3 }\n'), 10);
    assert.equal(defaults('rotation: { concurrency: 50 }\nstore: { maxConnections: 4 }\n'), 4);
    assert.throws(() => defaults('store: { maxConnections: 0 }\n'), /maxConnections/);
    const db = await peer.createDatabase('pool');
    const store = await open({ url: db.url, passwordFile: db.passwordFile, maxConnections: 3 });
    const count = async (): Promise<number> => Number((await store.sql.get<{ n: number }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE usename = current_user AND application_name = 'midcert'`))?.n);
    // Twelve slow statements at once: never more than three connections, and all twelve finish.
    let peak = 0;
    const sampling = setInterval(() => { void count().then((n) => { peak = Math.max(peak, n); }, () => undefined); }, 20);
    await Promise.all(Array.from({ length: 12 }, () => store.sql.get('SELECT pg_sleep(0.1)')));
    clearInterval(sampling);
    assert.ok((await count()) <= 3);
    assert.ok(peak <= 3, `peak ${peak} connections`);
  });

  it('authenticates with store.passwordFile, never shows a password, and speaks TLS verify-full', async () => {
    const db = await peer.createDatabase('auth');
    const wrong = join(dir, 'wrong.password');
    await writeFile(wrong, 'not-the-password-123\n', { mode: 0o600 });
    await assert.rejects(openStore(dir, { config: { url: db.url, passwordFile: wrong } }), (err: MidcertError) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE');
      assert.match(err.message, /refused the credentials \(28P01\)/);
      assert.doesNotMatch(err.message, /not-the-password/);
      return true;
    });
    const secret = (await readFile(db.passwordFile, 'utf8')).trim();
    const withPassword = db.url.replace(`${db.user}@`, `${db.user}:${encodeURIComponent(secret)}@`);
    await assert.rejects(openStore(dir, { config: { url: withPassword } }), (err: MidcertError) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.ok(!err.message.includes(secret), 'the password must not be echoed');
      return true;
    });
    // TLS: localhost's certificate verifies against the peer's server.crt.
    const tlsUrl = db.url.replace('127.0.0.1', 'localhost');
    const tls = await open({ url: tlsUrl, passwordFile: db.passwordFile, tls: { mode: 'verify-full', caFile: peer.caFile } });
    assert.deepEqual(await tls.sql.get('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), { ssl: true });
    // A CA that did not sign the server certificate is refused.
    const other = await makeLabPki();
    const otherCa = join(dir, 'other-ca.pem');
    await writeFile(otherCa, other.ca.chainPem);
    await assert.rejects(openStore(dir, { config: { url: tlsUrl, passwordFile: db.passwordFile, tls: { mode: 'verify-full', caFile: otherCa } } }), code('STORE_UNREACHABLE'));
    // libpq's Unix-socket form: the socket directory, percent-encoded, as the host; no TLS there.
    const socketUrl = db.url.replace('127.0.0.1', encodeURIComponent(join(peer.dir, 'sock')));
    const overSocket = await open({ url: socketUrl, passwordFile: db.passwordFile });
    assert.deepEqual(await overSocket.sql.get(`SELECT coalesce(inet_client_addr()::text, 'socket') AS client FROM pg_stat_activity WHERE pid = pg_backend_pid()`), { client: 'socket' });
    await assert.rejects(openStore(dir, { config: { url: socketUrl, passwordFile: db.passwordFile, tls: { mode: 'verify-full', caFile: peer.caFile } } }), code('CONFIG_INVALID', /no TLS over the Unix socket/));
    // A server that is not there: one line naming the database, exit 5 like every unreachable peer.
    const closed = db.url.replace(`:${peer.port}/`, ':1/');
    await assert.rejects(openStore(dir, { config: { url: closed, passwordFile: db.passwordFile } }), code('STORE_UNREACHABLE', /127\.0\.0\.1:1\/\S+: cannot reach the database: ECONNREFUSED/));
    // PGPASSFILE works when no passwordFile is configured.
    const pgpass = join(dir, 'pgpass');
    await writeFile(pgpass, `127.0.0.1:${peer.port}:${db.name}:${db.user}:${secret}\n`, { mode: 0o600 });
    const before = process.env.PGPASSFILE;
    process.env.PGPASSFILE = pgpass;
    try {
      const viaPgpass = await open({ url: db.url });
      assert.equal(viaPgpass.migrations.version, SCHEMA_VERSION);
    } finally {
      if (before === undefined) delete process.env.PGPASSFILE;
      else process.env.PGPASSFILE = before;
    }
  });

  it('store migrate: SQLite to PostgreSQL with ids kept, new ids after them, and refusals that change nothing', async () => {
    const lite = await open(undefined, 'user:alice');
    await lite.agents.add({ name: 'mid01', address: 'mid01.example:7443' });
    await lite.agents.add({ name: 'mid02', address: 'mid02.example:7443' });
    for (let i = 0; i < 3; i++) {
      const job = await lite.jobs.create({ kind: 'rotate', agents: ['mid01'] });
      await lite.jobs.transition(job.id, 'running');
      await lite.jobAgents.advance(job.id, 'mid01', 'skipped');
      await lite.jobs.transition(job.id, 'succeeded');
    }
    const liveJob = await lite.jobs.create({ kind: 'rotate', agents: ['mid02'] });
    const db = await peer.createDatabase('copy');
    const source = await openDatabaseAt(`sqlite:${storePath(dir)}`);
    const target = await openDatabaseAt(db.url, { passwordFile: db.passwordFile });
    try {
      // A job run by a live process: refused, the target untouched.
      await assert.rejects(copyStore(source, target, () => new Date().toISOString()), code('JOB_CONFLICT', new RegExp(`job ${liveJob.id} is being run by user:alice`)));
      await lite.jobs.transition(liveJob.id, 'cancelled');
      const report = await copyStore(source, target, () => new Date().toISOString());
      assert.equal(report.rows.agents, 2);
      assert.equal(report.rows.jobs, 4);
      assert.equal(report.rows.audit, (await lite.audit.list({ limit: 10_000 })).length);
      // A second copy into the now non-empty target is refused.
      await assert.rejects(copyStore(source, target, () => new Date().toISOString()), code('STORE_NOT_EMPTY'));
    } finally {
      await source.close();
      await target.close();
    }
    const pgStore = await open(pgConfig(db), 'user:bob');
    assert.deepEqual((await pgStore.jobs.list()).map((j) => [j.id, j.state, j.createdBy]), (await lite.jobs.list()).map((j) => [j.id, j.state, j.createdBy]));
    const next = await pgStore.jobs.create({ kind: 'rotate', agents: ['mid01'] });
    assert.equal(next.id, liveJob.id + 1);
    assert.deepEqual((await pgStore.audit.list({ limit: 1_000 })).map((a) => a.id).sort((x, y) => x - y).slice(0, 3), [1, 2, 3]);
  });
});
