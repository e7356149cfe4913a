import { MidcertError } from '../../common/errors.js';
import type { AuditRepo } from './audit.js';
import type { StoreContext } from './db.js';
import { jobsHoldingAgent } from './job-agents.js';
import { inValues, placeholders } from './sql.js';
import {
  checkAddress, checkAgentName, checkInstanceUrl, checkOptionalText, checkServerName, normalizeFingerprint, normalizeTags,
} from './validate.js';

/** One registered agent (a midcert-agent on a MID host) as the controller knows it. */
export interface Agent {
  name: string;
  /** `host:port` the controller dials. */
  address: string;
  /** The TLS name the agent's certificate must carry (defaults to the name). */
  serverName: string;
  /** SHA-256 of the agent's TLS certificate when pinned, else null. */
  tlsSha256: string | null;
  tags: string[];
  cluster: string | null;
  instanceUrl: string | null;
  /** The MID Server's name on the instance (ecc_agent.name), when known. */
  midName: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface NewAgent {
  name: string;
  address: string;
  serverName?: string;
  tlsSha256?: string | null;
  tags?: string[];
  cluster?: string | null;
  instanceUrl?: string | null;
  midName?: string | null;
}

/** Fields to change; `null` clears an optional field, `undefined` leaves it. */
export type AgentPatch = Partial<Omit<NewAgent, 'name'>>;

export interface AgentFilter {
  /** Exactly these agents; a name that is not registered is an error (AGENT_NOT_FOUND). */
  names?: string[];
  /** Agents carrying every one of these tags. */
  tags?: string[];
  cluster?: string;
}

export interface AgentRepo {
  add(agent: NewAgent): Promise<Agent>;
  update(name: string, patch: AgentPatch): Promise<Agent>;
  /** Refused (AGENT_BUSY / JOB_CONFLICT) while the agent takes part in an unfinished job. History is kept. */
  remove(name: string): Promise<Agent>;
  get(name: string): Promise<Agent | undefined>;
  require(name: string): Promise<Agent>;
  /** Sorted by name. */
  list(filter?: AgentFilter): Promise<Agent[]>;
  count(): Promise<number>;
}

interface AgentRow {
  name: string; address: string; server_name: string; tls_sha256: string | null; tags: string;
  cluster: string | null; instance_url: string | null; mid_name: string | null; created_at: string; updated_at: string;
}

const COLUMNS = 'name, address, server_name, tls_sha256, tags, cluster, instance_url, mid_name';

export function createAgentRepo(ctx: StoreContext, audit: AuditRepo): AgentRepo {
  const { sql } = ctx;
  const get = async (name: string): Promise<Agent | undefined> => {
    const row = await sql.get<AgentRow>('SELECT * FROM agents WHERE name = ?', [name]);
    return row && toAgent(row);
  };
  const require = async (name: string): Promise<Agent> => {
    const agent = await get(name);
    if (!agent) throw new MidcertError('AGENT_NOT_FOUND', `no agent named "${name.slice(0, 80)}" is registered`);
    return agent;
  };

  return {
    async add(input) {
      return audited(audit, 'agent.add', input.name, describe(input), async () => {
        const name = checkAgentName(input.name);
        if (await get(name)) throw new MidcertError('AGENT_EXISTS', `an agent named "${name}" is already registered`);
        const now = ctx.now();
        const row = rowValues(toRow({ ...input, name }));
        return toAgent(await sql.get<AgentRow>(`INSERT INTO agents (${COLUMNS}, created_at, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`, [...row, now, now]) as AgentRow);
      });
    },
    async update(name, patch) {
      return audited(audit, 'agent.update', name, describe(patch), async () => {
        const current = await require(name);
        const merged: NewAgent = {
          name,
          address: patch.address ?? current.address,
          serverName: patch.serverName ?? current.serverName,
          tlsSha256: patch.tlsSha256 === undefined ? current.tlsSha256 : patch.tlsSha256,
          tags: patch.tags ?? current.tags,
          cluster: patch.cluster === undefined ? current.cluster : patch.cluster,
          instanceUrl: patch.instanceUrl === undefined ? current.instanceUrl : patch.instanceUrl,
          midName: patch.midName === undefined ? current.midName : patch.midName,
        };
        const [, ...fields] = rowValues(toRow(merged));
        return toAgent(await sql.get<AgentRow>(`UPDATE agents SET address = ?, server_name = ?, tls_sha256 = ?, tags = ?,
          cluster = ?, instance_url = ?, mid_name = ?, updated_at = ? WHERE name = ? RETURNING *`, [...fields, ctx.now(), name]) as AgentRow);
      });
    },
    async remove(name) {
      return audited(audit, 'agent.remove', name, {}, async () => {
        const agent = await require(name);
        const holders = await jobsHoldingAgent(ctx, name);
        if (holders.length > 0) {
          const byOther = holders.some((h) => h.owner?.live && h.owner.id !== ctx.owner.id);
          throw new MidcertError(byOther ? 'JOB_CONFLICT' : 'AGENT_BUSY', `agent "${name}" takes part in unfinished job ${holders.map((h) => h.jobId).join(', ')}; finish or cancel it first`);
        }
        await sql.run('DELETE FROM agents WHERE name = ?', [name]);
        return agent;
      });
    },
    get,
    require,
    async list(filter = {}) {
      const where: string[] = [];
      const params: string[] = [];
      if (filter.names) {
        where.push(`name IN ${placeholders(filter.names.length)}`);
        params.push(...inValues(filter.names));
      }
      if (filter.cluster !== undefined) {
        where.push('cluster = ?');
        params.push(filter.cluster);
      }
      const rows = await sql.all<AgentRow>(`SELECT * FROM agents${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY name`, params);
      if (filter.names) {
        // Unknown names are an error even when other filters would have excluded them anyway.
        const found = new Set(filter.cluster !== undefined
          ? (await sql.all<{ name: string }>(`SELECT name FROM agents WHERE name IN ${placeholders(filter.names.length)}`, inValues(filter.names))).map((r) => r.name)
          : rows.map((r) => r.name));
        const missing = [...new Set(filter.names)].filter((n) => !found.has(n));
        if (missing.length > 0) {
          const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? ` and ${missing.length - 10} more` : '');
          throw new MidcertError('AGENT_NOT_FOUND', `not registered: ${shown}`);
        }
      }
      // Tags are a JSON array per row; every wanted tag must be on the agent (checked here, the same on both databases).
      const wanted = filter.tags ?? [];
      return rows.map(toAgent).filter((agent) => wanted.every((tag) => agent.tags.includes(tag)));
    },
    count: async () => Number((await sql.get<{ n: number }>('SELECT count(*) AS n FROM agents'))?.n ?? 0),
  };
}

