import { MidcertError } from '../../common/errors.js';
import type { Dialect, SqlDatabase } from './sql.js';
import { CERTIFICATE_STATUSES, JOB_AGENT_STATES, JOB_KINDS, JOB_STATES, STEP_STATES } from './states.js';

/**
 * Schema migrations, applied in order at open, the same versions on SQLite and PostgreSQL: each
 * one is written once per dialect, and test/controller/store-schema.test.ts checks that both
 * give the same tables and columns. Rules: append only — never edit or reorder a migration that
 * has shipped; a new column or table is a new migration. The schema is documented in
 * docs/controller-state.md.
 */
export interface Migration {
  version: number;
  name: string;
  /** The statements for SQLite (`sql` before PostgreSQL support; unchanged since it shipped). */
  sql: string;
  postgresql: string;
}

const list = (values: readonly string[]): string => values.map((v) => `'${v}'`).join(', ');
const SHA256_HEX = (column: string): string => `length(${column}) = 64 AND ${column} NOT GLOB '*[^0-9a-f]*'`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE agents (
        name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
        address TEXT NOT NULL CHECK (length(address) BETWEEN 3 AND 300),
        server_name TEXT NOT NULL CHECK (length(server_name) BETWEEN 1 AND 253),
        tls_sha256 TEXT CHECK (tls_sha256 IS NULL OR (${SHA256_HEX('tls_sha256')})),
        tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
        cluster TEXT,
        instance_url TEXT,
        mid_name TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX agents_cluster ON agents (cluster);

      CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN (${list(JOB_KINDS)})),
        state TEXT NOT NULL DEFAULT 'planned' CHECK (state IN (${list(JOB_STATES)})),
        params TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        error_code TEXT,
        error_message TEXT,
        created_by TEXT NOT NULL
      ) STRICT;
      CREATE INDEX jobs_state ON jobs (state);

      -- Per-agent progress of a job: everything a restarted controller needs to resume.
      -- No foreign key to agents: history outlives an agent's removal.
      CREATE TABLE job_agents (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        agent_name TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN (${list(JOB_AGENT_STATES)})),
        wave INTEGER NOT NULL DEFAULT 0 CHECK (wave >= 0),
        renewal_id TEXT,
        csr_pem TEXT,
        ca_cookie TEXT,
        certificate_pem TEXT,
        chain_pem TEXT,
        outage_started_at TEXT,
        outage_ended_at TEXT,
        error_code TEXT,
        error_message TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (job_id, agent_name)
      ) STRICT;
      CREATE INDEX job_agents_agent ON job_agents (agent_name, job_id);
      CREATE INDEX job_agents_state ON job_agents (state);

      CREATE TABLE job_steps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        agent_name TEXT,
        step TEXT NOT NULL CHECK (length(step) BETWEEN 1 AND 64),
        state TEXT NOT NULL DEFAULT 'running' CHECK (state IN (${list(STEP_STATES)})),
        attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        error_code TEXT,
        error_message TEXT,
        detail TEXT
      ) STRICT;
      CREATE INDEX job_steps_job ON job_steps (job_id, agent_name, step);

      CREATE TABLE certificates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_name TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE CHECK (${SHA256_HEX('sha256')}),
        subject TEXT NOT NULL,
        issuer TEXT NOT NULL,
        serial TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        pem TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'issued' CHECK (status IN (${list(CERTIFICATE_STATUSES)})),
        issued_at TEXT NOT NULL,
        installed_at TEXT,
        retired_at TEXT,
        job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL
      ) STRICT;
      CREATE INDEX certificates_agent ON certificates (agent_name, issued_at);

      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        params TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
        result TEXT NOT NULL CHECK (result IN ('ok', 'error')),
        error_code TEXT
      ) STRICT;
      CREATE INDEX audit_target ON audit (target, id);
      -- Append-only: ordinary writes cannot rewrite or erase history.
      CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    `,
    // Names sort bytewise (COLLATE "C") as in SQLite. JSON columns are TEXT validated by the repositories (PostgreSQL 15 has no non-throwing JSON check).
    postgresql: `
      CREATE TABLE agents (
        name TEXT COLLATE "C" PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
        address TEXT NOT NULL CHECK (length(address) BETWEEN 3 AND 300),
        server_name TEXT NOT NULL CHECK (length(server_name) BETWEEN 1 AND 253),
        tls_sha256 TEXT CHECK (tls_sha256 IS NULL OR tls_sha256 ~ '^[0-9a-f]{64}$'),
        tags TEXT NOT NULL DEFAULT '[]',
        cluster TEXT,
        instance_url TEXT,
        mid_name TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX agents_cluster ON agents (cluster);

      CREATE TABLE jobs (
        id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN (${list(JOB_KINDS)})),
        state TEXT NOT NULL DEFAULT 'planned' CHECK (state IN (${list(JOB_STATES)})),
        params TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        error_code TEXT,
        error_message TEXT,
        created_by TEXT NOT NULL
      );
      CREATE INDEX jobs_state ON jobs (state);

      CREATE TABLE job_agents (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        agent_name TEXT COLLATE "C" NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN (${list(JOB_AGENT_STATES)})),
        wave INTEGER NOT NULL DEFAULT 0 CHECK (wave >= 0),
        renewal_id TEXT,
        csr_pem TEXT,
        ca_cookie TEXT,
        certificate_pem TEXT,
        chain_pem TEXT,
        outage_started_at TEXT,
        outage_ended_at TEXT,
        error_code TEXT,
        error_message TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (job_id, agent_name)
      );
      CREATE INDEX job_agents_agent ON job_agents (agent_name, job_id);
      CREATE INDEX job_agents_state ON job_agents (state);

      CREATE TABLE job_steps (
        id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        agent_name TEXT COLLATE "C",
        step TEXT NOT NULL CHECK (length(step) BETWEEN 1 AND 64),
        state TEXT NOT NULL DEFAULT 'running' CHECK (state IN (${list(STEP_STATES)})),
        attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        error_code TEXT,
        error_message TEXT,
        detail TEXT
      );
      CREATE INDEX job_steps_job ON job_steps (job_id, agent_name, step);

      CREATE TABLE certificates (
        id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        agent_name TEXT COLLATE "C" NOT NULL,
        sha256 TEXT NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        subject TEXT NOT NULL,
        issuer TEXT NOT NULL,
        serial TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        pem TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'issued' CHECK (status IN (${list(CERTIFICATE_STATUSES)})),
        issued_at TEXT NOT NULL,
        installed_at TEXT,
        retired_at TEXT,
        job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL
      );
      CREATE INDEX certificates_agent ON certificates (agent_name, issued_at);

      CREATE TABLE audit (
        id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        result TEXT NOT NULL CHECK (result IN ('ok', 'error')),
        error_code TEXT
      );
      CREATE INDEX audit_target ON audit (target, id);
      CREATE FUNCTION midcert_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
      CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION midcert_audit_append_only();
      CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION midcert_audit_append_only();
    `,
  },
  {
    version: 2,
    name: 'job ownership, leases and leadership',
    // owners: one row per controller process that took work (pid + host + start time), with the
    // lease it renews while it runs. jobs/job_agents.owner_id: who runs them now. leadership:
    // which `midcert serve` reconciles (docs/controller-state.md, "Ownership and leases").
    sql: `
      CREATE TABLE owners (
        id TEXT PRIMARY KEY NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL,
        role TEXT NOT NULL,
        lease_expires_ms INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL
      ) STRICT;
      ALTER TABLE jobs ADD COLUMN owner_id TEXT;
      ALTER TABLE job_agents ADD COLUMN owner_id TEXT;
      CREATE INDEX jobs_owner ON jobs (owner_id);
      CREATE TABLE leadership (
        name TEXT PRIMARY KEY NOT NULL,
        owner_id TEXT NOT NULL,
        lease_expires_ms INTEGER NOT NULL,
        since TEXT NOT NULL
      ) STRICT;
    `,
    postgresql: `
      CREATE TABLE owners (
        id TEXT PRIMARY KEY NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL,
        role TEXT NOT NULL,
        lease_expires_ms BIGINT NOT NULL,
        heartbeat_ms BIGINT NOT NULL
      );
      ALTER TABLE jobs ADD COLUMN owner_id TEXT;
      ALTER TABLE job_agents ADD COLUMN owner_id TEXT;
      CREATE INDEX jobs_owner ON jobs (owner_id);
      CREATE TABLE leadership (
        name TEXT PRIMARY KEY NOT NULL,
        owner_id TEXT NOT NULL,
        lease_expires_ms BIGINT NOT NULL,
        since TEXT NOT NULL
      );
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

