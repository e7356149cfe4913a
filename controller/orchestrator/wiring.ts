import { connectAgent, type AgentClient, type AgentClientOptions } from '../../proto/agent-client.js';
import { controllerIdentity, type FleetIdentity } from '../fleet-ca.js';
import type { InstanceOperations } from '../instance/operations.js';
import type { Agent } from '../store/index.js';
import { MidcertError } from '../../common/errors.js';
import type { AgentPort, InstallOutcome, InstancePort, RenewalSnapshot } from './ports.js';
import { RenewalPhase, type OperationResult, type RenewalState } from '../../proto/gen/midcert/v1/agent_pb.js';

/** The controller's mTLS client identity (fleet CA) for dialling agents. */
export interface AgentDialer {
  dial(agent: Agent): AgentPort;
}

export async function fleetDialer(dataDir: string, options: { insecureDev?: boolean } = {}): Promise<AgentDialer> {
  const id = options.insecureDev ? undefined : await controllerIdentity(dataDir);
  return { dial: (agent) => agentPort(connectAgent(agent.address, agentClientOptions(agent, id))) };
}

/** How the controller dials one agent: its fleet identity, and the name the agent's certificate carries. */
export function agentClientOptions(agent: Agent, id: FleetIdentity | undefined): AgentClientOptions {
  return id ? { caPem: id.caPem, certChainPem: id.certPem, keyPem: id.keyPem, serverName: agent.serverName || agent.name } : { insecureDev: true };
}

/** AgentPort over the gRPC client: statuses and install streams in the orchestrator's terms. */
export function agentPort(client: AgentClient): AgentPort {
  const stream = async (iterable: AsyncIterable<{ step: string; state: string; result?: OperationResult }>, onProgress: (e: { step: string; state: string }) => void): Promise<InstallOutcome> => {
    let last: OperationResult | undefined;
    for await (const p of iterable) {
      onProgress({ step: p.step, state: p.state });
      if (p.result) last = p.result;
    }
    // A stream that ends without a result is a lost connection: the orchestrator asks GetRenewal.
    if (!last) throw new MidcertError('UNAVAILABLE', 'the agent ended the install stream without a result');
    return outcomeOf(last);
  };
  return {
    status: async () => {
      const s = await client.getStatus({});
      return {
        midName: s.midName,
        leafSha256: s.certificate?.leaf?.sha256 ?? '',
        leafSubject: s.certificate?.leaf?.subject ?? '',
        leafIssuer: s.certificate?.leaf?.issuer ?? '',
        notBefore: s.certificate?.leaf?.notBefore || undefined,
        notAfter: s.certificate?.leaf?.notAfter || undefined,
        serviceActive: s.service?.active ?? false,
        instanceUrl: s.config?.instanceUrl ?? '',
      };
    },
    prepare: async (renewalId) => ({ csrPem: (await client.prepareRenewal({ renewalId })).csrPem }),
    install: (renewalId, certificatePem, chainPem, onProgress, allow = []) => stream(client.installCertificate({ renewalId, certificatePem, chainPem, allowKeyTypes: [...allow] }), onProgress),
    enableMutualAuth: (renewalId, certificatePem, chainPem, onProgress, allow = []) => stream(client.enableMutualAuth({ renewalId, certificatePem, chainPem, allowKeyTypes: [...allow] }), onProgress),
    rollback: async () => outcomeOf(await client.rollback({})),
    renewal: async (renewalId) => snapshotOf(await client.getRenewal({ renewalId }, { deadlineMs: RENEWAL_QUERY_DEADLINE_MS })),
    events: (signal) => client.watchEvents({}, { signal }),
    close: () => client.close(),
  };
}

/** GetRenewal reads two small files on the agent; an agent that cannot answer in this long is treated as unreachable. */
const RENEWAL_QUERY_DEADLINE_MS = 10_000;

const PHASE_NAMES: Record<RenewalPhase, RenewalSnapshot['state']> = {
  [RenewalPhase.UNSPECIFIED]: 'unknown', [RenewalPhase.UNKNOWN]: 'unknown', [RenewalPhase.PREPARED]: 'prepared', [RenewalPhase.INSTALLING]: 'installing',
  [RenewalPhase.INSTALLED]: 'installed', [RenewalPhase.ROLLED_BACK]: 'rolled-back', [RenewalPhase.FAILED]: 'failed',
};

function snapshotOf(r: RenewalState): RenewalSnapshot {
  return { state: PHASE_NAMES[r.state] ?? 'unknown', step: r.step, leafSha256: r.leafSha256, failedStep: r.failedStep, errorCode: r.errorCode, errorMessage: r.message, finishedAt: r.finishedAt };
}

function outcomeOf(r: OperationResult): InstallOutcome {
  return { ok: r.ok, failedStep: r.failedStep, errorCode: r.error?.code ?? '', errorMessage: r.error?.message ?? '', rolledBack: r.rolledBack, currentSha256: r.currentSha256 };
}

/** InstancePort over the instance client; MID service users are looked up once and cached. */
export function instancePort(ops: InstanceOperations): InstancePort {
  const users = new Map<string, Promise<string>>();
  const userOf = (midName: string): Promise<string> => {
    let user = users.get(midName);
    if (!user) {
      user = ops.findMidUser(midName).then((u) => u.sysId);
      users.set(midName, user);
      user.catch(() => users.delete(midName));
    }
    return user;
  };
  const chainPublishes = new Map<string, Promise<unknown>>();
  return {
    ensureCaChain: async (chainPem) => {
      // Many MIDs finish at once with the same chain: publish it once, not once per MID.
      let publish = chainPublishes.get(chainPem);
      if (!publish) {
        publish = ops.publishCaChain(chainPem, 'midcert CA chain').finally(() => chainPublishes.delete(chainPem));
        chainPublishes.set(chainPem, publish);
      }
      await publish;
    },
    // The record's name is the MID Server's name (SND install-mid-mutual-auth.md step 9, vendor-facts §11).
    publishLeaf: async (midName, certificatePem) => { await ops.publishLeaf(certificatePem, await userOf(midName), midName); },
    waitForMidUp: async (midName, since, timeoutMs) => { await ops.waitForMidUp(midName, { since, timeoutMs }); },
    retireOldLeaves: async (midName, keepSha256) => { await ops.retireOldLeaves(await userOf(midName), keepSha256); },
    retireOtherCaChains: async (keepChainPem) => { await ops.retireOtherCaChains(keepChainPem); },
    invalidateForConversion: async (midName) => { await ops.invalidateForConversion(midName); },
    ...(ops.inventory ? { upsertInventory: (midName: string, pem: string, retire: readonly string[]) => ops.upsertInventory(midName, pem, retire) } : {}),
  };
}