function audited<T>(audit: AuditRepo, action: string, name: string, params: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
  return audit.audited({ action, target: `agent:${name.slice(0, 80)}`, params }, fn);
}

function rowValues(row: Omit<AgentRow, 'created_at' | 'updated_at'>): Array<string | null> {
  return [row.name, row.address, row.server_name, row.tls_sha256, row.tags, row.cluster, row.instance_url, row.mid_name];
}

function describe(input: AgentPatch): Record<string, unknown> {
  const { address, serverName, tlsSha256, tags, cluster, instanceUrl, midName } = input;
  return { address, serverName, tlsSha256, tags, cluster, instanceUrl, midName };
}

function toRow(agent: NewAgent): Omit<AgentRow, 'created_at' | 'updated_at'> {
  return {
    name: agent.name,
    address: checkAddress(agent.address),
    server_name: checkServerName(agent.serverName ?? agent.name),
    tls_sha256: agent.tlsSha256 ? normalizeFingerprint(agent.tlsSha256) : null,
    tags: JSON.stringify(normalizeTags(agent.tags ?? [])),
    cluster: checkOptionalText(agent.cluster, 'cluster', 128),
    instance_url: checkInstanceUrl(agent.instanceUrl),
    mid_name: checkOptionalText(agent.midName, 'MID name', 256),
  };
}

function toAgent(row: AgentRow): Agent {
  return {
    name: row.name, address: row.address, serverName: row.server_name, tlsSha256: row.tls_sha256,
    tags: JSON.parse(row.tags) as string[], cluster: row.cluster, instanceUrl: row.instance_url, midName: row.mid_name,
    createdAt: row.created_at, updatedAt: row.updated_at,
  };
}
