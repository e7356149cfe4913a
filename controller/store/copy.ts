import { MidcertError } from '../../common/errors.js';
import { applyMigrations, readVersion } from './migrations.js';
import type { SqlDatabase, SqlParam } from './sql.js';

/**
 * `midcert store migrate`: moves an install from one database to another (SQLite → PostgreSQL,
 * or back) with every id kept, so job, certificate and audit references stay valid. The target
 * must be empty; the source must have no job run by a live process. The copy is one write
 * transaction on the target: a failure leaves it as empty as it was.
 */
export const COPIED_TABLES = ['agents', 'owners', 'jobs', 'job_agents', 'job_steps', 'certificates', 'audit'] as const;
export type CopiedTable = (typeof COPIED_TABLES)[number];

/** Tables whose id the database generates; the target's generator restarts after the copied ids. */
const GENERATED_IDS: readonly CopiedTable[] = ['jobs', 'job_steps', 'certificates', 'audit'];
const BATCH_ROWS = 200;

export interface CopyReport {
  from: string;
  to: string;
  schemaVersion: number;
  rows: Record<CopiedTable, number>;
}

export async function copyStore(source: SqlDatabase, target: SqlDatabase, now: () => string, onTable?: (table: CopiedTable, rows: number) => void): Promise<CopyReport> {
  await applyMigrations(source, now);
  await applyMigrations(target, now);
  const version = await readVersion(source);
  if ((await readVersion(target)) !== version) throw new MidcertError('INTERNAL', 'source and target are at different schema versions after migrating');
  await assertNoLiveJobs(source);
  const rows = {} as Record<CopiedTable, number>;
  await target.write(async () => {
    await assertEmpty(target);
    for (const table of COPIED_TABLES) {
      rows[table] = await copyTable(source, target, table);
      onTable?.(table, rows[table]);
    }
    if (target.dialect === 'postgresql') {
      for (const table of GENERATED_IDS) {
        await target.get(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), coalesce((SELECT max(id) FROM ${table}), 0) + 1, false) AS next`);
      }
    }
    for (const table of COPIED_TABLES) {
      const copied = Number((await target.get<{ n: number }>(`SELECT count(*) AS n FROM ${table}`))?.n ?? 0);
      if (copied !== rows[table]) throw new MidcertError('STORE_UNAVAILABLE', `${table}: copied ${copied} of ${rows[table]} rows; nothing was kept`);
    }
  });
  return { from: source.location, to: target.location, schemaVersion: version, rows };
}

async function assertNoLiveJobs(source: SqlDatabase): Promise<void> {
  const live = await source.all<{ id: number; pid: number; host: string; role: string }>(`SELECT j.id, o.pid, o.host, o.role FROM jobs j JOIN owners o ON o.id = j.owner_id
    WHERE j.state IN ('planned', 'running') AND o.lease_expires_ms >= ${source.nowMs} ORDER BY j.id`);
  const first = live[0];
  if (first) {
    throw new MidcertError('JOB_CONFLICT', `job ${first.id} is being run by ${first.role} (pid ${first.pid} on ${first.host}); stop midcert serve and running commands, then migrate`);
  }
}

async function assertEmpty(target: SqlDatabase): Promise<void> {
  for (const table of ['agents', 'jobs', 'certificates'] as const) {
    const n = Number((await target.get<{ n: number }>(`SELECT count(*) AS n FROM ${table}`))?.n ?? 0);
    if (n > 0) throw new MidcertError('STORE_NOT_EMPTY', `${target.location} already holds ${n} row(s) in ${table}; migrate only into an empty database`);
  }
}

/** Copies in id/key order, BATCH_ROWS rows per INSERT; returns the rows copied. */
async function copyTable(source: SqlDatabase, target: SqlDatabase, table: CopiedTable): Promise<number> {
  const order = table === 'agents' ? 'name' : table === 'owners' ? 'id' : table === 'job_agents' ? 'job_id, agent_name' : 'id';
  const all = await source.all<Record<string, SqlParam>>(`SELECT * FROM ${table} ORDER BY ${order}`);
  const first = all[0];
  if (!first) return 0;
  const columns = Object.keys(first);
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  for (let i = 0; i < all.length; i += BATCH_ROWS) {
    const batch = all.slice(i, i + BATCH_ROWS);
    await target.run(
      `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${batch.map(() => tuple).join(', ')}`,
      batch.flatMap((row) => columns.map((c) => row[c] ?? null)),
    );
  }
  return all.length;
}
