import { MidcertError, isMidcertError } from '../../common/errors.js';
import { firstCertificateSha256 } from '../../pki/certificate.js';
import type { CaOutcome } from '../ca/adapter.js';
import type { Permits } from './permits.js';
import type { AgentPort, CaPort, InstallOutcome, InstancePort, RenewalSnapshot } from './ports.js';

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
  /** The installed leaf as the store recorded it (rotate-agent.ts; not persisted in the row). */
  issued?: { sha256: string; notAfter: string };
}

export interface RotationEvent {
  agent: string;
  step: string;
  /** `warning`: something outside the rotation's contract failed (the inventory); the rotation goes on. */
  state: 'started' | 'done' | 'failed' | 'info' | 'warning';
  message?: string;
}

export interface RotateOneContext {
  agentName: string;
  subject?: string;
  agent: AgentPort;
  /** A new connection to the same agent (for asking GetRenewal after the install stream broke); default: reuse `agent`. */
  redial?(): AgentPort;
  ca: CaPort;
  instance: InstancePort | undefined;
  load(): Promise<RotationRecord | undefined>;
  /** Resolves once the record is stored; the next step starts only then. */
  save(record: RotationRecord): Promise<void>;
  emit(event: RotationEvent): void;
  /**
   * Shared by the MIDs of one fleet rotation (run-rotation.ts): a MID starting afresh holds one
   * from its first step until its install is on its way, the CA has parked its request, or it
   * ends, so that at most a few MIDs are between PrepareRenewal and InstallCertificate at once.
   */
  preparing?: Permits;
  /** Called once the MID is through those steps (or, resumed, was already); not if it ends earlier. */
  onPrepared?(): void;
  options: {
    renewalId: string; caPollMs: number; caTimeoutMs: number; upTimeoutMs: number; mode?: 'install' | 'enable-mutual'; stopAfter?: 'published'; publishChain?: boolean; outageStartedAt?: string;
    /** How long to keep asking an agent that went away mid-install what became of the renewal (default: upTimeoutMs). */
    reconnectMs?: number;
    /** First wait between those attempts; doubles up to RECONNECT_MAX_BACKOFF_MS. */
    reconnectBackoffMs?: number;
    /** Leaf key types the agent may install besides RSA-2048 (`--allow-key-type`, rotation.allowKeyTypes). */
    allowKeyTypes?: readonly string[];
    /** The leaf the agent reported a moment ago on this connection (the selection's answer): not asked again. */
    knownLeafSha256?: string;
  };
}

/**
 * One MID through DESIGN.md §3: status → PrepareRenewal → CA → instance (chain, leaf) →
 * InstallCertificate → instance Up → retire the old leaf record. Each transition is saved before
 * the next step, so calling this again after a crash continues where it stopped and never rotates
 * twice; the two a resumed job redoes harmlessly (the CSR, asked again by renewal id; the
 * publication, found again by fingerprint) ride in the next step's write instead of their own.
 */
export async function rotateOne(ctx: RotateOneContext): Promise<RotationRecord> {
  let record: RotationRecord = (await ctx.load()) ?? { state: 'pending', renewalId: ctx.options.renewalId };
  // A MID resumed further along goes straight on: only a fresh start queues for a permit.
  const fresh = record.state === 'pending';
  const permit = ctx.preparing && fresh ? await ctx.preparing.acquire() : undefined;
  if (!fresh) ctx.onPrepared?.();
  let preparing = fresh;
  const save: Save = async (patch, { deferred = false } = {}) => {
    // Updated before the write, so a failed write is reported from the state it tried to record.
    const next: RotationRecord = { ...record, ...patch };
    record = next;
    if (!deferred) await ctx.save(next);
    if (preparing && preparationOver(next)) {
      preparing = false;
      permit?.release();
      ctx.onPrepared?.();
    }
    return next;
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
  } finally {
    permit?.release();
  }
  return record;
}

/**
 * The preparation ends with the install's first write (the install is sent right after it) or
 * with a request the CA keeps pending: polling it may take hours (manual approval) and must not
 * hold back the MIDs behind it.
 */