export interface MigrationResult {
  /** Versions applied by this call (empty when the database was already current). */
  applied: number[];
  version: number;
}

/**
 * Brings the database up to the newest migration in `migrations`, all pending ones in one write
 * transaction (two processes opening a fresh database at once: one applies, the other waits,
 * then finds nothing to do). PostgreSQL runs DDL inside the transaction too, so a failed
 * migration leaves nothing behind on either. Refuses a database from a newer midcert rather than
 * guess.
 */
export async function applyMigrations(db: SqlDatabase, now: () => string, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  const known = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  // A read first, so opening an up-to-date database never takes the write lock.
  const current = await readVersion(db);
  assertNotNewer(current, known);
  if (current === known) return { applied: [], version: current };
  return db.write(async (): Promise<MigrationResult> => {
    await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)${db.dialect === 'sqlite' ? ' STRICT' : ''}`);
    const from = await readVersion(db);
    assertNotNewer(from, known);
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (m.version <= from) continue;
      await db.exec(scriptFor(m, db.dialect));
      await db.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, now()]);
      applied.push(m.version);
    }
    return { applied, version: known };
  });
}

function scriptFor(m: Migration, dialect: Dialect): string {
  return dialect === 'sqlite' ? m.sql : m.postgresql;
}

export async function readVersion(db: SqlDatabase): Promise<number> {
  const exists = db.dialect === 'sqlite'
    ? "SELECT 1 AS found FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'"
    : "SELECT 1 AS found FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'";
  if (!(await db.get(exists))) return 0;
  const row = await db.get<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations');
  return row?.version ?? 0;
}

function assertNotNewer(current: number, known: number): void {
  if (current > known) {
    throw new MidcertError('STORE_TOO_NEW', `the controller database is at schema version ${current}; this midcert knows up to ${known}. Upgrade midcert; do not downgrade a data dir.`);
  }
}
