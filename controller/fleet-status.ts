import { isMidcertError } from '../common/errors.js';
import type { InstanceOperations } from './instance/operations.js';
import type { AgentDialer } from './orchestrator/wiring.js';
import { runPool } from './orchestrator/waves.js';
import type { Agent, AgentHistoryEntry, Store } from './store/index.js';

export interface AgentFleetStatus {
  name: string;
  midName: string;
  reachable: boolean;
  instanceStatus: string;
  certificate: { subject: string; issuer: string; sha256: string; notAfter: string; daysLeft: number } | null;
  lastRotation: { jobId: number; state: string; finishedAt: string | null; errorCode: string | null } | null;
  error: { code: string; message: string } | null;
}

/** One row per agent: what the agent reports, what the instance says, what the store remembers. */
export async function fleetStatus(store: Store, agents: Agent[], dialer: AgentDialer, instance: InstanceOperations | undefined, concurrency = 64): Promise<AgentFleetStatus[]> {
  const rows: AgentFleetStatus[] = [];
  const latest = await store.jobAgents.latestFor(agents.map((a) => a.name));
  await runPool(agents, concurrency, async (agent) => { rows.push(await agentRow(latest.get(agent.name), agent, dialer, instance)); });
  return rows.sort((a, b) => a.name.localeCompare(b.name));
}

async function agentRow(last: AgentHistoryEntry | undefined, agent: Agent, dialer: AgentDialer, instance: InstanceOperations | undefined): Promise<AgentFleetStatus> {
  const midName = agent.midName ?? agent.name;
  const row: AgentFleetStatus = {
    name: agent.name, midName, reachable: false, instanceStatus: 'unknown', certificate: null, error: null,
    lastRotation: last ? { jobId: last.jobId, state: last.agentState, finishedAt: last.finishedAt, errorCode: last.errorCode } : null,
  };
  const port = dialer.dial(agent);
  const [agentSide, instanceSide] = await Promise.allSettled([port.status(), instance ? instance.midStatus(midName) : Promise.resolve(undefined)]);
  port.close();
  if (agentSide.status === 'fulfilled') {
    row.reachable = true;
    const a = agentSide.value;
    row.midName = a.midName || midName;
    if (a.leafSha256 && a.notAfter) {
      row.certificate = { subject: a.leafSubject, issuer: a.leafIssuer, sha256: a.leafSha256, notAfter: a.notAfter, daysLeft: Math.floor((Date.parse(a.notAfter) - Date.now()) / 86_400_000) };
    }
  } else {
    const e = agentSide.reason as unknown;
    row.error = { code: isMidcertError(e) ? e.code : 'UNAVAILABLE', message: isMidcertError(e) ? e.message : String(e) };
  }
  if (instanceSide.status === 'fulfilled' && instanceSide.value) row.instanceStatus = instanceSide.value.status;
  return row;
}
