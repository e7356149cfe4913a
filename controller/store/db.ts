import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MidcertError, isMidcertError } from '../../common/errors.js';

export const STORE_FILE = 'midcert.db';
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

export function storePath(dataDir: string): string {
  return join(dataDir, STORE_FILE);
}

/** What every repository needs: the connection, the clock and who is acting. */
export interface StoreContext {
  db: Database.Database;
  /** Who is recorded in the audit log and as created_by (e.g. `user:alice`, `daemon`). */
  actor: string;
  /** Now, as an ISO-8601 UTC string. */
  now(): string;
}

/**
 * Opens (creating when missing) the database file with the settings that make the CLI and the
 * daemon safe together: WAL (readers never block the writer and the writer never blocks readers),
 * a busy timeout (a second writer waits instead of failing), synchronous=NORMAL (in WAL mode a
 * power cut can lose the last commits but never corrupts), and foreign keys on. The file is
 * created 0600 before SQLite opens it; SQLite gives the -wal and -shm files the same mode.
 */
export function openConnection(dataDir: string, busyTimeoutMs: number): Database.Database {
  const path = storePath(dataDir);
  ensurePrivateFile(dataDir, path);
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

/**
 * Runs `fn` in an IMMEDIATE transaction (the write lock is taken at BEGIN, where the busy
 * timeout applies). A DEFERRED transaction that reads and then writes can instead fail at once
 * with SQLITE_BUSY_SNAPSHOT when another process committed in between — busy_timeout cannot
 * help there — so every read-then-write in the store goes through this. Nested calls become
 * savepoints of the outer transaction.
 */
export function writeTx<T>(db: Database.Database, fn: () => T): T {
  try {
    return db.transaction(fn).immediate();
  } catch (err) {
    throw mapSqliteError(err, 'database write failed');
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
