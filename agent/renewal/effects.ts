import type { KeystoreBackups } from '../backups.js';
import type { Journal } from '../journal.js';
import type { ManageCertificates } from '../manage-certificates.js';
import type { MidPaths } from '../mid-install.js';
import type { ServiceManager } from '../service-manager.js';

/** Everything a renewal touches on the host, behind small interfaces (stand-ins in tests). */
export interface HostEffects {
  paths: MidPaths;
  alias: string;
  storepass: string;
  script: ManageCertificates;
  service: ServiceManager;
  backups: KeystoreBackups;
  journal: Journal;
  verify: { settleMs: number; startTimeoutMs: number };
  /** Key types install accepts besides RSA 2048 (agent config install.allowKeyTypes); none when absent. */
  allowKeyTypes?: readonly string[];
}

export interface Progress {
  step: string;
  state: 'started' | 'done' | 'failed';
  message: string;
}

export type ProgressListener = (progress: Progress) => void;
