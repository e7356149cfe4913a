import { MidcertError, isMidcertError } from '../../common/errors.js';
import type { CaOutcome } from '../ca/adapter.js';
import type { AgentPort, CaPort, InstallOutcome, InstancePort } from './ports.js';

/** How far one MID's rotation got; persisted after every transition so a killed controller resumes. */
export type RotationState = 'pending' | 'prepared' | 'submitted' | 'issued' | 'published' | 'installed' | 'verified' | 'failed';

export interface RotationRecord {
  state: RotationState;
  renewalId: string;
  csrPem?: string;
  caCookie?: string;
  certificatePem?: string;
  chainPem?: string;
  previousSha256?: string;
  newSha256?: string;
  outageStartedAt?: string;
  outageEndedAt?: string;
  errorCode?: string;
  errorMessage?: string;
  failedStep?: string;
}

export interface RotationEvent {
  agent: string;
  step: string;
  state: 'started' | 'done' | 'failed' | 'info';
  message?: string;
}

export interface RotateOneContext {
  agentName: string;
  subject?: string;
  agent: AgentPort;
  ca: CaPort;
  instance: InstancePort | undefined;
  load(): RotationRecord | undefined;
  save(record: RotationRecord): void;
  emit(event: RotationEvent): void;
  options: { renewalId: string; caPollMs: number; caTimeoutMs: number; upTimeoutMs: number; mode?: 'install' | 'enable-mutual'; stopAfter?: 'published'; publishChain?: boolean; outageStartedAt?: string };
}

/**
 * One MID through DESIGN.md §3: status → PrepareRenewal → CA → instance (chain, leaf) →
 * InstallCertificate → instance Up → retire the old leaf record. Each transition is saved first,
 * so calling this again after a crash continues where it stopped and never rotates twice.
 */
export async function rotateOne(ctx: RotateOneContext): Promise<RotationRecord> {
  let record: RotationRecord = ctx.load() ?? { state: 'pending', renewalId: ctx.options.renewalId };
  const save = (patch: Partial<RotationRecord>): RotationRecord => {
    record = { ...record, ...patch };
    ctx.save(record);
    return record;
  };
  try {
    while (record.state !== 'verified' && record.state !== 'failed') {
      if (ctx.options.stopAfter === 'published' && record.state === 'published') return record;
      record = await advance(ctx, record, save);
    }
  } catch (err) {
    const e = isMidcertError(err) ? err : new MidcertError('INTERNAL', (err as Error).message);
    ctx.emit({ agent: ctx.agentName, step: record.state, state: 'failed', message: e.message });
    return save({ state: 'failed', failedStep: record.failedStep ?? nextStepName(record.state), errorCode: e.code, errorMessage: e.message });
  }
  return record;
}

type Save = (patch: Partial<RotationRecord>) => RotationRecord;

async function advance(ctx: RotateOneContext, record: RotationRecord, save: Save): Promise<RotationRecord> {
  const step = nextStepName(record.state);
  ctx.emit({ agent: ctx.agentName, step, state: 'started' });
  const next = await runStep(ctx, record, save);
  ctx.emit({ agent: ctx.agentName, step, state: next.state === 'failed' ? 'failed' : 'done', message: next.errorMessage });
  return next;
}

function nextStepName(state: RotationState): string {
  const names: Record<RotationState, string> = {
    pending: 'prepare', prepared: 'submit', submitted: 'poll', issued: 'publish', published: 'install', installed: 'verify-up', verified: 'done', failed: 'failed',
  };
  return names[state];
}

