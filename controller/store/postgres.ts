import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import pg from 'pg';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { pgpassPassword } from './pgpass.js';
import { PreparedStatements, isStalePlan } from './pg-statements.js';
import { TxScope, inSavepoint, type SessionLock, type SqlDatabase, type SqlParam } from './sql.js';

/** Where a PostgreSQL store lives and how to reach it (`store:` in controller.yaml). */
export interface PostgresTarget {
  /** postgresql://user@host:5432/db — no password in it (store.passwordFile, PGPASSFILE or ~/.pgpass). */
  url: string;
  /** Read once at open; pg falls back to PGPASSFILE / ~/.pgpass when undefined. */
  password?: string;
  tls?: { mode: 'disable' | 'require' | 'verify-full'; caFile?: string; certFile?: string; keyFile?: string };
  /** How long a writer waits for another's write lock before STORE_BUSY (lock_timeout). */
  busyTimeoutMs: number;
  /** Pool size (default 10). */
  maxConnections?: number;
}

/** One key for every write transaction of the store: writers queue in PostgreSQL, as SQLite's IMMEDIATE does. */
const WRITE_LOCK_KEY = 0x6d696463; // "midc"
const STATEMENT_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
const INT8_OID = 20;

/**
 * The store on PostgreSQL, for several controllers on several hosts sharing one fleet. Same
 * schema and repositories as SQLite (sql.ts). Writes are serialised by one transaction-scoped
 * advisory lock, so the store's read-then-write checks (an agent busy in another job, a lease
 * still live) hold across hosts exactly as BEGIN IMMEDIATE makes them hold on one.
 */
export async function openPostgres(target: PostgresTarget): Promise<SqlDatabase> {
  const config = await clientConfig(target);
  const location = redactUrl(target.url);
  const pool = new pg.Pool({ ...config, max: target.maxConnections ?? 10, idleTimeoutMillis: 30_000 });
  // An idle connection that breaks (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const scope = new TxScope<pg.PoolClient>();
  const statements = new PreparedStatements(numbered);
  const query = async (sql: string, params: readonly SqlParam[] = []): Promise<pg.QueryResult> => {
    const open = scope.current();
    try {
      if (open) return await open.conn.query(statements.config(sql, params));
      try {
        return await pool.query(statements.config(sql, params));
      } catch (err) {
        // Outside a transaction the statement can simply be prepared again under a new name.
        if (!isStalePlan(err)) throw err;
        statements.renew();
        return await pool.query(statements.config(sql, params));
      }
    } catch (err) {
      if (!isStalePlan(err)) throw mapPgError(err, location);
      // Inside a transaction the statement cannot simply run again: the transaction is aborted.
      // (Outside one, a second stale plan right after renewing lands here too.)
      statements.renew();
      throw new MidcertError('STORE_UNAVAILABLE', `${location}: the schema changed under this controller (another midcert migrated the store?), so the statement did not run and its transaction was rolled back; try again`, { cause: err });
    }
  };
  const transaction = async <T>(begin: string[], fn: () => Promise<T>): Promise<T> => {
    const open = scope.current();
    if (open) return inSavepoint(async (sql) => { await open.conn.query(sql); }, open.depth + 1, fn);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw mapPgError(err, location);
    }
    try {
      // One round trip: a simple query may carry several statements (they take no parameters).
      await client.query(begin.join('; '));
      const result = await scope.run(client, 0, fn);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw mapPgError(err, location);
    } finally {
      client.release();
    }
  };
  const db: SqlDatabase = {
    dialect: 'postgresql',
    location,
    nowMs: '(extract(epoch from clock_timestamp()) * 1000)::bigint',
    all: async (sql, params) => (await query(sql, params)).rows as never[],
    get: async (sql, params) => (await query(sql, params)).rows[0] as never,
    run: async (sql, params) => (await query(sql, params)).rowCount ?? 0,
    exec: async (script) => { await query(script); },
    write: (fn) => transaction([
      'BEGIN',
      `SET LOCAL lock_timeout = ${Math.max(1, Math.floor(target.busyTimeoutMs))}`,
      `SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`,
    ], fn),
    writeRows: (fn) => transaction(['BEGIN', `SET LOCAL lock_timeout = ${Math.max(1, Math.floor(target.busyTimeoutMs))}`], fn),
    writeOne: async (sql, params) => (await query(sql, params)).rows[0] as never,
    // Serializes the writers of a row as FOR UPDATE does, but not the inserts that only reference
    // it: a certificate record's or a new member's foreign key to its job takes FOR KEY SHARE,
    // which FOR UPDATE would make wait for every job-row transaction (jobs.addAgents) in flight.
    forUpdate: ' FOR NO KEY UPDATE',
    read: (fn) => transaction(['BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'], fn),
    sessionLock: (key) => sessionLock(config, key, location),
    close: () => pool.end(),
  };
  try {
    await db.get('SELECT 1 AS ok');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return db;
}

