import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MidcertError } from '../../common/errors.js';
import { applyMigrations, readVersion, type Migration } from '../../controller/store/migrations.js';
import { openSqlite } from '../../controller/store/sqlite.js';
import { MIGRATIONS, SCHEMA_VERSION, openStore, storePath, type Store } from '../../controller/store/index.js';

/** `PRAGMA name` through the store's SQL surface: the one value of its one row. */
async function pragma(store: Store, name: string): Promise<unknown> {
  const row = await store.sql.get<Record<string, unknown>>(`PRAGMA ${name}`);
  assert.ok(row, `PRAGMA ${name} answered`);
  return Object.values(row)[0];
}

describe('controller/store: opening and migrations', () => {
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-store-mig-')); });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('applies every migration once, then finds nothing to do on the next open', async () => {
    const first = await openStore(dir);
    assert.equal(first.sql.dialect, 'sqlite', 'a data dir without store.url is SQLite');
    assert.deepEqual(first.migrations.applied, MIGRATIONS.map((m) => m.version));
    const rows = await first.sql.all<{ version: number; applied_at: string }>('SELECT version, applied_at FROM schema_migrations ORDER BY version');
    assert.equal(rows.length, MIGRATIONS.length);
    await first.close();
    const second = await openStore(dir);
    assert.deepEqual(second.migrations, { applied: [], version: SCHEMA_VERSION });
    assert.deepEqual(await second.sql.all('SELECT version, applied_at FROM schema_migrations ORDER BY version'), rows);
    const tables = (await second.sql.all<{ name: string }>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")).map((r) => r.name);
    assert.deepEqual(tables, ['agents', 'audit', 'certificates', 'job_agents', 'job_steps', 'jobs', 'leadership', 'owners', 'schema_migrations']);
    await second.close();
  });

  it('uses WAL, a busy timeout, foreign keys and synchronous=NORMAL, in a 0600 file', async () => {
    const store = await openStore(dir, { busyTimeoutMs: 1234 });
    assert.equal(store.sql.dialect, 'sqlite');
    assert.equal(await pragma(store, 'journal_mode'), 'wal');
    assert.equal(await pragma(store, 'busy_timeout'), 1234);
    assert.equal(await pragma(store, 'foreign_keys'), 1);
    assert.equal(await pragma(store, 'synchronous'), 1); // NORMAL
    await store.agents.add({ name: 'mid01', address: 'mid01.example.com:7443' }); // makes the -wal file
    assert.equal((await stat(storePath(dir))).mode & 0o777, 0o600);
    assert.equal((await stat(`${storePath(dir)}-wal`)).mode & 0o777, 0o600);
    await store.close();
  });

  it('refuses a database written by a newer midcert, and leaves it untouched', async () => {
    await (await openStore(dir)).close();
    const raw = new Database(storePath(dir));
    raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 5, 'from the future', new Date().toISOString());
    raw.close();
    await assert.rejects(openStore(dir), (err: MidcertError) => {
      assert.equal(err.code, 'STORE_TOO_NEW');
      assert.match(err.message, new RegExp(`version ${SCHEMA_VERSION + 5}`));
      return true;
    });
    const check = new Database(storePath(dir), { readonly: true });
    const { version } = check.prepare('SELECT max(version) AS version FROM schema_migrations').get() as { version: number };
    check.close();
    assert.equal(version, SCHEMA_VERSION + 5);
    const db = openSqlite(storePath(dir), dir, 5000);
    try {
      assert.equal(await readVersion(db), SCHEMA_VERSION + 5);
    } finally {
      await db.close();
    }
  });

  it('applies pending migrations in one transaction: a failing one leaves the database as it was', async () => {
    const db = openSqlite(storePath(dir), dir, 5000);
    try {
      const now = (): string => new Date().toISOString();
      // SQLite-only scripts: this test is about the transaction, not the dialects.
      const sqlite = (version: number, name: string, sql: string): Migration => ({ version, name, sql, postgresql: sql });
      const base: Migration[] = [sqlite(1, 'one', 'CREATE TABLE t1 (x INTEGER) STRICT')];
      assert.deepEqual(await applyMigrations(db, now, base), { applied: [1], version: 1 });
      const broken: Migration[] = [...base,
        sqlite(2, 'two', 'CREATE TABLE t2 (x INTEGER) STRICT'),
        sqlite(3, 'three', 'CREATE TABLE t3 (x NOT_A_TYPE) STRICT')];
      await assert.rejects(applyMigrations(db, now, broken));
      assert.equal(await readVersion(db), 1);
      assert.deepEqual(await db.get("SELECT count(*) AS n FROM sqlite_schema WHERE name = 't2'"), { n: 0 });
      // Later migrations are applied in version order even when listed out of order.
      const fixed: Migration[] = [sqlite(3, 'three', 'ALTER TABLE t2 ADD COLUMN y TEXT'), ...broken.slice(0, 2)];
      assert.deepEqual(await applyMigrations(db, now, fixed), { applied: [2, 3], version: 3 });
    } finally {
      await db.close();
    }
  });

  it('reports a file that is not a database as STORE_UNAVAILABLE', async () => {
    await writeFile(storePath(dir), 'this is not sqlite '.repeat(100));
    await assert.rejects(openStore(dir), (err: MidcertError) => err.code === 'STORE_UNAVAILABLE');
  });
});