function preparationOver(record: RotationRecord): boolean {
  return record.outageStartedAt !== undefined || record.state === 'submitted';
}

/** `deferred`: the state is kept in memory and written with the next save (one write for both). */
type Save = (patch: Partial<RotationRecord>, options?: { deferred?: boolean }) => Promise<RotationRecord>;

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
      const previousSha256 = ctx.options.knownLeafSha256 ?? (await ctx.agent.status()).leafSha256;
      const { csrPem } = await ctx.agent.prepare(record.renewalId);
      // Written with the CA's answer: until the CA has answered, a resumed job is no better off
      // with the CSR stored, since PrepareRenewal gives the same CSR again for the same renewal id.
      return save({ state: 'prepared', csrPem, previousSha256 }, { deferred: true });
    }
    case 'prepared':
      return settle(save, await ctx.ca.submit(record.csrPem as string, { subject: ctx.subject ?? '', midName: ctx.agentName }), issuedIsDeferred(ctx));
    case 'submitted':
      return settle(save, await pollUntilSettled(ctx, record.caCookie as string), issuedIsDeferred(ctx));
    case 'issued': {
      if (ctx.instance) {
        // A CA-chain rotation stages leaves first and swaps the chain once, for every MID at once.
        if (record.chainPem && ctx.options.publishChain !== false) await ctx.instance.ensureCaChain(record.chainPem);
        await ctx.instance.publishLeaf(ctx.agentName, record.certificatePem as string);
      }
      // Publishing again is harmless (the instance keeps one record per leaf: publish.ts reuses
      // it), so unless the job stops here `published` is written with the install's first write.
      return save({ state: 'published' }, { deferred: ctx.options.stopAfter !== 'published' });
    }
    case 'published':
      return install(ctx, record, save);
    case 'installed': {
      if (ctx.instance) {
        await ctx.instance.waitForMidUp(ctx.agentName, new Date(record.outageStartedAt ?? Date.now()), ctx.options.upTimeoutMs);
        await ctx.instance.retireOldLeaves(ctx.agentName, record.newSha256 as string).catch(() => undefined); // cleanup only
      }
      const verified = await save({ state: 'verified', outageEndedAt: new Date().toISOString() });
      await updateInventory(ctx, verified);
      return verified;
    }
    default:
      return record;
  }
}

/**
 * After `verified`: the installed leaf into cmdb_ci_certificate (`instance.inventory`), the previous
 * leaf's record retired. Never fails the rotation: any failure is a `warning` event (the next
 * reconcile pass tries again).
 */
async function updateInventory(ctx: RotateOneContext, record: RotationRecord): Promise<void> {
  const upsert = ctx.instance?.upsertInventory;
  if (!upsert || !record.certificatePem) return;
  try {
    const outcome = await upsert.call(ctx.instance, ctx.agentName, record.certificatePem, record.previousSha256 ? [record.previousSha256] : []);
    const notes = [outcome.dropped.length ? `the instance did not keep ${outcome.dropped.join(', ')}` : '', outcome.relationNote ? `not related to a host CI: ${outcome.relationNote}` : ''].filter(Boolean);
    ctx.emit({ agent: ctx.agentName, step: 'inventory', state: notes.length ? 'warning' : 'info', message: `cmdb_ci_certificate ${outcome.action}${notes.length ? `; ${notes.join('; ')}` : ''}` });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    ctx.emit({ agent: ctx.agentName, step: 'inventory', state: 'warning', message: `cmdb_ci_certificate not updated (the rotation stands): [${e.code ?? 'INTERNAL'}] ${e.message ?? String(err)}` });
  }
}

/**
 * With no instance to publish to, nothing happens between the CA's answer and the install's
 * first write, so the certificate rides in that write: a controller killed before it lands has
 * lost the certificate either way (it submits the CSR again), and one killed after finds both.
 */
function issuedIsDeferred(ctx: RotateOneContext): boolean {
  return !ctx.instance && ctx.options.stopAfter !== 'published';
}

