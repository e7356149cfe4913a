import { readCertificates } from '../../pki/certificate.js';
import { MidcertError } from '../../common/errors.js';
import type { Agent } from '../store/index.js';
import { rotateCaChain } from './rotate-ca.js';
import { rotateAgent, settleJob, type RotationDeps, type RotationOptions, type RotationResult } from './rotate-agent.js';
import type { RotationRecord } from './rotate-one.js';

export interface CaRotationReport {
  ok: boolean;
  jobId: number;
  swappedAt: string | null;
  results: RotationResult[];
  outageSeconds: Record<string, number>;
  reason: string;
}

/**
 * `midcert rotate-ca --chain NEW.pem`: every MID gets a leaf from the new CA (the configured
 * adapter must already issue under the new chain), then the chain is swapped once and all
 * staged leaves are installed in parallel.
 */
export async function runCaRotation(deps: RotationDeps, agents: Agent[], newChainPem: string, options: RotationOptions): Promise<CaRotationReport> {
  const newChain = readCertificates(Buffer.from(newChainPem));
  if (newChain.length === 0) throw new MidcertError('CHAIN_INVALID', 'the new chain file holds no certificate');
  const chainShas = new Set(newChain.map((c) => c.sha256));
  const job = await deps.store.jobs.create({ kind: 'rotate-ca', params: { ...options, chainSha256: [...chainShas] }, agents: agents.map((a) => a.name) });
  await deps.store.jobs.transition(job.id, 'running');
  const byName = new Map(agents.map((a) => [a.name, a]));
  const outcome = await rotateCaChain({
    targets: agents.map((a) => ({ name: a.name, cluster: a.cluster ?? undefined })),
    newChainPem,
    concurrency: options.concurrency,
    instance: deps.instance,
    onPhase: (phase, detail) => deps.onEvent({ agent: '*', step: `rotate-ca:${phase}`, state: 'info', message: detail }),
    rotate: async (t, phase, outageStartedAt) => {
      const agent = byName.get(t.name) as Agent;
      const record = await rotateAgent(deps, job.id, agent, options, phase === 'stage' ? { stopAfter: 'published', publishChain: false } : { publishChain: false, outageStartedAt });
      return phase === 'stage' ? checkIssuedUnderNewChain(record, chainShas) : record;
    },
  });
  const results: RotationResult[] = agents.map((a) => toResult(a.name, outcome.results.get(a.name), outcome.swappedAt));
  if (!outcome.swappedAt) await abandonStaged(deps, job.id, agents, outcome.results);
  await settleJob(deps.store, job.id, results);
  return {
    ok: results.every((r) => r.state === 'succeeded'),
    jobId: job.id,
    swappedAt: outcome.swappedAt ?? null,
    results,
    outageSeconds: Object.fromEntries(outcome.outageSeconds),
    reason: outcome.swappedAt ? '' : `not swapped: ${outcome.failedToStage.join(', ')} could not be staged; no MID was changed`,
  };
}

function checkIssuedUnderNewChain(record: RotationRecord, chainShas: Set<string>): RotationRecord {
  if (record.state !== 'published' || !record.chainPem) return record;
  const issuer = readCertificates(Buffer.from(record.chainPem))[0];
  if (issuer && chainShas.has(issuer.sha256)) return record;
  return { ...record, state: 'failed', errorCode: 'CHAIN_INVALID', errorMessage: 'the configured CA did not issue under the new chain (update ca in controller.yaml first)' };
}

/** Without a swap nothing was installed: staged rows are closed as failed so the job settles. */
async function abandonStaged(deps: RotationDeps, jobId: number, agents: Agent[], results: Map<string, RotationRecord>): Promise<void> {
  for (const agent of agents) {
    const row = await deps.store.jobAgents.get(jobId, agent.name);
    if (row && !['succeeded', 'failed', 'skipped', 'cancelled'].includes(row.state)) {
      const record = results.get(agent.name);
      const staged = record?.state === 'published';
      // Keep the MID's own reason (e.g. CHAIN_INVALID: update ca first); it is the actionable one.
      await deps.store.jobAgents.advance(jobId, agent.name, 'failed', staged
        ? { errorCode: 'NOT_SWAPPED', errorMessage: 'staged, but the chain was not swapped because another MID failed to stage' }
        : { errorCode: record?.errorCode ?? 'STAGE_FAILED', errorMessage: record?.errorMessage ?? 'staging failed' });
    }
  }
}

function toResult(name: string, record: RotationRecord | undefined, swappedAt: string | undefined): RotationResult {
  const ok = record?.state === 'verified';
  const failed = !ok;
  return {
    name,
    state: ok ? 'succeeded' : 'failed',
    previousSha256: record?.previousSha256 ?? '',
    newSha256: ok ? record?.newSha256 ?? '' : '',
    notAfter: '',
    failedStep: failed ? record?.failedStep ?? (swappedAt ? '' : 'stage') : '',
    error: failed ? { code: record?.errorCode ?? (swappedAt ? 'FAILED' : 'NOT_SWAPPED'), message: record?.errorMessage ?? 'not swapped: another MID failed to stage' } : null,
  };
}
