import { join } from 'node:path';
import { KeystoreBackups } from './backups.js';
import type { AgentConfig } from './config.js';
import { Journal } from './journal.js';
import { scriptRunner } from './manage-certificates.js';
import { resolveMidPaths, resolveStorepass } from './mid-install.js';
import type { HostEffects } from './renewal/effects.js';
import { createServiceManager } from './service-manager.js';

/** The real host effects for a validated config: what the daemon and the host-local CLI use. */
export async function hostEffectsFrom(cfg: AgentConfig): Promise<HostEffects> {
  const paths = await resolveMidPaths(cfg);
  return {
    paths,
    alias: cfg.mid.alias,
    storepass: await resolveStorepass(cfg),
    script: scriptRunner(paths, { timeoutMs: cfg.mid.scriptTimeoutSeconds * 1000, requireImportSuccessLine: cfg.mid.requireImportSuccessLine }),
    service: await createServiceManager(cfg, paths.home),
    backups: new KeystoreBackups(join(cfg.stateDir, 'backups'), cfg.backups.keep),
    journal: new Journal(cfg.stateDir),
    allowKeyTypes: cfg.install.allowKeyTypes,
    verify: { settleMs: cfg.verify.settleSeconds * 1000, startTimeoutMs: cfg.verify.startTimeoutSeconds * 1000 },
  };
}
