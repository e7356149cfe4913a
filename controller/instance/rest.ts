import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { VERSION } from '../../common/version.js';
import { readSecretFile, type InstanceConfig } from '../config.js';
import { configuredProxy, proxyFor, tunnelAgent, type ProxySettings } from '../proxy.js';
import { statusError } from './http-errors.js';
import { OAuthSession, type OAuthSettings, type OAuthStats } from './oauth.js';
import { DEFAULT_BACKOFF, backoffDelay, isIdempotent, retryAfterMs, type BackoffSettings } from './retry.js';
import { exchange } from './transport.js';

/**
 * A small client for the ServiceNow Table and Attachment APIs (DESIGN §4): basic or OAuth bearer
 * auth, the instance's CA from a file, a timeout per attempt, retries with backoff, capped response
 * bodies, and failures as MidcertError with stable codes. Retry rules (docs/instance-client.md):
 *
 * - 429 and 503 are retried for every method (the instance refused the request, it did not run it),
 *   waiting for `Retry-After` when given (capped), else exponential backoff with jitter;
 * - other 5xx, timeouts and connection failures are retried only for idempotent methods
 *   (GET, PATCH, PUT, DELETE) — a POST is never repeated once the request may have reached the
 *   instance; before that (refused connection, failed handshake) it is;
 * - a certificate the client does not trust, and every other 4xx, fail at once.
 */

/** A table row as the REST API returns it with `sysparm_exclude_reference_link=true`. */
export type TableRecord = Record<string, string>;

export type InstanceAuth =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'bearer'; token: string }
  /** Tokens from /oauth_token.do, renewed before expiry and once after a 401 (oauth.ts). */
  | ({ kind: 'oauth' } & OAuthSettings);

export interface InstanceClientSettings {
  /** `https://<instance>.service-now.com` (a path, if any, is ignored). */
  url: string;
  auth: InstanceAuth;
  /** Trust anchors for the instance's certificate (PEM); default: Node's public roots. */
  caPem?: string | Buffer;
  /** Per attempt, from connect to the last body byte; default 30 s. */
  timeoutMs?: number;
  /** Retries after the first attempt; default 4. */
  retries?: number;
  /** Default 4 MiB. */
  maxResponseBytes?: number;
  backoff?: Partial<BackoffSettings>;
  /** Jitter source (tests); default Math.random. */
  random?: () => number;
  /**
   * The HTTP proxy (CONNECT tunnel); default HTTPS_PROXY from the environment (NO_PROXY
   * honoured); false: never a proxy.
   */
  proxy?: ProxySettings | false;
}

export interface InstanceRequest {
  query?: Record<string, string | number | undefined>;
  /** A JSON body (sent as application/json). */
  json?: unknown;
  /** A raw body with its content type (Attachment API). */
  body?: Buffer | string;
  contentType?: string;
  accept?: string;
  /** false: no Authorization header (the ADCv2 probes need none, so no credential goes there). */
  authenticate?: boolean;
  /** Return a final non-2xx answer instead of throwing (preflight reads headers of any answer). */
  anyStatus?: boolean;
}

export interface InstanceResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Counters for tests and metrics: logical requests, HTTP exchanges, retries, answers by status. */
export interface RequestStats {
  requests: number;
  attempts: number;
  retries: number;
  byStatus: Record<string, number>;
}

export interface TableGetOptions {
  /** An encoded query (`sysparm_query`); build values with `queryValue`. */
  query?: string;
  fields?: readonly string[];
  /** Default 1000, at most 10000. */
  limit?: number;
  offset?: number;
  /** `sysparm_display_value=true`: reference fields read as their display value (e.g. a role's name). */
  displayValue?: boolean;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;
const TABLE = /^[a-z][a-z0-9_]{0,79}$/;
const SYS_ID = /^[0-9a-f]{32}$/;

export class InstanceClient {
  readonly url: string;
  readonly stats: RequestStats = { requests: 0, attempts: 0, retries: 0, byStatus: {} };
  /** A true private field: never enumerated, so logging the client cannot print the credential. */
  readonly #authHeader: string | undefined;
  readonly #oauth: OAuthSession | undefined;
  /** The proxy requests go through, if any (its password is never printed). */
  readonly proxy: ProxySettings | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly maxResponseBytes: number;
  private readonly backoff: BackoffSettings;
  private readonly random: () => number;
  /** Keep-alive connections for idempotent methods. */
  private readonly reusing: Agent;
  /**
   * A fresh connection for every POST: a keep-alive socket the server has just closed fails only
   * after the request was written, and a POST must not be repeated then. On a fresh connection a
   * failure before the handshake completes is clearly "not sent".
   */
  private readonly fresh: Agent;
  private offsetMs: number | undefined;

