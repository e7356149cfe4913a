/**
 * When and how long the instance client waits before trying a request again. Exponential backoff
 * with jitter (so a fleet of controllers does not retry in lockstep), and `Retry-After` honoured but
 * capped (a misbehaving proxy must not park a rotation for an hour).
 */
export interface BackoffSettings {
  /** First backoff step; doubles per retry. */
  baseMs: number;
  /** Largest backoff step before jitter. */
  maxMs: number;
  /** Largest wait taken from a `Retry-After` header. */
  maxRetryAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffSettings = { baseMs: 250, maxMs: 8000, maxRetryAfterMs: 30_000 };

/** Methods whose repetition has the same effect as one call (RFC 9110 §9.2.2; PATCH with a fixed body too). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'PATCH', 'DELETE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

/** Backoff before retry number `retry` (1-based): half fixed, half random ("equal jitter"). */
export function backoffDelay(retry: number, settings: BackoffSettings, random: () => number): number {
  const step = Math.min(settings.maxMs, settings.baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(step / 2 + (step / 2) * random());
}

/**
 * Milliseconds a `Retry-After` header asks for (delta-seconds or an HTTP-date), capped; undefined
 * when absent or unreadable.
 */
export function retryAfterMs(header: string | string[] | undefined, settings: BackoffSettings, now = Date.now()): number | undefined {
  const text = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!text) return undefined;
  let ms: number;
  if (/^\d{1,10}$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.min(Math.max(0, ms), settings.maxRetryAfterMs);
}
