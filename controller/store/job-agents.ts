import { MidcertError } from '../../common/errors.js';
import { LIMITS, assertSize } from '../../common/limits.js';
import type { StoreContext } from './db.js';
import { toInfo, type OwnerInfo } from './owners.js';
import { inValues, placeholders, type SqlParam } from './sql.js';
import { JOB_AGENT_ACTIVE, JOB_AGENT_TRANSITIONS, assertTransition, type JobAgentState, type JobKind, type JobState } from './states.js';
import { bounded } from './validate.js';

/** One agent's progress inside one job (see JOB_AGENT_STATES for what each state means). */
export interface JobAgent {
  jobId: number;
  agentName: string;
  state: JobAgentState;
  wave: number;
  /** The agent's id for the prepared key + CSR (PrepareRenewal). */
  renewalId: string | null;
  csrPem: string | null;
  /** The CA's handle on a pending request (ADCS request id, certmonger cookie, EST location). */
  caCookie: string | null;
  certificatePem: string | null;
  /** Intermediates + root that go with certificatePem. */
  chainPem: string | null;
  outageStartedAt: string | null;
  outageEndedAt: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  updatedAt: string;
  /** The process that last moved this row (see owners.ts). */
  ownerId: string | null;
}

/** What a transition stores; fields left undefined keep their value. */
export interface JobAgentPatch {
  renewalId?: string;
  csrPem?: string;
  caCookie?: string;
  certificatePem?: string;
  chainPem?: string;
  /** ISO-8601; `installing` defaults it to now. */
  outageStartedAt?: string;
  /** ISO-8601; `succeeded` defaults it to now when an outage was started. */
  outageEndedAt?: string;
  errorCode?: string;
  errorMessage?: string;
}

/** One line of an agent's history: its part in one job. */
export interface AgentHistoryEntry {
  jobId: number;
  kind: JobKind;
  jobState: JobState;
  agentState: JobAgentState;
  wave: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  outageStartedAt: string | null;
  outageEndedAt: string | null;
  errorCode: string | null;
  errorMessage: string | null;
}

export interface JobAgentRepo {
  /** In wave order, then by name. */
  list(jobId: number, options?: { states?: JobAgentState[] }): Promise<JobAgent[]>;
  get(jobId: number, agentName: string): Promise<JobAgent | undefined>;
  require(jobId: number, agentName: string): Promise<JobAgent>;
  /**
   * Moves one agent along JOB_AGENT_TRANSITIONS (compare-and-set) and stores what the new state
   * promises: csr_ready needs renewalId + csrPem, ca_pending a caCookie, issued a
   * certificatePem, failed an errorCode. Refused unless the job is running, and (JOB_CONFLICT)
   * unless this process owns the job with a live lease.
   */
  advance(jobId: number, agentName: string, to: JobAgentState, patch?: JobAgentPatch): Promise<JobAgent>;
  /**
   * Several of advance's steps in one transaction and one write: `plan` sees the row as locked
   * and returns the steps (none: the row is returned as it is). Each step is checked as advance
   * checks it; only the last state is stored, so a reader never sees the ones in between.
   */
  advanceAlong(jobId: number, agentName: string, plan: (current: JobAgent) => Array<{ to: JobAgentState; patch?: JobAgentPatch }>): Promise<JobAgent>;
  /**
   * advanceAlong from the row as this process last wrote it (`expected`, what a previous advance
   * returned): one statement that writes only if the row is still so and the job still this
   * process's and running. Otherwise it is advanceAlong from the row as it is (same checks, same errors).
   */
  advanceFrom(expected: JobAgent, plan: (current: JobAgent) => Array<{ to: JobAgentState; patch?: JobAgentPatch }>): Promise<JobAgent>;
  /** The agent's jobs, newest first (default 50). */
  agentHistory(agentName: string, options?: { limit?: number }): Promise<AgentHistoryEntry[]>;
  /** Each named agent's newest job (agentHistory's first entry), in one query per 500 names; agents never in a job are absent. */
  latestFor(agentNames: readonly string[]): Promise<Map<string, AgentHistoryEntry>>;
}

interface JobAgentRow {
  job_id: number; agent_name: string; state: JobAgentState; wave: number; renewal_id: string | null; csr_pem: string | null;
  ca_cookie: string | null; certificate_pem: string | null; chain_pem: string | null; outage_started_at: string | null;
  outage_ended_at: string | null; error_code: string | null; error_message: string | null; updated_at: string; owner_id: string | null;
}

const REQUIRED: Partial<Record<JobAgentState, Array<keyof JobAgent>>> = {
  csr_ready: ['renewalId', 'csrPem'],
  ca_pending: ['caCookie'],
  issued: ['certificatePem'],
  failed: ['errorCode'],
};

