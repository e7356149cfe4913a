import type { AgentMonitor } from './agents.js';
import type { AttachmentStore } from './attachments.js';
import type { CertificateRules } from './certificates.js';
import type { Credentials } from './credentials.js';
import type { FaultInjector } from './faults.js';
import type { Log } from './log.js';
import type { OAuthServer } from './oauth.js';
import type { TableStore } from './tables.js';
import type { InvalidQueryMode } from './query.js';
import type { PluginActiveStyle, SupportsTls } from './types.js';

export interface InstanceSettings {
  supportsTls: SupportsTls;
  url: string;
  /** The configured regime; the glide.invalid_query.returns_no_rows property can override it (queryModeOf). */
  invalidQuery: InvalidQueryMode;
  attachmentToMissingRecord: 'accept' | '404';
  pluginActiveStyle: PluginActiveStyle;
}

/** Everything a request handler may touch. */
export interface InstanceContext {
  tables: TableStore;
  attachments: AttachmentStore;
  credentials: Credentials;
  certificates: CertificateRules;
  agents: AgentMonitor;
  faults: FaultInjector;
  oauth: OAuthServer;
  log: Log;
  limits: { jsonBytes: number; attachmentBytes: number };
  settings: InstanceSettings;
  /** Called after anything outside the tables changed that the state file keeps. */
  markDirty: () => void;
}

/** The invalid-query regime now: the property glide.invalid_query.returns_no_rows=true wins (SND c_TableAPI.md). */
export function queryModeOf(ctx: InstanceContext): InvalidQueryMode {
  const property = ctx.tables.rawRows('sys_properties').find((p) => p['name'] === 'glide.invalid_query.returns_no_rows');
  if ((property?.['value'] ?? '').trim().toLowerCase() === 'true') return 'no_rows';
  return ctx.settings.invalidQuery;
}
