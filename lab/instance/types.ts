/** Public types of the simulated ServiceNow instance (options, running handle, admin handle). */

/** The word the instance writes into `publish_status` once a certificate is published (DESIGN §4). */
export type PublishWord = 'Exists' | 'Active';

/** Body of `GET /adcv2/supports_tls`. */
export type SupportsTls = 'true' | 'mixed' | 'false';

/** A table row as the REST API stores it: every value is a string. */
export type TableRecord = Record<string, string>;

export interface InstanceOptions {
  /** The instance's HTTPS identity; certPem may hold the leaf followed by its intermediates. */
  tls: { certPem: string; keyPem: string };
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; 0 (the default) picks an ephemeral port. */
  port?: number;
  /** The admin user created at start (role `admin`); its password is reset to this on every start. */
  admin: { username: string; password: string };
  /** Time from insert (with attachment) to published; default 1000 ms. */
  publishDelayMs?: number;
  /** `publish_status` value once published; default 'Exists' (vendor docs). */
  publishWord?: PublishWord;
  /** An ecc_agent with no heartbeat for this long reads status Down; default 15000 ms. */
  downAfterMs?: number;
  /** Optional JSON state file (written atomically, mode 0600) so a lab instance survives restart. */
  stateFile?: string;
  /** The instance's own log: a line sink, or a file path (appended). Default: no log. */
  log?: string | ((line: string) => void);
  /** Request body bounds; defaults 1 MiB for JSON and 64 KiB for attachments. */
  limits?: { jsonBytes?: number; attachmentBytes?: number };
}

export interface RunningInstance {
  /** `https://127.0.0.1:PORT` (no trailing slash). */
  url: string;
  port: number;
  /** In-process control for tests and lab setup; bypasses ACLs, never the business rules. */
  admin: InstanceAdmin;
  /** Stops listening, drops open connections, cancels timers, writes the state file. */
  close(): Promise<void>;
}

/** Injected failure: the next `count` requests (whose path starts with `path`, if given) get `status`. */
export interface FaultSpec {
  status: 429 | 500 | 503;
  count: number;
  path?: string;
  /** Seconds for the `Retry-After` header; default 1 for 429, none for 5xx. */
  retryAfterSeconds?: number;
}

export interface NewUser {
  userName: string;
  /** Omit for a user that cannot log in with Basic auth (e.g. a MID user under mutual auth). */
  password?: string;
  roles?: string[];
  name?: string;
}

export interface NewAttachment {
  tableName: string;
  tableSysId: string;
  fileName: string;
  contentType: string;
  body: Uint8Array | string;
}

/** Direct table access with the same validation and business rules as the REST API (no ACLs). */
export interface TableAccess {
  insert(table: string, fields: Record<string, unknown>): TableRecord;
  get(table: string, sysId: string): TableRecord | undefined;
  /** Records matching an encoded query (same grammar as `sysparm_query`); all records when omitted. */
  query(table: string, query?: string): TableRecord[];
  update(table: string, sysId: string, fields: Record<string, unknown>): TableRecord;
  delete(table: string, sysId: string): void;
}

export interface InstanceAdmin {
  tables: TableAccess;
  /** Creates a sys_user (or finds it by user_name), sets the password if given, adds missing roles. */
  addUser(user: NewUser): TableRecord;
  /** Same as `POST /api/now/attachment/file` (refuses private keys). */
  attach(attachment: NewAttachment): TableRecord;
  setFault(fault: FaultSpec): void;
  clearFaults(): void;
  /** Added delay before every request is handled. */
  setLatency(ms: number): void;
  /** Upserts a sys_properties record by name. */
  setProperty(name: string, value: string): void;
  /** Upserts a sys_plugins record by id; true → 'active', false → 'inactive', strings as given. */
  setPlugin(id: string, active: boolean | string): void;
  setSupportsTls(value: SupportsTls): void;
  /** Accepts `Authorization: Bearer <token>` as the given user until it expires. */
  addOAuthToken(token: string, userName: string, options?: { expiresInMs?: number }): void;
  /** SHA-256 fingerprints of the certificates client certificates are verified against now. */
  trustAnchors(): string[];
  /** Writes the state file now (no-op without one). */
  flush(): Promise<void>;
}
