import type { AgentMonitor } from './agents.js';
import type { AttachmentStore } from './attachments.js';
import type { CertificateRules } from './certificates.js';
import type { Credentials } from './credentials.js';
import type { FaultInjector } from './faults.js';
import type { Log } from './log.js';
import type { TableStore } from './tables.js';
import type { SupportsTls } from './types.js';

/** Everything a request handler may touch. */
export interface InstanceContext {
  tables: TableStore;
  attachments: AttachmentStore;
  credentials: Credentials;
  certificates: CertificateRules;
  agents: AgentMonitor;
  faults: FaultInjector;
  log: Log;
  limits: { jsonBytes: number; attachmentBytes: number };
  settings: { supportsTls: SupportsTls; url: string };
  /** Called after anything outside the tables changed that the state file keeps. */
  markDirty: () => void;
}
