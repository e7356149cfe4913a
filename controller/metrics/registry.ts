import { createHash } from 'node:crypto';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { readCertificates } from '../../pki/certificate.js';
import type { CaPort, InstancePort } from '../orchestrator/ports.js';
import type { RotationDeps } from '../orchestrator/rotate-agent.js';
import type { MetricsSnapshot } from '../store/metrics.js';
import type { Store } from '../store/index.js';

/**
 * The controller's Prometheus metrics (docs/monitoring.md). Two sources:
 * - the store, read at scrape time (kube-state-metrics style): certificate expiry, rotation
 *   counters and durations, last rotation per agent. A rotation made by any process (CLI,
 *   Ansible, serve) shows in the next scrape.
 * - `midcert serve` itself: the last status poll of each agent (`midcert_agent_up`) and the CA /
 *   instance requests this process made (counters private to the serving process, by design and
 *   named so in their HELP text).
 */

/** What serve learned about an agent on its last status poll. */
export interface AgentObservation {
  reachable: boolean;
  /** When the poll ran (ISO-8601). */
  observedAt: string;
  /** The last poll that reached the agent (ISO-8601). */
  lastSeenAt?: string;
  leafSha256?: string;
  leafIssuer?: string;
  notBefore?: string;
  notAfter?: string;
}

/** Default nodejs metrics whose names break the Prometheus convention (gauges ending in _total); promtool flags them. */
const NONCONFORMING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

const ROTATION_BUCKETS = [10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400];
const OUTAGE_BUCKETS = [5, 10, 30, 60, 120, 300, 600, 1200];
const REQUEST_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const MAX_LABEL = 256;

const seconds = (iso: string | null | undefined): number | undefined => {
  if (!iso) return undefined;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms / 1000;
};
const label = (text: string): string => (text.length > MAX_LABEL ? `${text.slice(0, MAX_LABEL - 1)}…` : text);

export interface ControllerMetrics {
  readonly registry: Registry;
  /** The Prometheus text for one scrape: one consistent store read, then every collector. */
  render(): Promise<string>;
  /** Deps whose CA and instance calls are counted and timed. */
  instrument(deps: RotationDeps): RotationDeps;
  readonly contentType: string;
}

