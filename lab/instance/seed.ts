import { MUTUAL_AUTH_PLUGIN, SNI_PROPERTY } from './heartbeat-api.js';
import type { TableStore } from './tables.js';
import { ensureUser } from './users.js';

/** What a fresh instance holds: the admin user, the mutual-auth plugin (active), SNI on. */
export function seedInstance(tables: TableStore, admin: { username: string; password: string }): void {
  ensureUser(tables, { userName: admin.username, password: admin.password, roles: ['admin'], name: 'System Administrator' });
  if (!tables.rawRows('sys_plugins').some((p) => p['id'] === MUTUAL_AUTH_PLUGIN)) {
    tables.insert('sys_plugins', { id: MUTUAL_AUTH_PLUGIN, name: 'Mutual Authentication', active: 'active' });
  }
  if (!tables.rawRows('sys_properties').some((p) => p['name'] === SNI_PROPERTY)) {
    tables.insert('sys_properties', { name: SNI_PROPERTY, value: 'true', type: 'true|false' });
  }
}

/** Upserts a record found by one key field. */
export function upsertBy(tables: TableStore, table: string, key: string, keyValue: string, fields: Record<string, string>): void {
  const existing = tables.rawRows(table).find((r) => r[key] === keyValue);
  if (existing) tables.update(table, existing['sys_id'] as string, fields);
  else tables.insert(table, { [key]: keyValue, ...fields });
}
