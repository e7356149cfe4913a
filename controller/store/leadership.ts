import type { OwnerInfo, OwnerRepo } from './owners.js';
import type { SessionLock, SqlDatabase } from './sql.js';

/**
 * Which `midcert serve` reconciles when several share one store. Followers keep serving
 * /metrics and read-only commands; only the leader resumes abandoned jobs and starts renewals.
 *
 * - PostgreSQL: a session advisory lock on a connection of its own (the database decides: two
 *   leaders are impossible; a killed leader's lock is freed as soon as its socket closes, a lost
 *   host's within TCP keepalive). The `leadership` row only shows who leads.
 * - SQLite (one host): the `leadership` row is the lease itself — compare-and-set on expiry by
 *   the database's clock, renewed every tick.
 *
 * Leadership decides who starts work; a job stays with its owner (owners.ts) whoever leads, so
 * losing leadership mid-rotation never hands a live job to someone else.
 */
export interface Leadership {
  /** Becomes or stays leader if it can; true while this process leads. Call every lease / 3 (or more often). */
  tick(): Promise<boolean>;
  readonly isLeader: boolean;
  current(): Promise<LeaderInfo | undefined>;
  release(): Promise<void>;
}

export interface LeaderInfo {
  ownerId: string;
  owner: OwnerInfo | undefined;
  since: string;
  leaseExpiresAt: string;
}

/** Advisory lock key of the serve leader ("mdld"); the write lock uses another. */
const LEADER_LOCK_KEY = 0x6d646c64;

export function createLeadership(sql: SqlDatabase, owner: OwnerRepo, now: () => string, name = 'serve'): Leadership {
  let leader = false;
  const lock = sql.sessionLock?.(LEADER_LOCK_KEY);

  const claimRow = async (force: boolean): Promise<boolean> => sql.write(async () => {
    const ownerId = await owner.ensure();
    const changed = await sql.run(`INSERT INTO leadership (name, owner_id, lease_expires_ms, since) VALUES (?, ?, ${sql.nowMs} + ?, ?)
      ON CONFLICT (name) DO UPDATE SET owner_id = excluded.owner_id, lease_expires_ms = excluded.lease_expires_ms,
        since = CASE WHEN leadership.owner_id = excluded.owner_id THEN leadership.since ELSE excluded.since END
      WHERE ? = 1 OR leadership.owner_id = excluded.owner_id OR leadership.lease_expires_ms < ${sql.nowMs}`,
    [name, ownerId, owner.leaseMs, now(), force ? 1 : 0]);
    return changed > 0;
  });

  const tickWithLock = async (held: SessionLock): Promise<boolean> => {
    if (!(await held.tryAcquire())) return false;
    await claimRow(true);
    return true;
  };

  return {
    async tick() {
      leader = lock ? await tickWithLock(lock) : await claimRow(false);
      return leader;
    },
    get isLeader() { return leader; },
    async current() {
      const row = await sql.get<{ owner_id: string; since: string; lease_expires_ms: number }>('SELECT owner_id, since, lease_expires_ms FROM leadership WHERE name = ?', [name]);
      if (!row) return undefined;
      return { ownerId: row.owner_id, owner: await owner.describe(row.owner_id), since: row.since, leaseExpiresAt: new Date(Number(row.lease_expires_ms)).toISOString() };
    },
    async release() {
      const wasLeader = leader;
      leader = false;
      if (wasLeader) {
        await sql.write(() => sql.run('UPDATE leadership SET lease_expires_ms = 0 WHERE name = ? AND owner_id = ?', [name, owner.id])).catch(() => undefined);
      }
      await lock?.release();
    },
  };
}
