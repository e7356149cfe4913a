import type { AgentPort, AgentSnapshot } from '../../controller/orchestrator/ports.js';
import type { RotationDeps, RotationOptions } from '../../controller/orchestrator/rotate-agent.js';
import type { Store } from '../../controller/store/index.js';

const DAY = 86_400_000;
const unused = async (): Promise<never> => { throw new Error('unused'); };

/** An agent whose leaf has `daysLeft` (of a 310-day life); every call not overridden throws "unused". */
export function fakeAgentPort(daysLeft: number, overrides: Partial<AgentPort> = {}): AgentPort {
  const snapshot = (): AgentSnapshot => ({
    midName: 'mid01', leafSha256: 'x', leafSubject: '', leafIssuer: '', serviceActive: true, instanceUrl: '',
    notBefore: new Date(Date.now() - (310 - daysLeft) * DAY).toISOString(), notAfter: new Date(Date.now() + daysLeft * DAY).toISOString(),
  });
  return { status: async () => snapshot(), prepare: unused, install: unused, enableMutualAuth: unused, rollback: unused, renewal: unused, close: () => undefined, ...overrides };
}

/** serve's world around one agent port: a CA that refuses, no instance. */
export function serveDeps(store: Store, port: AgentPort): RotationDeps {
  return { store, dial: () => port, ca: { submit: async () => ({ kind: 'rejected' as const, reason: '' }), poll: async () => ({ kind: 'rejected' as const, reason: '' }) }, instance: undefined, onEvent: () => undefined };
}

export const SERVE_ROTATION: RotationOptions = { force: false, expiringWithinDays: 30, canary: 0, batch: 10, maxFailures: 0, concurrency: 2, dryRun: false, caTimeoutMs: 1000, caPollMs: 10, upTimeoutMs: 1000 };
