/**
 * What the rotation needs from the world, as narrow ports. The real implementations wrap the
 * agent gRPC client, the CA adapter, the instance client and the store (see wiring.ts); tests and
 * benchmarks can substitute any of them.
 */
import type { CaOutcome } from '../ca/adapter.js';

export interface AgentSnapshot {
  midName: string;
  leafSha256: string;
  leafSubject: string;
  leafIssuer: string;
  notBefore: string | undefined;
  notAfter: string | undefined;
  serviceActive: boolean;
  instanceUrl: string;
}

export interface InstallOutcome {
  ok: boolean;
  failedStep: string;
  errorCode: string;
  errorMessage: string;
  rolledBack: boolean;
  currentSha256: string;
}

/** GetRenewal's answer: what became of one renewal on the host, from the agent's journal. */
export interface RenewalSnapshot {
  state: 'unknown' | 'prepared' | 'installing' | 'installed' | 'rolled-back' | 'failed';
  step: string;
  /** The leaf the keystore held when the renewal finished. */
  leafSha256: string;
  failedStep: string;
  errorCode: string;
  errorMessage: string;
  finishedAt: string;
}

export interface InstallProgressEvent {
  step: string;
  state: string;
}

export interface AgentPort {
  status(): Promise<AgentSnapshot>;
  prepare(renewalId: string): Promise<{ csrPem: string }>;
  /** `allowKeyTypes`: leaf key types the agent may install besides RSA-2048 (lint KEY_TYPE_UNVERIFIED). */
  install(renewalId: string, certificatePem: string, chainPem: string, onProgress: (e: InstallProgressEvent) => void, allowKeyTypes?: readonly string[]): Promise<InstallOutcome>;
  /** Converts a basic-auth MID: import + `manage-certificates -m`. */
  enableMutualAuth(renewalId: string, certificatePem: string, chainPem: string, onProgress: (e: InstallProgressEvent) => void, allowKeyTypes?: readonly string[]): Promise<InstallOutcome>;
  rollback(): Promise<InstallOutcome>;
  /** GetRenewal: asked after an install stream broke, and when resuming an install in flight. */
  renewal(renewalId: string): Promise<RenewalSnapshot>;
  /** The agent's event stream (keystore or config.xml changed, renewal progress) until aborted. */
  events?(signal: AbortSignal): AsyncIterable<{ type: string; message: string }>;
  close(): void;
}

export interface CaPort {
  submit(csrPem: string, request: { subject: string; midName?: string }): Promise<CaOutcome>;
  poll(cookie: string): Promise<CaOutcome>;
}

export interface InstancePort {
  /** Publishes the chain unless the same chain is already the active published one. */
  ensureCaChain(chainPem: string): Promise<void>;
  publishLeaf(midName: string, certificatePem: string): Promise<void>;
  /** Resolves when ecc_agent reads Up with a heartbeat after `since`. */
  waitForMidUp(midName: string, since: Date, timeoutMs: number): Promise<void>;
  retireOldLeaves(midName: string, keepSha256: string): Promise<void>;
  /** After a CA swap, every MID moved: the other active CA chains → active=false (vendor-facts §10; the instance does not do it). */
  retireOtherCaChains?(keepChainPem: string): Promise<void>;
  /**
   * Basic → mutual conversion of a validated MID: invalidate it and wait until the MID has
   * processed the queued delete_mid_keypair, BEFORE the new pair is imported (the command deletes
   * whatever pair is in defaultsecuritykeypairhandle; vendor-facts §5). No-op when not validated.
   */
  invalidateForConversion?(midName: string): Promise<void>;
  /**
   * `instance.inventory`: upserts the MID's installed leaf into cmdb_ci_certificate and retires the
   * records of `retireSha256` (earlier leaves). Absent when inventory is off. Callers treat a failure
   * as a warning: the inventory never fails a rotation.
   */
  upsertInventory?(midName: string, certificatePem: string, retireSha256: readonly string[]): Promise<{ action: string; dropped: string[]; relationNote: string }>;
}