/** An unfinished job in which the agent is not yet settled, and who runs it. */
export interface AgentHolder {
  jobId: number;
  owner: OwnerInfo | undefined;
}

const HOLDING_STATES = ['pending', ...JOB_AGENT_ACTIVE];

/** Unfinished jobs in which the agent is not yet settled (it must not join another), oldest first. */
export async function jobsHoldingAgent(ctx: StoreContext, agentName: string): Promise<AgentHolder[]> {
  return (await holdersOf(ctx, [agentName])).get(agentName) ?? [];
}

/** jobsHoldingAgent for many agents in one query. */
export async function holdersOf(ctx: StoreContext, agentNames: readonly string[]): Promise<Map<string, AgentHolder[]>> {
  const { sql } = ctx;
  if (agentNames.length === 0) return new Map();
  const rows = await sql.all<{ agent_name: string; job_id: number; owner_id: string | null; id: string | null; pid: number; host: string; started_at: string; role: string; lease_expires_ms: number; live: number | boolean }>(
    `SELECT ja.agent_name, ja.job_id, j.owner_id, o.id, o.pid, o.host, o.started_at, o.role, o.lease_expires_ms,
        CASE WHEN o.lease_expires_ms >= ${sql.nowMs} THEN 1 ELSE 0 END AS live
      FROM job_agents ja JOIN jobs j ON j.id = ja.job_id LEFT JOIN owners o ON o.id = j.owner_id
      WHERE ja.agent_name IN ${placeholders(agentNames.length)} AND j.state IN ('planned', 'running')
        AND ja.state IN ${placeholders(HOLDING_STATES.length)}
      ORDER BY ja.job_id`,
    [...inValues(agentNames), ...HOLDING_STATES],
  );
  const out = new Map<string, AgentHolder[]>();
  for (const r of rows) {
    const list = out.get(r.agent_name) ?? [];
    list.push({ jobId: r.job_id, owner: r.id ? toInfo({ ...r, id: r.id }) : undefined });
    out.set(r.agent_name, list);
  }
  return out;
}