async function clientConfig(target: PostgresTarget): Promise<pg.PoolConfig> {
  const url = parseUrl(target.url);
  // libpq's form for a Unix socket: the socket directory, percent-encoded, as the host (postgresql://u@%2Frun%2Fpostgresql/db).
  const host = decodeURIComponent(url.hostname.replace(/^\[|\]$/g, '')) || 'localhost';
  const port = url.port ? Number(url.port) : 5432;
  const user = decodeURIComponent(url.username) || userInfo().username;
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || user;
  // Fields, not pg's connectionString: that would override the password read from store.passwordFile.
  return {
    host, port, user, database,
    password: target.password ?? (async () => (await pgpassPassword({ host, port, database, user })) ?? ''),
    ssl: await sslOptions(target.tls, host),
    application_name: 'midcert',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    keepAlive: true,
    // pg returns BIGINT (count(*), epoch ms) as strings; ours always fit a double.
    types: { getTypeParser: ((oid: number, format?: string) => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser },
  };
}

/**
 * TLS to the database. Unset: off for a loopback host, verify-full (system roots or caFile)
 * for any other — credentials and CSRs never cross a network in clear by default.
 */
async function sslOptions(tls: PostgresTarget['tls'], host: string): Promise<pg.PoolConfig['ssl']> {
  const socket = host.startsWith('/');
  const loopback = socket || host === 'localhost' || host === '127.0.0.1' || host === '::1' || host === '';
  const mode = tls?.mode ?? (loopback ? 'disable' : 'verify-full');
  if (socket && mode !== 'disable') throw new MidcertError('CONFIG_INVALID', `store.tls.mode ${mode}: PostgreSQL speaks no TLS over the Unix socket in ${host}; leave store.tls unset for it`);
  if (mode === 'disable') return false;
  const read = async (file: string | undefined, what: string): Promise<string | undefined> => {
    if (!file) return undefined;
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new MidcertError('CONFIG_UNREADABLE', `cannot read the store ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const [ca, cert, key] = await Promise.all([read(tls?.caFile, 'tls.caFile'), read(tls?.certFile, 'tls.certFile'), read(tls?.keyFile, 'tls.keyFile')]);
  return { rejectUnauthorized: mode === 'verify-full', ca, cert, key, servername: loopback ? undefined : host.replace(/^\[|\]$/g, '') };
}

/**
 * A session lock on a connection of its own (leader election), kept open across tries. The
 * server notices a dead holder through TCP keepalive, which the session shortens so a lost host
 * frees the lock in seconds. A broken connection is dropped (the server has freed the lock with
 * it) and the next try connects again.
 */
function sessionLock(config: pg.PoolConfig, key: number, location: string): SessionLock {
  let client: pg.Client | undefined;
  let held = false;
  const drop = async (): Promise<void> => {
    const old = client;
    client = undefined;
    held = false;
    await old?.end().catch(() => undefined);
  };
  const connect = async (): Promise<pg.Client> => {
    const fresh = new pg.Client(config);
    fresh.on('error', () => { if (client === fresh) { client = undefined; held = false; } });
    try {
      await fresh.connect();
      await fresh.query('SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3');
    } catch (err) {
      await fresh.end().catch(() => undefined);
      throw mapPgError(err, location);
    }
    return fresh;
  };
  return {
    async tryAcquire() {
      try {
        client ??= await connect();
        if (held) await client.query('SELECT 1');
        else held = Boolean((await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key])).rows[0]?.locked);
      } catch (err) {
        await drop();
        throw mapPgError(err, location);
      }
      return held;
    },
    async release() {
      if (held) await client?.query('SELECT pg_advisory_unlock($1)', [key]).catch(() => undefined);
      await drop();
    },
  };
}

/** `?` → `$1, $2, …` outside quoted text (the repositories' SQL has no `?` in literals). */
export function numbered(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = '';
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  return out;
}

function parseUrl(url: string): URL {
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') throw new Error('scheme');
    if (parsed.password) throw new MidcertError('CONFIG_INVALID', `store.url must not carry a password (${redactUrl(url)}): use store.passwordFile or PGPASSFILE`);
    return parsed;
  } catch (err) {
    if (isMidcertError(err)) throw err;
    throw new MidcertError('CONFIG_INVALID', `store.url must look like postgresql://user@host:5432/midcert (got ${redactUrl(url)})`);
  }
}

/** The URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*):[^@/]*@/i, '$1:[redacted]@').slice(0, 300);
}

/** PostgreSQL's failures as our codes (SQLSTATE classes); messages never carry credentials. */
export function mapPgError(err: unknown, location: string): Error {
  if (isMidcertError(err)) return err;
  const code = String((err as { code?: unknown }).code ?? '');
  const message = String((err as Error).message ?? err).split('\n', 1)[0]?.slice(0, 300) ?? '';
  if (code === '55P03' || code === '40001' || code === '40P01' || code === '57014') {
    return new MidcertError('STORE_BUSY', `${location}: another midcert process held the database lock past the busy timeout (${code})`, { cause: err });
  }
  if (code.startsWith('23') || code === 'P0001') return new MidcertError('RECORD_CONFLICT', `${location}: ${message}`, { cause: err });
  if (code === '28P01' || code === '28000') return new MidcertError('STORE_UNAVAILABLE', `${location}: the database refused the credentials (${code})`, { cause: err });
  if (code === '3D000') return new MidcertError('STORE_UNAVAILABLE', `${location}: the database does not exist (${code})`, { cause: err });
  if (/^[0-9A-Z]{5}$/.test(code)) return new MidcertError('STORE_UNAVAILABLE', `${location}: ${message} (${code})`, { cause: err });
  return new MidcertError('STORE_UNREACHABLE', `${location}: cannot reach the database: ${code || message}`, { cause: err });
}
