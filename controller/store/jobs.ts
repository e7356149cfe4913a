import { MidcertError } from '../../common/errors.js';
import type { AuditRepo } from './audit.js';
import type { StoreContext } from './db.js';
import { holdersOf, type AgentHolder } from './job-agents.js';
import { describeOwner, type OwnerInfo } from './owners.js';
import { inValues, placeholders } from './sql.js';
import {
  JOB_AGENT_ACTIVE, JOB_AGENT_STATES, JOB_KINDS, JOB_TRANSITIONS, assertTransition, isTerminal,
  type JobAgentState, type JobKind, type JobState,
} from './states.js';
import { bounded, checkAgentName } from './validate.js';

/** A job: one rotate / rotate-ca / convert / bootstrap / renew run over some agents. */
export interface Job {
  id: number;
  kind: JobKind;
  state: JobState;
  /** The options the job was started with (no secrets), enough to resume it. */
  params: Record<string, unknown>;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  createdBy: string;
  /** The process running it now (owners.ts); null for jobs from before job ownership. */
  ownerId: string | null;
}

/** takeOver(): the job is this process's now, or who still holds it. */
export type TakeOver = { taken: true; job: Job; from: OwnerInfo | undefined } | { taken: false; job: Job; heldBy: OwnerInfo | undefined };

export interface NewJob {
  kind: JobKind;
  params?: Record<string, unknown>;
  /** The agents taking part, each with its wave (default 0); all must be registered and idle. */
  agents?: Array<string | { name: string; wave?: number }>;
}

export interface JobQuery {
  /** Newest first; default 50, at most 10,000. */
  limit?: number;
  /** Only jobs this agent takes part in. */
  agent?: string;
  kind?: JobKind;
  states?: JobState[];
}

export interface JobError {
  code: string;
  message: string;
}

export interface JobRepo {
  /**
   * Creates a planned job owned by this process and its pending job_agents rows atomically.
   * JOB_CONFLICT when an agent is in another unfinished job whose owner's lease is live (naming
   * the owner); AGENT_BUSY when that job is abandoned (resume it first).
   */
  create(job: NewJob): Promise<Job>;
  /**
   * Adds pending agents to a planned or running job of this process, under create's checks
   * (registered, listed once, in no other unfinished job: JOB_CONFLICT / AGENT_BUSY), all or none.
   * A rotation that starts its first MIDs while it still asks the others adds them as it goes.
   */
  addAgents(jobId: number, agents: NonNullable<NewJob['agents']>): Promise<void>;
  get(id: number): Promise<Job | undefined>;
  require(id: number): Promise<Job>;
  /**
   * Moves a job along JOB_TRANSITIONS (compare-and-set; JOB_CONFLICT unless this process owns
   * it). Entering `running` stamps started_at; entering a final state stamps finished_at, is
   * refused while an agent is still in flight (settle each one first), and marks agents still
   * `pending` as skipped (cancelled for a cancelled job).
   */
  transition(id: number, to: JobState, error?: JobError): Promise<Job>;
  /**
   * Takes an unfinished job over when its owner's lease has expired (or it has none, or it is
   * this process already): compare-and-set, so of several processes exactly one gets it.
   */
  takeOver(id: number): Promise<TakeOver>;
  list(query?: JobQuery): Promise<Job[]>;
  /** Planned and running jobs, oldest first: what a restarted controller resumes. */
  unfinished(): Promise<Job[]>;
  /** How many of the job's agents are in each state. */
  agentCounts(id: number): Promise<Record<JobAgentState, number>>;
  /** For each named agent that is in an unfinished job: which jobs, and who runs them. */
  holders(agentNames: readonly string[]): Promise<Map<string, AgentHolder[]>>;
}

interface JobRow {
  id: number; kind: JobKind; state: JobState; params: string; created_at: string; started_at: string | null;
  finished_at: string | null; error_code: string | null; error_message: string | null; created_by: string; owner_id: string | null;
}

