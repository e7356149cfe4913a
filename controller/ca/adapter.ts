/**
 * One "sign this request" interface for every CA (cert-manager style). The orchestrator and the
 * daemon work in terms of CaOutcome only and never learn which CA they talk to. See
 * docs/ca-adapters.md.
 */
export type CaOutcome =
  /** `certificatePem`: the leaf; `chainPem`: intermediates then root, built and verified. */
  | { kind: 'issued'; certificatePem: string; chainPem: string }
  /** Ask again later with `poll(cookie)`. The cookie is opaque and self-contained: persist it. */
  | { kind: 'pending'; cookie: string; retryAfterSeconds?: number }
  /** Final: retrying the same request will not help (denied, wrong EKU, bad credentials…). */
  | { kind: 'rejected'; reason: string }
  /** Transient: the CA could not be asked or did not answer (refused, timeout, 5xx). */
  | { kind: 'unreachable'; reason: string; retryAfterSeconds?: number };

export type CaType = 'local' | 'adcs' | 'cfssl' | 'exec' | 'est';

export interface CaRequest {
  /** The subject policy asked for (the CSR carries the same); informational for most CAs. */
  subject: string;
  midName?: string;
}

/**
 * Adapters never throw for what the CA says or for network trouble; they throw MidcertError only
 * for local misconfiguration (CONFIG_INVALID / CONFIG_UNREADABLE).
 */
export interface CaAdapter {
  readonly type: CaType;
  submit(csrPem: string, request: CaRequest): Promise<CaOutcome>;
  poll(cookie: string): Promise<CaOutcome>;
}

/**
 * Carries a final outcome out of deep code (HTTP transport, result checks) so each adapter reads
 * as a straight line; `settle` turns it back into a return value.
 */
export class CaAnswer extends Error {
  constructor(readonly outcome: CaOutcome) {
    super('reason' in outcome ? outcome.reason : outcome.kind);
    this.name = 'CaAnswer';
  }
}

export const rejected = (reason: string): CaAnswer => new CaAnswer({ kind: 'rejected', reason });
export const unreachable = (reason: string, retryAfterSeconds?: number): CaAnswer =>
  new CaAnswer(retryAfterSeconds === undefined ? { kind: 'unreachable', reason } : { kind: 'unreachable', reason, retryAfterSeconds });

export async function settle(work: () => Promise<CaOutcome>): Promise<CaOutcome> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof CaAnswer) return err.outcome;
    throw err;
  }
}

/** Server-supplied text shown in a reason: one line, printable, bounded. */
export function excerpt(text: string, max = 300): string {
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
