import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../common/version.js';
import type { LastResult } from './journal.js';
import { readConfigXml, summarizeMidConfig } from './mid-config.js';
import type { MidPaths } from './mid-install.js';
import { isChangingMid, type RenewalEngine } from './renewal/engine.js';
import { inspectKeystore } from './status.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics-http.js';

/**
 * The agent's optional `/metrics` (agent config `metrics.listen`, off by default) for sites that
 * scrape hosts rather than (or besides) the controller: the certificate in this host's keystore
 * and the last install result from the journal, read at scrape time. docs/monitoring.md.
 */
export interface AgentMetricsSources {
  paths: Pick<MidPaths, 'keystore' | 'configXml'>;
  alias: string;
  storepass: string;
  engine: Pick<RenewalEngine, 'state'>;
}

interface Snapshot {
  mid: string;
  leaf?: { issuer: string; notBefore: number; notAfter: number };
  keystoreReadable: boolean;
  renewalState: string;
  lastResult?: LastResult;
}

const NONCONFORMING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface AgentMetrics {
  registry: Registry;
  render(): Promise<string>;
}

export function createAgentMetrics(sources: AgentMetricsSources): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of NONCONFORMING_DEFAULTS) registry.removeSingleMetric(name);
  let current: Snapshot | undefined;
  const snap = async (): Promise<Snapshot> => (current ??= await read(sources));
  const registers = [registry];

  new Gauge({
    name: 'midcert_agent_certificate_expiration_timestamp_seconds',
    help: 'notAfter of the MID client certificate in this host\'s keystore (the client alias), as Unix time; absent when the keystore holds none.',
    labelNames: ['mid', 'issuer'], registers,
    async collect() { this.reset(); const s = await snap(); if (s.leaf) this.set({ mid: s.mid, issuer: s.leaf.issuer.slice(0, 256) }, s.leaf.notAfter); },
  });
  new Gauge({
    name: 'midcert_agent_certificate_not_before_timestamp_seconds',
    help: 'notBefore of the MID client certificate in this host\'s keystore, as Unix time.',
    labelNames: ['mid', 'issuer'], registers,
    async collect() { this.reset(); const s = await snap(); if (s.leaf) this.set({ mid: s.mid, issuer: s.leaf.issuer.slice(0, 256) }, s.leaf.notBefore); },
  });
  new Gauge({
    name: 'midcert_agent_keystore_readable',
    help: '1 when the agent read the MID keystore with its store password on this scrape, 0 when not.',
    labelNames: ['mid'], registers,
    async collect() { const s = await snap(); this.reset(); this.set({ mid: s.mid }, s.keystoreReadable ? 1 : 0); },
  });
  new Gauge({
    name: 'midcert_agent_last_install_success',
    help: '1 when the agent\'s last install (or rollback, revert) succeeded, 0 when it failed; absent before the first.',
    labelNames: ['mid'], registers,
    async collect() { this.reset(); const s = await snap(); if (s.lastResult) this.set({ mid: s.mid }, s.lastResult.ok ? 1 : 0); },
  });
  new Gauge({
    name: 'midcert_agent_last_install_timestamp_seconds',
    help: 'When the agent\'s last install (or rollback, revert) finished, as Unix time.',
    labelNames: ['mid'], registers,
    async collect() {
      this.reset();
      const s = await snap();
      const t = s.lastResult ? Date.parse(s.lastResult.finishedAt) : Number.NaN;
      if (!Number.isNaN(t)) this.set({ mid: s.mid }, t / 1000);
    },
  });
  new Gauge({
    name: 'midcert_agent_install_in_progress',
    help: '1 while the agent installs, rolls back or restarts the MID, else 0.',
    labelNames: ['mid'], registers,
    async collect() { const s = await snap(); this.reset(); this.set({ mid: s.mid }, isChangingMid(s.renewalState) ? 1 : 0); },
  });
  new Gauge({
    name: 'midcert_agent_build_info',
    help: 'Always 1; the agent\'s version in the label.',
    labelNames: ['version'], registers,
    collect() { this.reset(); this.set({ version: VERSION }, 1); },
  });

  return {
    registry,
    async render() {
      current = await read(sources);
      try {
        return await registry.metrics();
      } finally {
        current = undefined;
      }
    },
  };
}

async function read(sources: AgentMetricsSources): Promise<Snapshot> {
  const mid = await readConfigXml(sources.paths.configXml).then((p) => summarizeMidConfig(p).midName ?? '', () => '');
  const state = await sources.engine.state().catch(() => undefined);
  const out: Snapshot = { mid, keystoreReadable: false, renewalState: state?.state ?? 'unknown', lastResult: state?.lastResult };
  try {
    const { entry } = await inspectKeystore(sources.paths.keystore, sources.storepass, sources.alias);
    out.keystoreReadable = true;
    const leaf = entry?.kind === 'PrivateKeyEntry' ? entry.chain[0] : undefined;
    if (leaf) out.leaf = { issuer: leaf.issuerText, notBefore: leaf.notBefore.getTime() / 1000, notAfter: leaf.notAfter.getTime() / 1000 };
  } catch {
    // reported as midcert_agent_keystore_readable 0
  }
  return out;
}

/** GET /metrics on `address` (host:port, loopback by default in the docs); the shared server of common/metrics-http.ts. */
export function startAgentMetricsServer(address: string, metrics: AgentMetrics): Promise<MetricsServer> {
  return startMetricsServer(address, () => metrics.render(), metrics.registry.contentType);
}
