import type { CaConfig } from '../config.js';
import type { CaAdapter } from './adapter.js';
import { createAdcsAdapter } from './adcs.js';
import { createCfsslAdapter } from './cfssl.js';
import { createEstAdapter } from './est.js';
import { createExecAdapter } from './exec.js';
import { createLocalAdapter } from './local.js';

export type { CaAdapter, CaOutcome, CaRequest, CaType } from './adapter.js';
export { initLocalCa, localCaDir } from './local.js';

/**
 * The adapter for `ca.type`. Reads and checks every file the config names (chainFile, caFile,
 * client certificate, password) now, so misconfiguration fails at start with CONFIG_INVALID /
 * CONFIG_UNREADABLE rather than at the first renewal.
 */
export async function createCaAdapter(cfg: CaConfig, ctx: { dataDir: string }): Promise<CaAdapter> {
  switch (cfg.type) {
    case 'local':
      return createLocalAdapter(cfg, ctx);
    case 'cfssl':
      return createCfsslAdapter(cfg);
    case 'adcs':
      return createAdcsAdapter(cfg);
    case 'exec':
      return createExecAdapter(cfg);
    case 'est':
      return createEstAdapter(cfg);
  }
}
