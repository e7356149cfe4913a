import { createHash } from 'node:crypto';
import { firstCertificateSha256 } from '../../pki/certificate.js';
import type { JobAgent, JobAgentState, Store } from '../store/index.js';
import type { RotationRecord, RotationState } from './rotate-one.js';

/**
 * Persists a MID's RotationRecord as its job_agents row, walking the store's stricter state
 * machine (pending → preparing → csr_ready → ca_pending|issued → published → installing →
 * succeeded|failed) so every transition is a compare-and-set the store checks.
 */
export function jobRecord(store: Store, jobId: number, agentName: string, joinedInWave?: number): { load(): Promise<RotationRecord | undefined>; save(record: RotationRecord): Promise<void> } {
  // The row as this record last read or wrote it: the next save starts from it (one statement
  // when nothing else moved it), and a save that would not change its state (installed is still
  // `installing` in the store) costs no write at all.
  let written: JobAgent | undefined;
  return {
    load: async () => {
      // Just added by this process: pending, owned by it. Not read back; the first save's UPDATE
      // checks exactly that (state and owner) and, were it wrong, reads the row and decides again.
      if (joinedInWave !== undefined) {
        written = pendingMember(jobId, agentName, joinedInWave, store.owner.id);
        return undefined;
      }
      written = await store.jobAgents.require(jobId, agentName);
      return fromRow(written);
    },
    save: async (record) => {
      const target = targetOf(record);
      if (target === written?.state && target !== 'ca_pending') return;
      // Every step from the stored state to the record's, checked one by one, in one compare-and-set write.
      const plan = (row: JobAgent) => pathTo(row.state, record).map((to) => ({ to, patch: patchFor(to, record) }));
      written = written ? await store.jobAgents.advanceFrom(written, plan) : await store.jobAgents.advanceAlong(jobId, agentName, plan);
    },
  };
}

function pendingMember(jobId: number, agentName: string, wave: number, ownerId: string): JobAgent {
  return {
    jobId, agentName, state: 'pending', wave, renewalId: null, csrPem: null, caCookie: null, certificatePem: null, chainPem: null,
    outageStartedAt: null, outageEndedAt: null, errorCode: null, errorMessage: null, updatedAt: '', ownerId,
  };
}

function fromRow(row: JobAgent): RotationRecord | undefined {
  if (row.state === 'pending' || row.state === 'preparing') return undefined;
  const state: RotationState = ({
    csr_ready: 'prepared', ca_pending: 'submitted', issued: 'issued', published: 'published',
    // An install in flight when the controller died: ask the agent again; it answers by renewal id.
    installing: 'published', succeeded: 'verified', failed: 'failed', skipped: 'failed', cancelled: 'failed',
  } as Record<JobAgentState, RotationState>)[row.state];
  return {
    state,
    renewalId: row.renewalId ?? '',
    csrPem: row.csrPem ?? undefined,
    caCookie: row.caCookie ?? undefined,
    certificatePem: row.certificatePem ?? undefined,
    chainPem: row.chainPem ?? undefined,
    newSha256: row.certificatePem ? sha256Of(row.certificatePem) : undefined,
    outageStartedAt: row.outageStartedAt ?? undefined,
    outageEndedAt: row.outageEndedAt ?? undefined,
    errorCode: row.errorCode ?? undefined,
    errorMessage: row.errorMessage ?? undefined,
  };
}

/** The store states to pass through to reflect `record`, from the row's current state. */
function pathTo(current: JobAgentState, record: RotationRecord): JobAgentState[] {
  const target = targetOf(record);
  if (target === current) return current === 'ca_pending' ? ['ca_pending'] : [];
  if (target === 'failed') return ['failed'];
  const order: JobAgentState[] = ['pending', 'preparing', 'csr_ready', 'ca_pending', 'issued', 'published', 'installing', 'succeeded'];
  const from = order.indexOf(current);
  const to = order.indexOf(target);
  if (from < 0 || to <= from) return [];
  // ca_pending is a detour taken only by CAs that answered "pending".
  return order.slice(from + 1, to + 1).filter((s) => s !== 'ca_pending' || target === 'ca_pending');
}

function targetOf(record: RotationRecord): JobAgentState {
  switch (record.state) {
    case 'pending': return 'pending';
    case 'prepared': return 'csr_ready';
    case 'submitted': return 'ca_pending';
    case 'issued': return 'issued';
    case 'published': return record.outageStartedAt ? 'installing' : 'published';
    case 'installed': return 'installing';
    case 'verified': return 'succeeded';
    case 'failed': return 'failed';
  }
}

function patchFor(to: JobAgentState, r: RotationRecord): Parameters<Store['jobAgents']['advance']>[3] {
  switch (to) {
    case 'csr_ready': return { renewalId: r.renewalId, csrPem: r.csrPem };
    case 'ca_pending': return { caCookie: r.caCookie };
    case 'issued': return { certificatePem: r.certificatePem, chainPem: r.chainPem };
    case 'installing': return { outageStartedAt: r.outageStartedAt };
    case 'succeeded': return { outageEndedAt: r.outageEndedAt };
    case 'failed': return { errorCode: r.errorCode ?? 'FAILED', errorMessage: r.errorMessage ?? '' };
    default: return {};
  }
}

export function sha256Of(pem: string): string {
  return firstCertificateSha256(Buffer.from(pem)) ?? createHash('sha256').update(pem).digest('hex');
}