const MAX_PARAMS_BYTES = 64 * 1024;
/** 5 parameters a row: 1,000 stays far below SQLite's and PostgreSQL's limits on bound parameters. */
const MEMBERS_PER_INSERT = 200;

export function createJobRepo(ctx: StoreContext, audit: AuditRepo): JobRepo {
  const { sql } = ctx;
  const get = async (id: number): Promise<Job | undefined> => {
    const row = await sql.get<JobRow>('SELECT * FROM jobs WHERE id = ?', [id]);
    return row && toJob(row);
  };
  const require = async (id: number): Promise<Job> => {
    const job = await get(id);
    if (!job) throw new MidcertError('JOB_NOT_FOUND', `no job ${id}`);
    return job;
  };
  const list = async (query: JobQuery = {}): Promise<Job[]> => {
    const where: string[] = [];
    const params: Array<string | number> = [];
    if (query.agent !== undefined) { where.push('EXISTS (SELECT 1 FROM job_agents WHERE job_id = jobs.id AND agent_name = ?)'); params.push(query.agent); }
    if (query.kind !== undefined) { where.push('kind = ?'); params.push(query.kind); }
    if (query.states) { where.push(`state IN ${placeholders(query.states.length)}`); params.push(...inValues(query.states)); }
    params.push(Math.min(Math.max(1, query.limit ?? 50), 10_000));
    return (await sql.all<JobRow>(`SELECT * FROM jobs${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`, params)).map(toJob);
  };

  /** Registered, and in no unfinished job; checked inside the write transaction, so two processes never both claim a MID. */
  const assertJoinable = async (names: string[]): Promise<void> => {
    if (names.length === 0) return;
    const registered = new Set((await sql.all<{ name: string }>(`SELECT name FROM agents WHERE name IN ${placeholders(names.length)}`, inValues(names))).map((r) => r.name));
    const missing = names.filter((n) => !registered.has(n));
    if (missing.length > 0) throw new MidcertError('AGENT_NOT_FOUND', `not registered: ${missing.slice(0, 10).join(', ')}`);
    assertFree(await holdersOf(ctx, names), ctx.owner.id);
  };
  // Many rows per statement: a fleet's job is one round trip per MEMBERS_PER_INSERT MIDs, not one per MID.
  const insertMembers = async (jobId: number, members: Array<{ name: string; wave: number }>, ownerId: string, now: string): Promise<void> => {
    for (let i = 0; i < members.length; i += MEMBERS_PER_INSERT) {
      const chunk = members.slice(i, i + MEMBERS_PER_INSERT);
      await sql.run(`INSERT INTO job_agents (job_id, agent_name, state, wave, updated_at, owner_id) VALUES ${chunk.map(() => "(?, ?, 'pending', ?, ?, ?)").join(', ')}`,
        chunk.flatMap((m) => [jobId, m.name, m.wave, now, ownerId]));
    }
  };

  return {
    async create(input) {
      const names = (input.agents ?? []).map((a) => (typeof a === 'string' ? a : a.name));
      const auditParams = { kind: input.kind, agents: names, params: input.params ?? {} };
      return audit.audited({ action: 'job.create', target: 'job:new', params: auditParams }, async () => {
        const members = normalizeMembers(input.agents ?? []);
        if (!JOB_KINDS.includes(input.kind)) throw new MidcertError('INTERNAL', `unknown job kind "${String(input.kind)}"`);
        const params = JSON.stringify(input.params ?? {});
        if (Buffer.byteLength(params) > MAX_PARAMS_BYTES) throw new MidcertError('INPUT_TOO_LARGE', `job params exceed ${MAX_PARAMS_BYTES} bytes`);
        await assertJoinable(members.map((m) => m.name));
        const ownerId = await ctx.owner.ensure();
        const now = ctx.now();
        const job = toJob(await sql.get<JobRow>(`INSERT INTO jobs (kind, state, params, created_at, created_by, owner_id)
          VALUES (?, 'planned', ?, ?, ?, ?) RETURNING *`, [input.kind, params, now, ctx.actor, ownerId]) as JobRow);
        await insertMembers(job.id, members, ownerId, now);
        return job;
      }, (job) => ({ target: `job:${job.id}` }));
    },
    async addAgents(jobId, agents) {
      const names = agents.map((a) => (typeof a === 'string' ? a : a.name));
      if (names.length === 0) return;
      await audit.audited({ action: 'job.add-agents', target: `job:${jobId}`, params: { agents: names } }, async () => {
        const members = normalizeMembers(agents);
        const locked = await sql.get<JobRow>(`SELECT * FROM jobs WHERE id = ?${sql.forUpdate}`, [jobId]);
        if (!locked) throw new MidcertError('JOB_NOT_FOUND', `no job ${jobId}`);
        if (locked.state !== 'planned' && locked.state !== 'running') throw new MidcertError('STATE_TRANSITION_INVALID', `job ${jobId} is ${locked.state}; agents join only a planned or running job`);
        await ctx.owner.assertOwns(jobId);
        const already = (await sql.all<{ agent_name: string }>(`SELECT agent_name FROM job_agents WHERE job_id = ? AND agent_name IN ${placeholders(members.length)}`, [jobId, ...inValues(names)])).map((r) => r.agent_name);
        if (already.length > 0) throw new MidcertError('AGENT_INVALID', `already in job ${jobId}: ${already.slice(0, 10).join(', ')}`);
        await assertJoinable(names);
        await insertMembers(jobId, members, locked.owner_id ?? await ctx.owner.ensure(), ctx.now());
      });
    },
    get,
    require,
    async transition(id, to, error) {
      return audit.audited({ action: 'job.transition', target: `job:${id}`, params: { to, errorCode: error?.code } }, async () => {
        // The job row first, as jobAgents.advance locks it: both take the job row before MID rows.
        const locked = await sql.get<JobRow>(`SELECT * FROM jobs WHERE id = ?${sql.forUpdate}`, [id]);
        if (!locked) throw new MidcertError('JOB_NOT_FOUND', `no job ${id}`);
        const job = toJob(locked);
        assertTransition(JOB_TRANSITIONS, `job ${id}`, job.state, to);
        await ctx.owner.assertOwns(id);
        const final = isTerminal(JOB_TRANSITIONS, to);
        const now = ctx.now();
        if (final) {
          const active = [...JOB_AGENT_ACTIVE];
          const flying = (await sql.all<{ agent_name: string }>(`SELECT agent_name FROM job_agents WHERE job_id = ? AND state IN ${placeholders(active.length)} ORDER BY agent_name`, [id, ...active])).map((r) => r.agent_name);
          if (flying.length > 0) {
            throw new MidcertError('STATE_TRANSITION_INVALID', `job ${id} cannot become ${to} while agents are in flight: ${flying.slice(0, 10).join(', ')}`);
          }
          await sql.run(`UPDATE job_agents SET state = ?, updated_at = ? WHERE job_id = ? AND state = 'pending'`, [to === 'cancelled' ? 'cancelled' : 'skipped', now, id]);
        }
        const row = await sql.get<JobRow>(`UPDATE jobs SET state = ?,
            started_at = CASE WHEN ? = 'running' THEN coalesce(started_at, ?) ELSE started_at END,
            finished_at = CASE WHEN ? = 1 THEN ? ELSE finished_at END,
            error_code = coalesce(?, error_code), error_message = coalesce(?, error_message)
          WHERE id = ? AND state = ? RETURNING *`, [
          to, to, now, final ? 1 : 0, now, error?.code ?? null, bounded(error?.message, 2000), id, job.state,
        ]);
        if (!row) throw new MidcertError('STATE_TRANSITION_INVALID', `job ${id} changed state while being updated`);
        return toJob(row);
      });
    },
    async takeOver(id) {
      const before = await require(id);
      const previous = await ctx.owner.describe(before.ownerId);
      const outcome = await sql.write(async (): Promise<TakeOver> => {
        const ownerId = await ctx.owner.ensure();
        const row = await sql.get<JobRow>(`UPDATE jobs SET owner_id = ?
          WHERE id = ? AND state IN ('planned', 'running')
            AND (owner_id IS NULL OR owner_id = ? OR NOT EXISTS (
              SELECT 1 FROM owners o WHERE o.id = jobs.owner_id AND o.lease_expires_ms >= ${sql.nowMs}))
          RETURNING *`, [ownerId, id, ownerId]);
        if (!row) {
          const job = await require(id);
          return { taken: false, job, heldBy: await ctx.owner.describe(job.ownerId) };
        }
        await sql.run('UPDATE job_agents SET owner_id = ? WHERE job_id = ?', [ownerId, id]);
        return { taken: true, job: toJob(row), from: previous };
      });
      if (outcome.taken && before.ownerId !== outcome.job.ownerId) {
        await audit.record({ action: 'job.take-over', target: `job:${id}`, params: { from: previous ? describeOwner(previous) : null } });
      }
      return outcome;
    },
    list,
    unfinished: async () => (await list({ states: ['planned', 'running'], limit: 10_000 })).reverse(),
    async agentCounts(id) {
      const counts = Object.fromEntries(JOB_AGENT_STATES.map((s) => [s, 0])) as Record<JobAgentState, number>;
      for (const row of await sql.all<{ state: JobAgentState; n: number }>('SELECT state, count(*) AS n FROM job_agents WHERE job_id = ? GROUP BY state', [id])) counts[row.state] = Number(row.n);
      return counts;
    },
    holders: (agentNames) => holdersOf(ctx, agentNames),
  };
}

