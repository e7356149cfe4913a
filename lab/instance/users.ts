import type { Credentials } from './credentials.js';
import { refuse } from './instance-error.js';
import type { TableRules, TableStore } from './tables.js';
import type { NewUser, TableRecord } from './types.js';

/** sys_user rules: unique user_name, passwords diverted to the credential store (never kept in a row). */
export function userRules(tables: TableStore, credentials: Credentials): TableRules {
  return {
    beforeWrite(table, record, previous) {
      if (table !== 'sys_user') return;
      if (record['user_name'] === '') throw refuse.badRequest('Invalid user', 'user_name is required');
      const clash = tables.rawRows('sys_user').find((u) => u['user_name'] === record['user_name'] && u['sys_id'] !== record['sys_id']);
      if (clash) throw refuse.badRequest('Operation Failed', `user_name "${record['user_name']}" is already taken`);
      const password = record['user_password'] ?? '';
      if (password !== '') credentials.setPassword(record['sys_id'] as string, password);
      record['user_password'] = previous?.['user_password'] ?? '';
    },
    afterDelete(table, record) {
      if (table === 'sys_user') credentials.forgetUser(record['sys_id'] as string);
    },
  };
}

export function findUserByName(tables: TableStore, userName: string): TableRecord | undefined {
  return tables.rawRows('sys_user').find((u) => u['user_name'] === userName);
}

/** Roles held by a user (sys_user_has_role rows that are not inactive). */
export function rolesOf(tables: TableStore, userId: string): Set<string> {
  return new Set(tables.rawRows('sys_user_has_role')
    .filter((r) => r['user'] === userId && r['state'] !== 'inactive')
    .map((r) => r['role'] as string));
}

/** Why a user may not log in, or undefined when it may. */
export function loginRefusal(user: TableRecord): string | undefined {
  if (user['active'] === 'false') return `user "${user['user_name']}" is inactive`;
  if (user['locked_out'] === 'true') return `user "${user['user_name']}" is locked out`;
  return undefined;
}

/** Finds or creates a user, sets the password when given, adds any missing roles. */
export function ensureUser(tables: TableStore, user: NewUser): TableRecord {
  const fields: Record<string, unknown> = { user_name: user.userName };
  if (user.password !== undefined) fields['user_password'] = user.password;
  if (user.name !== undefined) fields['name'] = user.name;
  const existing = findUserByName(tables, user.userName);
  const record = existing ? tables.update('sys_user', existing['sys_id'] as string, fields) : tables.insert('sys_user', fields);
  const id = record['sys_id'] as string;
  const held = rolesOf(tables, id);
  for (const role of user.roles ?? []) if (!held.has(role)) tables.insert('sys_user_has_role', { user: id, role });
  return record;
}
