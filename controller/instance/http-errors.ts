import { MidcertError, type ErrorCode } from '../../common/errors.js';

/**
 * HTTP status → stable error code. The message carries the instance's own `error.message` (the
 * Table API error body is `{"error":{"message","detail"},"status":"failure"}`) and never a
 * credential: requests are described by method and path only, never by headers.
 */
export function codeForStatus(status: number): ErrorCode {
  if (status === 401) return 'INSTANCE_AUTH';
  if (status === 403) return 'INSTANCE_FORBIDDEN';
  if (status === 404) return 'INSTANCE_NOT_FOUND';
  if (status === 429) return 'INSTANCE_RATE_LIMITED';
  if (status >= 500) return 'INSTANCE_UNAVAILABLE';
  return 'INSTANCE_BAD_REQUEST';
}

export function statusError(status: number, what: string, body: Buffer, note = ''): MidcertError {
  const { message, detail } = instanceError(body);
  const said = message ? `: ${message}` : '';
  return new MidcertError(codeForStatus(status), `${what}: HTTP ${status}${said}${note}`, detail ? { detail } : {});
}

/** The instance's error message and detail, cleaned for display (bounded, no control characters). */
export function instanceError(body: Buffer): { message: string; detail: string } {
  try {
    const parsed = JSON.parse(body.subarray(0, 64 * 1024).toString('utf8')) as { error?: { message?: unknown; detail?: unknown } };
    return { message: clean(parsed.error?.message), detail: clean(parsed.error?.detail) };
  } catch {
    return { message: '', detail: '' };
  }
}

function clean(value: unknown): string {
  if (typeof value !== 'string') return '';
  const text = value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}
