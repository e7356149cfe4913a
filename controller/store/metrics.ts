import type { CertificateRecord } from './certificates.js';
import type { SqlDatabase } from './sql.js';
import type { JobAgentState, JobKind } from './states.js';

/**
 * Read-only queries behind `/metrics` (controller/metrics/): the fleet as the store records it,
 * whichever process (CLI, Ansible, serve) did the work. Everything here is derived at scrape time,
 * as kube-state-metrics does, so a rotation made by another process shows in the next scrape.
 *
 * Monotonic by construction: job_agents rows are never deleted (no code path deletes jobs; the
 * ON DELETE CASCADE never fires; removing an agent keeps its history) and a row in a final state
 * never leaves it (JOB_AGENT_TRANSITIONS), so counts of final rows only grow.
 */
export const FINAL_AGENT_STATES = ['succeeded', 'failed', 'skipped', 'cancelled'] as const satisfies readonly JobAgentState[];

export interface RotationCount { kind: JobKind; result: JobAgentState; count: number }
export interface RotationDuration { kind: JobKind; result: JobAgentState; seconds: number }
export interface OutageDuration { kind: JobKind; seconds: number }
export interface LastRotation { agentName: string; result: 'succeeded' | 'failed'; finishedAt: string }
export interface InstalledLeaf { record: CertificateRecord; chainPem: string | null }

export interface MetricsSnapshot {
  agents: Array<{ name: string; midName: string | null }>;
  rotations: RotationCount[];
  durations: RotationDuration[];
  outages: OutageDuration[];
  lastRotations: LastRotation[];
  /** The newest installed leaf of every registered agent, with the chain its job delivered. */
  installed: InstalledLeaf[];
}

export interface MetricsQueries {
  /** One consistent read (a single read transaction). */
  snapshot(): Promise<MetricsSnapshot>;
}

const FINAL = FINAL_AGENT_STATES.map((s) => `'${s}'`).join(', ');

export function createMetricsQueries(sql: SqlDatabase): MetricsQueries {
  const read = async (): Promise<MetricsSnapshot> => {
    const agents = await sql.all<{ name: string; mid_name: string | null }>('SELECT name, mid_name FROM agents ORDER BY name');
    const rotations = await sql.all<RotationCount>(`SELECT j.kind, ja.state AS result, count(*) AS count
        FROM job_agents ja JOIN jobs j ON j.id = ja.job_id WHERE ja.state IN (${FINAL}) GROUP BY j.kind, ja.state`);
    // An agent's rotation runs from the start of its wave (the end of the job's previous wave, or
    // the job's start for wave 0) to its final transition (job_agents.updated_at). Times are
    // ISO-8601 text on both databases; the arithmetic is done here.
    const spans = await sql.all<{ kind: JobKind; result: JobAgentState; ended: string; began: string }>(`SELECT j.kind, ja.state AS result, ja.updated_at AS ended,
        COALESCE((SELECT max(p.updated_at) FROM job_agents p WHERE p.job_id = ja.job_id AND p.wave < ja.wave), j.started_at, j.created_at) AS began
      FROM job_agents ja JOIN jobs j ON j.id = ja.job_id WHERE ja.state IN ('succeeded', 'failed')`);
    const outages = await sql.all<{ kind: JobKind; began: string; ended: string }>(`SELECT j.kind, ja.outage_started_at AS began, ja.outage_ended_at AS ended
      FROM job_agents ja JOIN jobs j ON j.id = ja.job_id
      WHERE ja.state = 'succeeded' AND ja.outage_started_at IS NOT NULL AND ja.outage_ended_at IS NOT NULL`);
    const last = await sql.all<{ agent_name: string; state: 'succeeded' | 'failed'; updated_at: string }>(`SELECT agent_name, state, updated_at FROM (
        SELECT ja.agent_name, ja.state, ja.updated_at, row_number() OVER (PARTITION BY ja.agent_name ORDER BY ja.job_id DESC) AS rn
        FROM job_agents ja WHERE ja.state IN ('succeeded', 'failed') AND ja.agent_name IN (SELECT name FROM agents)) ranked
      WHERE rn = 1 ORDER BY agent_name`);
    const installed = await sql.all<Record<string, unknown>>(`SELECT c.*, ja.chain_pem FROM (
        SELECT *, row_number() OVER (PARTITION BY agent_name ORDER BY installed_at DESC, id DESC) AS rn
        FROM certificates WHERE status = 'installed' AND agent_name IN (SELECT name FROM agents)) c
      LEFT JOIN job_agents ja ON ja.job_id = c.job_id AND ja.agent_name = c.agent_name
      WHERE c.rn = 1 ORDER BY c.agent_name`);
    return {
      agents: agents.map((r) => ({ name: r.name, midName: r.mid_name })),
      rotations: rotations.map((r) => ({ ...r, count: Number(r.count) })),
      durations: spans.map((d) => ({ kind: d.kind, result: d.result, seconds: secondsBetween(d.began, d.ended) })),
      outages: outages.map((d) => ({ kind: d.kind, seconds: secondsBetween(d.began, d.ended) })),
      lastRotations: last.map((r) => ({ agentName: r.agent_name, result: r.state, finishedAt: r.updated_at })),
      installed: installed.map((r) => ({
        chainPem: (r.chain_pem as string | null) ?? null,
        record: {
          id: r.id as number, agentName: r.agent_name as string, sha256: r.sha256 as string, subject: r.subject as string,
          issuer: r.issuer as string, serial: r.serial as string, notBefore: r.not_before as string, notAfter: r.not_after as string,
          pem: r.pem as string, status: 'installed', issuedAt: r.issued_at as string, installedAt: (r.installed_at as string | null) ?? null,
          retiredAt: (r.retired_at as string | null) ?? null, jobId: (r.job_id as number | null) ?? null,
        },
      })),
    };
  };
  return { snapshot: () => sql.read(read) };
}

function secondsBetween(began: string, ended: string): number {
  const seconds = (Date.parse(ended) - Date.parse(began)) / 1000;
  return Number.isFinite(seconds) ? Math.max(0, seconds) : 0;
}