  constructor(settings: InstanceClientSettings) {
    let base: URL;
    try {
      base = new URL(settings.url);
    } catch {
      throw new MidcertError('CONFIG_INVALID', 'the instance URL is not a URL');
    }
    if (base.protocol !== 'https:') throw new MidcertError('CONFIG_INVALID', `the instance URL must be https, not ${base.protocol}`);
    this.url = base.origin;
    const auth = settings.auth;
    this.#authHeader = auth.kind === 'basic'
      ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`
      : auth.kind === 'bearer' ? `Bearer ${auth.token}` : undefined;
    this.timeoutMs = settings.timeoutMs ?? 30_000;
    this.retries = settings.retries ?? 4;
    this.maxResponseBytes = settings.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.backoff = { ...DEFAULT_BACKOFF, ...settings.backoff };
    this.random = settings.random ?? Math.random;
    const tls = settings.caPem === undefined ? {} : { ca: settings.caPem };
    // The keep-alive idle timeout stays below Node's and most proxies' server-side 5 s.
    this.reusing = new Agent({ ...tls, keepAlive: true, maxSockets: 16, timeout: 4000 });
    this.fresh = new Agent({ ...tls, keepAlive: false, maxSockets: 16 });
    this.proxy = settings.proxy === false ? undefined : proxyFor(base, settings.proxy);
    if (this.proxy) {
      tunnelAgent(this.reusing, this.proxy, this.timeoutMs);
      tunnelAgent(this.fresh, this.proxy, this.timeoutMs);
    }
    if (auth.kind === 'oauth') {
      const { kind: _kind, ...oauth } = auth;
      const tokenUrl = new URL('/oauth_token.do', this.url);
      this.#oauth = new OAuthSession(oauth, (form) => exchange({
        method: 'POST', url: tokenUrl, body: form, agent: this.fresh, timeoutMs: this.timeoutMs, maxResponseBytes: 64 * 1024,
        headers: {
          Accept: 'application/json', 'User-Agent': `midcert/${VERSION}`,
          'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': String(form.length),
        },
      }), { retries: this.retries, delay: (attempt) => sleep(backoffDelay(attempt, this.backoff, this.random)).then(() => undefined) });
    }
  }

  /** Token counters when the client uses instance.oauth (grants, refreshes, refused refreshes, 401 retries). */
  oauthStats(): OAuthStats | undefined {
    return this.#oauth && { ...this.#oauth.stats };
  }

  /** A client from the controller config: reads the secret and CA files (never logs them). */
  static async fromConfig(config: InstanceConfig, overrides: Partial<InstanceClientSettings> = {}): Promise<InstanceClient> {
    if (config.oauth && config.oauthTokenFile) throw new MidcertError('CONFIG_INVALID', 'instance: set instance.oauth or instance.oauthTokenFile, not both');
    let auth: InstanceAuth | undefined;
    if (config.oauth) {
      const o = config.oauth;
      const clientSecret = await readSecretFile(o.clientSecretFile, 'instance OAuth client secret');
      if (!clientSecret) throw new MidcertError('CONFIG_INVALID', `instance.oauth.clientSecretFile ${o.clientSecretFile} is empty`);
      const username = o.username ?? config.username;
      const password = o.grant === 'password' ? await readSecretFile(o.passwordFile ?? config.passwordFile, 'instance OAuth user password') : undefined;
      if (o.grant === 'password' && (!username || password === undefined)) {
        throw new MidcertError('CONFIG_INVALID', 'instance.oauth: the password grant needs username and passwordFile (under instance.oauth or instance)');
      }
      auth = {
        kind: 'oauth', clientId: o.clientId, clientSecret, grant: o.grant, refreshMarginMs: o.refreshMarginSeconds * 1000,
        ...(o.grant === 'password' ? { username, password } : {}), ...(o.scope ? { scope: o.scope } : {}),
      };
    }
    // The token wins over Basic; the password file is then not even read.
    const token = auth ? undefined : await readSecretFile(config.oauthTokenFile, 'instance OAuth token');
    const password = auth || token ? undefined : await readSecretFile(config.passwordFile, 'instance password');
    if (auth) { /* instance.oauth */ } else if (token) auth = { kind: 'bearer', token };
    else if (config.username && password !== undefined) auth = { kind: 'basic', username: config.username, password };
    else throw new MidcertError('CONFIG_INVALID', 'instance: set username and passwordFile, oauth, or oauthTokenFile');
    const proxy = await configuredProxy(config.proxy, 'instance.proxy');
    let caPem: Buffer | undefined;
    if (config.caFile) {
      try {
        caPem = await readFile(config.caFile);
      } catch (err) {
        throw new MidcertError('CONFIG_UNREADABLE', `cannot read the instance caFile ${config.caFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      if (caPem.length > LIMITS.pemBytes) throw new MidcertError('INPUT_TOO_LARGE', `the instance caFile is larger than ${LIMITS.pemBytes} bytes`);
    }
    return new InstanceClient({
      url: config.url, auth, ...(caPem ? { caPem } : {}), ...(proxy ? { proxy } : {}), timeoutMs: config.timeoutSeconds * 1000, retries: config.retries, ...overrides,
    });
  }