async function runStep(ctx: RotateOneContext, record: RotationRecord, save: Save): Promise<RotationRecord> {
  switch (record.state) {
    case 'pending': {
      const status = await ctx.agent.status();
      const { csrPem } = await ctx.agent.prepare(record.renewalId);
      return save({ state: 'prepared', csrPem, previousSha256: status.leafSha256 });
    }
    case 'prepared':
      return settle(save, await ctx.ca.submit(record.csrPem as string, { subject: ctx.subject ?? '', midName: ctx.agentName }));
    case 'submitted':
      return settle(save, await pollUntilSettled(ctx, record.caCookie as string));
    case 'issued': {
      if (ctx.instance) {
        // A CA-chain rotation stages leaves first and swaps the chain once, for every MID at once.
        if (record.chainPem && ctx.options.publishChain !== false) await ctx.instance.ensureCaChain(record.chainPem);
        await ctx.instance.publishLeaf(ctx.agentName, record.certificatePem as string);
      }
      return save({ state: 'published' });
    }
    case 'published':
      return install(ctx, record, save);
    case 'installed': {
      if (ctx.instance) {
        await ctx.instance.waitForMidUp(ctx.agentName, new Date(record.outageStartedAt ?? Date.now()), ctx.options.upTimeoutMs);
        await ctx.instance.retireOldLeaves(ctx.agentName, record.newSha256 as string).catch(() => undefined); // cleanup only
      }
      return save({ state: 'verified', outageEndedAt: new Date().toISOString() });
    }
    default:
      return record;
  }
}

function settle(save: Save, outcome: CaOutcome): RotationRecord {
  switch (outcome.kind) {
    case 'issued':
      return save({ state: 'issued', certificatePem: outcome.certificatePem, chainPem: outcome.chainPem });
    case 'pending':
      return save({ state: 'submitted', caCookie: outcome.cookie });
    case 'rejected':
      return save({ state: 'failed', failedStep: 'ca', errorCode: 'CA_REJECTED', errorMessage: outcome.reason });
    case 'unreachable':
      return save({ state: 'failed', failedStep: 'ca', errorCode: 'CA_UNREACHABLE', errorMessage: outcome.reason });
  }
}

async function pollUntilSettled(ctx: RotateOneContext, cookie: string): Promise<CaOutcome> {
  const until = Date.now() + ctx.options.caTimeoutMs;
  let outcome: CaOutcome = { kind: 'pending', cookie };
  while (outcome.kind === 'pending' || outcome.kind === 'unreachable') {
    if (Date.now() > until) {
      return outcome.kind === 'pending'
        ? { kind: 'unreachable', reason: `the CA request ${cookie} is still pending after ${Math.round(ctx.options.caTimeoutMs / 1000)} s (awaiting approval?)` }
        : outcome;
    }
    const waitMs = Math.min(ctx.options.caPollMs, Math.max(0, until - Date.now()), ((outcome as { retryAfterSeconds?: number }).retryAfterSeconds ?? Infinity) * 1000);
    await new Promise((r) => setTimeout(r, waitMs));
    outcome = await ctx.ca.poll(outcome.kind === 'pending' ? outcome.cookie : cookie);
    if (outcome.kind === 'pending') ctx.emit({ agent: ctx.agentName, step: 'poll', state: 'info', message: 'CA request pending' });
  }
  return outcome;
}

async function install(ctx: RotateOneContext, record: RotationRecord, save: Save): Promise<RotationRecord> {
  const started = new Date().toISOString();
  save({ outageStartedAt: ctx.options.outageStartedAt ?? record.outageStartedAt ?? started });
  const run = ctx.options.mode === 'enable-mutual' ? ctx.agent.enableMutualAuth.bind(ctx.agent) : ctx.agent.install.bind(ctx.agent);
  const outcome: InstallOutcome = await run(record.renewalId, record.certificatePem as string, record.chainPem ?? '', (e) => {
    ctx.emit({ agent: ctx.agentName, step: `install:${e.step}`, state: 'info', message: e.state });
  });
  if (!outcome.ok) {
    return save({ state: 'failed', failedStep: `install:${outcome.failedStep}`, errorCode: outcome.errorCode || 'INSTALL_FAILED', errorMessage: `${outcome.errorMessage}${outcome.rolledBack ? ' (the MID was rolled back to its previous certificate)' : ''}` });
  }
  return save({ state: 'installed', newSha256: outcome.currentSha256 });
}
