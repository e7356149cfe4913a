import type { ClientTrust } from './client-trust.js';
import type { InstanceContext } from './context.js';
import { parseQuery, runQuery } from './query.js';
import { readableFields } from './schema.js';
import { pluginWord, upsertBy } from './seed.js';
import { AGENT_STATUSES, type InstanceAdmin, type SupportsTls, type TableAccess, type TableRecord } from './types.js';
import { ensureUser, findUserByName } from './users.js';

const SUPPORTS_TLS: readonly SupportsTls[] = ['true', 'mixed', 'false'];

/** The in-process handle: the REST behaviour minus authentication and ACLs. Returns copies. */
export function createAdmin(ctx: InstanceContext, trust: ClientTrust, flush: () => Promise<void>): InstanceAdmin {
  return {
    tables: tableAccess(ctx),
    addUser: (user) => ({ ...ensureUser(ctx.tables, user) }),
    attach: (attachment) => ({ ...ctx.attachments.add(attachment) }),
    setFault: (fault) => ctx.faults.add(fault),
    clearFaults: () => ctx.faults.clear(),
    setLatency: (ms) => ctx.faults.setLatency(ms),
    setProperty: (name, value) => upsertBy(ctx.tables, 'sys_properties', 'name', name, { value }),
    setPlugin: (id, active) => upsertBy(ctx.tables, 'sys_plugins', 'source', id, { active: pluginWord(active, ctx.settings.pluginActiveStyle) }),
    setSupportsTls: (value) => {
      if (!SUPPORTS_TLS.includes(value)) throw new RangeError(`supports_tls must be one of ${SUPPORTS_TLS.join(', ')}`);
      ctx.settings.supportsTls = value;
      ctx.markDirty();
    },
    addOAuthToken: (token, userName, options = {}) => {
      const user = findUserByName(ctx.tables, userName);
      if (!user) throw new Error(`no sys_user "${userName}"`);
      if (token.length < 16) throw new RangeError('an OAuth token must be at least 16 characters');
      const expiresAt = options.expiresInMs === undefined ? undefined : Date.now() + options.expiresInMs;
      ctx.credentials.addToken(token, user['sys_id'] as string, expiresAt);
      ctx.markDirty();
    },
    setAgentStatus: (name, status) => {
      if (!(AGENT_STATUSES as readonly string[]).includes(status)) throw new RangeError(`status must be one of ${AGENT_STATUSES.join(', ')}`);
      const agent = ctx.tables.rawRows('ecc_agent').find((a) => a['name'] === name);
      if (!agent) throw new Error(`no ecc_agent "${name}"`);
      ctx.tables.update('ecc_agent', agent['sys_id'] as string, { status }, { system: true });
    },
    runMonitor: () => ctx.agents.runMonitor(),
    addOAuthClient: (client) => ctx.oauth.addClient(client),
    revokeOAuthTokens: (which) => ctx.oauth.revoke(ctx, which),
    trustAnchors: () => trust.fingerprints(),
    flush,
  };
}

function tableAccess(ctx: InstanceContext): TableAccess {
  return {
    insert: (table, fields) => ({ ...ctx.tables.insert(table, fields) }),
    get: (table, sysId) => {
      const record = ctx.tables.get(table, sysId);
      return record ? { ...record } : undefined;
    },
    query: (table, query = ''): TableRecord[] => {
      const parsed = parseQuery(query, readableFields(ctx.tables.schema(table)));
      return runQuery(ctx.tables.rows(table), parsed).map((r) => ({ ...r }));
    },
    update: (table, sysId, fields) => ({ ...ctx.tables.update(table, sysId, fields) }),
    delete: (table, sysId) => { ctx.tables.delete(table, sysId); },
  };
}