  /**
   * The instance clock minus ours, from the `Date` header of the last answer (±1 s: the header
   * has whole seconds); undefined before the first answer.
   */
  clockOffsetMs(): number | undefined {
    return this.offsetMs;
  }

  resetStats(): void {
    Object.assign(this.stats, { requests: 0, attempts: 0, retries: 0, byStatus: {} });
  }

  close(): void {
    this.#oauth?.clear();
    this.reusing.destroy();
    this.fresh.destroy();
  }

  async tableGet(table: string, options: TableGetOptions = {}): Promise<TableRecord[]> {
    const limit = Math.min(Math.max(1, Math.trunc(options.limit ?? DEFAULT_LIMIT)), MAX_LIMIT);
    const res = await this.request('GET', tablePath(table), {
      query: {
        sysparm_query: options.query || undefined,
        sysparm_fields: options.fields?.join(','),
        sysparm_limit: limit,
        sysparm_offset: options.offset,
        sysparm_display_value: options.displayValue ? 'true' : undefined,
        sysparm_exclude_reference_link: 'true',
      },
    });
    const result = resultOf(res, `GET ${tablePath(table)}`);
    if (!Array.isArray(result)) throw invalid(`GET ${tablePath(table)}`, 'result is not a list');
    return result.map((r) => toRecord(r, `GET ${tablePath(table)}`));
  }

  async tableGetOne(table: string, sysId: string, options: { fields?: readonly string[] } = {}): Promise<TableRecord> {
    const path = tablePath(table, sysId);
    const res = await this.request('GET', path, { query: { sysparm_fields: options.fields?.join(','), sysparm_exclude_reference_link: 'true' } });
    return toRecord(resultOf(res, `GET ${path}`), `GET ${path}`);
  }

  /** POST a record; `fields.sys_id` may be a client-chosen 32-hex id (the attachment-first flow). */
  async tableInsert(table: string, fields: Record<string, string>): Promise<TableRecord> {
    const path = tablePath(table);
    const res = await this.request('POST', path, { json: fields, query: { sysparm_exclude_reference_link: 'true' } });
    return toRecord(resultOf(res, `POST ${path}`), `POST ${path}`);
  }

  async tablePatch(table: string, sysId: string, fields: Record<string, string>): Promise<TableRecord> {
    const path = tablePath(table, sysId);
    const res = await this.request('PATCH', path, { json: fields, query: { sysparm_exclude_reference_link: 'true' } });
    return toRecord(resultOf(res, `PATCH ${path}`), `PATCH ${path}`);
  }

  async tableDelete(table: string, sysId: string): Promise<void> {
    await this.request('DELETE', tablePath(table, sysId));
  }

