import { isMidcertError } from '../../common/errors.js';
import { readCertificates } from '../../pki/certificate.js';
import type { Agent, Store } from '../store/index.js';
import { jobRecord, sha256Of } from './job-record.js';
import type { AgentPort, CaPort, InstancePort } from './ports.js';
import { rotateOne, type RotationEvent, type RotationRecord } from './rotate-one.js';
import { planWaves, runPool, runWaves } from './waves.js';

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

interface Candidate {
  agent: Agent;
  leafSha256: string;
}

/**
 * Fleet rotation: select (expiring or forced), plan waves, run them as one persisted job.
 * `exclude` names MIDs to skip whatever `force` says, with the reason to report — the MIDs a job
 * resumed just before renewed (see renewedByJobs), so a re-run rotates every MID once.
 */
export async function runRotation(deps: RotationDeps, agents: Agent[], options: RotationOptions, exclude: ReadonlyMap<string, string> = new Map()): Promise<RotationReport> {
  const excluded = agents.filter((a) => exclude.has(a.name)).map((a) => ({ name: a.name, reason: exclude.get(a.name) as string }));
  const chosen = await select(deps, agents.filter((a) => !exclude.has(a.name)), options);
  const selected = chosen.selected;
  const skipped = [...chosen.skipped, ...excluded].sort((a, b) => a.name.localeCompare(b.name));
  const waves = planWaves(selected.map((c) => ({ name: c.agent.name, cluster: c.agent.cluster ?? undefined })), { canary: options.canary, batch: options.batch });
  const plan = { waves: waves.map((w) => w.map((t) => t.name)), skipped };
  if (options.dryRun || selected.length === 0) {
    const results = [...selected.map((c) => planned(c.agent.name, c.leafSha256)), ...skipped.map((s) => skippedResult(s.name, s.reason))];
    return finishReport(null, options.dryRun, plan, results, false, selected.length === 0 ? 'nothing to rotate' : '');
  }
  const job = await deps.store.jobs.create({
    kind: 'rotate',
    params: { ...options, agents: selected.map((c) => c.agent.name) },
    agents: waves.flatMap((wave, index) => wave.map((t) => ({ name: t.name, wave: index }))),
  });
  await deps.store.jobs.transition(job.id, 'running');
  const byName = new Map(selected.map((c) => [c.agent.name, c]));
  const run = await runWaves(waves, (t) => rotateAgent(deps, job.id, (byName.get(t.name) as Candidate).agent, options), (r) => r.state === 'failed', {
    concurrency: options.concurrency, maxFailures: options.maxFailures, canaryWave: options.canary > 0,
    onWave: (i, w) => deps.onWave?.(i, w.map((t) => t.name)),
  });
  const results = selected.map((c) => resultOf(c.agent.name, run.results.get(c.agent.name), c.leafSha256, run.reason));
  await settleJob(deps.store, job.id, results);
  return finishReport(job.id, false, plan, [...results, ...skipped.map((s) => skippedResult(s.name, s.reason))], run.stoppedEarly, run.reason);
}

async function select(deps: RotationDeps, agents: Agent[], options: RotationOptions): Promise<{ selected: Candidate[]; skipped: { name: string; reason: string }[] }> {
  const selected: Candidate[] = [];
  const skipped: { name: string; reason: string }[] = [];
  await runPool(agents, Math.max(4, options.concurrency), async (agent) => {
    const port = deps.dial(agent);
    try {
      const status = await port.status();
      const daysLeft = status.notAfter ? (Date.parse(status.notAfter) - Date.now()) / 86_400_000 : -Infinity;
      if (!options.force && daysLeft > options.expiringWithinDays) skipped.push({ name: agent.name, reason: `not-expiring (${Math.floor(daysLeft)} days left)` });
      else selected.push({ agent, leafSha256: status.leafSha256 });
    } catch (err) {
      skipped.push({ name: agent.name, reason: `unreachable: ${isMidcertError(err) ? `[${err.code}] ${err.message}` : String(err)}` });
    } finally {
      port.close();
    }
  });
  const byName = (a: { name: string }, b: { name: string }): number => a.name.localeCompare(b.name);
  selected.sort((a, b) => byName(a.agent, b.agent));
  skipped.sort(byName);
  return { selected, skipped };
}

