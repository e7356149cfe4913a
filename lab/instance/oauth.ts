import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Credentials } from './credentials.js';
import type { Log } from './log.js';
import type { TableStore } from './tables.js';
import { readBody, sendJson } from './http.js';
import { refuse } from './instance-error.js';
import { findUserByName, loginRefusal } from './users.js';
import type { OAuthClientSpec } from './types.js';

/**
 * `POST /oauth_token.do`, the instance as OAuth authorization server (docs/vendor-facts.md §15,
 * docs/lab/instance.md "OAuth"): an application registry of clients (id, secret, optional OAuth
 * Application User), the password, refresh_token and client_credentials grants, form bodies only.
 *
 * - Access tokens live `oauthTokenSeconds` (default 1799 × timeScale, the vendor's `expires_in`)
 *   plus the one second the vendor's 1800-s lifetime holds; refresh tokens 8640000 s × timeScale.
 * - A password grant within an access token's lifetime answers the current tokens ("Access requests
 *   made within the expiration time of the access token always return the current access token").
 * - A refresh answers a new access token only; client_credentials answers no refresh token and needs
 *   an application user and glide.oauth.inbound.client.credential.grant_type.enabled=true.
 * - Every refusal is HTTP 401 `{"error_description":"access_denied","error":"server_error"}` (what
 *   public automation reports; the body is not documented). The reason goes to the instance log.
 * - An expired access token on the REST APIs: 401 with `WWW-Authenticate: Bearer … error="invalid_token"`.
 */

/** What the token endpoint uses of the instance (a slice of InstanceContext, so this file does not import it). */
interface OAuthContext {
  tables: TableStore;
  credentials: Credentials;
  log: Log;
  markDirty: () => void;
}

export const CLIENT_CREDENTIALS_PROPERTY = 'glide.oauth.inbound.client.credential.grant_type.enabled';


interface Client {
  secretHash: Buffer;
  applicationUser: string | undefined;
}

interface Issued {
  access: string;
  accessExpiresAt: number;
  refresh: string | undefined;
  refreshExpiresAt: number;
}

interface RefreshEntry {
  clientId: string;
  userId: string;
  expiresAt: number;
}

const BODY_LIMIT = 16 * 1024;

export class OAuthServer {
  private readonly clients = new Map<string, Client>();
  /** Current tokens by client id + user id (reused within their lifetime). */
  private readonly current = new Map<string, Issued>();
  private readonly refreshTokens = new Map<string, RefreshEntry>();
  readonly accessSeconds: number;
  readonly refreshSeconds: number;

  constructor(options: { accessSeconds?: number; refreshSeconds?: number; timeScale: number }) {
    this.accessSeconds = options.accessSeconds ?? 1799 * options.timeScale;
    this.refreshSeconds = options.refreshSeconds ?? 8_640_000 * options.timeScale;
    if (!(this.accessSeconds > 0) || !(this.refreshSeconds > 0)) throw new Error('oauthTokenSeconds and oauthRefreshSeconds must be positive');
  }

  addClient(spec: OAuthClientSpec): void {
    if (!/^[\w.-]{1,100}$/.test(spec.clientId)) throw new RangeError('an OAuth client id is 1-100 letters, digits, _ . -');
    if (spec.clientSecret.length < 8) throw new RangeError('an OAuth client secret must be at least 8 characters');
    this.clients.set(spec.clientId, { secretHash: hash(spec.clientSecret), applicationUser: spec.applicationUser });
  }

  /** Forgets issued tokens: `access` (REST calls then get 401 invalid… unknown token) and/or `refresh`. */
  revoke(ctx: OAuthContext, which: { access?: boolean; refresh?: boolean }): void {
    for (const [key, issued] of this.current) {
      if (which.access) ctx.credentials.removeToken(issued.access);
      if (which.refresh) {
        if (issued.refresh) this.refreshTokens.delete(issued.refresh);
        this.current.set(key, { ...issued, refresh: undefined, refreshExpiresAt: 0 });
      }
      if (which.access) this.current.delete(key);
    }
    if (which.refresh) this.refreshTokens.clear();
  }