  /** Attachment API upload (raw body); returns the sys_attachment metadata. */
  async attach(tableName: string, tableSysId: string, fileName: string, contentType: string, body: Buffer | string): Promise<TableRecord> {
    tablePath(tableName, tableSysId); // validates both
    if (!/^[\w.-]{1,100}$/.test(fileName)) throw new MidcertError('USAGE', `attachment file name "${fileName.slice(0, 40)}" is not a plain file name`);
    const path = '/api/now/attachment/file';
    const res = await this.request('POST', path, {
      query: { table_name: tableName, table_sys_id: tableSysId, file_name: fileName }, body, contentType,
    });
    return toRecord(resultOf(res, `POST ${path}`), `POST ${path}`);
  }

  /** Attachments of one record, newest first. */
  async listAttachments(tableName: string, tableSysId: string): Promise<TableRecord[]> {
    tablePath(tableName, tableSysId);
    const path = '/api/now/attachment';
    const res = await this.request('GET', path, {
      query: { sysparm_query: `table_name=${tableName}^table_sys_id=${tableSysId}^ORDERBYDESCsys_created_on`, sysparm_limit: 100 },
    });
    const result = resultOf(res, `GET ${path}`);
    if (!Array.isArray(result)) throw invalid(`GET ${path}`, 'result is not a list');
    return result.map((r) => toRecord(r, `GET ${path}`));
  }

  async downloadAttachment(sysId: string): Promise<Buffer> {
    if (!SYS_ID.test(sysId)) throw new MidcertError('USAGE', 'an attachment sys_id is 32 lower-case hex digits');
    const res = await this.request('GET', `/api/now/attachment/${sysId}/file`, { accept: '*/*' });
    return res.body;
  }

  async deleteAttachment(sysId: string): Promise<void> {
    if (!SYS_ID.test(sysId)) throw new MidcertError('USAGE', 'an attachment sys_id is 32 lower-case hex digits');
    await this.request('DELETE', `/api/now/attachment/${sysId}`);
  }

