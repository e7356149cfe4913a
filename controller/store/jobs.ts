import { MidcertError } from '../../common/errors.js';
import type { AuditRepo } from './audit.js';
import type { StoreContext } from './db.js';
import { jobsHoldingAgent } from './job-agents.js';
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
}

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
  /** Creates a planned job and its pending job_agents rows atomically. AGENT_BUSY if an agent is in another unfinished job. */
  create(job: NewJob): Job;
  get(id: number): Job | undefined;
  require(id: number): Job;
  /**
   * Moves a job along JOB_TRANSITIONS (compare-and-set). Entering `running` stamps started_at;
   * entering a final state stamps finished_at, is refused while an agent is still in flight
   * (settle each one first), and marks agents still `pending` as skipped (cancelled for a
   * cancelled job).
   */
  transition(id: number, to: JobState, error?: JobError): Job;
  list(query?: JobQuery): Job[];
  /** Planned and running jobs, oldest first: what a restarted controller resumes. */
  unfinished(): Job[];
  /** How many of the job's agents are in each state. */
  agentCounts(id: number): Record<JobAgentState, number>;
}

interface JobRow {
  id: number; kind: JobKind; state: JobState; params: string; created_at: string; started_at: string | null;
  finished_at: string | null; error_code: string | null; error_message: string | null; created_by: string;
}

const MAX_PARAMS_BYTES = 64 * 1024;

export function createJobRepo(ctx: StoreContext, audit: AuditRepo): JobRepo {
  const { db } = ctx;
  const insertJob = db.prepare(`INSERT INTO jobs (kind, state, params, created_at, created_by)
    VALUES (@kind, 'planned', @params, @created_at, @created_by) RETURNING *`);
  const insertAgent = db.prepare(`INSERT INTO job_agents (job_id, agent_name, state, wave, updated_at)
    VALUES (?, ?, 'pending', ?, ?)`);
  const agentExists = db.prepare('SELECT 1 FROM agents WHERE name = ?').pluck();
  const selectOne = db.prepare('SELECT * FROM jobs WHERE id = ?');
  const setState = db.prepare(`UPDATE jobs SET state = @to,
      started_at = CASE WHEN @to = 'running' THEN coalesce(started_at, @now) ELSE started_at END,
      finished_at = CASE WHEN @final THEN @now ELSE finished_at END,
      error_code = coalesce(@error_code, error_code), error_message = coalesce(@error_message, error_message)
    WHERE id = @id AND state = @from RETURNING *`);
  const inFlight = db.prepare(`SELECT agent_name FROM job_agents WHERE job_id = ? AND state IN (SELECT value FROM json_each(?)) ORDER BY agent_name`).pluck();
  const settlePending = db.prepare(`UPDATE job_agents SET state = ?, updated_at = ? WHERE job_id = ? AND state = 'pending'`);
  const selectMany = db.prepare(`SELECT * FROM jobs
    WHERE (@agent IS NULL OR EXISTS (SELECT 1 FROM job_agents WHERE job_id = jobs.id AND agent_name = @agent))
      AND (@kind IS NULL OR kind = @kind)
      AND (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))
    ORDER BY id DESC LIMIT @limit`);
  const countByState = db.prepare('SELECT state, count(*) AS n FROM job_agents WHERE job_id = ? GROUP BY state');
  const activeStates = JSON.stringify([...JOB_AGENT_ACTIVE]);

  const get = (id: number): Job | undefined => {
    const row = selectOne.get(id) as JobRow | undefined;
    return row && toJob(row);
  };
  const require = (id: number): Job => {
    const job = get(id);
    if (!job) throw new MidcertError('JOB_NOT_FOUND', `no job ${id}`);
    return job;
  };
  const list = (query: JobQuery = {}): Job[] => (selectMany.all({
    agent: query.agent ?? null,
    kind: query.kind ?? null,
    states: query.states ? JSON.stringify(query.states) : null,
    limit: Math.min(Math.max(1, query.limit ?? 50), 10_000),
  }) as JobRow[]).map(toJob);

  return {
    create(input) {
      const names = (input.agents ?? []).map((a) => (typeof a === 'string' ? a : a.name));
      const auditParams = { kind: input.kind, agents: names, params: input.params ?? {} };
      return audit.audited({ action: 'job.create', target: 'job:new', params: auditParams }, () => {
        const members = normalizeMembers(input.agents ?? []);
        if (!JOB_KINDS.includes(input.kind)) throw new MidcertError('INTERNAL', `unknown job kind "${String(input.kind)}"`);
        const params = JSON.stringify(input.params ?? {});
        if (Buffer.byteLength(params) > MAX_PARAMS_BYTES) throw new MidcertError('INPUT_TOO_LARGE', `job params exceed ${MAX_PARAMS_BYTES} bytes`);
        const missing = members.filter((m) => !agentExists.get(m.name)).map((m) => m.name);
        if (missing.length > 0) throw new MidcertError('AGENT_NOT_FOUND', `not registered: ${missing.slice(0, 10).join(', ')}`);
        // Checked inside the write transaction: the CLI and the daemon cannot both claim a MID.
        const busy = members.map((m) => ({ name: m.name, jobs: jobsHoldingAgent(db, m.name) })).filter((b) => b.jobs.length > 0);
        if (busy.length > 0) {
          throw new MidcertError('AGENT_BUSY', `already in an unfinished job: ${busy.slice(0, 10).map((b) => `${b.name} (job ${b.jobs.join(', ')})`).join(', ')}`);
        }
        const now = ctx.now();
        const job = toJob(insertJob.get({ kind: input.kind, params, created_at: now, created_by: ctx.actor }) as JobRow);
        for (const m of members) insertAgent.run(job.id, m.name, m.wave, now);
        return job;
      }, (job) => ({ target: `job:${job.id}` }));
    },
    get,
    require,
    transition(id, to, error) {
      return audit.audited({ action: 'job.transition', target: `job:${id}`, params: { to, errorCode: error?.code } }, () => {
        const job = require(id);
        assertTransition(JOB_TRANSITIONS, `job ${id}`, job.state, to);
        const final = isTerminal(JOB_TRANSITIONS, to);
        const now = ctx.now();
        if (final) {
          const flying = inFlight.all(id, activeStates) as string[];
          if (flying.length > 0) {
            throw new MidcertError('STATE_TRANSITION_INVALID', `job ${id} cannot become ${to} while agents are in flight: ${flying.slice(0, 10).join(', ')}`);
          }
          settlePending.run(to === 'cancelled' ? 'cancelled' : 'skipped', now, id);
        }
        const row = setState.get({
          id, from: job.state, to, now, final: final ? 1 : 0,
          error_code: error?.code ?? null, error_message: bounded(error?.message, 2000),
        }) as JobRow | undefined;
        if (!row) throw new MidcertError('STATE_TRANSITION_INVALID', `job ${id} changed state while being updated`);
        return toJob(row);
      });
    },
    list,
    unfinished: () => list({ states: ['planned', 'running'], limit: 10_000 }).reverse(),
    agentCounts(id) {
      const counts = Object.fromEntries(JOB_AGENT_STATES.map((s) => [s, 0])) as Record<JobAgentState, number>;
      for (const row of countByState.all(id) as Array<{ state: JobAgentState; n: number }>) counts[row.state] = row.n;
      return counts;
    },
  };
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
    errorCode: row.error_code, errorMessage: row.error_message, createdBy: row.created_by,
  };
}