export function createJobAgentRepo(ctx: StoreContext): JobAgentRepo {
  const { sql } = ctx;
  const get = async (jobId: number, agentName: string): Promise<JobAgent | undefined> => {
    const row = await sql.get<JobAgentRow>('SELECT * FROM job_agents WHERE job_id = ? AND agent_name = ?', [jobId, agentName]);
    return row && toJobAgent(row);
  };
  const require = async (jobId: number, agentName: string): Promise<JobAgent> => {
    const row = await get(jobId, agentName);
    if (!row) throw new MidcertError('AGENT_NOT_FOUND', `agent "${agentName.slice(0, 80)}" is not part of job ${jobId}`);
    return row;
  };

  /**
   * The MID's row, locked, with its job's state and owner, in one statement: JOB_CONFLICT unless
   * this process owns the job with a live lease and the row says so too, STATE_TRANSITION_INVALID
   * unless the job is running. Only the MID's own row is locked: a take-over rewrites every row's
   * owner under the row lock, so the row's owner is the fence, and one job's MIDs never wait for
   * each other (locking the one job row made them queue on it).
   */
  const lockedMember = async (jobId: number, agentName: string): Promise<JobAgent> => {
    const row = await sql.get<JobAgentRow & { job_state: string; job_owner_id: string | null; live: number | boolean | null }>(
      `SELECT ja.*, j.state AS job_state, j.owner_id AS job_owner_id, ${ctx.owner.liveSql} AS live
        FROM job_agents ja JOIN jobs j ON j.id = ja.job_id LEFT JOIN owners o ON o.id = j.owner_id
        WHERE ja.job_id = ? AND ja.agent_name = ?${sql.forUpdate ? `${sql.forUpdate} OF ja` : ''}`, [jobId, agentName]);
    if (!row) {
      await ctx.owner.assertOwns(jobId); // JOB_NOT_FOUND or JOB_CONFLICT before "not in it"
      throw new MidcertError('AGENT_NOT_FOUND', `agent "${agentName.slice(0, 80)}" is not part of job ${jobId}`);
    }
    await ctx.owner.checkOwned(jobId, row.job_owner_id, row.live);
    if (row.owner_id !== null && row.owner_id !== ctx.owner.id) await ctx.owner.checkOwned(jobId, row.owner_id, row.live);
    if (row.job_state !== 'running') throw new MidcertError('STATE_TRANSITION_INVALID', `job ${jobId} is ${row.job_state}; its agents move only while it is running`);
    return toJobAgent(row);
  };
  // Confined to this MID's row of one job: on PostgreSQL many MIDs advance at once instead of
  // queueing behind the store-wide writer lock.
  const advanceAlong: JobAgentRepo['advanceAlong'] = (jobId, agentName, plan) => sql.writeRows(async () => {
    const current = await lockedMember(jobId, agentName);
    const steps = plan(current);
    if (steps.length === 0) return current;
    const now = ctx.now();
    const next = steps.reduce((from, step) => stepTo(from, step.to, step.patch ?? {}, now), current);
    const update = updateMember(current, next, now, ctx.owner.id);
    const row = await sql.get<{ state: string }>(`${update.sql} RETURNING state`, update.params);
    if (!row) throw new MidcertError('STATE_TRANSITION_INVALID', `agent ${agentName} in job ${jobId} changed state while being updated`);
    return update.written;
  });
  // One round trip on PostgreSQL: the ownership and job-state checks ride in the UPDATE's own
  // WHERE, the row's owner (the fence, see lockedMember) included.
  const advanceFrom: JobAgentRepo['advanceFrom'] = async (expected, plan) => {
    const steps = plan(expected);
    if (steps.length === 0) return expected;
    const now = ctx.now();
    const next = steps.reduce((from, step) => stepTo(from, step.to, step.patch ?? {}, now), expected);
    const update = updateMember(expected, next, now, ctx.owner.id);
    const row = await sql.writeOne<{ state: string }>(`${update.sql} AND owner_id = ?
        AND EXISTS (SELECT 1 FROM jobs j JOIN owners o ON o.id = j.owner_id
          WHERE j.id = job_agents.job_id AND j.state = 'running' AND j.owner_id = ? AND ${ctx.owner.liveSql} = 1)
      RETURNING state`, [...update.params, ctx.owner.id, ctx.owner.id]);
    return row ? update.written : advanceAlong(expected.jobId, expected.agentName, plan);
  };

  return {
    async list(jobId, options = {}) {
      const states = options.states;
      const rows = await sql.all<JobAgentRow>(`SELECT * FROM job_agents WHERE job_id = ?${states ? ` AND state IN ${placeholders(states.length)}` : ''}
        ORDER BY wave, agent_name`, [jobId, ...(states ? inValues(states) : [])]);
      return rows.map(toJobAgent);
    },
    get,
    require,
    advance: (jobId, agentName, to, patch = {}) => advanceAlong(jobId, agentName, () => [{ to, patch }]),
    advanceAlong,
    advanceFrom,
    async agentHistory(agentName, options = {}) {
      const limit = Math.min(Math.max(1, options.limit ?? 50), 10_000);
      const rows = await sql.all<HistoryRow>(`SELECT ${HISTORY_COLUMNS}
          FROM job_agents ja JOIN jobs j ON j.id = ja.job_id WHERE ja.agent_name = ? ORDER BY ja.job_id DESC LIMIT ?`, [agentName, limit]);
      return rows.map(historyEntry);
    },
    async latestFor(agentNames) {
      const latest = new Map<string, AgentHistoryEntry>();
      for (let i = 0; i < agentNames.length; i += NAMES_PER_QUERY) {
        const names = agentNames.slice(i, i + NAMES_PER_QUERY);
        // Served by job_agents_agent (agent_name, job_id): one index probe per name.
        const rows = await sql.all<HistoryRow>(`SELECT ${HISTORY_COLUMNS}
            FROM job_agents ja JOIN jobs j ON j.id = ja.job_id
            WHERE ja.agent_name IN (${names.map(() => '?').join(', ')})
              AND ja.job_id = (SELECT MAX(x.job_id) FROM job_agents x WHERE x.agent_name = ja.agent_name)`, names);
        for (const r of rows) latest.set(r.agent_name, historyEntry(r));
      }
      return latest;
    },
  };
}

/** Bound parameters per query stay far below SQLite's and PostgreSQL's limits. */
const NAMES_PER_QUERY = 500;

/** What a history entry needs; the PEM columns stay in the database. */
const HISTORY_COLUMNS = `ja.job_id, ja.agent_name, ja.state, ja.wave, ja.outage_started_at, ja.outage_ended_at, ja.error_code, ja.error_message,
  j.kind, j.state AS job_state, j.created_at, j.started_at, j.finished_at`;

type HistoryRow = Pick<JobAgentRow, 'job_id' | 'agent_name' | 'state' | 'wave' | 'outage_started_at' | 'outage_ended_at' | 'error_code' | 'error_message'>
  & { kind: JobKind; job_state: JobState; created_at: string; started_at: string | null; finished_at: string | null };

function historyEntry(r: HistoryRow): AgentHistoryEntry {
  return {
    jobId: r.job_id, kind: r.kind, jobState: r.job_state, agentState: r.state, wave: r.wave,
    createdAt: r.created_at, startedAt: r.started_at, finishedAt: r.finished_at,
    outageStartedAt: r.outage_started_at, outageEndedAt: r.outage_ended_at, errorCode: r.error_code, errorMessage: r.error_message,
  };
}