  /** One logical request with the retry rules above; a 2xx answer or a MidcertError. */
  async request(method: string, path: string, options: InstanceRequest = {}): Promise<InstanceResponse> {
    this.stats.requests += 1;
    const url = new URL(path, this.url);
    for (const [name, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(name, String(value));
    const payload = options.json !== undefined ? Buffer.from(JSON.stringify(options.json))
      : options.body !== undefined ? Buffer.from(options.body) : undefined;
    const headers: Record<string, string> = { Accept: options.accept ?? 'application/json', 'User-Agent': `midcert/${VERSION}` };
    const authenticate = options.authenticate !== false;
    if (authenticate && this.#authHeader) headers['Authorization'] = this.#authHeader;
    let token: string | undefined;
    let renewedAfter401 = false;
    if (payload) {
      headers['Content-Type'] = options.json !== undefined ? 'application/json' : options.contentType ?? 'application/octet-stream';
      headers['Content-Length'] = String(payload.length);
    }
    const what = `${method} ${url.pathname}`;
    const idempotent = isIdempotent(method);
    for (let attempt = 1; ; attempt += 1) {
      if (authenticate && this.#oauth) {
        token = await this.#oauth.token();
        headers['Authorization'] = `Bearer ${token}`;
      }
      this.stats.attempts += 1;
      const outcome = await exchange({
        method, url, headers, ...(payload ? { body: payload } : {}), agent: idempotent ? this.reusing : this.fresh,
        timeoutMs: this.timeoutMs, maxResponseBytes: this.maxResponseBytes,
      });
      const last = attempt > this.retries;
      let waitMs: number;
      if (outcome.kind === 'response') {
        const { status } = outcome;
        this.stats.byStatus[status] = (this.stats.byStatus[status] ?? 0) + 1;
        this.noteClock(outcome.headers['date'], outcome.startedAt, outcome.endedAt);
        if (status >= 200 && status < 300) return { status, headers: outcome.headers, body: outcome.body };
        // An OAuth token the instance no longer takes (expired early, revoked): one new token, one
        // retry — the 401 means the request did not run, so even a POST may go again. Never a loop.
        if (status === 401 && this.#oauth && token !== undefined && !renewedAfter401) {
          renewedAfter401 = true;
          await this.#oauth.renewAfterRejection(token);
          attempt -= 1;
          continue;
        }
        const refusedUnrun = status === 429 || status === 503;
        const retryable = refusedUnrun || (status >= 500 && idempotent);
        if (options.anyStatus && (!retryable || last)) return { status, headers: outcome.headers, body: outcome.body };
        if (!retryable) {
          const note = status >= 500 ? '; a POST is not repeated after this answer'
            : status === 401 && renewedAfter401 ? ` (also with a new token for OAuth client "${this.#oauth?.clientId ?? ''}")` : '';
          throw statusError(status, what, outcome.body, note);
        }
        if (last) throw statusError(status, what, outcome.body, ` (after ${attempt} attempts)`);
        waitMs = (refusedUnrun ? retryAfterMs(outcome.headers['retry-after'], this.backoff) : undefined)
          ?? backoffDelay(attempt, this.backoff, this.random);
      } else {
        if (outcome.reason === 'tls') {
          throw new MidcertError('INSTANCE_TLS_UNTRUSTED', `${what}: the instance's certificate is not trusted (${outcome.code}); set instance.caFile?`);
        }
        if (outcome.reason === 'too-large') throw invalid(what, outcome.message);
        if (outcome.reason === 'proxy') throw new MidcertError('PROXY_REFUSED', `${what}: ${outcome.message}`);
        const code = outcome.reason === 'timeout' ? 'INSTANCE_TIMEOUT' : 'INSTANCE_UNAVAILABLE';
        if (outcome.sent && !idempotent) {
          throw new MidcertError(code, `${what}: ${outcome.message}; the request may have reached the instance, so it is not repeated`);
        }
        if (last) throw new MidcertError(code, `${what}: ${outcome.message} (after ${attempt} attempts)`);
        waitMs = backoffDelay(attempt, this.backoff, this.random);
      }
      this.stats.retries += 1;
      await sleep(waitMs);
    }
  }

  private noteClock(date: string | undefined, startedAt: number, endedAt: number): void {
    const at = date ? Date.parse(date) : Number.NaN;
    // The header truncates to the second: the instance's clock was somewhere in [at, at + 1000).
    if (!Number.isNaN(at)) this.offsetMs = at + 500 - (startedAt + endedAt) / 2;
  }
}

/** `/api/now/table/{table}[/{sys_id}]`, refusing names that could reshape the path. */
export function tablePath(table: string, sysId?: string): string {
  if (!TABLE.test(table)) throw new MidcertError('USAGE', `"${table.slice(0, 80)}" is not a table name`);
  if (sysId === undefined) return `/api/now/table/${table}`;
  if (!SYS_ID.test(sysId)) throw new MidcertError('USAGE', `"${sysId.slice(0, 40)}" is not a sys_id (32 lower-case hex digits)`);
  return `/api/now/table/${table}/${sysId}`;
}

/**
 * A value for an encoded query. The encoded-query grammar has no escape for `^` (the condition
 * separator), so a value holding one, or a control character, is refused rather than sent.
 */
export function queryValue(value: string): string {
  if (value === '' || /[\^\u0000-\u001f\u007f]/.test(value) || value.length > 200) {
    throw new MidcertError('USAGE', `"${value.slice(0, 80)}" cannot be used in an instance query (empty, too long, or holds ^ or a control character)`);
  }
  return value;
}

function resultOf(res: InstanceResponse, what: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    throw invalid(what, 'the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || !('result' in parsed)) throw invalid(what, 'the body has no "result"');
  return (parsed as { result: unknown }).result;
}

/** Every value as a string; a reference still rendered as {link, value} reads as its value. */
function toRecord(value: unknown, what: string): TableRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(what, 'a result record is not an object');
  const out: TableRecord = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string') out[key] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[key] = String(v);
    else if (v === null || v === undefined) out[key] = '';
    else if (typeof v === 'object' && typeof (v as { value?: unknown }).value === 'string') out[key] = (v as { value: string }).value;
  }
  return out;
}

function invalid(what: string, why: string): MidcertError {
  return new MidcertError('INSTANCE_RESPONSE_INVALID', `${what}: ${why}`);
}
