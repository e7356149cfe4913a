import { InstanceError } from './instance-error.js';
import type { FaultSpec } from './types.js';

const MESSAGES: Record<FaultSpec['status'], { message: string; detail: string }> = {
  429: { message: 'Too Many Requests', detail: 'Rate limit exceeded; retry after the Retry-After interval' },
  500: { message: 'Internal Server Error', detail: 'Injected server error' },
  503: { message: 'Service Unavailable', detail: 'The instance is temporarily unavailable' },
};
const MAX_LATENCY_MS = 60_000;

/** Injected faults and latency, for tests of retry and timeout behaviour. */
export class FaultInjector {
  private readonly queue: Array<FaultSpec & { left: number }> = [];
  private latency = 0;

  add(spec: FaultSpec): void {
    if (!(spec.status in MESSAGES)) throw new RangeError(`fault status must be 429, 500 or 503, not ${spec.status}`);
    if (!Number.isInteger(spec.count) || spec.count < 1) throw new RangeError('fault count must be a positive integer');
    this.queue.push({ ...spec, left: spec.count });
  }

  clear(): void {
    this.queue.length = 0;
  }

  setLatency(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0 || ms > MAX_LATENCY_MS) throw new RangeError(`latency must be 0..${MAX_LATENCY_MS} ms`);
    this.latency = ms;
  }

  latencyMs(): number {
    return this.latency;
  }

  /** The injected error for a request to `path`, consuming one count of the first matching fault. */
  take(path: string): InstanceError | undefined {
    const fault = this.queue.find((f) => f.left > 0 && (f.path === undefined || path.startsWith(f.path)));
    if (!fault) return undefined;
    fault.left -= 1;
    if (fault.left === 0) this.queue.splice(this.queue.indexOf(fault), 1);
    const retryAfter = fault.retryAfterSeconds ?? (fault.status === 429 ? 1 : undefined);
    const headers: Record<string, string> = retryAfter === undefined ? {} : { 'Retry-After': String(retryAfter) };
    const { message, detail } = MESSAGES[fault.status];
    return new InstanceError(fault.status, message, { detail, headers, reason: `injected ${fault.status}` });
  }
}
