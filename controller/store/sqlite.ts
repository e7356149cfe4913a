import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { Mutex, TxScope, inSavepoint, type SqlDatabase, type SqlParam } from './sql.js';

/**
 * The default store: one SQLite file in the data dir, shared safely by the CLI and the daemon
 * on one host. WAL (readers never block the writer and the writer never blocks readers), a busy
 * timeout (a second writer waits instead of failing), synchronous=NORMAL (in WAL mode a power cut
 * can lose the last commits but never corrupts), foreign keys on. The file is created 0600 before
 * SQLite opens it; SQLite gives the -wal and -shm files the same mode.
 *
 * better-sqlite3 is synchronous and this process has one connection, so every statement and
 * transaction takes the connection's FIFO mutex: an async transaction's statements are never
 * interleaved with another task's.
 */
export function openSqlite(path: string, dataDir: string, busyTimeoutMs: number): SqlDatabase {
  ensurePrivateFile(dataDir, path);
  const db = connect(path, busyTimeoutMs);
  const statements = new Map<string, Database.Statement>();
  const prepare = (sql: string): Database.Statement => {
    let statement = statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      if (statements.size > 500) statements.clear();
      statements.set(sql, statement);
    }
    return statement;
  };
  // Two queues: this connection's (a transaction's statements never interleave with another
  // task's on it) and the file's writers in this process (see mutexFor). Reads take only the first:
  // in WAL mode they never wait for a writer, so a read through a second connection during a write
  // transaction cannot deadlock.
  const connection = new Mutex();
  const writers = mutexFor(path);
  const scope = new TxScope<Database.Database>();
  const guarded = <T>(fn: () => T, context: string, writes: boolean): Promise<T> => {
    const call = (): T => {
      try {
        return fn();
      } catch (err) {
        throw mapSqliteError(err, context);
      }
    };
    if (scope.current()) return Promise.resolve().then(call);
    return connection.lock(() => (writes ? writers.lock(call) : call()));
  };
  const transaction = async <T>(begin: string, writes: boolean, fn: () => Promise<T>): Promise<T> => {
    const open = scope.current();
    if (open) return inSavepoint(async (sql) => { db.exec(sql); }, open.depth + 1, fn);
    const body = async (): Promise<T> => {
      try {
        db.exec(begin);
      } catch (err) {
        throw mapSqliteError(err, 'database write failed');
      }
      try {
        const result = await scope.run(db, 0, fn);
        db.exec('COMMIT');
        return result;
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw mapSqliteError(err, 'database write failed');
      }
    };
    return connection.lock(() => (writes ? writers.lock(body) : body()));
  };
  return {
    dialect: 'sqlite',
    location: path,
    nowMs: "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
    all: (sql, params = []) => guarded(() => prepare(sql).all(...(params as SqlParam[])) as never[], 'database read failed', false),
    get: (sql, params = []) => guarded(() => prepare(sql).get(...(params as SqlParam[])) as never, 'database read failed', false),
    run: (sql, params = []) => guarded(() => prepare(sql).run(...(params as SqlParam[])).changes, 'database write failed', true),
    exec: (script) => guarded(() => { db.exec(script); }, 'database write failed', true),
    write: (fn) => transaction('BEGIN IMMEDIATE', true, fn),
    writeRows: (fn) => transaction('BEGIN IMMEDIATE', true, fn),
    writeOne: (sql, params = []) => transaction('BEGIN IMMEDIATE', true, () => guarded(() => prepare(sql).get(...(params as SqlParam[])) as never, 'database write failed', true)),
    forUpdate: '',
    read: (fn) => transaction('BEGIN DEFERRED', false, fn),
    close: () => connection.lock(() => { if (db.open) db.close(); }),
  };
}

/**
 * One writers' queue per file for every connection this process opens to it. SQLite's busy
 * timeout waits synchronously, so a second connection of the same process waiting for the first
 * one's write lock would block the event loop that has to finish the first one's transaction.
 */
const fileMutexes = new Map<string, Mutex>();
function mutexFor(path: string): Mutex {
  let mutex = fileMutexes.get(path);
  if (!mutex) {
    mutex = new Mutex();
    fileMutexes.set(path, mutex);
  }
  return mutex;
}

function connect(path: string, busyTimeoutMs: number): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: busyTimeoutMs });
  } catch (err) {
    throw mapSqliteError(err, `cannot open ${path}`);
  }
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    // journal_mode=WAL is persistent in the file; setting it again is a no-op.
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw new MidcertError('STORE_UNAVAILABLE', `${path}: cannot switch to WAL mode (got ${String(mode)})`);
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
  } catch (err) {
    db.close();
    throw mapSqliteError(err, `cannot prepare ${path}`);
  }
  return db;
}

function ensurePrivateFile(dataDir: string, path: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // Tighten a file created by someone else's umask; the database holds CSRs and history.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch (err) {
    throw new MidcertError('STORE_UNAVAILABLE', `cannot create ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

/** SQLite's failures as our codes; MidcertErrors thrown inside a transaction pass through. */
export function mapSqliteError(err: unknown, context: string): Error {
  if (isMidcertError(err)) return err;
  const code = String((err as { code?: unknown }).code ?? '');
  if (!code.startsWith('SQLITE_')) return err instanceof Error ? err : new Error(String(err));
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new MidcertError('STORE_BUSY', `${context}: another midcert process holds the database lock (${code})`, { cause: err });
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new MidcertError('STORE_UNAVAILABLE', `${context}: the file is not a usable midcert database (${code})`, { cause: err });
  }
  const first = (err as Error).message.split('\n', 1)[0];
  if (code.startsWith('SQLITE_CONSTRAINT')) return new MidcertError('RECORD_CONFLICT', `${context}: ${first}`, { cause: err });
  return new MidcertError('STORE_UNAVAILABLE', `${context}: ${first} (${code})`, { cause: err });
}