  async handle(req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
    if (req.method !== 'POST') throw refuse.methodNotAllowed();
    const body = await readBody(req, BODY_LIMIT);
    const type = (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') return this.deny(res, ctx, `content type "${(type ?? '').slice(0, 60)}" is not application/x-www-form-urlencoded`);
    const form = new URLSearchParams(body.toString('utf8'));
    const clientId = form.get('client_id') ?? '';
    const client = this.clients.get(clientId);
    if (!client) return this.deny(res, ctx, `unknown OAuth client "${clientId.slice(0, 80)}"`);
    if (!timingSafeEqual(hash(form.get('client_secret') ?? ''), client.secretHash)) return this.deny(res, ctx, `wrong client secret for OAuth client "${clientId}"`);
    const now = Date.now();
    const grant = form.get('grant_type') ?? '';
    if (grant === 'password') {
      const userName = form.get('username') ?? '';
      const user = findUserByName(ctx.tables, userName);
      if (!user) return this.deny(res, ctx, `password grant: unknown user "${userName.slice(0, 80)}"`);
      const userId = user['sys_id'] as string;
      if (!ctx.credentials.checkPassword(userId, form.get('password') ?? '')) return this.deny(res, ctx, `password grant: wrong password for user "${userName}"`);
      const refusal = loginRefusal(user);
      if (refusal) return this.deny(res, ctx, `password grant: ${refusal}`);
      return this.answer(res, ctx, this.issue(ctx, clientId, userId, now, true), now, true);
    }
    if (grant === 'refresh_token') {
      const token = form.get('refresh_token') ?? '';
      const entry = this.refreshTokens.get(token);
      if (!entry) return this.deny(res, ctx, 'refresh_token grant: unknown or revoked refresh token');
      if (entry.clientId !== clientId) return this.deny(res, ctx, `refresh_token grant: the refresh token belongs to another OAuth client`);
      if (entry.expiresAt <= now) {
        this.refreshTokens.delete(token);
        return this.deny(res, ctx, 'refresh_token grant: the refresh token expired');
      }
      const user = ctx.tables.rawRows('sys_user').find((u) => u['sys_id'] === entry.userId);
      const refusal = user ? loginRefusal(user) : 'the user was deleted';
      if (refusal) return this.deny(res, ctx, `refresh_token grant: ${refusal}`);
      const issued = this.newAccess(ctx, clientId, entry.userId, now, this.current.get(`${clientId}\u0000${entry.userId}`));
      return this.answer(res, ctx, issued, now, false);
    }
    if (grant === 'client_credentials') {
      const enabled = ctx.tables.rawRows('sys_properties').find((p) => p['name'] === CLIENT_CREDENTIALS_PROPERTY)?.['value'] === 'true';
      if (!enabled) return this.deny(res, ctx, `client_credentials grant: ${CLIENT_CREDENTIALS_PROPERTY} is not true`);
      if (!client.applicationUser) return this.deny(res, ctx, `client_credentials grant: OAuth client "${clientId}" has no OAuth Application User`);
      const user = findUserByName(ctx.tables, client.applicationUser);
      const refusal = user ? loginRefusal(user) : `the application user "${client.applicationUser}" does not exist`;
      if (refusal || !user) return this.deny(res, ctx, `client_credentials grant: ${refusal}`);
      return this.answer(res, ctx, this.issue(ctx, clientId, user['sys_id'] as string, now, false), now, false);
    }
    return this.deny(res, ctx, `unsupported grant_type "${grant.slice(0, 40)}"`);
  }

  /** The current tokens when still valid, else new ones (a refresh token only with `withRefresh`). */
  private issue(ctx: OAuthContext, clientId: string, userId: string, now: number, withRefresh: boolean): Issued {
    const key = `${clientId}\u0000${userId}`;
    const held = this.current.get(key);
    const refreshValid = held?.refresh !== undefined && held.refreshExpiresAt > now && this.refreshTokens.has(held.refresh);
    if (held && held.accessExpiresAt > now && (!withRefresh || refreshValid)) return held;
    let refresh: string | undefined;
    let refreshExpiresAt = 0;
    if (withRefresh) {
      if (held && refreshValid) {
        refresh = held.refresh;
        refreshExpiresAt = held.refreshExpiresAt;
      } else {
        refresh = newToken();
        refreshExpiresAt = now + this.refreshSeconds * 1000;
        this.refreshTokens.set(refresh, { clientId, userId, expiresAt: refreshExpiresAt });
      }
    }
    return this.newAccess(ctx, clientId, userId, now, { access: '', accessExpiresAt: 0, refresh, refreshExpiresAt });
  }

  private newAccess(ctx: OAuthContext, clientId: string, userId: string, now: number, base: Issued | undefined): Issued {
    const access = newToken();
    // The vendor's 1800-s token reports expires_in 1799: the token outlives expires_in by a second.
    const accessExpiresAt = now + (this.accessSeconds + 1) * 1000;
    ctx.credentials.addToken(access, userId, accessExpiresAt);
    const issued: Issued = { access, accessExpiresAt, refresh: base?.refresh, refreshExpiresAt: base?.refreshExpiresAt ?? 0 };
    this.current.set(`${clientId}\u0000${userId}`, issued);
    ctx.markDirty();
    return issued;
  }

  private answer(res: ServerResponse, ctx: OAuthContext, issued: Issued, now: number, withRefresh: boolean): void {
    const expiresIn = Math.max(0, Math.floor((issued.accessExpiresAt - now) / 1000) - 1);
    ctx.log(`oauth: issued an access token (expires_in ${expiresIn})`);
    sendJson(res, 200, {
      access_token: issued.access,
      ...(withRefresh && issued.refresh ? { refresh_token: issued.refresh } : {}),
      scope: 'useraccount',
      token_type: 'Bearer',
      expires_in: expiresIn,
    }, { 'Cache-Control': 'no-store' });
  }

  private deny(res: ServerResponse, ctx: OAuthContext, reason: string): void {
    ctx.log(`401 POST /oauth_token.do: ${reason}`);
    sendJson(res, 401, { error_description: 'access_denied', error: 'server_error' });
  }
}

function newToken(): string {
  return randomBytes(48).toString('base64url');
}

function hash(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
