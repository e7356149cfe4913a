import { MidcertError } from '../../common/errors.js';
import type { ExchangeOutcome } from './transport.js';

/**
 * OAuth 2 tokens from the instance's `POST /oauth_token.do` (docs/vendor-facts.md §15), kept in
 * memory only. A token is renewed `refreshMargin` before `expires_in` runs out (at most half its
 * lifetime before), with `grant_type=refresh_token` when there is a refresh token, else — or
 * when the instance refuses the refresh token — with a new grant (password or
 * client_credentials). Concurrent callers share one renewal. Secrets never appear in a message.
 */

export type OAuthGrant = 'password' | 'client_credentials';

export interface OAuthSettings {
  clientId: string;
  clientSecret: string;
  grant: OAuthGrant;
  /** password grant only. */
  username?: string;
  password?: string;
  scope?: string;
  /** Default 60 s (vendor-facts §15: refresh when expires_in − 60 s has passed). */
  refreshMarginMs?: number;
}

export interface OAuthStats {
  /** New grants (password / client_credentials) answered with a token. */
  grants: number;
  /** refresh_token grants answered with a token. */
  refreshes: number;
  /** Refresh tokens the instance refused (a new grant followed). */
  refreshRefused: number;
  /** Requests retried once with a new token after a 401. */
  retriedAfter401: number;
}

/** One POST of a form body to /oauth_token.do (the client's transport: proxy, CA, timeouts). */
export type TokenSend = (form: Buffer) => Promise<ExchangeOutcome>;

interface Held {
  access: string;
  refresh: string | undefined;
  /** When to renew (ms since epoch). */
  renewAt: number;
}

const TOKEN_PATH = '/oauth_token.do';
const MAX_TOKEN_CHARS = 8192;

export class OAuthSession {
  readonly stats: OAuthStats = { grants: 0, refreshes: 0, refreshRefused: 0, retriedAfter401: 0 };
  readonly clientId: string;
  readonly grant: OAuthGrant;
  readonly #secret: string;
  readonly #username: string | undefined;
  readonly #password: string | undefined;
  readonly #scope: string | undefined;
  readonly #marginMs: number;
  readonly #send: TokenSend;
  readonly #now: () => number;
  readonly #retries: number;
  readonly #delay: (attempt: number) => Promise<void>;
  #held: Held | undefined;
  #pending: Promise<string> | undefined;

  constructor(settings: OAuthSettings, send: TokenSend, options: { now?: () => number; retries?: number; delay?: (attempt: number) => Promise<void> } = {}) {
    if (settings.grant === 'password' && (!settings.username || settings.password === undefined)) {
      throw new MidcertError('CONFIG_INVALID', 'instance.oauth: the password grant needs a username and a passwordFile (instance.oauth.* or instance.*)');
    }
    this.clientId = settings.clientId;
    this.grant = settings.grant;
    this.#secret = settings.clientSecret;
    this.#username = settings.username;
    this.#password = settings.password;
    this.#scope = settings.scope;
    this.#marginMs = settings.refreshMarginMs ?? 60_000;
    this.#send = send;
    this.#now = options.now ?? Date.now;
    this.#retries = options.retries ?? 2;
    this.#delay = options.delay ?? (async () => undefined);
  }