export function createControllerMetrics(store: Store, observed: ReadonlyMap<string, AgentObservation>, options: { defaultMetrics?: boolean; isLeader?: () => boolean } = {}): ControllerMetrics {
  const registry = new Registry();
  const isLeader = options.isLeader;
  if (isLeader) {
    new Gauge({
      name: 'midcert_controller_leader',
      help: 'Whether this midcert serve is the leader that reconciles and renews (1) or a follower (0); exactly one serve per store leads (docs/controller-state.md).',
      registers: [registry],
      collect() { this.set(isLeader() ? 1 : 0); },
    });
  }
  if (options.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    for (const name of NONCONFORMING_DEFAULTS) registry.removeSingleMetric(name);
  }
  // One store read per scrape, shared by every collector (prom-client runs them all at once): the
  // promise is kept, not its value, so the collectors waiting on it do not each start a read.
  let snap: Promise<MetricsSnapshot> | undefined;
  const snapshot = (): Promise<MetricsSnapshot> => {
    if (snap) return snap;
    const read = store.metrics.snapshot();
    snap = read;
    // A failed read is not kept: the next scrape reads again.
    read.catch(() => { if (snap === read) snap = undefined; });
    return read;
  };
  const chains = new ChainCache();
  const registers = [registry];

  const agentLabels = (name: string, midName: string | null): { agent: string; mid: string } => ({ agent: name, mid: midName ?? name });

  new Gauge({
    name: 'midcert_certificate_expiration_timestamp_seconds',
    help: 'The date after which the MID client certificate installed on the agent\'s host expires (notAfter), as Unix time. The newer of the store\'s installed leaf and serve\'s last status poll.',
    labelNames: ['agent', 'mid', 'issuer'], registers,
    async collect() { const s = await snapshot(); this.reset(); for (const l of leaves(s, observed)) if (l.notAfter !== undefined) this.set({ ...agentLabels(l.name, l.midName), issuer: label(l.issuer) }, l.notAfter); },
  });
  new Gauge({
    name: 'midcert_certificate_not_before_timestamp_seconds',
    help: 'The date before which the installed MID client certificate is not valid (notBefore), as Unix time.',
    labelNames: ['agent', 'mid', 'issuer'], registers,
    async collect() { const s = await snapshot(); this.reset(); for (const l of leaves(s, observed)) if (l.notBefore !== undefined) this.set({ ...agentLabels(l.name, l.midName), issuer: label(l.issuer) }, l.notBefore); },
  });
  new Gauge({
    name: 'midcert_ca_certificate_expiration_timestamp_seconds',
    help: 'notAfter of each CA certificate (intermediates and root) in the chains delivered with the installed MID leaves, as Unix time.',
    labelNames: ['subject', 'serial'], registers,
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const { chainPem } of s.installed) {
        for (const ca of chains.read(chainPem)) this.set({ subject: label(ca.subject), serial: ca.serial }, ca.notAfter);
      }
    },
  });
  new Gauge({
    name: 'midcert_agent_up',
    help: '1 when midcert serve reached the agent (GetStatus over mTLS) on its last poll, 0 when not. Absent until serve has polled the agent once.',
    labelNames: ['agent', 'mid'], registers,
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const a of s.agents) {
        const o = observed.get(a.name);
        if (o) this.set(agentLabels(a.name, a.midName), o.reachable ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'midcert_agent_last_seen_timestamp_seconds',
    help: 'When midcert serve last reached the agent, as Unix time.',
    labelNames: ['agent', 'mid'], registers,
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const a of s.agents) {
        const t = seconds(observed.get(a.name)?.lastSeenAt);
        if (t !== undefined) this.set(agentLabels(a.name, a.midName), t);
      }
    },
  });
  new Counter({
    name: 'midcert_rotations_total',
    help: 'Agents that finished a rotation job (rotate, renew, rotate-ca, convert, bootstrap), by final result; counted from the store, whichever process ran the job.',
    labelNames: ['kind', 'result'], registers,
    async collect() { const s = await snapshot(); this.reset(); for (const r of s.rotations) this.inc({ kind: r.kind, result: r.result }, r.count); },
  });
  new Histogram({
    name: 'midcert_rotation_duration_seconds',
    help: 'How long one agent\'s rotation took, from the start of its wave to its final state (succeeded or failed); from the store.',
    labelNames: ['kind', 'result'], buckets: ROTATION_BUCKETS, registers,
    async collect() { const s = await snapshot(); this.reset(); for (const d of s.durations) this.observe({ kind: d.kind, result: d.result }, d.seconds); },
  });
  new Histogram({
    name: 'midcert_rotation_outage_duration_seconds',
    help: 'How long the MID was out during a successful install (install sent until the MID read Up again); from the store.',
    labelNames: ['kind'], buckets: OUTAGE_BUCKETS, registers,
    async collect() { const s = await snapshot(); this.reset(); for (const d of s.outages) this.observe({ kind: d.kind }, d.seconds); },
  });
  new Gauge({
    name: 'midcert_last_rotation_timestamp_seconds',
    help: 'When the agent\'s most recent rotation that got to a result (succeeded or failed) finished, as Unix time.',
    labelNames: ['agent', 'mid'], registers,
    async collect() { const s = await snapshot(); this.reset(); forLast(s, (labels, r) => { const t = seconds(r.finishedAt); if (t !== undefined) this.set(labels, t); }); },
  });
  new Gauge({
    name: 'midcert_last_rotation_success',
    help: '1 when the agent\'s most recent rotation succeeded, 0 when it failed (the old certificate was restored).',
    labelNames: ['agent', 'mid'], registers,
    async collect() { const s = await snapshot(); this.reset(); forLast(s, (labels, r) => this.set(labels, r.result === 'succeeded' ? 1 : 0)); },
  });

  const caRequests = new Counter({ name: 'midcert_ca_requests_total', help: 'Requests this midcert serve process made to the MID CA (submit, poll), by outcome (issued, pending, rejected, unreachable, error). The CLI\'s own requests are not included.', labelNames: ['operation', 'outcome'], registers });
  const caLatency = new Histogram({ name: 'midcert_ca_request_duration_seconds', help: 'Latency of the CA requests this midcert serve process made.', labelNames: ['operation'], buckets: REQUEST_BUCKETS, registers });
  const instanceRequests = new Counter({ name: 'midcert_instance_requests_total', help: 'Operations this midcert serve process made against the ServiceNow instance, by outcome (ok, error). The CLI\'s own requests are not included.', labelNames: ['operation', 'outcome'], registers });
  const instanceLatency = new Histogram({ name: 'midcert_instance_request_duration_seconds', help: 'Latency of the instance operations this midcert serve process made (waitForMidUp includes the wait for the MID).', labelNames: ['operation'], buckets: REQUEST_BUCKETS, registers });

  function timed<A extends unknown[], R>(fn: (...args: A) => Promise<R>, operation: string, count: Counter<'operation' | 'outcome'>, latency: Histogram<'operation'>, outcomeOf: (r: R) => string): (...args: A) => Promise<R> {
    return async (...args: A) => {
      const end = latency.startTimer({ operation });
      try {
        const result = await fn(...args);
        count.inc({ operation, outcome: outcomeOf(result) });
        return result;
      } catch (err) {
        count.inc({ operation, outcome: 'error' });
        throw err;
      } finally {
        end();
      }
    };
  }

  return {
    registry,
    contentType: registry.contentType,
    async render() {
      snap = undefined;
      try {
        await snapshot();
        return await registry.metrics();
      } finally {
        snap = undefined;
      }
    },
    instrument(deps) {
      const ca: CaPort = {
        submit: timed(deps.ca.submit.bind(deps.ca), 'submit', caRequests, caLatency, (o) => o.kind),
        poll: timed(deps.ca.poll.bind(deps.ca), 'poll', caRequests, caLatency, (o) => o.kind),
      };
      let instance: InstancePort | undefined;
      if (deps.instance) {
        const inner = deps.instance;
        const wrap = <K extends keyof InstancePort>(key: K): InstancePort[K] => {
          const fn = inner[key];
          return (fn ? timed((fn as (...a: unknown[]) => Promise<unknown>).bind(inner), key, instanceRequests, instanceLatency, () => 'ok') : undefined) as InstancePort[K];
        };
        instance = {
          ensureCaChain: wrap('ensureCaChain'), publishLeaf: wrap('publishLeaf'), waitForMidUp: wrap('waitForMidUp'),
          retireOldLeaves: wrap('retireOldLeaves'), ...(inner.retireOtherCaChains ? { retireOtherCaChains: wrap('retireOtherCaChains') } : {}),
          ...(inner.upsertInventory ? { upsertInventory: wrap('upsertInventory') } : {}),
          ...(inner.invalidateForConversion ? { invalidateForConversion: wrap('invalidateForConversion') } : {}),
        };
      }
      return { ...deps, ca, instance };
    },
  };
}

