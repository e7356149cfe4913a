/** Public types of the simulated ServiceNow instance (options, running handle, admin handle). */

/** A registered OAuth client (oauth_entity) of the lab instance. */
export interface OAuthClientSpec {
  clientId: string;
  clientSecret: string;
  /** user_name of the OAuth Application User (client_credentials grant). */
  applicationUser?: string;
}

/** The word the instance writes into `publish_status` once a certificate is published (DESIGN §4). */
export type PublishWord = 'Exists' | 'Active';

/**
 * Body of `GET /adcv2/supports_tls`. Only `true` is documented as "mTLS supported"; `mixed` is an
 * invented test value for "anything other than true" (vendor-facts §2).
 */
export type SupportsTls = 'true' | 'mixed' | 'false';

/** ecc_agent.status values the vendor documents (r_MIDServerHeartbeat.md, c_UpgradeAndTestMIDServer.md). */
export const AGENT_STATUSES = ['Up', 'Down', 'Paused', 'Upgrading', 'Upgrade Failed'] as const;
/** ecc_agent.validated values (vendor-facts §5: MIDServerManage, t_ValidateAMIDServer.md). */
export const VALIDATED_VALUES = ['true', 'false', 'validating', 'rekey', ''] as const;

/** How sys_plugins.active is stored (vendor-facts §1: the vendor's example filters 0/1; the lab used active/inactive). */
export type PluginActiveStyle = 'true' | '1' | 'active';

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
  /**
   * Deprecated and ignored: Down now follows the MID Server Monitor (a HeartbeatProbe every
   * 300 s × timeScale left unanswered), not silence. Still accepted so old configs load.
   */
  downAfterMs?: number;
  /**
   * One factor for every vendor timing (docs/lab/mid-instance-protocol.md): MID Server Monitor
   * period = 300 s × timeScale (r_MIDServerHeartbeat.md). Default 1; tests use e.g. 0.01.
   */
  timeScale?: number;
  /**
   * Unknown field in sysparm_query: `ignore` (default, the vendor default: the condition is
   * dropped), `no_rows` (as with glide.invalid_query.returns_no_rows=true), `strict` (400, the
   * lab's old test mode). The sys_properties row glide.invalid_query.returns_no_rows=true always
   * means `no_rows` (SND c_TableAPI.md).
   */
  invalidQuery?: 'ignore' | 'no_rows' | 'strict';
  /** A basic-auth MID's first poll is validated at once ("admin clicked Validate"); default true. */
  autoValidate?: boolean;
  /** An mTLS MID presents a public key other than the stored one: `update` (default) or `keep`. */
  mtlsKeyUpdate?: 'update' | 'keep';
  /**
   * Deactivate the other CA chains when one becomes active and published. Default false: the
   * vendor documents no such thing (vendor-facts §10); several active chains are all trusted.
   */
  oneActiveChain?: boolean;
  /**
   * Attachment upload for a table_sys_id with no record: `accept` (default; public automation
   * relies on it) or `404` (as SND c_AttachmentAPI.md documents). vendor-facts §13.
   */
  attachmentToMissingRecord?: 'accept' | '404';
  /** Render the lab's invented `sha256_fingerprint` field; default true (vendor-facts §12). */
  fingerprintField?: boolean;
  /** Stored form of sys_plugins.active for setPlugin(id, boolean) and the seed; default 'true'. */
  pluginActiveStyle?: PluginActiveStyle;
  /** Initial `/adcv2/supports_tls` body; default 'true' (a state file's value wins). */
  supportsTls?: SupportsTls;
  /** Optional JSON state file (written atomically, mode 0600) so a lab instance survives restart. */
  stateFile?: string;
  /** The instance's own log: a line sink, or a file path (appended). Default: no log. */
  log?: string | ((line: string) => void);
  /**
   * `expires_in` of OAuth access tokens from /oauth_token.do (the token is refused one second
   * later); default 1799 × timeScale. Tests use e.g. 2.
   */
  oauthTokenSeconds?: number;
  /** Lifetime of OAuth refresh tokens; default 8640000 × timeScale (100 days). */
  oauthRefreshSeconds?: number;
  /** The OAuth application registry at start (oauth_entity): clients for /oauth_token.do. */
  oauthClients?: OAuthClientSpec[];
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
  /**
   * Upserts a sys_plugins record by plugin ID (`source`) and its v_plugin row (`id`); booleans
   * are stored in the pluginActiveStyle (true/false, 1/0, active/inactive), strings as given.
   */
  setPlugin(id: string, active: boolean | string): void;
  setSupportsTls(value: SupportsTls): void;
  /** Sets ecc_agent.status (Paused, Upgrading, Upgrade Failed, …) as the instance would. */
  setAgentStatus(name: string, status: (typeof AGENT_STATUSES)[number]): void;
  /** Runs one MID Server Monitor round now (HeartbeatProbe; unanswered previous round → Down). */
  runMonitor(): void;
  /** Accepts `Authorization: Bearer <token>` as the given user until it expires. */
  addOAuthToken(token: string, userName: string, options?: { expiresInMs?: number }): void;
  /** Registers (or replaces) an OAuth client for /oauth_token.do; applicationUser enables client_credentials. */
  addOAuthClient(client: OAuthClientSpec): void;
  /** Revokes issued OAuth access tokens (REST calls with them get 401) and/or refresh tokens (refresh grants refused). */
  revokeOAuthTokens(which: { access?: boolean; refresh?: boolean }): void;
  /** SHA-256 fingerprints of the certificates client certificates are verified against now. */
  trustAnchors(): string[];
  /** Writes the state file now (no-op without one). */
  flush(): Promise<void>;
}
