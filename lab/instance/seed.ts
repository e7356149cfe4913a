import { MUTUAL_AUTH_PLUGIN, SNI_PROPERTY } from './heartbeat-api.js';
import type { TableRules, TableStore } from './tables.js';
import type { PluginActiveStyle, TableRecord } from './types.js';
import { ensureUser } from './users.js';

/** sys_plugins.active in the configured style (vendor-facts §1: true/false, 0/1, active/inactive all seen). */
export function pluginWord(active: boolean | string, style: PluginActiveStyle): string {
  if (typeof active === 'string') return active;
  if (style === '1') return active ? '1' : '0';
  if (style === 'active') return active ? 'active' : 'inactive';
  return active ? 'true' : 'false';
}

/**
 * What a fresh instance holds: the admin user, the mutual-auth plugin (active; ID in `source`,
 * "Certificate-based authentication plugin (com.glide.auth.mutual)", SND set-up-mutual-auth.md),
 * SNI on, and the choice lists behind the certificate `type` labels.
 */
export function seedInstance(tables: TableStore, admin: { username: string; password: string }, style: PluginActiveStyle = 'true'): void {
  ensureUser(tables, { userName: admin.username, password: admin.password, roles: ['admin'], name: 'System Administrator' });
  if (!tables.rawRows('sys_plugins').some((p) => p['source'] === MUTUAL_AUTH_PLUGIN)) {
    tables.insert('sys_plugins', { source: MUTUAL_AUTH_PLUGIN, name: 'Certificate-based authentication', active: pluginWord(true, style) });
  }
  if (!tables.rawRows('sys_properties').some((p) => p['name'] === SNI_PROPERTY)) {
    tables.insert('sys_properties', { name: SNI_PROPERTY, value: 'true', type: 'true|false' });
  }
  // Labels from SND set-up-mutual-auth.md ("CA Cert", "Intermediate Cert", "Client cert"); the
  // stored values are the lab's (not documented, vendor-facts §12).
  const choices = [
    { name: 'sys_ca_certificate', element: 'type', value: 'trust_store_ca', label: 'CA Cert', sequence: '1' },
    { name: 'sys_ca_certificate', element: 'type', value: 'intermediate_ca', label: 'Intermediate Cert', sequence: '2' },
    { name: 'sys_user_certificate', element: 'type', value: 'client_cert', label: 'Client cert', sequence: '1' },
  ];
  for (const choice of choices) {
    if (!tables.rawRows('sys_choice').some((c) => c['name'] === choice.name && c['element'] === choice.element && c['value'] === choice.value)) {
      tables.insert('sys_choice', { ...choice, inactive: 'false' });
    }
  }
  // The relation types the certificate documents name (vendor-facts §16): Uses::Used by (an
  // application uses a certificate, SND run-cert-inventory-mgmt-urls.md), Hosts::Hosted on (cloud patterns).
  for (const name of ['Uses::Used by', 'Hosts::Hosted on']) {
    if (!tables.rawRows('cmdb_rel_type').some((t) => t['name'] === name)) tables.insert('cmdb_rel_type', { name });
  }
}

/** v_plugin mirrors sys_plugins (its `id` = the plugin's `source`). */
export function pluginViewRules(tables: TableStore): TableRules {
  const mirror = (record: TableRecord): void => {
    const id = record['source'] ?? '';
    if (id === '') return;
    const fields = { id, name: record['name'] ?? '', active: record['active'] ?? '', version: record['version'] ?? '' };
    const view = tables.rawRows('v_plugin').find((v) => v['id'] === id);
    if (view) tables.update('v_plugin', view['sys_id'] as string, fields, { system: true });
    else tables.insert('v_plugin', fields, { system: true });
  };
  return {
    afterWrite(table, record) { if (table === 'sys_plugins') mirror(record); },
    afterDelete(table, record) {
      if (table !== 'sys_plugins') return;
      const view = tables.rawRows('v_plugin').find((v) => v['id'] === record['source']);
      if (view) tables.delete('v_plugin', view['sys_id'] as string);
    },
  };
}

/** Upserts a record found by one key field. */
export function upsertBy(tables: TableStore, table: string, key: string, keyValue: string, fields: Record<string, string>): void {
  const existing = tables.rawRows(table).find((r) => r[key] === keyValue);
  if (existing) tables.update(table, existing['sys_id'] as string, fields);
  else tables.insert(table, { [key]: keyValue, ...fields });
}