interface Leaf { name: string; midName: string | null; issuer: string; notBefore?: number; notAfter?: number }

/**
 * The leaf installed on each registered agent: the store's newest installed certificate, unless
 * serve's status poll saw a different leaf after that install (a manual install, a restore).
 * Agents with no record in either place have no series.
 */
export function leaves(s: MetricsSnapshot, observed: ReadonlyMap<string, AgentObservation>): Leaf[] {
  const installed = new Map(s.installed.map((i) => [i.record.agentName, i.record]));
  const out: Leaf[] = [];
  for (const a of s.agents) {
    const rec = installed.get(a.name);
    const o = observed.get(a.name);
    const polled = o?.notAfter && o.lastSeenAt ? o : undefined;
    const pollIsNewer = polled && (!rec || polled.leafSha256 === rec.sha256 || Date.parse(polled.lastSeenAt as string) > Date.parse(rec.installedAt ?? rec.issuedAt));
    if (polled && pollIsNewer) out.push({ name: a.name, midName: a.midName, issuer: polled.leafIssuer ?? '', notBefore: seconds(polled.notBefore), notAfter: seconds(polled.notAfter) });
    else if (rec) out.push({ name: a.name, midName: a.midName, issuer: rec.issuer, notBefore: seconds(rec.notBefore), notAfter: seconds(rec.notAfter) });
  }
  return out;
}

function forLast(s: MetricsSnapshot, fn: (labels: { agent: string; mid: string }, r: MetricsSnapshot['lastRotations'][number]) => void): void {
  const mids = new Map(s.agents.map((a) => [a.name, a.midName ?? a.name]));
  for (const r of s.lastRotations) fn({ agent: r.agentName, mid: mids.get(r.agentName) ?? r.agentName }, r);
}

/** Parsed CA certificates of a chain PEM, cached by the PEM's hash (chains repeat across agents and scrapes). */
class ChainCache {
  private readonly cache = new Map<string, Array<{ subject: string; serial: string; notAfter: number }>>();
  read(pem: string | null): Array<{ subject: string; serial: string; notAfter: number }> {
    if (!pem) return [];
    const key = createHash('sha256').update(pem).digest('hex');
    let certs = this.cache.get(key);
    if (!certs) {
      try {
        certs = readCertificates(Buffer.from(pem)).map((c) => ({ subject: c.subjectText, serial: c.serial, notAfter: c.notAfter.getTime() / 1000 }));
      } catch {
        certs = [];
      }
      if (this.cache.size > 256) this.cache.clear();
      this.cache.set(key, certs);
    }
    return certs;
  }
}
