import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { parseYamlConfig } from '../common/config-file.js';
import { MidcertError } from '../common/errors.js';

/**
 * `<data-dir>/controller.yaml`. Keys under `ca` and `instance` are a contract (see
 * docs/controller-config.md); add keys, never rename them.
 */
const proxySchema = z.object({
  /** http://host:port of the proxy (CONNECT for https targets); no user-info. */
  url: z.string().url(),
  username: z.string().min(1).optional(),
  passwordFile: z.string().min(1).optional(),
  /** Hosts reached without the proxy (NO_PROXY syntax); default: the NO_PROXY environment variable. */
  noProxy: z.array(z.string().min(1)).max(200).optional(),
}).strict();

/** OAuth against the instance's /oauth_token.do (docs/vendor-facts.md §15). */
const oauthSchema = z.object({
  clientId: z.string().min(1),
  clientSecretFile: z.string().min(1),
  grant: z.enum(['password', 'client_credentials']).default('password'),
  /** password grant: the user (default instance.username) and its password file (default instance.passwordFile). */
  username: z.string().min(1).optional(),
  passwordFile: z.string().min(1).optional(),
  scope: z.string().min(1).optional(),
  /** Renew this long before `expires_in` runs out (capped at half the lifetime); default 60. */
  refreshMarginSeconds: z.number().int().min(0).max(3600).default(60),
}).strict();

const caSchema = z.object({
  type: z.enum(['local', 'adcs', 'cfssl', 'exec', 'est']),
  url: z.string().url().optional(),
  profile: z.string().min(1).optional(),
  template: z.string().min(1).optional(),
  command: z.array(z.string().min(1)).min(1).optional(),
  username: z.string().min(1).optional(),
  passwordFile: z.string().min(1).optional(),
  /** `adcs`: how to authenticate to IIS (default basic with ca.username, client-cert with ca.clientCertFile). */
  auth: z.enum(['basic', 'negotiate', 'ntlm', 'client-cert']).optional(),
  /** `adcs` negotiate: a client keytab + its principal to get the controller's own ticket (else KRB5CCNAME). */
  keytab: z.string().min(1).optional(),
  principal: z.string().min(1).optional(),
  /** `adcs` negotiate: the service principal (default HTTP@<host of ca.url>). */
  spn: z.string().min(1).optional(),
  /** The issuing chain (intermediates + root, PEM) for CAs that return only the leaf. */
  chainFile: z.string().min(1).optional(),
  /** Trust anchors for the CA's HTTPS endpoint (default: system roots). */
  caFile: z.string().min(1).optional(),
  /** Client certificate authentication to the CA (ADCS, EST). */
  clientCertFile: z.string().min(1).optional(),
  clientKeyFile: z.string().min(1).optional(),
  /** `local` only: the file CA directory (saveLabCa layout); default `<data-dir>/ca`. */
  dir: z.string().min(1).optional(),
  timeoutSeconds: z.number().int().positive().max(600).default(30),
  validityDays: z.number().int().positive().max(3650).default(365),
  /** HTTP proxy to the CA (http/https CA URLs); default HTTPS_PROXY / HTTP_PROXY with NO_PROXY. */
  proxy: proxySchema.optional(),
}).strict();

const instanceSchema = z.object({
  url: z.string().url(),
  username: z.string().min(1).optional(),
  passwordFile: z.string().min(1).optional(),
  oauthTokenFile: z.string().min(1).optional(),
  /** OAuth client (tokens fetched and renewed in memory); wins over username/passwordFile Basic auth. */
  oauth: oauthSchema.optional(),
  /** HTTP proxy to the instance; default HTTPS_PROXY with NO_PROXY. */
  proxy: proxySchema.optional(),
  caFile: z.string().min(1).optional(),
  timeoutSeconds: z.number().int().positive().max(600).default(30),
  publishTimeoutSeconds: z.number().int().positive().max(3600).default(300),
  retries: z.number().int().min(0).max(10).default(4),
  /** MID name → sys_user.user_name of its service user; wins over every other lookup (docs/instance-client.md). */
  midUsers: z.record(z.string().min(1), z.string().min(1)).optional(),
  /** user_name of a MID's service user when nothing names it; `{name}` is the MID name. Default `mid.{name}`. */
  midUserPattern: z.string().min(1).includes('{name}').optional(),
  /** Keep every MID's installed leaf in cmdb_ci_certificate (Certificate Inventory and Management); default false. */
  inventory: z.boolean().optional(),
}).strict();

const rotationSchema = z.object({
  canary: z.number().int().min(0).default(1),
  batch: z.number().int().positive().default(10),
  maxFailures: z.number().int().min(0).default(1),
  concurrency: z.number().int().positive().max(200).default(10),
  renewWithinDays: z.number().int().positive().default(30),
  /** ≥ 600 s: the instance probes MIDs every 5 min (SND r_MIDServerHeartbeat.md, docs/vendor-facts.md §7). */
  upTimeoutSeconds: z.number().int().positive().default(600),
  /** An agent that went away mid-install is re-dialled and asked what became of it this long (default upTimeoutSeconds). */
  reconnectSeconds: z.number().int().positive().max(3600).optional(),
  /**
   * Leaf key types agents may install besides RSA-2048 ("rsa-3072", "rsa-4096", "ec-p256", "ec-p384"):
   * vendor material shows RSA-2048 only (docs/vendor-facts.md §4), so others are refused unless listed.
   */
  allowKeyTypes: z.array(z.string().regex(/^(rsa-\d{4}|ec-p\d{3})$/i, 'a key type such as rsa-3072 or ec-p256')).max(8).default([]),
}).strict();

