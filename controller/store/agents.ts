import { MidcertError } from '../../common/errors.js';
import type { AuditRepo } from './audit.js';
import type { StoreContext } from './db.js';
import { jobsHoldingAgent } from './job-agents.js';
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
  add(agent: NewAgent): Agent;
  update(name: string, patch: AgentPatch): Agent;
  /** Refused (AGENT_BUSY) while the agent takes part in an unfinished job. History is kept. */
  remove(name: string): Agent;
  get(name: string): Agent | undefined;
  require(name: string): Agent;
  /** Sorted by name. */
  list(filter?: AgentFilter): Agent[];
  count(): number;
}

interface AgentRow {
  name: string; address: string; server_name: string; tls_sha256: string | null; tags: string;
  cluster: string | null; instance_url: string | null; mid_name: string | null; created_at: string; updated_at: string;
}

export function createAgentRepo(ctx: StoreContext, audit: AuditRepo): AgentRepo {
  const { db } = ctx;
  const insert = db.prepare(`INSERT INTO agents (name, address, server_name, tls_sha256, tags, cluster, instance_url, mid_name, created_at, updated_at)
    VALUES (@name, @address, @server_name, @tls_sha256, @tags, @cluster, @instance_url, @mid_name, @created_at, @updated_at) RETURNING *`);
  const updateRow = db.prepare(`UPDATE agents SET address = @address, server_name = @server_name, tls_sha256 = @tls_sha256, tags = @tags,
    cluster = @cluster, instance_url = @instance_url, mid_name = @mid_name, updated_at = @updated_at WHERE name = @name RETURNING *`);
  const deleteRow = db.prepare('DELETE FROM agents WHERE name = ?');
  const selectOne = db.prepare('SELECT * FROM agents WHERE name = ?');
  const registered = db.prepare('SELECT name FROM agents WHERE name IN (SELECT value FROM json_each(?))').pluck();
  const countRows = db.prepare('SELECT count(*) AS n FROM agents').pluck();
  // Filters arrive as JSON arrays so one prepared statement serves every shape of query.
  const selectMany = db.prepare(`SELECT * FROM agents
    WHERE (@names IS NULL OR name IN (SELECT value FROM json_each(@names)))
      AND (@tags IS NULL OR NOT EXISTS (
            SELECT 1 FROM json_each(@tags) AS wanted
            WHERE wanted.value NOT IN (SELECT value FROM json_each(agents.tags))))
      AND (@cluster IS NULL OR cluster = @cluster)
    ORDER BY name`);

  const get = (name: string): Agent | undefined => {
    const row = selectOne.get(name) as AgentRow | undefined;
    return row && toAgent(row);
  };
  const require = (name: string): Agent => {
    const agent = get(name);
    if (!agent) throw new MidcertError('AGENT_NOT_FOUND', `no agent named "${name.slice(0, 80)}" is registered`);
    return agent;
  };

  return {
    add(input) {
      return audited(audit, 'agent.add', input.name, describe(input), () => {
        const name = checkAgentName(input.name);
        if (get(name)) throw new MidcertError('AGENT_EXISTS', `an agent named "${name}" is already registered`);
        const now = ctx.now();
        return toAgent(insert.get({ ...toRow({ ...input, name }), created_at: now, updated_at: now }) as AgentRow);
      });
    },
    update(name, patch) {
      return audited(audit, 'agent.update', name, describe(patch), () => {
        const current = require(name);
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
        return toAgent(updateRow.get({ ...toRow(merged), updated_at: ctx.now() }) as AgentRow);
      });
    },
    remove(name) {
      return audited(audit, 'agent.remove', name, {}, () => {
        const agent = require(name);
        const jobs = jobsHoldingAgent(db, name);
        if (jobs.length > 0) throw new MidcertError('AGENT_BUSY', `agent "${name}" takes part in unfinished job ${jobs.join(', ')}; finish or cancel it first`);
        deleteRow.run(name);
        return agent;
      });
    },
    get,
    require,
    list(filter = {}) {
      const rows = selectMany.all({
        names: filter.names ? JSON.stringify(filter.names) : null,
        tags: filter.tags && filter.tags.length > 0 ? JSON.stringify(filter.tags) : null,
        cluster: filter.cluster ?? null,
      }) as AgentRow[];
      if (filter.names) {
        // Unknown names are an error even when other filters would have excluded them anyway.
        const found = new Set(filter.tags || filter.cluster ? registered.all(JSON.stringify(filter.names)) as string[] : rows.map((r) => r.name));
        const missing = [...new Set(filter.names)].filter((n) => !found.has(n));
        if (missing.length > 0) {
          const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? ` and ${missing.length - 10} more` : '');
          throw new MidcertError('AGENT_NOT_FOUND', `not registered: ${shown}`);
        }
      }
      return rows.map(toAgent);
    },
    count: () => countRows.get() as number,
  };
}

function audited<T>(audit: AuditRepo, action: string, name: string, params: Record<string, unknown>, fn: () => T): T {
  return audit.audited({ action, target: `agent:${name.slice(0, 80)}`, params }, fn);
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
