import { readCertificates } from '../../pki/certificate.js';
import type { Agent, Store } from '../store/index.js';
import { jobRecord, sha256Of } from './job-record.js';
import type { Permits } from './permits.js';
import type { AgentPort, CaPort, InstancePort } from './ports.js';
import { rotateOne, type RotationEvent, type RotationRecord } from './rotate-one.js';

/*
 * One MID inside a rotation job, and the report the job's MIDs add up to: shared by fleet
 * rotation (run-rotation.ts), CA-chain rotation and resume.
 */

export interface RotationDeps {
  store: Store;
  dial(agent: Agent): AgentPort;
  ca: CaPort;
  instance: InstancePort | undefined;
  onEvent(event: RotationEvent): void;
  onWave?(index: number, names: string[]): void;
}

export interface RotationOptions {
  force: boolean;
  expiringWithinDays: number;
  canary: number;
  batch: number;
  maxFailures: number;
  concurrency: number;
  /** How far the first wave's status calls may run ahead of its rotations (default max(concurrency, 64); run-rotation.ts). */
  askAhead?: number;
  /** MIDs between their first step and their install's start at once (default preparingLimit(concurrency); run-rotation.ts). */
  preparing?: number;
  dryRun: boolean;
  caTimeoutMs: number;
  caPollMs: number;
  upTimeoutMs: number;
  /** How long an agent that went away mid-install is re-dialled and asked GetRenewal (default upTimeoutMs). */
  reconnectMs?: number;
  /** Leaf key types agents may install besides RSA-2048, e.g. "rsa-3072" (vendor material shows RSA-2048 only). */
  allowKeyTypes?: readonly string[];
}

export interface RotationResult {
  name: string;
  state: 'succeeded' | 'failed' | 'skipped' | 'planned';
  previousSha256: string;
  newSha256: string;
  notAfter: string;
  failedStep: string;
  error: { code: string; message: string } | null;
  reason?: string;
}

export interface RotationReport {
  ok: boolean;
  jobId: number | null;
  dryRun: boolean;
  plan: { waves: string[][]; skipped: { name: string; reason: string }[] };
  results: RotationResult[];
  summary: { succeeded: number; failed: number; skipped: number };
  stoppedEarly: boolean;
  reason: string;
}

/**
 * One MID inside a job; also what resuming an unfinished job calls. `open.port`: the selection's
 * connection to the agent, used (and closed) instead of dialling, with the leaf it just reported
 * (`open.leafSha256`). `open.joinedInWave`: this process added the MID to the job a moment ago
 * (pending, in that wave), so its row is not read first (see jobRecord). `open.preparing`: the
 * fleet rotation's permits for the steps before the install, `open.onPrepared` told when they
 * are over (RotateOneContext).
 */
export async function rotateAgent(deps: RotationDeps, jobId: number, agent: Agent, options: Pick<RotationOptions, 'caTimeoutMs' | 'caPollMs' | 'upTimeoutMs' | 'reconnectMs' | 'allowKeyTypes'>, extra: { stopAfter?: 'published'; publishChain?: boolean; outageStartedAt?: string; mode?: 'install' | 'enable-mutual' } = {}, open: { port?: AgentPort; leafSha256?: string; joinedInWave?: number; preparing?: Permits; onPrepared?: () => void } = {}): Promise<RotationRecord> {
  const port = open.port ?? deps.dial(agent);
  const record = jobRecord(deps.store, jobId, agent.name, open.joinedInWave);
  try {
    const result = await rotateOne({
      agentName: agent.midName ?? agent.name,
      agent: port, redial: () => deps.dial(agent), ca: deps.ca, instance: deps.instance,
      load: record.load, save: record.save, preparing: open.preparing, onPrepared: open.onPrepared,
      emit: (e) => deps.onEvent({ ...e, agent: agent.name }),
      options: { renewalId: `job${jobId}-${agent.name}`, caPollMs: options.caPollMs, caTimeoutMs: options.caTimeoutMs, upTimeoutMs: options.upTimeoutMs, reconnectMs: options.reconnectMs, allowKeyTypes: options.allowKeyTypes, knownLeafSha256: open.port ? open.leafSha256 : undefined, ...extra },
    });
    if (result.state !== 'verified' || !result.certificatePem) return result;
    // Only this job's owner records its MID's certificate, and the record is safe by its unique
    // fingerprint, so it need not queue for the store-wide write lock behind every other MID. Not
    // written at the same time as the `succeeded` row: that measured slower on PostgreSQL with the
    // in-process stand-ins and no faster over gRPC (bench/RESULTS.md "Fourth pass").
    const recorded = await deps.store.certificates.recordInstalled({ agentName: agent.name, pem: result.certificatePem, jobId });
    return { ...result, issued: { sha256: recorded.sha256, notAfter: recorded.notAfter } };
  } finally {
    port.close();
  }
}

export async function settleJob(store: Store, jobId: number, results: RotationResult[]): Promise<void> {
  const failed = results.filter((r) => r.state === 'failed').length;
  const succeeded = results.filter((r) => r.state === 'succeeded').length;
  const state = failed === 0 ? 'succeeded' : succeeded === 0 ? 'failed' : 'partial';
  const firstError = results.find((r) => r.error)?.error;
  await store.jobs.transition(jobId, state, state === 'succeeded' || !firstError ? undefined : { code: firstError.code, message: `${failed} MID(s) failed; first: ${firstError.message}` });
}

export function resultOf(name: string, record: RotationRecord | undefined, previousSha256: string, stopReason: string): RotationResult {
  if (!record) return skippedResult(name, `not started: ${stopReason || 'rollout stopped'}`);
  const ok = record.state === 'verified';
  const issued = (ok && (record.issued ?? (record.certificatePem && issuedFacts(record.certificatePem)))) || { sha256: '', notAfter: '' };
  return {
    name,
    state: ok ? 'succeeded' : 'failed',
    previousSha256: record.previousSha256 ?? previousSha256,
    newSha256: issued.sha256,
    notAfter: issued.notAfter,
    failedStep: ok ? '' : record.failedStep ?? '',
    error: ok ? null : { code: record.errorCode ?? 'FAILED', message: record.errorMessage ?? '' },
  };
}

function issuedFacts(pem: string): { sha256: string; notAfter: string } {
  try {
    const cert = readCertificates(Buffer.from(pem))[0];
    if (cert) return { sha256: cert.sha256, notAfter: cert.notAfter.toISOString() };
  } catch {
    // reported with what the hash alone gives
  }
  return { sha256: sha256Of(pem), notAfter: '' };
}

export function planned(name: string, previousSha256: string): RotationResult {
  return { name, state: 'planned', previousSha256, newSha256: '', notAfter: '', failedStep: '', error: null };
}

export function skippedResult(name: string, reason: string): RotationResult {
  return { name, state: 'skipped', previousSha256: '', newSha256: '', notAfter: '', failedStep: '', error: null, reason };
}

export function finishReport(jobId: number | null, dryRun: boolean, plan: RotationReport['plan'], results: RotationResult[], stoppedEarly: boolean, reason: string): RotationReport {
  const count = (s: RotationResult['state']): number => results.filter((r) => r.state === s).length;
  const summary = { succeeded: count('succeeded'), failed: count('failed'), skipped: count('skipped') };
  return { ok: summary.failed === 0 && !stoppedEarly, jobId, dryRun, plan, results, summary, stoppedEarly, reason };
}

