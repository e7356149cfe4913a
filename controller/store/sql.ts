import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The one surface the repositories use, implemented twice: SQLite (better-sqlite3, one file,
 * sqlite.ts) and PostgreSQL (`pg`, postgres.ts). Statements use `?` placeholders only and the SQL
 * both dialects share (RETURNING, ON CONFLICT, window functions, IS NOT DISTINCT FROM); the few
 * places that differ ask `dialect` or use the fragments below.
 */
export type SqlParam = string | number | null;
export type Dialect = 'sqlite' | 'postgresql';

export interface SqlRunner {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: readonly SqlParam[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined>;
  /** Rows changed. */
  run(sql: string, params?: readonly SqlParam[]): Promise<number>;
  /** A script of statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

export interface SqlDatabase extends SqlRunner {
  /** Where it lives, for messages: a file path, or a URL without password. */
  readonly location: string;
  /**
   * A write transaction. Writers are serialised (SQLite: BEGIN IMMEDIATE; PostgreSQL: one
   * transaction-scoped advisory lock), so a read-then-write inside can never race another
   * process. A call inside a transaction becomes a savepoint of it.
   */
  write<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * A write transaction that does not queue behind the store-wide writer lock: for a write
   * confined to rows the caller locks itself (`forUpdate`), such as one MID's row of a job.
   * SQLite has only one writer lock, so there it is write().
   */
  writeRows<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * One statement that writes and returns its first row, as its own transaction: PostgreSQL runs
   * it in one round trip (autocommit); SQLite inside writeRows() (its writers' queue). Inside an
   * open transaction it is just part of it.
   */
  writeOne<T>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined>;
  /** ` FOR NO KEY UPDATE` on PostgreSQL (lock the rows a writeRows() transaction depends on; inserts referencing them do not wait), nothing on SQLite. */
  readonly forUpdate: string;
  /** One consistent snapshot for several reads. */
  read<T>(fn: () => Promise<T>): Promise<T>;
  /** SQL for "now" in epoch milliseconds by the database's clock: leases from several hosts compare on one clock. */
  readonly nowMs: string;
  /**
   * PostgreSQL only: a session-level advisory lock on a connection of its own, held until
   * release() or until that connection dies (the server frees it at once when the holder's
   * socket closes).
   */
  sessionLock?(key: number): SessionLock;
  close(): Promise<void>;
}

export interface SessionLock {
  /**
   * True while this process holds the lock: takes it when free, or checks that the connection
   * still holding it is alive. One connection is kept for all tries, not one per try.
   */
  tryAcquire(): Promise<boolean>;
  release(): Promise<void>;
}

/** `(?, ?, ?)` for `IN` lists: portable, where `json_each` is SQLite's alone. Never empty. */
export function placeholders(count: number): string {
  return `(${Array.from({ length: Math.max(1, count) }, () => '?').join(', ')})`;
}

/** Values for placeholders(): an empty list becomes one value no row has (no name, state or kind is empty; PostgreSQL refuses NUL in text). */
export function inValues(values: readonly string[]): string[] {
  return values.length > 0 ? [...values] : [''];
}

/**
 * The transaction a call runs in, per database. Async code inside write()/read() awaits between
 * statements, so the open transaction travels with the async context instead of an argument
 * every repository would have to pass along.
 */
export class TxScope<C> {
  private readonly storage = new AsyncLocalStorage<{ conn: C; depth: number; open: boolean }>();
  /** The open transaction of this async context. A timer or callback created inside a transaction that has since ended sees none. */
  current(): { conn: C; depth: number } | undefined {
    const tx = this.storage.getStore();
    return tx?.open ? tx : undefined;
  }
  async run<T>(conn: C, depth: number, fn: () => Promise<T>): Promise<T> {
    const tx = { conn, depth, open: true };
    try {
      return await this.storage.run(tx, fn);
    } finally {
      tx.open = false;
    }
  }
}

/** Runs `fn` as savepoint `depth` of the transaction already open on `exec`. */
export async function inSavepoint<T>(exec: (sql: string) => Promise<void>, depth: number, fn: () => Promise<T>): Promise<T> {
  const name = `midcert_sp${depth}`;
  await exec(`SAVEPOINT ${name}`);
  try {
    const result = await fn();
    await exec(`RELEASE SAVEPOINT ${name}`);
    return result;
  } catch (err) {
    await exec(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => undefined);
    await exec(`RELEASE SAVEPOINT ${name}`).catch(() => undefined);
    throw err;
  }
}

/** A FIFO lock for the one SQLite connection: a transaction's statements are never interleaved with another task's. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock<T>(fn: () => Promise<T> | T): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise((resolve) => { release = resolve; });
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
