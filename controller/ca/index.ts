import type { CaConfig } from '../config.js';
import type { CaAdapter } from './adapter.js';
import { createAdcsAdapter, probeAdcs, type CaProbe } from './adcs.js';
import { createCfsslAdapter } from './cfssl.js';
import { createEstAdapter } from './est.js';
import { createExecAdapter } from './exec.js';
import { useCaProxy } from './http.js';
import { createLocalAdapter } from './local.js';

export type { CaAdapter, CaOutcome, CaRequest, CaType } from './adapter.js';
export { initLocalCa, localCaDir } from './local.js';
export type { CaProbe } from './adcs.js';

/**
 * `midcert ca probe` / preflight: can the controller authenticate to its CA? Implemented for
 * `adcs` (GET of the certsrv start page with ca.auth); other types answer CA_PROBE_UNSUPPORTED.
 */
export async function probeCa(cfg: CaConfig): Promise<CaProbe> {
  await useCaProxy(cfg);
  if (cfg.type === 'adcs') return probeAdcs(cfg);
  return { ok: false, type: cfg.type, url: cfg.url ?? '', auth: '', authenticated: false, code: 'CA_PROBE_UNSUPPORTED', message: `ca probe checks ca.type adcs only (this controller uses ${cfg.type})` };
}

/**
 * The adapter for `ca.type`. Reads and checks every file the config names (chainFile, caFile,
 * client certificate, password) now, so misconfiguration fails at start with CONFIG_INVALID /
 * CONFIG_UNREADABLE rather than at the first renewal.
 */
export async function createCaAdapter(cfg: CaConfig, ctx: { dataDir: string }): Promise<CaAdapter> {
  await useCaProxy(cfg);
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