function settle(save: Save, outcome: CaOutcome, deferIssued: boolean): Promise<RotationRecord> {
  switch (outcome.kind) {
    case 'issued':
      return save({ state: 'issued', certificatePem: outcome.certificatePem, chainPem: outcome.chainPem }, { deferred: deferIssued });
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
  // Resumed from an `installing` row: the install may have run (or be running) on the host.
  const inFlight = record.outageStartedAt !== undefined;
  if (!inFlight && ctx.options.mode === 'enable-mutual' && ctx.instance?.invalidateForConversion) {
    try {
      await ctx.instance.invalidateForConversion(ctx.agentName);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      return save({ state: 'failed', failedStep: 'invalidate', errorCode: e.code ?? 'INTERNAL', errorMessage: e.message ?? String(err) });
    }
  }
  const started = new Date().toISOString();
  // Stored before the install is sent: a controller killed mid-install resumes by asking the agent.
  await save({ outageStartedAt: ctx.options.outageStartedAt ?? record.outageStartedAt ?? started });
  const outcome: InstallOutcome = inFlight
    ? await reconcileInstall(ctx, record, undefined)
    : await sendInstall(ctx, ctx.agent, record).catch((err: unknown) => {
      if (!connectionLost(err)) throw err;
      return reconcileInstall(ctx, record, err as MidcertError);
    });
  if (!outcome.ok) {
    return save({ state: 'failed', failedStep: outcome.failedStep ? `install:${outcome.failedStep}` : 'install', errorCode: outcome.errorCode || 'INSTALL_FAILED', errorMessage: `${outcome.errorMessage}${outcome.rolledBack ? ' (the MID was rolled back to its previous certificate)' : ''}` });
  }
  return save({ state: 'installed', newSha256: outcome.currentSha256 });
}

function sendInstall(ctx: RotateOneContext, port: AgentPort, record: RotationRecord): Promise<InstallOutcome> {
  const run = ctx.options.mode === 'enable-mutual' ? port.enableMutualAuth.bind(port) : port.install.bind(port);
  return run(record.renewalId, record.certificatePem as string, record.chainPem ?? '', (e) => {
    ctx.emit({ agent: ctx.agentName, step: `install:${e.step}`, state: 'info', message: e.state });
  }, ctx.options.allowKeyTypes);
}

/**
 * gRPC failures after which nobody knows how the install ended: the agent (or the network) went
 * away mid-stream, or the call outlived its deadline. The host may have finished the install.
 */
const CONNECTION_LOST = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED']);
const RECONNECT_MAX_BACKOFF_MS = 5000;
/** InstallCertificate is sent again at most this often while the agent says PREPARED (it never reached the host). */
const MAX_RESENDS = 2;

function connectionLost(err: unknown): boolean {
  return isMidcertError(err) && CONNECTION_LOST.has(err.code);
}

/**
 * The record must match the host: instead of calling an install whose stream broke failed, dial
 * the agent again (backing off, for at most `reconnectMs`) and ask GetRenewal what became of the
 * renewal. INSTALLED with the leaf we sent → success; ROLLED_BACK / FAILED → failure with the
 * agent's own code; PREPARED → the install never changed the host: send it again; INSTALLING →
 * wait. Only an agent that stays unreachable for the whole window is recorded UNAVAILABLE.
 * Resuming an install in flight (`cause` undefined) asks the same question first.
 */
async function reconcileInstall(ctx: RotateOneContext, record: RotationRecord, cause: MidcertError | undefined): Promise<InstallOutcome> {
  const windowMs = ctx.options.reconnectMs ?? ctx.options.upTimeoutMs;
  const until = Date.now() + windowMs;
  let delay = ctx.options.reconnectBackoffMs ?? 500;
  let lastError: MidcertError | undefined = cause;
  let lastState: RenewalSnapshot | undefined;
  let resends = 0;
  const expected = leafSha256(record.certificatePem);
  ctx.emit({ agent: ctx.agentName, step: 'install', state: 'info', message: cause ? `install stream lost ([${cause.code}] ${cause.message}); asking the agent what became of ${record.renewalId}` : `asking the agent what became of ${record.renewalId}` });
  for (;;) {
    const port = ctx.redial ? ctx.redial() : ctx.agent;
    try {
      const answer = await askRenewal(port, record.renewalId);
      lastState = answer ?? lastState;
      const settled = answer ? settledOutcome(answer, expected, record.renewalId) : undefined;
      if (settled) return settled;
      if (!answer || answer.state === 'prepared') {
        // No answer means an agent from before GetRenewal; it answers a repeated install by renewal id.
        if (resends >= MAX_RESENDS) {
          return {
            ok: false, failedStep: answer?.failedStep ?? '', errorCode: answer?.errorCode || lastError?.code || 'UNAVAILABLE', rolledBack: false, currentSha256: '',
            errorMessage: answer?.errorMessage || `renewal ${record.renewalId} was sent ${resends + 1} times and never ran to the end on the agent${lastError ? `: ${lastError.message}` : ''}`,
          };
        }
        resends += 1;
        ctx.emit({ agent: ctx.agentName, step: 'install', state: 'info', message: `the agent ${answer ? 'has not installed' : 'cannot say (no GetRenewal) what became of'} ${record.renewalId}; sending InstallCertificate again` });
        return await sendInstall(ctx, port, record);
      }
      // 'installing': the agent is still at it; ask again below.
    } catch (err) {
      // RENEWAL_BUSY to a re-sent install: the first one reached the agent after all and is running.
      const busy = resends > 0 && isMidcertError(err) && err.code === 'RENEWAL_BUSY';
      if (!busy && !connectionLost(err)) throw err;
      lastError = err as MidcertError;
    } finally {
      if (ctx.redial) port.close();
    }
    const remaining = until - Date.now();
    if (remaining <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(delay, remaining))); // the last attempt falls at the window's end
    delay = Math.min(delay * 2, RECONNECT_MAX_BACKOFF_MS);
  }
  const seconds = Math.round(windowMs / 1000);
  if (lastState?.state === 'installing') {
    throw new MidcertError('DEADLINE_EXCEEDED', `the agent still reports renewal ${record.renewalId} installing (step ${lastState.step || '?'}) after ${seconds} s`);
  }
  throw new MidcertError('UNAVAILABLE', `the agent stayed unreachable for ${seconds} s after the install was interrupted, so what became of renewal ${record.renewalId} on the host is unknown${lastError ? `: ${lastError.message}` : ''}`);
}

