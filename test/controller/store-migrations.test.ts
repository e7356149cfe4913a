import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MidcertError } from '../../common/errors.js';
import { applyMigrations, readVersion, type Migration } from '../../controller/store/migrations.js';
import { MIGRATIONS, SCHEMA_VERSION, openStore, storePath } from '../../controller/store/index.js';

describe('controller/store: opening and migrations', () => {
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-store-mig-')); });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('applies every migration once, then finds nothing to do on the next open', () => {
    const first = openStore(dir);
    assert.deepEqual(first.migrations.applied, MIGRATIONS.map((m) => m.version));
    const rows = first.db.prepare('SELECT version, applied_at FROM schema_migrations ORDER BY version').all() as Array<{ version: number; applied_at: string }>;
    first.close();
    const second = openStore(dir);
    assert.deepEqual(second.migrations, { applied: [], version: SCHEMA_VERSION });
    assert.deepEqual(second.db.prepare('SELECT version, applied_at FROM schema_migrations ORDER BY version').all(), rows);
    const tables = second.db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all();
    assert.deepEqual(tables, ['agents', 'audit', 'certificates', 'job_agents', 'job_steps', 'jobs', 'schema_migrations']);
    second.close();
  });

  it('uses WAL, a busy timeout, foreign keys and synchronous=NORMAL, in a 0600 file', async () => {
    const store = openStore(dir, { busyTimeoutMs: 1234 });
    assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(store.db.pragma('busy_timeout', { simple: true }), 1234);
    assert.equal(store.db.pragma('foreign_keys', { simple: true }), 1);
    assert.equal(store.db.pragma('synchronous', { simple: true }), 1); // NORMAL
    store.agents.add({ name: 'mid01', address: 'mid01.example.com:7443' }); // makes the -wal file
    assert.equal((await stat(storePath(dir))).mode & 0o777, 0o600);
    assert.equal((await stat(`${storePath(dir)}-wal`)).mode & 0o777, 0o600);
    store.close();
  });

  it('refuses a database written by a newer midcert, and leaves it untouched', () => {
    openStore(dir).close();
    const raw = new Database(storePath(dir));
    raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 5, 'from the future', new Date().toISOString());
    raw.close();
    assert.throws(() => openStore(dir), (err: MidcertError) => {
      assert.equal(err.code, 'STORE_TOO_NEW');
      assert.match(err.message, new RegExp(`version ${SCHEMA_VERSION + 5}`));
      return true;
    });
    const check = new Database(storePath(dir), { readonly: true });
    assert.equal(readVersion(check), SCHEMA_VERSION + 5);
    check.close();
  });

  it('applies pending migrations in one transaction: a failing one leaves the database as it was', () => {
    const db = new Database(storePath(dir));
    const now = (): string => new Date().toISOString();
    const base: Migration[] = [{ version: 1, name: 'one', sql: 'CREATE TABLE t1 (x INTEGER) STRICT' }];
    assert.deepEqual(applyMigrations(db, now, base), { applied: [1], version: 1 });
    const broken: Migration[] = [...base,
      { version: 2, name: 'two', sql: 'CREATE TABLE t2 (x INTEGER) STRICT' },
      { version: 3, name: 'three', sql: 'CREATE TABLE t3 (x NOT_A_TYPE) STRICT' }];
    assert.throws(() => applyMigrations(db, now, broken));
    assert.equal(readVersion(db), 1);
    assert.equal(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 't2'").pluck().get(), 0);
    // Later migrations are applied in version order even when listed out of order.
    const fixed: Migration[] = [{ version: 3, name: 'three', sql: 'ALTER TABLE t2 ADD COLUMN y TEXT' }, ...broken.slice(0, 2)];
    assert.deepEqual(applyMigrations(db, now, fixed), { applied: [2, 3], version: 3 });
    db.close();
  });

  it('reports a file that is not a database as STORE_UNAVAILABLE', async () => {
    await writeFile(storePath(dir), 'this is not sqlite '.repeat(100));
    assert.throws(() => openStore(dir), (err: MidcertError) => err.code === 'STORE_UNAVAILABLE');
  });
});
