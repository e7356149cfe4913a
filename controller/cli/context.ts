import type { ControllerConfig } from '../config.js';
import type { InstanceOperations } from '../instance/operations.js';
import type { RotationDeps, RotationOptions } from '../orchestrator/rotate-agent.js';
import type { RotationEvent } from '../orchestrator/rotate-one.js';
import type { Store } from '../store/index.js';
// Everything a command opens (config, SQLite, instance client, CA, gRPC) loads only when a command
// runs, so --help and --version answer at once.

/** Global options every controller command shares. */
export interface GlobalOptions {
  dataDir?: string;
  insecureDev?: boolean;
}

/** What a command opened; close() releases it all. */
export interface Context {
  dataDir: string;
  cfg: ControllerConfig;
  store: Store;
  instance: InstanceOperations | undefined;
  close(): Promise<void>;
}

export async function openContext(globals: GlobalOptions, options: { instance?: boolean; actor?: string } = {}): Promise<Context> {
  const { loadControllerConfig, resolveDataDir } = await import('../config.js');
  const dataDir = resolveDataDir(globals.dataDir);
  const cfg = await loadControllerConfig(dataDir);
  const { openStore } = await import('../store/index.js');
  // The store the configuration names; serve.leaseSeconds is how long the jobs this process runs stay its own without renewal.
  const store = await openStore(dataDir, { config: cfg.store, leaseSeconds: cfg.serve.leaseSeconds, actor: options.actor });
  let instance: InstanceOperations | undefined;
  try {
    if (options.instance !== false && cfg.instance) instance = await (await import('../instance/operations.js')).InstanceOperations.fromConfig(cfg.instance, { publishTimeoutMs: cfg.instance.publishTimeoutSeconds * 1000 });
  } catch (err) {
    await store.close();
    throw err;
  }
  return { dataDir, cfg, store, instance, close: async () => { instance?.close(); await store.close(); } };
}

export async function rotationDeps(ctx: Context, globals: GlobalOptions, onEvent: (e: RotationEvent) => void, onWave?: (i: number, names: string[]) => void): Promise<RotationDeps> {
  const [{ createCaAdapter }, { fleetDialer, instancePort }] = await Promise.all([import('../ca/index.js'), import('../orchestrator/wiring.js')]);
  const dialer = await fleetDialer(ctx.dataDir, { insecureDev: globals.insecureDev });
  return {
    store: ctx.store,
    dial: (agent) => dialer.dial(agent),
    ca: await createCaAdapter(ctx.cfg.ca, { dataDir: ctx.dataDir }),
    instance: ctx.instance && instancePort(ctx.instance),
    onEvent,
    onWave,
  };
}

export function rotationOptions(ctx: Context, overrides: Partial<RotationOptions>): RotationOptions {
  const r = ctx.cfg.rotation;
  return {
    force: false,
    expiringWithinDays: r.renewWithinDays,
    canary: r.canary,
    batch: r.batch,
    maxFailures: r.maxFailures,
    concurrency: r.concurrency,
    dryRun: false,
    caTimeoutMs: ctx.cfg.ca.timeoutSeconds * 1000 * 20,
    caPollMs: 2000,
    upTimeoutMs: r.upTimeoutSeconds * 1000,
    reconnectMs: (r.reconnectSeconds ?? r.upTimeoutSeconds) * 1000,
    allowKeyTypes: r.allowKeyTypes,
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  };
}
