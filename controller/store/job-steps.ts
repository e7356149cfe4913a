import { MidcertError } from '../../common/errors.js';
import type { StoreContext } from './db.js';
import { STEP_TRANSITIONS, assertTransition, type StepState } from './states.js';
import { bounded } from './validate.js';

/**
 * A timed record of one step (e.g. `prepare`, `submit`, `publish-leaf`, `install`, `verify-up`)
 * for one agent, or for the whole job when agentName is null (e.g. `publish-chain`). Retrying a
 * step adds a row with the next attempt number, so the history shows every try.
 */
export interface JobStep {
  id: number;
  jobId: number;
  agentName: string | null;
  step: string;
  state: StepState;
  attempt: number;
  startedAt: string;
  finishedAt: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  detail: string | null;
}

export interface StepOutcome {
  errorCode?: string;
  errorMessage?: string;
  /** Free text or JSON, cut to 16 KiB; never a secret. */
  detail?: string;
}

export interface JobStepRepo {
  /** JOB_CONFLICT unless this process owns the job (as every write of a job's runner). */
  start(jobId: number, agentName: string | null, step: string, detail?: string): Promise<JobStep>;
  finish(stepId: number, state: Exclude<StepState, 'running'>, outcome?: StepOutcome): Promise<JobStep>;
  /** In start order; only the given agent's when agentName is given (null: job-level steps). */
  list(jobId: number, agentName?: string | null): Promise<JobStep[]>;
}

interface StepRow {
  id: number; job_id: number; agent_name: string | null; step: string; state: StepState; attempt: number; started_at: string;
  finished_at: string | null; error_code: string | null; error_message: string | null; detail: string | null;
}

const STEP_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
const MAX_DETAIL = 16 * 1024;

export function createJobStepRepo(ctx: StoreContext): JobStepRepo {
  const { sql } = ctx;
  return {
    async start(jobId, agentName, step, detail) {
      if (!STEP_NAME.test(step)) throw new MidcertError('INTERNAL', `step name "${step.slice(0, 80)}" must be a lower-case word`);
      return sql.write(async () => {
        if (!(await sql.get('SELECT 1 AS found FROM jobs WHERE id = ?', [jobId]))) throw new MidcertError('JOB_NOT_FOUND', `no job ${jobId}`);
        await ctx.owner.assertOwns(jobId);
        const next = await sql.get<{ attempt: number }>(`SELECT coalesce(max(attempt), 0) + 1 AS attempt FROM job_steps
          WHERE job_id = ? AND agent_name IS NOT DISTINCT FROM ? AND step = ?`, [jobId, agentName, step]);
        return toStep(await sql.get<StepRow>(`INSERT INTO job_steps (job_id, agent_name, step, state, attempt, started_at, detail)
          VALUES (?, ?, ?, 'running', ?, ?, ?) RETURNING *`, [jobId, agentName, step, Number(next?.attempt ?? 1), ctx.now(), bounded(detail, MAX_DETAIL)]) as StepRow);
      });
    },
    async finish(stepId, to, outcome = {}) {
      return sql.write(async () => {
        const row = await sql.get<StepRow>('SELECT * FROM job_steps WHERE id = ?', [stepId]);
        if (!row) throw new MidcertError('INTERNAL', `no step ${stepId}`);
        await ctx.owner.assertOwns(row.job_id);
        assertTransition(STEP_TRANSITIONS, `step ${row.step} (${stepId})`, row.state, to);
        const updated = await sql.get<StepRow>(`UPDATE job_steps SET state = ?, finished_at = ?, error_code = ?,
            error_message = ?, detail = coalesce(?, detail)
          WHERE id = ? AND state = ? RETURNING *`, [
          to, ctx.now(), outcome.errorCode?.slice(0, 64) ?? null, bounded(outcome.errorMessage, 2000), bounded(outcome.detail, MAX_DETAIL), stepId, row.state,
        ]);
        if (!updated) throw new MidcertError('STATE_TRANSITION_INVALID', `step ${stepId} changed state while being updated`);
        return toStep(updated);
      });
    },
    async list(jobId, agentName) {
      const rows = agentName === undefined
        ? await sql.all<StepRow>('SELECT * FROM job_steps WHERE job_id = ? ORDER BY id', [jobId])
        : await sql.all<StepRow>('SELECT * FROM job_steps WHERE job_id = ? AND agent_name IS NOT DISTINCT FROM ? ORDER BY id', [jobId, agentName]);
      return rows.map(toStep);
    },
  };
}

function toStep(r: StepRow): JobStep {
  return {
    id: r.id, jobId: r.job_id, agentName: r.agent_name, step: r.step, state: r.state, attempt: r.attempt,
    startedAt: r.started_at, finishedAt: r.finished_at, errorCode: r.error_code, errorMessage: r.error_message, detail: r.detail,
  };
}
