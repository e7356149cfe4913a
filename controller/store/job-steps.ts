import { MidcertError } from '../../common/errors.js';
import { writeTx, type StoreContext } from './db.js';
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
  start(jobId: number, agentName: string | null, step: string, detail?: string): JobStep;
  finish(stepId: number, state: Exclude<StepState, 'running'>, outcome?: StepOutcome): JobStep;
  /** In start order; only the given agent's when agentName is given (null: job-level steps). */
  list(jobId: number, agentName?: string | null): JobStep[];
}

interface StepRow {
  id: number; job_id: number; agent_name: string | null; step: string; state: StepState; attempt: number; started_at: string;
  finished_at: string | null; error_code: string | null; error_message: string | null; detail: string | null;
}

const STEP_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
const MAX_DETAIL = 16 * 1024;

export function createJobStepRepo(ctx: StoreContext): JobStepRepo {
  const { db } = ctx;
  const jobExists = db.prepare('SELECT 1 FROM jobs WHERE id = ?').pluck();
  const nextAttempt = db.prepare(`SELECT coalesce(max(attempt), 0) + 1 FROM job_steps
    WHERE job_id = ? AND agent_name IS ? AND step = ?`).pluck();
  const insert = db.prepare(`INSERT INTO job_steps (job_id, agent_name, step, state, attempt, started_at, detail)
    VALUES (?, ?, ?, 'running', ?, ?, ?) RETURNING *`);
  const selectOne = db.prepare('SELECT * FROM job_steps WHERE id = ?');
  const update = db.prepare(`UPDATE job_steps SET state = @to, finished_at = @now, error_code = @error_code,
      error_message = @error_message, detail = coalesce(@detail, detail)
    WHERE id = @id AND state = @from RETURNING *`);
  const selectAll = db.prepare('SELECT * FROM job_steps WHERE job_id = ? ORDER BY id');
  const selectAgent = db.prepare('SELECT * FROM job_steps WHERE job_id = ? AND agent_name IS ? ORDER BY id');

  return {
    start(jobId, agentName, step, detail) {
      if (!STEP_NAME.test(step)) throw new MidcertError('INTERNAL', `step name "${step.slice(0, 80)}" must be a lower-case word`);
      return writeTx(db, () => {
        if (!jobExists.get(jobId)) throw new MidcertError('JOB_NOT_FOUND', `no job ${jobId}`);
        const attempt = nextAttempt.get(jobId, agentName, step) as number;
        return toStep(insert.get(jobId, agentName, step, attempt, ctx.now(), bounded(detail, MAX_DETAIL)) as StepRow);
      });
    },
    finish(stepId, to, outcome = {}) {
      return writeTx(db, () => {
        const row = selectOne.get(stepId) as StepRow | undefined;
        if (!row) throw new MidcertError('INTERNAL', `no step ${stepId}`);
        assertTransition(STEP_TRANSITIONS, `step ${row.step} (${stepId})`, row.state, to);
        const updated = update.get({
          id: stepId, from: row.state, to, now: ctx.now(),
          error_code: outcome.errorCode?.slice(0, 64) ?? null,
          error_message: bounded(outcome.errorMessage, 2000),
          detail: bounded(outcome.detail, MAX_DETAIL),
        }) as StepRow | undefined;
        if (!updated) throw new MidcertError('STATE_TRANSITION_INVALID', `step ${stepId} changed state while being updated`);
        return toStep(updated);
      });
    },
    list(jobId, agentName) {
      const rows = agentName === undefined ? selectAll.all(jobId) : selectAgent.all(jobId, agentName);
      return (rows as StepRow[]).map(toStep);
    },
  };
}

function toStep(r: StepRow): JobStep {
  return {
    id: r.id, jobId: r.job_id, agentName: r.agent_name, step: r.step, state: r.state, attempt: r.attempt,
    startedAt: r.started_at, finishedAt: r.finished_at, errorCode: r.error_code, errorMessage: r.error_message, detail: r.detail,
  };
}