  /** A token that is not due for renewal (renewing first when it is). */
  token(): Promise<string> {
    const held = this.#held;
    if (held && this.#now() < held.renewAt) return Promise.resolve(held.access);
    return this.#renew();
  }

  /**
   * After the instance answered 401 to `rejected`: a new token (refresh, else a new grant),
   * unless another request already replaced that token. The caller retries once, never more.
   */
  renewAfterRejection(rejected: string): Promise<string> {
    this.stats.retriedAfter401 += 1;
    const held = this.#held;
    if (held && held.access !== rejected && this.#now() < held.renewAt) return Promise.resolve(held.access);
    if (held && held.access === rejected) this.#held = { ...held, renewAt: 0 };
    return this.#renew();
  }

  /** Forgets the tokens (close). */
  clear(): void {
    this.#held = undefined;
  }

  #renew(): Promise<string> {
    if (!this.#pending) {
      this.#pending = this.#obtain().finally(() => { this.#pending = undefined; });
    }
    return this.#pending;
  }

  async #obtain(): Promise<string> {
    const refresh = this.#held?.refresh;
    if (refresh) {
      const answer = await this.#post({ grant_type: 'refresh_token', client_id: this.clientId, client_secret: this.#secret, refresh_token: refresh }, 'refresh_token');
      if (answer.ok) {
        this.stats.refreshes += 1;
        return this.#keep(answer.body, refresh);
      }
      // The refresh token expired or was revoked: start over with the configured grant.
      this.stats.refreshRefused += 1;
      this.#held = undefined;
    }
    const form: Record<string, string> = { grant_type: this.grant, client_id: this.clientId, client_secret: this.#secret };
    if (this.grant === 'password') {
      form['username'] = this.#username as string;
      form['password'] = this.#password as string;
    }
    if (this.#scope) form['scope'] = this.#scope;
    const answer = await this.#post(form, this.grant);
    if (!answer.ok) {
      const hint = this.grant === 'password'
        ? 'check instance.oauth.clientId and clientSecretFile, and the user and password (the password grant needs a user allowed an interactive session)'
        : "check instance.oauth.clientId and clientSecretFile, the client's OAuth Application User and glide.oauth.inbound.client.credential.grant_type.enabled";
      throw new MidcertError('INSTANCE_AUTH', `the instance refused the OAuth ${this.grant} grant for OAuth client "${this.clientId}" (POST ${TOKEN_PATH}: HTTP ${answer.status}${answer.said}); ${hint}`);
    }
    this.stats.grants += 1;
    return this.#keep(answer.body, undefined);
  }

  #keep(body: Record<string, unknown>, previousRefresh: string | undefined): string {
    const access = body['access_token'];
    if (typeof access !== 'string' || access === '' || access.length > MAX_TOKEN_CHARS || /[\s\u0000-\u001f]/.test(access)) {
      throw new MidcertError('INSTANCE_RESPONSE_INVALID', `POST ${TOKEN_PATH}: the answer holds no usable access_token`);
    }
    const refresh = typeof body['refresh_token'] === 'string' && body['refresh_token'] !== '' ? body['refresh_token'] : previousRefresh;
    const expiresIn = Number(body['expires_in']);
    // Without expires_in the token is used until the instance refuses it (the 401 retry renews it).
    const lifetimeMs = body['expires_in'] !== undefined && Number.isFinite(expiresIn) && expiresIn >= 0 ? expiresIn * 1000 : Number.POSITIVE_INFINITY;
    const margin = Math.min(this.#marginMs, lifetimeMs / 2);
    this.#held = { access, refresh, renewAt: this.#now() + lifetimeMs - margin };
    return access;
  }

  /** One token request with retries for transport trouble, 429 and 5xx (a token request changes nothing worth guarding). */
  async #post(form: Record<string, string>, grant: string): Promise<{ ok: true; body: Record<string, unknown> } | { ok: false; status: number; said: string }> {
    const payload = Buffer.from(new URLSearchParams(form).toString());
    for (let attempt = 1; ; attempt += 1) {
      const outcome = await this.#send(payload);
      const last = attempt > this.#retries;
      if (outcome.kind === 'failure') {
        if (outcome.reason === 'tls') throw new MidcertError('INSTANCE_TLS_UNTRUSTED', `POST ${TOKEN_PATH}: the instance's certificate is not trusted (${outcome.code}); set instance.caFile?`);
        if (outcome.reason === 'proxy') throw new MidcertError('PROXY_REFUSED', `POST ${TOKEN_PATH}: ${outcome.message}`);
        if (outcome.reason === 'too-large') throw new MidcertError('INSTANCE_RESPONSE_INVALID', `POST ${TOKEN_PATH}: ${outcome.message}`);
        if (last) throw new MidcertError(outcome.reason === 'timeout' ? 'INSTANCE_TIMEOUT' : 'INSTANCE_UNAVAILABLE', `POST ${TOKEN_PATH} (OAuth ${grant} grant): ${outcome.message} (after ${attempt} attempts)`);
      } else {
        const { status } = outcome;
        if (status >= 200 && status < 300) {
          const body = parseObject(outcome.body);
          if (!body) throw new MidcertError('INSTANCE_RESPONSE_INVALID', `POST ${TOKEN_PATH}: the answer is not a JSON object`);
          return { ok: true, body };
        }
        if (status !== 429 && status < 500) return { ok: false, status, said: oauthError(outcome.body) };
        if (last) throw new MidcertError(status === 429 ? 'INSTANCE_RATE_LIMITED' : 'INSTANCE_UNAVAILABLE', `POST ${TOKEN_PATH} (OAuth ${grant} grant): HTTP ${status}${oauthError(outcome.body)} (after ${attempt} attempts)`);
      }
      await this.#delay(attempt);
    }
  }
}

function parseObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.subarray(0, 64 * 1024).toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

/** ` server_error: access_denied` from `{"error","error_description"}` (cleaned, bounded), or ''. */
function oauthError(body: Buffer): string {
  const parsed = parseObject(body);
  if (!parsed) return '';
  const clean = (v: unknown): string => (typeof v === 'string' ? v.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, 200) : '');
  const error = clean(parsed['error']);
  const description = clean(parsed['error_description']);
  const text = [error, description].filter(Boolean).join(': ');
  return text ? ` ${text}` : '';
}