/** GetRenewal, or undefined from an agent that predates it (UNIMPLEMENTED). */
async function askRenewal(port: AgentPort, renewalId: string): Promise<RenewalSnapshot | undefined> {
  try {
    return await port.renewal(renewalId);
  } catch (err) {
    if (isMidcertError(err) && err.code === 'UNIMPLEMENTED') return undefined;
    throw err;
  }
}

/** The outcome an answer settles, or undefined while it settles nothing yet (prepared, installing). */
function settledOutcome(answer: RenewalSnapshot, expected: string, renewalId: string): InstallOutcome | undefined {
  const failed = (errorCode: string, errorMessage: string, rolledBack: boolean): InstallOutcome => ({
    ok: false, failedStep: answer.failedStep, errorCode, errorMessage, rolledBack, currentSha256: answer.leafSha256,
  });
  switch (answer.state) {
    case 'installed':
      if (expected && answer.leafSha256 !== expected) {
        return failed('RENEWAL_MISMATCH', `the agent reports renewal ${renewalId} installed with leaf ${answer.leafSha256.slice(0, 16)}…, not the leaf ${expected.slice(0, 16)}… the controller sent`, false);
      }
      return { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: answer.leafSha256 };
    case 'rolled-back':
      return failed(answer.errorCode || 'INSTALL_FAILED', answer.errorMessage || 'the install failed on the agent', true);
    case 'failed':
      return failed(answer.errorCode || 'INSTALL_FAILED', answer.errorMessage || 'the install failed on the agent', false);
    case 'unknown':
      return failed(answer.errorCode || 'RENEWAL_NOT_FOUND', answer.errorMessage || `the agent has no record of renewal ${renewalId}`, false);
    default:
      return undefined;
  }
}

function leafSha256(pem: string | undefined): string {
  if (!pem) return '';
  try {
    return firstCertificateSha256(Buffer.from(pem)) ?? '';
  } catch {
    return '';
  }
}
