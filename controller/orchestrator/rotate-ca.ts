import type { InstancePort } from './ports.js';
import type { RotationRecord } from './rotate-one.js';
import { runPool, type FleetTarget } from './waves.js';

export interface CaRotationPlan {
  targets: FleetTarget[];
  newChainPem: string;
  concurrency: number;
  instance: InstancePort | undefined;
  /** Runs one MID's rotation up to `published` (stage) or onward to `verified` (finish). */
  rotate(target: FleetTarget, phase: 'stage' | 'finish', outageStartedAt?: string): Promise<RotationRecord>;
  onPhase?(phase: 'stage' | 'swap' | 'install', detail: string): void;
}

export interface CaRotationResult {
  staged: string[];
  failedToStage: string[];
  swappedAt: string | undefined;
  results: Map<string, RotationRecord>;
  /** Per MID: seconds from the chain swap until the instance saw it Up again. */
  outageSeconds: Map<string, number>;
}

/**
 * CA-chain rotation (DESIGN.md §3): the instance holds one active chain, so every MID must move
 * at once. Stage a leaf from the new CA on every MID first (nothing installed), swap the chain
 * only if every MID staged, then install all staged leaves in parallel to keep the outage short.
 */
export async function rotateCaChain(plan: CaRotationPlan): Promise<CaRotationResult> {
  const results = new Map<string, RotationRecord>();
  plan.onPhase?.('stage', `${plan.targets.length} MIDs`);
  await runPool(plan.targets, plan.concurrency, async (t) => { results.set(t.name, await plan.rotate(t, 'stage')); });
  const staged = plan.targets.filter((t) => results.get(t.name)?.state === 'published').map((t) => t.name);
  const failedToStage = plan.targets.map((t) => t.name).filter((n) => !staged.includes(n));
  if (failedToStage.length > 0) {
    // Swapping now would take the unstaged MIDs Down with no certificate to come back with.
    return { staged, failedToStage, swappedAt: undefined, results, outageSeconds: new Map() };
  }
  plan.onPhase?.('swap', 'publishing the new CA chain');
  await plan.instance?.ensureCaChain(plan.newChainPem);
  const swappedAt = new Date().toISOString();
  plan.onPhase?.('install', `${staged.length} MIDs in parallel`);
  await runPool(plan.targets, Math.max(plan.concurrency, plan.targets.length), async (t) => { results.set(t.name, await plan.rotate(t, 'finish', swappedAt)); });
  // The instance does not deactivate the old chain (vendor-facts §10): once every MID is verified on
  // the new chain, midcert sets the others active=false; if any MID failed, the old chain stays for it.
  if ([...results.values()].every((r) => r.state === 'verified')) {
    plan.onPhase?.('install', 'every MID verified: deactivating the previous CA chain(s)');
    await plan.instance?.retireOtherCaChains?.(plan.newChainPem).catch((err: unknown) => {
      plan.onPhase?.('install', `the previous CA chain(s) stay active: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
  const outageSeconds = new Map<string, number>();
  for (const [name, r] of results) {
    if (r.state === 'verified' && r.outageEndedAt) outageSeconds.set(name, (Date.parse(r.outageEndedAt) - Date.parse(swappedAt)) / 1000);
  }
  return { staged, failedToStage, swappedAt, results, outageSeconds };
}
