import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { createAgentRepo, type AgentRepo } from './agents.js';
import { createAuditRepo, type AuditRepo } from './audit.js';
import { createCertificateRepo, type CertificateRepo } from './certificates.js';
import { DEFAULT_BUSY_TIMEOUT_MS, storePath, type StoreContext } from './db.js';
import { createJobAgentRepo, type JobAgentRepo } from './job-agents.js';
import { createJobStepRepo, type JobStepRepo } from './job-steps.js';
import { createJobRepo, type JobRepo } from './jobs.js';
import { createLeadership, type Leadership } from './leadership.js';
import { createMetricsQueries, type MetricsQueries } from './metrics.js';
import { applyMigrations, type MigrationResult } from './migrations.js';
import { DEFAULT_LEASE_SECONDS, createOwnerRepo, type OwnerRepo } from './owners.js';
import type { PostgresTarget } from './postgres.js';
import type { SqlDatabase } from './sql.js';

export type { Agent, AgentFilter, AgentPatch, AgentRepo, NewAgent } from './agents.js';
export type { AuditEntry, AuditQuery, AuditRecord, AuditRepo, AuditResult } from './audit.js';
export type { CertificateRecord, CertificateRepo } from './certificates.js';
export type { AgentHistoryEntry, AgentHolder, JobAgent, JobAgentPatch, JobAgentRepo } from './job-agents.js';
export type { JobStep, JobStepRepo, StepOutcome } from './job-steps.js';
export type { Job, JobError, JobQuery, JobRepo, NewJob, TakeOver } from './jobs.js';
export type { Leadership, LeaderInfo } from './leadership.js';
export type { MetricsSnapshot } from './metrics.js';
export type { OwnerInfo, OwnerRepo } from './owners.js';
export type { Dialect, SqlDatabase, SqlParam } from './sql.js';
export { describeOwner, DEFAULT_LEASE_SECONDS } from './owners.js';
export { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
export * from './states.js';
export { STORE_FILE, storePath } from './db.js';

/**
 * The controller's state: by default one SQLite file, `<dataDir>/midcert.db`, shared safely by
 * the CLI and the daemon on one host; with `store.url`, a PostgreSQL database shared by
 * controllers on several hosts (docs/controller-state.md). Both run the same repositories over
 * sql.ts. Mutations that an operator would want to see later write their own audit row in the
 * same transaction (see each repository); progress records (job_agents, job_steps) do not, as
 * the job's rows already tell that story.
 */
export interface Store {
  /** The SQLite file, or the PostgreSQL URL without password. */
  readonly path: string;
  readonly backend: SqlDatabase['dialect'];
  /** Recorded as the actor in the audit log and as jobs.created_by. */
  readonly actor: string;
  /** Migrations applied when this store was opened. */
  readonly migrations: MigrationResult;
  readonly agents: AgentRepo;
  readonly jobs: JobRepo;
  readonly jobAgents: JobAgentRepo;
  readonly jobSteps: JobStepRepo;
  readonly certificates: CertificateRepo;
  readonly audit: AuditRepo;
  /** This process as the owner of the jobs it runs (lease, fencing). */
  readonly owner: OwnerRepo;
  /** Read-only queries behind /metrics. */
  readonly metrics: MetricsQueries;
  /** Leader election among `midcert serve` processes on this store. */
  leadership(): Leadership;
  /** Runs several repository calls as one atomic write. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * transaction() without PostgreSQL's store-wide write lock (SQLite has only the one lock): for
   * calls whose writes are safe by row constraints and compare-and-set alone, such as the
   * certificate records (unique fingerprint, status CAS) and their audit rows. Never for checks
   * that read other rows to decide (an agent's other jobs, a lease).
   */
  rowTransaction<T>(fn: () => Promise<T>): Promise<T>;
  /** The database itself, for tests, diagnostics and `midcert store migrate`; prefer the repositories. */
  readonly sql: SqlDatabase;
  /** Ends this process's lease (what it leaves unfinished is resumable at once) and closes the database. */
  close(): Promise<void>;
}

/** `store:` in controller.yaml (controller/config.ts validates it). */
export interface StoreConfig {
  /** postgresql://user@host:5432/db; absent: the SQLite file in the data dir. */
  url?: string;
  passwordFile?: string;
  tls?: PostgresTarget['tls'];
  busyTimeoutMs?: number;
  /** PostgreSQL pool size (default 10; controller.yaml's default is rotation.concurrency + 2). */
  maxConnections?: number;
}

export interface StoreOptions {
  /** Default `user:<login name>`; the daemon passes `daemon`. */
  actor?: string;
  /** How long a writer waits for another process's write lock (default store.busyTimeoutMs, else 5000 ms). */
  busyTimeoutMs?: number;
  /** Clock for recorded times, for tests (leases always use the database's clock). */
  now?: () => Date;
  /** Where the store lives; default the SQLite file in the data dir. */
  config?: StoreConfig;
  /** Lease of the jobs this process owns (serve.leaseSeconds, default 15). */
  leaseSeconds?: number;
}

export async function openStore(dataDir: string, options: StoreOptions = {}): Promise<Store> {
  const busyTimeoutMs = options.busyTimeoutMs ?? options.config?.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const sql = await openDatabase(dataDir, options.config, busyTimeoutMs);
  const clock = options.now ?? (() => new Date());
  const now = (): string => clock().toISOString();
  const actor = options.actor ?? defaultActor();
  let migrations: MigrationResult;
  try {
    migrations = await applyMigrations(sql, now);
  } catch (err) {
    await sql.close();
    throw err;
  }
  const owner = createOwnerRepo(sql, actor, Math.round((options.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000));
  const ctx: StoreContext = { sql, actor, now, owner };
  const audit = createAuditRepo(ctx);
  let closed = false;
  return {
    path: sql.location,
    backend: sql.dialect,
    actor,
    migrations,
    agents: createAgentRepo(ctx, audit),
    jobs: createJobRepo(ctx, audit),
    jobAgents: createJobAgentRepo(ctx),
    jobSteps: createJobStepRepo(ctx),
    certificates: createCertificateRepo(ctx, audit),
    audit,
    owner,
    metrics: createMetricsQueries(sql),
    leadership: () => createLeadership(sql, owner, now),
    transaction: (fn) => sql.write(fn),
    rowTransaction: (fn) => sql.writeRows(fn),
    sql,
    close: async () => {
      if (closed) return;
      closed = true;
      await owner.release();
      await sql.close();
    },
  };
}

async function openDatabase(dataDir: string, config: StoreConfig | undefined, busyTimeoutMs: number): Promise<SqlDatabase> {
  if (!config?.url) {
    const { openSqlite } = await import('./sqlite.js');
    return openSqlite(storePath(dataDir), dataDir, busyTimeoutMs);
  }
  const [{ openPostgres }, { readSecretFile }] = await Promise.all([import('./postgres.js'), import('../config.js')]);
  const password = await readSecretFile(config.passwordFile, 'store password');
  return openPostgres({ url: config.url, password, tls: config.tls, busyTimeoutMs, maxConnections: config.maxConnections });
}

/**
 * A database named on a command line: `sqlite:FILE` or `postgresql://user@host:port/db`
 * (`midcert store migrate`). The store's settings (password file, TLS) apply to a PostgreSQL URL.
 */
export async function openDatabaseAt(spec: string, config: Omit<StoreConfig, 'url'> = {}): Promise<SqlDatabase> {
  const busyTimeoutMs = config.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (spec.startsWith('sqlite:')) {
    const file = spec.slice('sqlite:'.length);
    if (!file) throw new MidcertError('USAGE', 'sqlite: needs a file, e.g. sqlite:/var/lib/midcert/midcert.db');
    const { openSqlite } = await import('./sqlite.js');
    return openSqlite(resolve(file), dirname(resolve(file)), busyTimeoutMs);
  }
  if (/^postgres(ql)?:\/\//.test(spec)) return openDatabase('', { ...config, url: spec }, busyTimeoutMs);
  throw new MidcertError('USAGE', 'a database is sqlite:FILE or postgresql://user@host:5432/db');
}

function defaultActor(): string {
  try {
    return `user:${userInfo().username}`;
  } catch {
    return `user:${process.env.USER ?? 'unknown'}`;
  }
}
