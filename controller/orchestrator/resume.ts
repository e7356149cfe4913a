import { describeOwner, type Agent, type Job, type JobAgent, type OwnerInfo, type Store } from '../store/index.js';
import { rotateAgent, settleJob, type RotationDeps, type RotationOptions, type RotationResult } from './rotate-agent.js';
import type { RotationRecord } from './rotate-one.js';

const FINAL = new Set(['succeeded', 'failed', 'skipped', 'cancelled']);
const SWAPPED = new Set(['installing', 'succeeded']);

/** What resuming found: jobs it took over and ran to the end, and jobs a live process still runs. */
export interface ResumeOutcome {
  resumed: number[];
  /** Unfinished jobs whose owner's lease is live: theirs to finish (or to hand over when the lease lapses). */
  held: Array<{ jobId: number; owner: OwnerInfo | undefined }>;
}

/**
 * A controller killed mid-job left rows in flight. Each job whose owner is gone (its lease expired,
 * docs/controller-state.md "Ownership and leases") is taken over, continued from its saved state
 * and settled; a job a live process runs is left to it. An install that was in flight is not sent
 * again blindly: the agent is asked GetRenewal by renewal id first (rotate-one.ts
 * reconcileInstall), so the row records what the host did, and nothing is rotated twice.
 * A CA-chain rotation interrupted before its single chain swap is not continued MID by MID (that
 * would swap the chain with other MIDs unstaged): its open rows are closed and the operator
 * reruns `midcert rotate-ca`.
 */
export async function resumeUnfinishedJobs(deps: RotationDeps, options: RotationOptions): Promise<ResumeOutcome> {
  const outcome: ResumeOutcome = { resumed: [], held: [] };
  for (const unfinished of await deps.store.jobs.unfinished()) {
    const takeOver = await deps.store.jobs.takeOver(unfinished.id);
    if (!takeOver.taken) {
      outcome.held.push({ jobId: unfinished.id, owner: takeOver.heldBy });
      continue;
    }
    const job = takeOver.job;
    if (takeOver.from) deps.onEvent({ agent: `job ${job.id}`, step: 'take-over', state: 'info', message: `job ${job.id} from ${describeOwner(takeOver.from)}` });
    if (job.state === 'planned') await deps.store.jobs.transition(job.id, 'running');
    const rows = await deps.store.jobAgents.list(job.id);
    const swapped = rows.some((r) => SWAPPED.has(r.state));
    const results: RotationResult[] = [];
    for (const row of rows) results.push(await resumeRow(deps, job, row, options, swapped));
    await settleJob(deps.store, job.id, results);
    outcome.resumed.push(job.id);
  }
  return outcome;
}

async function resumeRow(deps: RotationDeps, job: Job, row: JobAgent, options: RotationOptions, swapped: boolean): Promise<RotationResult> {
  if (FINAL.has(row.state)) return resultOf(row.agentName, await deps.store.jobAgents.require(job.id, row.agentName));
  const agent: Agent | undefined = await deps.store.agents.get(row.agentName);
  if (!agent) return close(deps, job, row, 'AGENT_NOT_FOUND', 'the agent was removed from the inventory');
  if (job.kind === 'rotate-ca' && !swapped) {
    return close(deps, job, row, 'INTERRUPTED', 'rotate-ca was interrupted before the chain swap; nothing was installed; run midcert rotate-ca --chain … again');
  }
  deps.onEvent({ agent: row.agentName, step: 'resume', state: 'info', message: `job ${job.id} from ${row.state}` });
  const extra = job.kind === 'convert' || job.kind === 'bootstrap' ? { mode: 'enable-mutual' as const } : job.kind === 'rotate-ca' ? { publishChain: false } : {};
  return resultOf(row.agentName, await rotateAgent(deps, job.id, agent, options, extra));
}

async function close(deps: RotationDeps, job: Job, row: JobAgent, errorCode: string, errorMessage: string): Promise<RotationResult> {
  return resultOf(row.agentName, await deps.store.jobAgents.advance(job.id, row.agentName, 'failed', { errorCode, errorMessage }));
}

function resultOf(name: string, r: RotationRecord | JobAgent): RotationResult {
  const ok = r.state === 'verified' || r.state === 'succeeded';
  const skipped = r.state === 'skipped' || r.state === 'cancelled';
  const failedStep = 'failedStep' in r ? r.failedStep ?? '' : '';
  return {
    name, state: ok ? 'succeeded' : skipped ? 'skipped' : 'failed', previousSha256: '', newSha256: '', notAfter: '', failedStep,
    error: ok || skipped ? null : { code: r.errorCode ?? 'FAILED', message: r.errorMessage ?? '' },
  };
}

/**
 * The MIDs the given (just resumed) jobs renewed, with the reason a re-run reports when it skips
 * them: a re-run of the same request after a controller kill must not rotate them again, not even
 * with --force (that rotates each selected MID once: this job already did).
 */
export async function renewedByJobs(store: Store, jobIds: number[], how: 'resumed' | 'unfinished' = 'resumed'): Promise<Map<string, string>> {
  const renewed = new Map<string, string>();
  for (const jobId of jobIds) {
    for (const row of await store.jobAgents.list(jobId, { states: ['succeeded'] })) {
      renewed.set(row.agentName, `already-renewed (by ${how} job ${jobId})`);
    }
  }
  return renewed;
}
