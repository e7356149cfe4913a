import type { InstanceConfig } from '../config.js';
import { activeCaChain, retireOtherCaChains, type PublishedChain } from './ca-chain.js';
import { addCapabilities, invalidateForConversion, invalidateMid, midStatus, waitForMidUp, type MidStatus, type WaitForUpOptions } from './agents.js';
import { upsertInventory, type InventoryOutcome } from './inventory.js';
import { listLeaves, retireLeaf, retireOldLeaves } from './leaves.js';
import { findMidUser, type MidUser, type MidUserLookup } from './mid-users.js';
import { preflightInstance, type InstanceCheck } from './preflight.js';
import { publishCaChain, publishLeaf, type PublishSettings } from './publish.js';
import type { CertificateRecord } from './records.js';
import { InstanceClient, type InstanceClientSettings } from './rest.js';

/**
 * The instance operations a rotation uses, over one InstanceClient. Each is a thin call into the
 * module that owns it (publish, leaves, ca-chain, mid-users, agents, preflight); this class only
 * carries the shared settings. Contract and choices: docs/instance-client.md.
 */
export interface InstanceOperationsOptions {
  /** How long to wait for publish_status to read Exists/Active; default 300 s. */
  publishTimeoutMs?: number;
  /** Poll interval for publishing and waitForMidUp; default 1 s. */
  pollIntervalMs?: number;
  midUsers?: MidUserLookup;
  /** `instance.inventory`: keep the MID's leaf in cmdb_ci_certificate (docs/instance-client.md); default false. */
  inventory?: boolean;
}

export class InstanceOperations {
  private readonly publishing: PublishSettings;
  private readonly midUsers: MidUserLookup;
  private readonly pollIntervalMs: number;
  /** Whether rotations and reconcile passes upsert cmdb_ci_certificate (`instance.inventory`). */
  readonly inventory: boolean;

  constructor(readonly client: InstanceClient, options: InstanceOperationsOptions = {}) {
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.publishing = { client, publishTimeoutMs: options.publishTimeoutMs ?? 300_000, pollIntervalMs: this.pollIntervalMs };
    this.midUsers = options.midUsers ?? {};
    this.inventory = options.inventory ?? false;
  }

  /** From the controller config (`instance` section); `options` override what the config says. */
  static async fromConfig(config: InstanceConfig, options: InstanceOperationsOptions & { client?: Partial<InstanceClientSettings> } = {}): Promise<InstanceOperations> {
    const client = await InstanceClient.fromConfig(config, options.client);
    const midUsers: MidUserLookup = {
      ...(config.midUsers ? { users: config.midUsers } : {}),
      ...(config.midUserPattern ? { userNamePattern: config.midUserPattern } : {}),
      ...options.midUsers,
    };
    return new InstanceOperations(client, { publishTimeoutMs: config.publishTimeoutSeconds * 1000, inventory: config.inventory ?? false, ...options, midUsers });
  }

  findMidUser(midName: string): Promise<MidUser> {
    return findMidUser(this.client, midName, this.midUsers);
  }

  publishCaChain(chainPem: string, name: string): Promise<CertificateRecord> {
    return publishCaChain(this.publishing, chainPem, name);
  }

  publishLeaf(certPem: string, userSysId: string, name: string): Promise<CertificateRecord> {
    return publishLeaf(this.publishing, certPem, userSysId, name);
  }

  listLeaves(userSysId: string): Promise<CertificateRecord[]> {
    return listLeaves(this.client, userSysId);
  }

  retireLeaf(sysId: string): Promise<CertificateRecord> {
    return retireLeaf(this.client, sysId);
  }

  retireOldLeaves(userSysId: string, keepSha256: string): Promise<CertificateRecord[]> {
    return retireOldLeaves(this.client, userSysId, keepSha256);
  }

  activeCaChain(): Promise<PublishedChain[]> {
    return activeCaChain(this.client);
  }

  /** After a CA swap with every MID moved: the other active chains → active=false (vendor-facts §10). */
  retireOtherCaChains(keepChainPem: string): Promise<CertificateRecord[]> {
    return retireOtherCaChains(this.client, keepChainPem);
  }

  midStatus(midName: string): Promise<MidStatus | undefined> {
    return midStatus(this.client, midName);
  }

  waitForMidUp(midName: string, options: WaitForUpOptions): Promise<MidStatus> {
    return waitForMidUp(this.client, midName, { pollIntervalMs: this.pollIntervalMs, ...options });
  }

  addCapabilities(midName: string, capabilityNames: readonly string[]): Promise<{ added: string[]; present: string[] }> {
    return addCapabilities(this.client, midName, capabilityNames);
  }

  /** Low level; refused for an mTLS MID. Use invalidateForConversion for the basic → mTLS switch. */
  invalidateMid(midName: string, value?: string): Promise<MidStatus> {
    return invalidateMid(this.client, midName, value);
  }

  /** Basic → mTLS conversion of a validated MID, BEFORE the certificate is installed (vendor-facts §5). */
  invalidateForConversion(midName: string, options: { timeoutMs?: number } = {}): Promise<{ invalidated: boolean; command?: string }> {
    return invalidateForConversion(this.client, midName, { pollIntervalMs: this.pollIntervalMs, ...options });
  }

  /**
   * The MID's installed leaf as its cmdb_ci_certificate record (match on fingerprint), the earlier
   * leaves `retireSha256` set to retired, related to the host CI named by ecc_agent's host name.
   */
  async upsertInventory(midName: string, certificatePem: string, retireSha256: readonly string[] = []): Promise<InventoryOutcome> {
    const status = await midStatus(this.client, midName).catch(() => undefined);
    return upsertInventory(this.client, { midName, certificatePem, retireSha256, ...(status?.hostName ? { hostName: status.hostName } : {}) });
  }

  preflightInstance(midNames?: readonly string[]): Promise<InstanceCheck[]> {
    return preflightInstance(this.client, { ...(midNames ? { midNames } : {}), midUsers: this.midUsers });
  }

  close(): void {
    this.client.close();
  }
}
