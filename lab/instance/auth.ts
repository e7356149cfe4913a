import type { Credentials } from './credentials.js';
import { refuse } from './instance-error.js';
import type { TableStore } from './tables.js';
import { findUserByName, loginRefusal, rolesOf } from './users.js';

export interface Principal {
  userId: string;
  userName: string;
  roles: ReadonlySet<string>;
}

/** Resolves `Authorization: Basic …` or `Bearer …` to a user; throws 401 with the reason for the log. */
export function authenticate(header: string | undefined, tables: TableStore, credentials: Credentials, now: number): Principal {
  if (!header) throw refuse.notAuthenticated('no Authorization header');
  const [scheme, value = ''] = header.trim().split(/\s+/, 2);
  const lower = scheme?.toLowerCase();
  if (lower === 'basic') return basic(value, tables, credentials);
  if (lower === 'bearer') return bearer(value, tables, credentials, now);
  throw refuse.notAuthenticated(`unsupported Authorization scheme "${(scheme ?? '').slice(0, 20)}"`);
}

function basic(encoded: string, tables: TableStore, credentials: Credentials): Principal {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw refuse.notAuthenticated('malformed Basic credentials');
  const userName = decoded.slice(0, colon);
  const user = findUserByName(tables, userName);
  if (!user) throw refuse.notAuthenticated(`unknown user "${userName.slice(0, 80)}"`);
  if (!credentials.checkPassword(user['sys_id'] as string, decoded.slice(colon + 1))) {
    throw refuse.notAuthenticated(`wrong password for user "${userName}"`);
  }
  return principalFor(tables, user['sys_id'] as string);
}

function bearer(token: string, tables: TableStore, credentials: Credentials, now: number): Principal {
  const found = credentials.tokenUser(token, now);
  if ('refused' in found) throw found.expired ? refuse.invalidToken(found.refused) : refuse.notAuthenticated(found.refused);
  return principalFor(tables, found.user);
}

function principalFor(tables: TableStore, userId: string): Principal {
  const user = tables.rawRows('sys_user').find((u) => u['sys_id'] === userId);
  if (!user) throw refuse.notAuthenticated('the credential belongs to a deleted user');
  const refusal = loginRefusal(user);
  if (refusal) throw refuse.notAuthenticated(refusal);
  return { userId, userName: user['user_name'] as string, roles: rolesOf(tables, userId) };
}

/** 403 unless the principal holds one of the roles. */
export function assertMayWrite(principal: Principal, writeRoles: readonly string[], operation: 'Insert' | 'Update' | 'Delete', table: string): void {
  if (writeRoles.some((role) => principal.roles.has(role))) return;
  throw refuse.forbidden(operation, `user "${principal.userName}" may not ${operation.toLowerCase()} ${table}`);
}