/** One MID inside a job; also what resuming an unfinished job calls. */
export async function rotateAgent(deps: RotationDeps, jobId: number, agent: Agent, options: Pick<RotationOptions, 'caTimeoutMs' | 'caPollMs' | 'upTimeoutMs' | 'reconnectMs' | 'allowKeyTypes'>, extra: { stopAfter?: 'published'; publishChain?: boolean; outageStartedAt?: string; mode?: 'install' | 'enable-mutual' } = {}): Promise<RotationRecord> {
  const port = deps.dial(agent);
  const record = jobRecord(deps.store, jobId, agent.name);
  try {
    const result = await rotateOne({
      agentName: agent.midName ?? agent.name,
      agent: port, redial: () => deps.dial(agent), ca: deps.ca, instance: deps.instance,
      load: record.load, save: record.save,
      emit: (e) => deps.onEvent({ ...e, agent: agent.name }),
      options: { renewalId: `job${jobId}-${agent.name}`, caPollMs: options.caPollMs, caTimeoutMs: options.caTimeoutMs, upTimeoutMs: options.upTimeoutMs, reconnectMs: options.reconnectMs, allowKeyTypes: options.allowKeyTypes, ...extra },
    });
    if (result.state === 'verified' && result.certificatePem) await recordCertificate(deps.store, agent.name, result.certificatePem, jobId);
    return result;
  } finally {
    port.close();
  }
}

/** Issued and installed in one write: one turn of the store-wide writer lock per MID, not two. */
async function recordCertificate(store: Store, agentName: string, pem: string, jobId: number): Promise<void> {
  const sha = sha256Of(pem);
  await store.transaction(async () => {
    const known = (await store.certificates.get(sha)) ?? await store.certificates.recordIssued({ agentName, pem, jobId });
    if (known.status !== 'installed') await store.certificates.setStatus(sha, 'installed');
  });
}

export async function settleJob(store: Store, jobId: number, results: RotationResult[]): Promise<void> {
  const failed = results.filter((r) => r.state === 'failed').length;
  const succeeded = results.filter((r) => r.state === 'succeeded').length;
  const state = failed === 0 ? 'succeeded' : succeeded === 0 ? 'failed' : 'partial';
  const firstError = results.find((r) => r.error)?.error;
  await store.jobs.transition(jobId, state, state === 'succeeded' || !firstError ? undefined : { code: firstError.code, message: `${failed} MID(s) failed; first: ${firstError.message}` });
}

function resultOf(name: string, record: RotationRecord | undefined, previousSha256: string, stopReason: string): RotationResult {
  if (!record) return skippedResult(name, `not started: ${stopReason || 'rollout stopped'}`);
  const ok = record.state === 'verified';
  const issued = ok && record.certificatePem ? issuedFacts(record.certificatePem) : { sha256: '', notAfter: '' };
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

function planned(name: string, previousSha256: string): RotationResult {
  return { name, state: 'planned', previousSha256, newSha256: '', notAfter: '', failedStep: '', error: null };
}

function skippedResult(name: string, reason: string): RotationResult {
  return { name, state: 'skipped', previousSha256: '', newSha256: '', notAfter: '', failedStep: '', error: null, reason };
}

function finishReport(jobId: number | null, dryRun: boolean, plan: RotationReport['plan'], results: RotationResult[], stoppedEarly: boolean, reason: string): RotationReport {
  const count = (s: RotationResult['state']): number => results.filter((r) => r.state === s).length;
  const summary = { succeeded: count('succeeded'), failed: count('failed'), skipped: count('skipped') };
  return { ok: summary.failed === 0 && !stoppedEarly, jobId, dryRun, plan, results, summary, stoppedEarly, reason };
}

