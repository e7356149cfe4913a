import { MidcertError, isMidcertError } from '../../common/errors.js';
import { isTrue } from './records.js';
import { queryValue, type InstanceClient, type TableRecord } from './rest.js';

/**
 * Which sys_user is a MID's service user (the one its leaf is mapped to). The instance does not
 * record this in one documented place, so the lookup is explicit and overridable, in this order:
 *
 * 1. `users[midName]` — the operator said so (config `instance.midUsers`);
 * 2. the MID's ecc_agent record, if it carries a user in one of `agentUserFields` (a sys_id or a
 *    user_name; fields the instance does not have are simply not returned);
 * 3. `userNamePattern` with `{name}` → the MID name (config `instance.midUserPattern`, default `mid.{name}`).
 *
 * The user found must be active, not locked out, and hold the `mid_server` role.
 */
export interface MidUserLookup {
  users?: Readonly<Record<string, string>>;
  /** Default ['user_name'] (the ecc_agent column public automation shows, vendor-facts §1). */
  agentUserFields?: readonly string[];
  /** Default 'mid.{name}'. */
  userNamePattern?: string;
}

export interface MidUser {
  sysId: string;
  userName: string;
  /** How the user was found. */
  source: 'configured' | 'ecc_agent' | 'pattern';
}

export const DEFAULT_USER_PATTERN = 'mid.{name}';
const DEFAULT_AGENT_USER_FIELDS = ['user_name'] as const;
const SYS_ID = /^[0-9a-f]{32}$/;

export async function findMidUser(client: InstanceClient, midName: string, lookup: MidUserLookup = {}): Promise<MidUser> {
  const { user, source, how } = await locate(client, midName, lookup);
  if (!user) throw new MidcertError('MID_USER_NOT_FOUND', `no service user for MID "${midName}": ${how} does not exist`);
  const userName = user['user_name'] ?? '';
  if (user['active'] === 'false' || isTrue(user['locked_out'])) {
    throw new MidcertError('MID_USER_NOT_FOUND', `the service user "${userName}" of MID "${midName}" is ${user['active'] === 'false' ? 'inactive' : 'locked out'}`);
  }
  const sysId = user['sys_id'] ?? '';
  if (!(await hasRole(client, sysId, 'mid_server'))) {
    throw new MidcertError('MID_USER_NO_ROLE', `the service user "${userName}" of MID "${midName}" lacks the mid_server role`);
  }
  return { sysId, userName, source };
}

async function locate(client: InstanceClient, midName: string, lookup: MidUserLookup): Promise<{ user: TableRecord | undefined; source: MidUser['source']; how: string }> {
  const configured = lookup.users?.[midName];
  if (configured !== undefined) return { user: await userByName(client, configured), source: 'configured', how: `the configured user "${configured}"` };

  const fields = lookup.agentUserFields ?? DEFAULT_AGENT_USER_FIELDS;
  if (fields.length > 0) {
    const agents = await client.tableGet('ecc_agent', { query: `name=${queryValue(midName)}`, fields: ['sys_id', 'name', ...fields], limit: 10 });
    const agent = agents.find((a) => a['name'] === midName); // re-checked (vendor-facts §1)
    const named = fields.map((f) => agent?.[f] ?? '').find((v) => v !== '');
    if (named !== undefined) {
      const user = SYS_ID.test(named) ? await userById(client, named) : await userByName(client, named);
      return { user, source: 'ecc_agent', how: `the user "${named}" named by its ecc_agent record` };
    }
  }

  const userName = (lookup.userNamePattern ?? DEFAULT_USER_PATTERN).replaceAll('{name}', midName);
  return { user: await userByName(client, userName), source: 'pattern', how: `the user "${userName}"` };
}

const USER_FIELDS = ['sys_id', 'user_name', 'active', 'locked_out'];

async function userByName(client: InstanceClient, userName: string): Promise<TableRecord | undefined> {
  const users = await client.tableGet('sys_user', { query: `user_name=${queryValue(userName)}`, fields: USER_FIELDS, limit: 10 });
  return users.find((u) => u['user_name'] === userName); // re-checked (vendor-facts §1)
}

async function userById(client: InstanceClient, sysId: string): Promise<TableRecord | undefined> {
  try {
    return await client.tableGetOne('sys_user', sysId, { fields: USER_FIELDS });
  } catch (err) {
    if (isMidcertError(err) && err.code === 'INSTANCE_NOT_FOUND') return undefined;
    throw err;
  }
}

/**
 * sys_user_has_role.role references sys_user_role on a real instance; with display values it reads
 * as the role's name there, and the lab stores the name itself, so one query works on both.
 */
async function hasRole(client: InstanceClient, userSysId: string, role: string): Promise<boolean> {
  const rows = await client.tableGet('sys_user_has_role', { query: `user=${queryValue(userSysId)}`, fields: ['role', 'state'], displayValue: true });
  return rows.some((r) => r['role'] === role && (r['state'] ?? '').toLowerCase() !== 'inactive');
}
