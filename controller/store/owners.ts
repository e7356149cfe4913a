import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { MidcertError } from '../../common/errors.js';
import type { SqlDatabase } from './sql.js';

/**
 * Who runs a job. Every controller process that creates or takes over a job registers itself as
 * an owner (pid + host + start time) with a lease it renews every third of the lease while it
 * runs. A job is abandoned — and may be taken over by another process — only once its owner's
 * lease has expired by the database's clock; until then every other process refuses it with
 * JOB_CONFLICT naming the owner. Every write the job's runner makes checks, in the same write
 * transaction, that it still owns the job with a live lease (fencing), so a process that stalled
 * past its lease can never write over the one that took the job from it.
 */
export interface OwnerInfo {
  id: string;
  pid: number;
  host: string;
  startedAt: string;
  /** The store's actor, e.g. `daemon`, `user:alice`. */
  role: string;
  leaseExpiresAt: string;
  live: boolean;
}

export interface OwnerRepo {
  /** This process's owner id (a new one after a lost lease: a lost lease is never revived). */
  readonly id: string;
  readonly leaseMs: number;
  /** True once a renewal found the lease already expired; work in flight then fails with JOB_CONFLICT. */
  readonly lost: boolean;
  /** Registers this process with a fresh lease (idempotent) and keeps renewing it; call inside the write that takes a job. */
  ensure(): Promise<string>;
  /** JOB_CONFLICT unless this process owns the job with a live lease. Call inside the write it guards. */
  assertOwns(jobId: number): Promise<void>;
  /** `live` (1/0) of the owner row aliased `o`, on the database's clock: for a caller's own join. */
  readonly liveSql: string;
  /** assertOwns' check on a row the caller read itself: the job's owner id and whether its lease is live. */
  checkOwned(jobId: number, ownerId: string | null, live: number | boolean | null): Promise<void>;
  describe(ownerId: string | null): Promise<OwnerInfo | undefined>;
  /** Renews now (the timer does this every leaseMs / 3). False when the lease was already lost. */
  renew(): Promise<boolean>;
  /** Stops renewing and ends the lease now, so what this process leaves unfinished is resumable at once. */
  release(): Promise<void>;
  /** Stops renewing but leaves the lease to run out, as a killed process does (tests, benchmarks). */
  stopRenewals(): void;
}

interface OwnerRow {
  id: string; pid: number; host: string; started_at: string; role: string; lease_expires_ms: number; live: number | boolean;
}

export const DEFAULT_LEASE_SECONDS = 15;

export function createOwnerRepo(sql: SqlDatabase, role: string, leaseMs: number): OwnerRepo {
  const pid = process.pid;
  const host = hostname().slice(0, 253);
  const startedAt = new Date(Date.now() - Math.round(process.uptime() * 1000)).toISOString();
  let id = randomUUID();
  let registered = false;
  let lost = false;
  let timer: NodeJS.Timeout | undefined;
  const live = `CASE WHEN o.lease_expires_ms >= ${sql.nowMs} THEN 1 ELSE 0 END`;

  const renew = async (): Promise<boolean> => {
    if (!registered || lost) return !lost;
    const changed = await sql.write(() => sql.run(
      `UPDATE owners SET lease_expires_ms = ${sql.nowMs} + ?, heartbeat_ms = ${sql.nowMs} WHERE id = ? AND lease_expires_ms >= ${sql.nowMs}`,
      [leaseMs, id],
    ));
    if (changed === 0) {
      lost = true;
      stopTimer();
    }
    return !lost;
  };
  const stopTimer = (): void => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };
  const describe = async (ownerId: string | null): Promise<OwnerInfo | undefined> => {
    if (!ownerId) return undefined;
    const row = await sql.get<OwnerRow>(`SELECT o.*, ${live} AS live FROM owners o WHERE o.id = ?`, [ownerId]);
    return row && toInfo(row);
  };

  // One statement: the job's state, its owner and whether that owner's lease is live.
  const ownedState = async (jobId: number): Promise<string> => {
    const row = await sql.get<{ state: string; owner_id: string | null; live: number | boolean | null }>(
      `SELECT j.state, j.owner_id, ${live} AS live FROM jobs j LEFT JOIN owners o ON o.id = j.owner_id WHERE j.id = ?`, [jobId],
    );
    if (!row) throw new MidcertError('JOB_NOT_FOUND', `no job ${jobId}`);
    await checkOwned(jobId, row.owner_id, row.live);
    return row.state;
  };
  const checkOwned = async (jobId: number, ownerId: string | null, isLive: number | boolean | null): Promise<void> => {
    if (ownerId === id && isTrue(isLive)) return;
    if (ownerId === id) {
      throw new MidcertError('JOB_CONFLICT', `this process's lease on job ${jobId} expired (it stopped renewing for longer than ${leaseMs / 1000} s); another controller may resume it`);
    }
    throw new MidcertError('JOB_CONFLICT', `job ${jobId} is ${describeOwner(await describe(ownerId))}`);
  };

  return {
    get id() { return id; },
    leaseMs,
    get lost() { return lost; },
    async ensure() {
      if (lost) {
        // Whatever this process owned may have been taken over; it goes on under a new identity.
        id = randomUUID();
        lost = false;
        registered = false;
      }
      if (!registered) {
        await sql.run(
          `INSERT INTO owners (id, pid, host, started_at, role, lease_expires_ms, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ${sql.nowMs} + ?, ${sql.nowMs})
           ON CONFLICT (id) DO NOTHING`,
          [id, pid, host, startedAt, role.slice(0, 128), leaseMs],
        );
        registered = true;
        timer = setInterval(() => { renew().catch(() => undefined); }, Math.max(200, Math.floor(leaseMs / 3)));
        // Renewing never keeps a finished CLI alive.
        timer.unref();
      }
      return id;
    },
    async assertOwns(jobId) {
      await ownedState(jobId);
    },
    liveSql: live,
    checkOwned,
    describe,
    renew,
    stopRenewals: stopTimer,
    async release() {
      stopTimer();
      if (!registered || lost) return;
      lost = true;
      await sql.write(() => sql.run('UPDATE owners SET lease_expires_ms = 0 WHERE id = ?', [id])).catch(() => undefined);
    },
  };
}

/** "run by daemon (pid 4242 on ctl-a, started …; lease until …)" — what JOB_CONFLICT and `midcert jobs` say. */
export function describeOwner(owner: OwnerInfo | undefined): string {
  if (!owner) return 'not owned by any process (it predates job ownership); the next rotate or serve resumes it';
  const lease = owner.live ? `lease until ${owner.leaseExpiresAt}` : `lease expired at ${owner.leaseExpiresAt}`;
  return `run by ${owner.role} (pid ${owner.pid} on ${owner.host}, started ${owner.startedAt}; ${lease})`;
}

export function toInfo(row: OwnerRow): OwnerInfo {
  return {
    id: row.id, pid: row.pid, host: row.host, startedAt: row.started_at, role: row.role,
    leaseExpiresAt: new Date(Number(row.lease_expires_ms)).toISOString(), live: isTrue(row.live),
  };
}

export function isTrue(value: unknown): boolean {
  return value === true || value === 1 || value === '1';
}
