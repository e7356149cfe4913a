import type { Agent } from '../store/index.js';
import { rotateAgent, settleJob, type RotationDeps, type RotationOptions, type RotationResult } from './run-rotation.js';

const FINAL = new Set(['succeeded', 'failed', 'skipped', 'cancelled']);

/**
 * A controller killed mid-job left rows in flight. Each is continued from its saved state (the
 * agent answers repeated requests by renewal id, so nothing is rotated twice) and the job settled.
 */
export async function resumeUnfinishedJobs(deps: RotationDeps, options: RotationOptions): Promise<number[]> {
  const resumed: number[] = [];
  for (const job of deps.store.jobs.unfinished()) {
    if (job.state === 'planned') deps.store.jobs.transition(job.id, 'running');
    const rows = deps.store.jobAgents.list(job.id);
    const results: RotationResult[] = [];
    for (const row of rows) {
      let state = row.state;
      const agent: Agent | undefined = deps.store.agents.get(row.agentName);
      if (!FINAL.has(state) && agent) {
        deps.onEvent({ agent: row.agentName, step: 'resume', state: 'info', message: `job ${job.id} from ${state}` });
        const record = await rotateAgent(deps, job.id, agent, options, job.kind === 'convert' ? { mode: 'enable-mutual' } : {});
        state = record.state === 'verified' ? 'succeeded' : 'failed';
      } else if (!FINAL.has(state)) {
        deps.store.jobAgents.advance(job.id, row.agentName, 'failed', { errorCode: 'AGENT_NOT_FOUND', errorMessage: 'the agent was removed from the inventory' });
        state = 'failed';
      }
      results.push({ name: row.agentName, state: state === 'succeeded' ? 'succeeded' : state === 'skipped' ? 'skipped' : 'failed', previousSha256: '', newSha256: '', notAfter: '', failedStep: '', error: state === 'failed' ? { code: 'FAILED', message: '' } : null });
    }
    settleJob(deps.store, job.id, results);
    resumed.push(job.id);
  }
  return resumed;
}
