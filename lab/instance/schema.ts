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
  /**
   * Fields the lab has but no vendor document names (docs/vendor-facts.md §12): a client must not
   * depend on them being there (the lab can hide them: option `fingerprintField: false`).
   */
  invented?: readonly string[];
}

export const SYSTEM_FIELDS = ['sys_id', 'sys_created_on', 'sys_updated_on'] as const;

const CERTIFICATE_FIELDS = ['name', 'short_description', 'type', 'format', 'active', 'expires', 'subject', 'issuer',
  'publish_status', 'sha256_fingerprint'] as const;
/** Writing certificate records (and their attachments) needs sso_config_admin or admin (vendor-facts §3, SND set-up-mutual-auth.md). */
export const CERTIFICATE_WRITE_ROLES = ['admin', 'sso_config_admin'] as const;
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
    writeRoles: CERTIFICATE_WRITE_ROLES,
    // `trust_store_ca` is the lab's stored value for the label "CA Cert" (sys_choice); not documented.
    defaults: { type: 'trust_store_ca', format: 'pem', active: 'true' },
    invented: ['sha256_fingerprint'],
  },
  sys_user_certificate: {
    fields: [...CERTIFICATE_FIELDS.slice(0, 1), 'user', ...CERTIFICATE_FIELDS.slice(1)],
    readOnly: CERTIFICATE_READ_ONLY,
    references: { user: 'sys_user' },
    writeRoles: CERTIFICATE_WRITE_ROLES,
    defaults: { type: 'client_cert', format: 'pem', active: 'true' },
    invented: ['sha256_fingerprint'],
  },
  ecc_agent: {
    // Column names from public automation (vendor-facts §1); last_refreshed/host_name are not documented.
    fields: ['name', 'status', 'validated', 'validated_by', 'validated_at', 'public_key', 'user_name', 'host_name', 'ip_address', 'version',
      'last_refreshed', 'is_using_custom_cert'],
    writeRoles: ['admin', 'agent_admin'],
    defaults: { status: 'Down', validated: 'false', is_using_custom_cert: 'false' },
    invented: ['last_refreshed', 'host_name'],
  },
  ecc_agent_capability_m2m: {
    // capability is stored by name (real instances reference ecc_agent_capability).
    fields: ['agent', 'capability'],
    references: { agent: 'ecc_agent' },
    writeRoles: ['admin', 'agent_admin'],
  },
  sys_plugins: {
    // The plugin ID is in `source`, the display name in `name` (vendor-facts §1, GlidePluginManager doc). No `id`.
    fields: ['source', 'name', 'active', 'version'],
    writeRoles: ['admin'],
  },
  v_plugin: {
    // The plugin view has `id` (public automation, vendor-facts §1); the lab mirrors sys_plugins into it.
    fields: ['id', 'name', 'active', 'version'],
    writeRoles: [],
  },
  sys_choice: {
    // Choice lists (e.g. name=sys_ca_certificate, element=type): the stored value behind a label.
    fields: ['name', 'element', 'value', 'label', 'inactive', 'sequence'],
    writeRoles: ['admin'],
  },
  sys_properties: {
    fields: ['name', 'value', 'type', 'description'],
    writeRoles: ['admin'],
  },
  ecc_queue: {
    // SND ecc-queue-mid-server.md: Agent, Topic, Name, Source, Response to, Queue, State, Processed, Sequence, Error string, Payload.
    fields: ['agent', 'topic', 'name', 'source', 'response_to', 'queue', 'state', 'processed', 'sequence', 'error_string', 'payload'],
    // agent_admin: the lab's choice for the controller's ECC round trip (no vendor document names the role).
    writeRoles: ['admin', 'mid_server', 'agent_admin'],
    defaults: { state: 'ready', queue: 'output' },
  },
  cmdb_ci_certificate: {
    // Unique Certificate (Certificate Inventory and Management), vendor-facts §16: the column names the
    // documents give (SND x509-certificates-discovery.md, aws-certificate-manager-discovery-pattern.md,
    // run-cert-inventory-mgmt-bulk-url.md; assigned_to/assignment_group: cmdb-ci-class-models-tls.md;
    // `name`: cmdb_ci). Labels without a documented column name (Is certificate authority, Is
    // selfsigned, Renewal tracking, Service type, Version, Certificate file) are left out.
    fields: ['name', 'fingerprint', 'fingerprint_algorithm', 'serial_number', 'signature_algorithm', 'issuer', 'root_issuer',
      'issuer_common_name', 'issuer_distinguished_name', 'subject_distinguished_name', 'subject_common_name', 'subject_country',
      'subject_state', 'subject_locality', 'subject_organizational_unit', 'subject_organization', 'subject_email',
      'subject_alternative_name', 'valid_from', 'valid_to', 'key_size', 'state', 'assigned_to', 'assignment_group'],
    references: { issuer: 'cmdb_ci_certificate', root_issuer: 'cmdb_ci_certificate', assigned_to: 'sys_user' },
    // pki_admin: "read/write access to certificates" and the only role that changes `state`
    // (SND cert-inventory-mgmt-user-roles.md). The lab models roles per table, so pki_user is out.
    writeRoles: ['admin', 'sn_disco_certmgmt.pki_admin'],
  },
  cmdb_ci_computer: {
    // The MID's host CI, found by `name` (cmdb_ci). `ip_address`/`fqdn`: cmdb_ci columns, not used by midcert.
    fields: ['name', 'fqdn', 'ip_address'],
    writeRoles: ['admin'],
  },
  cmdb_rel_type: {
    // "a name field value from the CI Relationship Type [cmdb_rel_type] table" (SND c_IdentifyReconcileAPI.md).
    fields: ['name'],
    writeRoles: ['admin'],
  },
  cmdb_rel_ci: {
    // "the parent, the child, and the nature of the relationship" (SND c_OptionsToPopulateCMDB.md);
    // parent/child/type columns (SND build-service-mapping-query.md). Type references cmdb_rel_type.
    fields: ['parent', 'child', 'type'],
    references: { parent: 'cmdb_ci_computer', child: 'cmdb_ci_certificate', type: 'cmdb_rel_type' },
    // sn_cmdb_editor, itil or asset may delete CI relationships (SND delete-ci-relationship.md).
    writeRoles: ['admin', 'sn_cmdb_editor', 'itil', 'asset'],
  },
  sys_attachment: {
    // Written only through the Attachment API. `hash` is the lab's (the documented metadata has none).
    fields: ['table_name', 'table_sys_id', 'file_name', 'content_type', 'size_bytes', 'hash'],
    writeRoles: [],
    invented: ['hash'],
  },
};

export function schemaOf(table: string): TableSchema | undefined {
  return Object.hasOwn(SCHEMAS, table) ? SCHEMAS[table] : undefined;
}

export function tableNames(): string[] {
  return Object.keys(SCHEMAS);
}

/** The schema with some fields hidden (not rendered, not queryable; still stored). */
export function hidingFields(schema: TableSchema, hidden: readonly string[]): TableSchema {
  const present = hidden.filter((f) => schema.fields.includes(f));
  if (present.length === 0) return schema;
  return { ...schema, writeOnly: [...(schema.writeOnly ?? []), ...present] };
}

/** Fields a client may read, filter and order by. */
export function readableFields(schema: TableSchema): string[] {
  return [...schema.fields.filter((f) => !schema.writeOnly?.includes(f)), ...SYSTEM_FIELDS];
}