const serveSchema = z.object({
  intervalSeconds: z.number().int().positive().default(300),
  jitterSeconds: z.number().int().min(0).default(60),
  metricsAddress: z.string().regex(/^[^\s]+:\d{1,5}$/).optional(),
  /** Renewals start only inside these windows (UTC), e.g. "Sat 01:00-05:00" or "daily 02:00-04:00". */
  maintenanceWindows: z.array(z.string().min(1)).default([]),
  /** How long a serve instance's claim on the work stays valid without renewal (shared PostgreSQL store). */
  leaseSeconds: z.number().int().min(2).max(3600).default(15),
}).strict();

/** Where the controller's state lives: SQLite in the data dir (default), or PostgreSQL when `url` is set. */
const storeSchema = z.object({
  /** postgresql://user@host:port/db; no password here (passwordFile). Absent: `<data-dir>/midcert.db`. */
  url: z.string().min(1).optional(),
  passwordFile: z.string().min(1).optional(),
  tls: z.object({
    mode: z.enum(['disable', 'require', 'verify-full']).default('verify-full'),
    caFile: z.string().min(1).optional(),
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
  }).strict().optional(),
  /** How long a writer waits for another process's lock (default 5000 ms). */
  busyTimeoutMs: z.number().int().min(0).max(600000).default(5000),
  /**
   * PostgreSQL: connections this process opens at most (each MID in flight uses one at a time).
   * Default rotation.concurrency + 2, at least 10.
   */
  maxConnections: z.number().int().min(1).max(500).optional(),
}).strict();

const schema = z.object({
  ca: caSchema,
  instance: instanceSchema.optional(),
  rotation: rotationSchema.default(rotationSchema.parse({})),
  serve: serveSchema.default(serveSchema.parse({})),
  store: storeSchema.default(storeSchema.parse({})),
  log: z.object({ level: z.enum(['debug', 'info', 'warn', 'error']).default('info') }).strict().default({ level: 'info' }),
}).strict();

export type ControllerConfig = z.infer<typeof schema>;
export type CaConfig = z.infer<typeof caSchema>;
export type InstanceConfig = z.infer<typeof instanceSchema>;
export type ProxyConfig = z.infer<typeof proxySchema>;
export type OAuthConfig = z.infer<typeof oauthSchema>;
export type StoreConfig = z.infer<typeof storeSchema>;

/** --data-dir, else $MIDCERT_DATA_DIR, else ~/.midcert. */
export function resolveDataDir(flag?: string): string {
  return resolve(flag ?? process.env.MIDCERT_DATA_DIR ?? join(homedir(), '.midcert'));
}

export function controllerConfigPath(dataDir: string): string {
  return join(dataDir, 'controller.yaml');
}

export async function loadControllerConfig(dataDir: string): Promise<ControllerConfig> {
  const path = controllerConfigPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MidcertError('CONFIG_UNREADABLE', code === 'ENOENT' ? `${path} does not exist; run: midcert init --data-dir ${dataDir}` : `cannot read ${path}: ${code}`);
  }
  if (text.length > 256 * 1024) throw new MidcertError('CONFIG_INVALID', `${path} is larger than 256 KiB`);
  return parseControllerConfig(text, path);
}

export function parseControllerConfig(text: string, source: string): ControllerConfig {
  const cfg = parseYamlConfig(text, source, schema);
  const base = dirname(resolve(source));
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(base, p));
  const proxy = (p: ProxyConfig | undefined): ProxyConfig | undefined => p && { ...p, passwordFile: abs(p.passwordFile) };
  const oauth = (o: OAuthConfig | undefined): OAuthConfig | undefined => o && { ...o, clientSecretFile: abs(o.clientSecretFile) as string, passwordFile: abs(o.passwordFile) };
  return {
    ...cfg,
    ca: { ...cfg.ca, passwordFile: abs(cfg.ca.passwordFile), chainFile: abs(cfg.ca.chainFile), caFile: abs(cfg.ca.caFile), clientCertFile: abs(cfg.ca.clientCertFile), clientKeyFile: abs(cfg.ca.clientKeyFile), keytab: abs(cfg.ca.keytab), dir: abs(cfg.ca.dir), proxy: proxy(cfg.ca.proxy) },
    instance: cfg.instance && { ...cfg.instance, passwordFile: abs(cfg.instance.passwordFile), oauthTokenFile: abs(cfg.instance.oauthTokenFile), caFile: abs(cfg.instance.caFile), oauth: oauth(cfg.instance.oauth), proxy: proxy(cfg.instance.proxy) },
    store: { ...cfg.store, maxConnections: cfg.store.maxConnections ?? defaultConnections(cfg.rotation.concurrency), passwordFile: abs(cfg.store.passwordFile), tls: cfg.store.tls && { ...cfg.store.tls, caFile: abs(cfg.store.tls.caFile), certFile: abs(cfg.store.tls.certFile), keyFile: abs(cfg.store.tls.keyFile) } },
  };
}

/** A connection per MID in flight, plus two for the job's own writes and /metrics; never fewer than pg's usual 10. */
export function defaultConnections(concurrency: number): number {
  return Math.max(10, concurrency + 2);
}

/** Reads a one-line secret file (password, token); the value is never logged. */
export async function readSecretFile(path: string | undefined, what: string): Promise<string | undefined> {
  if (!path) return undefined;
  try {
    const text = await readFile(path, 'utf8');
    if (text.length > 8192) throw new MidcertError('CONFIG_INVALID', `${what} file is larger than 8 KiB`);
    return text.replace(/\r?\n$/, '');
  } catch (err) {
    if (err instanceof MidcertError) throw err;
    throw new MidcertError('CONFIG_UNREADABLE', `cannot read the ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
