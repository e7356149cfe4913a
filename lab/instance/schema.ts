/**
 * The tables the simulated instance serves, with just enough schema to behave like the real
 * Table API: known fields (unknown ones in a write are ignored, as ServiceNow does), read-only
 * fields the instance fills itself, reference fields, and which roles may write.
 */
export interface TableSchema {
  /** Client-visible fields besides the system fields, in the order records are rendered. */
  fields: readonly string[];
  /** Client writes to these are ignored; the instance sets them. */
  readOnly?: readonly string[];
  /** Accepted on write, never rendered, never queryable (e.g. sys_user.user_password). */
  writeOnly?: readonly string[];
  /** Reference field → referenced table (rendered as {link, value} unless links are excluded). */
  references?: Readonly<Record<string, string>>;
  /** Roles that may insert, update or delete through REST; empty = nobody (instance-maintained). */
  writeRoles: readonly string[];
  defaults?: Readonly<Record<string, string>>;
}

export const SYSTEM_FIELDS = ['sys_id', 'sys_created_on', 'sys_updated_on'] as const;

const CERTIFICATE_FIELDS = ['name', 'short_description', 'type', 'format', 'active', 'expires', 'subject', 'issuer',
  'publish_status', 'sha256_fingerprint'] as const;
const CERTIFICATE_READ_ONLY = ['expires', 'subject', 'issuer', 'publish_status', 'sha256_fingerprint'] as const;

const SCHEMAS: Readonly<Record<string, TableSchema>> = {
  sys_user: {
    fields: ['user_name', 'name', 'first_name', 'last_name', 'email', 'active', 'locked_out', 'user_password'],
    writeOnly: ['user_password'],
    writeRoles: ['admin'],
    defaults: { active: 'true', locked_out: 'false' },
  },
  sys_user_has_role: {
    // Real instances reference sys_user_role; the lab stores the role by name (e.g. 'mid_server').
    fields: ['user', 'role', 'state'],
    references: { user: 'sys_user' },
    writeRoles: ['admin'],
    defaults: { state: 'active' },
  },
  sys_ca_certificate: {
    fields: CERTIFICATE_FIELDS,
    readOnly: CERTIFICATE_READ_ONLY,
    writeRoles: ['admin'],
    defaults: { type: 'trust_store_ca', format: 'pem', active: 'true' },
  },
  sys_user_certificate: {
    fields: [...CERTIFICATE_FIELDS.slice(0, 1), 'user', ...CERTIFICATE_FIELDS.slice(1)],
    readOnly: CERTIFICATE_READ_ONLY,
    references: { user: 'sys_user' },
    writeRoles: ['admin'],
    defaults: { type: 'client_cert', format: 'pem', active: 'true' },
  },
  ecc_agent: {
    fields: ['name', 'status', 'validated', 'host_name', 'ip_address', 'version', 'last_refreshed', 'is_using_custom_cert'],
    writeRoles: ['admin'],
    defaults: { status: 'Down', validated: 'false', is_using_custom_cert: 'false' },
  },
  ecc_agent_capability_m2m: {
    // capability is stored by name (real instances reference ecc_agent_capability).
    fields: ['agent', 'capability'],
    references: { agent: 'ecc_agent' },
    writeRoles: ['admin'],
  },
  sys_plugins: {
    fields: ['id', 'name', 'active', 'version'],
    writeRoles: ['admin'],
  },
  sys_properties: {
    fields: ['name', 'value', 'type', 'description'],
    writeRoles: ['admin'],
  },
  ecc_queue: {
    fields: ['agent', 'topic', 'name', 'source', 'queue', 'state', 'payload', 'error_string'],
    writeRoles: ['admin', 'mid_server'],
    defaults: { state: 'ready' },
  },
  sys_attachment: {
    // Written only through the Attachment API.
    fields: ['table_name', 'table_sys_id', 'file_name', 'content_type', 'size_bytes', 'hash'],
    writeRoles: [],
  },
};

export function schemaOf(table: string): TableSchema | undefined {
  return Object.hasOwn(SCHEMAS, table) ? SCHEMAS[table] : undefined;
}

export function tableNames(): string[] {
  return Object.keys(SCHEMAS);
}

/** Fields a client may read, filter and order by. */
export function readableFields(schema: TableSchema): string[] {
  return [...schema.fields.filter((f) => !schema.writeOnly?.includes(f)), ...SYSTEM_FIELDS];
}
