import { MidcertError } from '../../common/errors.js';

/**
 * The state machines of the store. Each table lists, for a state, the states it may move to; a
 * transition not listed is refused with STATE_TRANSITION_INVALID, so a bug or a race between the
 * CLI and the daemon cannot, say, mark a finished job running again or install a certificate
 * twice. The store enforces them with compare-and-set updates inside write transactions.
 */

export const JOB_KINDS = ['rotate', 'rotate-ca', 'convert', 'bootstrap', 'renew'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export const JOB_STATES = ['planned', 'running', 'succeeded', 'failed', 'partial', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const JOB_TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  // planned → failed: a job can fail before it starts (preflight, CA unreachable).
  planned: ['running', 'failed', 'cancelled'],
  running: ['succeeded', 'failed', 'partial', 'cancelled'],
  succeeded: [],
  failed: [],
  partial: [],
  cancelled: [],
};

/**
 * One agent's progress inside a job, in the order of DESIGN.md §3. Each state says what is
 * already durable, which is what a restarted controller resumes from:
 * - pending: nothing done yet
 * - preparing: PrepareRenewal asked (the agent may or may not have made the key; ask again —
 *   the agent's journal answers with the same renewal)
 * - csr_ready: renewal_id and csr_pem stored
 * - ca_pending: the CA holds the request; ca_cookie stored (poll, never resubmit)
 * - issued: certificate_pem and chain_pem stored
 * - published: the leaf (and for rotate-ca the staged leaf) is published on the instance
 * - installing: InstallCertificate sent; outage_started_at stored (ask the agent how it ended)
 * - succeeded: installed and the MID came back Up; outage_ended_at stored
 * - failed: error_code/error_message; the agent has restored the old certificate
 * - skipped: not done on purpose (not expiring, failure budget spent, job ended first)
 * - cancelled: stopped by an operator before the install started
 */
export const JOB_AGENT_STATES = [
  'pending', 'preparing', 'csr_ready', 'ca_pending', 'issued', 'published', 'installing',
  'succeeded', 'failed', 'skipped', 'cancelled',
] as const;
export type JobAgentState = (typeof JOB_AGENT_STATES)[number];

export const JOB_AGENT_TRANSITIONS: Readonly<Record<JobAgentState, readonly JobAgentState[]>> = {
  pending: ['preparing', 'failed', 'skipped', 'cancelled'],
  preparing: ['csr_ready', 'failed', 'cancelled'],
  csr_ready: ['ca_pending', 'issued', 'failed', 'cancelled'],
  // ca_pending → ca_pending: each poll may hand back a new cookie.
  ca_pending: ['ca_pending', 'issued', 'failed', 'cancelled'],
  issued: ['published', 'failed', 'cancelled'],
  published: ['installing', 'failed', 'cancelled'],
  // No cancel once installing: the agent owns the install and ends it installed or restored.
  installing: ['succeeded', 'failed'],
  succeeded: [],
  failed: [],
  skipped: [],
  cancelled: [],
};

/** Agent states in which an install may be under way or about to start (the agent is busy). */
export const JOB_AGENT_ACTIVE: ReadonlySet<JobAgentState> = new Set(['preparing', 'csr_ready', 'ca_pending', 'issued', 'published', 'installing']);

export const STEP_STATES = ['running', 'succeeded', 'failed', 'skipped'] as const;
export type StepState = (typeof STEP_STATES)[number];

export const STEP_TRANSITIONS: Readonly<Record<StepState, readonly StepState[]>> = {
  running: ['succeeded', 'failed', 'skipped'],
  succeeded: [],
  failed: [],
  skipped: [],
};

export const CERTIFICATE_STATUSES = ['issued', 'installed', 'retired'] as const;
export type CertificateStatus = (typeof CERTIFICATE_STATUSES)[number];

export const CERTIFICATE_TRANSITIONS: Readonly<Record<CertificateStatus, readonly CertificateStatus[]>> = {
  // issued → retired: a leaf that was never installed (failed rotation) is retired directly.
  issued: ['installed', 'retired'],
  installed: ['retired'],
  retired: [],
};

export function isTerminal<S extends string>(table: Readonly<Record<S, readonly S[]>>, state: S): boolean {
  return table[state].length === 0;
}

export function assertTransition<S extends string>(table: Readonly<Record<S, readonly S[]>>, what: string, from: S, to: S): void {
  if (!table[from].includes(to)) {
    const allowed = table[from].length > 0 ? `allowed: ${table[from].join(', ')}` : `${from} is final`;
    throw new MidcertError('STATE_TRANSITION_INVALID', `${what} cannot move from ${from} to ${to} (${allowed})`);
  }
}
