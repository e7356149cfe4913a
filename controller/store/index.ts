import { userInfo } from 'node:os';
import type Database from 'better-sqlite3';
import { createAgentRepo, type AgentRepo } from './agents.js';
import { createAuditRepo, type AuditRepo } from './audit.js';
import { createCertificateRepo, type CertificateRepo } from './certificates.js';
import { DEFAULT_BUSY_TIMEOUT_MS, mapSqliteError, openConnection, storePath, writeTx, type StoreContext } from './db.js';
import { createJobAgentRepo, type JobAgentRepo } from './job-agents.js';
import { createJobStepRepo, type JobStepRepo } from './job-steps.js';
import { createJobRepo, type JobRepo } from './jobs.js';
import { applyMigrations, type MigrationResult } from './migrations.js';

export type { Agent, AgentFilter, AgentPatch, AgentRepo, NewAgent } from './agents.js';
export type { AuditEntry, AuditQuery, AuditRecord, AuditRepo, AuditResult } from './audit.js';
export type { CertificateRecord, CertificateRepo } from './certificates.js';
export type { AgentHistoryEntry, JobAgent, JobAgentPatch, JobAgentRepo } from './job-agents.js';
export type { JobStep, JobStepRepo, StepOutcome } from './job-steps.js';
export type { Job, JobError, JobQuery, JobRepo, NewJob } from './jobs.js';
export { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
export * from './states.js';
export { STORE_FILE, storePath } from './db.js';

/**
 * The controller's state: one SQLite file, `<dataDir>/midcert.db`, shared safely by the CLI and
 * the daemon (see db.ts for the settings and docs/controller-state.md for the schema). The API is
 * synchronous, like better-sqlite3. Mutations that an operator would want to see later write
 * their own audit row in the same transaction (see each repository); progress records
 * (job_agents, job_steps) do not, as the job's rows already tell that story.
 */
export interface Store {
  readonly path: string;
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
  /** Runs several repository calls as one atomic write (IMMEDIATE transaction). */
  transaction<T>(fn: () => T): T;
  /** The raw connection, for tests and diagnostics; prefer the repositories. */
  readonly db: Database.Database;
  close(): void;
}

export interface StoreOptions {
  /** Default `user:<login name>`; the daemon passes `daemon`. */
  actor?: string;
  /** How long a writer waits for another process's write lock (default 5000 ms). */
  busyTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

export function openStore(dataDir: string, options: StoreOptions = {}): Store {
  const db = openConnection(dataDir, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
  const clock = options.now ?? (() => new Date());
  const ctx: StoreContext = { db, actor: options.actor ?? defaultActor(), now: () => clock().toISOString() };
  let migrations: MigrationResult;
  try {
    migrations = applyMigrations(db, ctx.now);
  } catch (err) {
    db.close();
    throw mapSqliteError(err, 'cannot migrate the controller database');
  }
  const audit = createAuditRepo(ctx);
  return {
    path: storePath(dataDir),
    actor: ctx.actor,
    migrations,
    agents: createAgentRepo(ctx, audit),
    jobs: createJobRepo(ctx, audit),
    jobAgents: createJobAgentRepo(ctx),
    jobSteps: createJobStepRepo(ctx),
    certificates: createCertificateRepo(ctx, audit),
    audit,
    transaction: (fn) => writeTx(db, fn),
    db,
    close: () => {
      if (db.open) db.close();
    },
  };
}

function defaultActor(): string {
  try {
    return `user:${userInfo().username}`;
  } catch {
    return `user:${process.env.USER ?? 'unknown'}`;
  }
}