/**
 * JOB_CONFLICT naming the owner when another live process runs a job holding one of the agents;
 * AGENT_BUSY when the job is this process's own or abandoned (resume it first).
 */
function assertFree(holders: Map<string, AgentHolder[]>, selfId: string): void {
  if (holders.size === 0) return;
  const entries = [...holders.entries()];
  const byOther = (h: AgentHolder): boolean => Boolean(h.owner?.live) && h.owner?.id !== selfId;
  const live = entries.filter(([, hs]) => hs.some(byOther));
  if (live.length > 0) {
    const [name, hs] = live[0] as [string, AgentHolder[]];
    const holder = hs.find(byOther) as AgentHolder;
    const others = live.length > 1 ? ` (and ${live.length - 1} more MID(s): ${live.slice(1, 6).map(([n]) => n).join(', ')})` : '';
    throw new MidcertError('JOB_CONFLICT', `${name} is in job ${holder.jobId}, ${describeOwner(holder.owner)}${others}; wait for it to finish or run this again after it`);
  }
  const abandoned = entries.some(([, hs]) => hs.some((h) => !h.owner?.live));
  throw new MidcertError('AGENT_BUSY', `already in an unfinished job: ${entries.slice(0, 10).map(([n, hs]) => `${n} (job ${hs.map((h) => h.jobId).join(', ')})`).join(', ')}${abandoned ? '; its owner is gone: midcert rotate or midcert serve resumes it first' : ''}`);
}

function normalizeMembers(agents: NonNullable<NewJob['agents']>): Array<{ name: string; wave: number }> {
  const seen = new Set<string>();
  const out: Array<{ name: string; wave: number }> = [];
  for (const entry of agents) {
    const name = typeof entry === 'string' ? entry : entry.name;
    const wave = typeof entry === 'string' ? 0 : entry.wave ?? 0;
    if (seen.has(name)) throw new MidcertError('AGENT_INVALID', `agent "${name}" is listed twice in one job`);
    if (!Number.isInteger(wave) || wave < 0) throw new MidcertError('AGENT_INVALID', `wave of agent "${name}" must be a non-negative integer`);
    seen.add(checkAgentName(name));
    out.push({ name, wave });
  }
  return out;
}

function toJob(row: JobRow): Job {
  return {
    id: row.id, kind: row.kind, state: row.state, params: JSON.parse(row.params) as Record<string, unknown>,
    createdAt: row.created_at, startedAt: row.started_at, finishedAt: row.finished_at,
    errorCode: row.error_code, errorMessage: row.error_message, createdBy: row.created_by, ownerId: row.owner_id ?? null,
  };
}