/**
 * The UPDATE of one MID's row from `from` (as it is in the store: just read under lock, or as this
 * process last wrote it, which the WHERE's state and owner checks confirm) to `next`: only the
 * columns that change are sent, so the PEMs a row carries are not written (nor TOASTed again on
 * PostgreSQL) at every step, and the row is not read back: what it became is `written`.
 */
function updateMember(from: JobAgent, next: JobAgent, now: string, ownerId: string): { sql: string; params: SqlParam[]; written: JobAgent } {
  const before = toRowFields(from);
  const after = toRowFields(next);
  const changed = (Object.keys(after) as Array<keyof typeof after>).filter((column) => after[column] !== before[column]);
  const sql = `UPDATE job_agents SET state = ?, ${changed.map((column) => `${column} = ?, `).join('')}updated_at = ?, owner_id = ?
  WHERE job_id = ? AND agent_name = ? AND state = ?`;
  const params: SqlParam[] = [next.state, ...changed.map((column) => after[column]), now, ownerId, from.jobId, from.agentName, from.state];
  return { sql, params, written: { ...next, updatedAt: now, ownerId } };
}

/** One checked transition in memory: legal from `from.state`, stamps the outage, carries what the new state promises. */
function stepTo(from: JobAgent, to: JobAgentState, patch: JobAgentPatch, now: string): JobAgent {
  const where = `agent ${from.agentName} in job ${from.jobId}`;
  assertTransition(JOB_AGENT_TRANSITIONS, where, from.state, to);
  const next = { ...merge(from, patch), state: to };
  if (to === 'installing' && next.outageStartedAt === null) next.outageStartedAt = now;
  if (to === 'succeeded' && next.outageStartedAt !== null && next.outageEndedAt === null) next.outageEndedAt = now;
  const lacking = (REQUIRED[to] ?? []).filter((field) => next[field] === null);
  if (lacking.length > 0) throw new MidcertError('STATE_TRANSITION_INVALID', `${where} cannot become ${to} without ${lacking.join(', ')}`);
  return next;
}

function merge(current: JobAgent, patch: JobAgentPatch): JobAgent {
  const pem = (value: string | undefined, what: string): string | undefined => {
    if (value !== undefined) assertSize(value, LIMITS.pemBytes, what);
    return value;
  };
  const short = (value: string | undefined, what: string, max: number): string | undefined => {
    if (value !== undefined && value.length > max) throw new MidcertError('INPUT_TOO_LARGE', `${what} is longer than ${max} characters`);
    return value;
  };
  return {
    ...current,
    renewalId: short(patch.renewalId, 'renewal id', 128) ?? current.renewalId,
    csrPem: pem(patch.csrPem, 'CSR') ?? current.csrPem,
    caCookie: short(patch.caCookie, 'CA cookie', 8192) ?? current.caCookie,
    certificatePem: pem(patch.certificatePem, 'certificate') ?? current.certificatePem,
    chainPem: pem(patch.chainPem, 'chain') ?? current.chainPem,
    outageStartedAt: isoOrUndefined(patch.outageStartedAt) ?? current.outageStartedAt,
    outageEndedAt: isoOrUndefined(patch.outageEndedAt) ?? current.outageEndedAt,
    errorCode: short(patch.errorCode, 'error code', 64) ?? current.errorCode,
    errorMessage: bounded(patch.errorMessage, 2000) ?? current.errorMessage,
  };
}

function isoOrUndefined(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new MidcertError('INTERNAL', `"${value.slice(0, 40)}" is not an ISO-8601 time`);
  return new Date(ms).toISOString();
}

function toRowFields(a: JobAgent): Omit<JobAgentRow, 'job_id' | 'agent_name' | 'state' | 'wave' | 'updated_at' | 'owner_id'> {
  return {
    renewal_id: a.renewalId, csr_pem: a.csrPem, ca_cookie: a.caCookie, certificate_pem: a.certificatePem, chain_pem: a.chainPem,
    outage_started_at: a.outageStartedAt, outage_ended_at: a.outageEndedAt, error_code: a.errorCode, error_message: a.errorMessage,
  };
}

function toJobAgent(r: JobAgentRow): JobAgent {
  return {
    jobId: r.job_id, agentName: r.agent_name, state: r.state, wave: r.wave, renewalId: r.renewal_id, csrPem: r.csr_pem,
    caCookie: r.ca_cookie, certificatePem: r.certificate_pem, chainPem: r.chain_pem, outageStartedAt: r.outage_started_at,
    outageEndedAt: r.outage_ended_at, errorCode: r.error_code, errorMessage: r.error_message, updatedAt: r.updated_at,
    ownerId: r.owner_id ?? null,
  };
}
