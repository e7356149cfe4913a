import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { InstanceContext } from './context.js';
import { readJsonObject, sendJson } from './http.js';
import { refuse } from './instance-error.js';
import type { Heartbeat } from './agents.js';
import { loginRefusal, rolesOf } from './users.js';

export const MUTUAL_AUTH_PLUGIN = 'com.glide.auth.mutual';
export const SNI_PROPERTY = 'glide.outbound.tls_sni.enabled';

/**
 * `POST /api/mid/heartbeat` over mutual TLS: the exact leaf must be in an active, published
 * sys_user_certificate record whose user holds the mid_server role; then the ecc_agent record
 * (by name) is Up. Every refusal is a 401 "User Not Authenticated" with its reason in the log.
 */
export async function handleHeartbeat(req: IncomingMessage, res: ServerResponse, ctx: InstanceContext): Promise<void> {
  if (req.method !== 'POST') throw refuse.methodNotAllowed();
  authorizeMid(req.socket as TLSSocket, ctx);
  const beat = heartbeatFrom(await readJsonObject(req, ctx.limits.jsonBytes), req.socket.remoteAddress ?? '');
  const record = ctx.agents.heartbeat(beat);
  sendJson(res, 200, { result: { sys_id: record['sys_id'], status: 'Up' } });
}

function authorizeMid(socket: TLSSocket, ctx: InstanceContext): void {
  const peer = typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
  if (!peer) throw refuse.notAuthenticated('heartbeat without a client certificate');
  const who = peer.subject.replace(/\n/g, ', ');
  // Untrusted certificates never get this far (ClientTrust drops them); kept as a second guard.
  if (!socket.authorized) throw refuse.notAuthenticated(`heartbeat from "${who}": certificate not trusted`);
  if (!pluginActive(ctx)) throw refuse.notAuthenticated(`heartbeat from "${who}": plugin ${MUTUAL_AUTH_PLUGIN} is not active`);
  if (propertyValue(ctx, SNI_PROPERTY) === 'false') {
    throw refuse.notAuthenticated(`heartbeat from "${who}": ${SNI_PROPERTY} is false, mutual-auth MIDs are refused`);
  }
  const sha256 = peer.fingerprint256.replace(/:/g, '').toLowerCase();
  const mapping = ctx.certificates.findLiveLeaf(sha256);
  if (!mapping) throw refuse.notAuthenticated(`heartbeat from "${who}": leaf ${sha256} is not in an active, published sys_user_certificate`);
  const user = ctx.tables.rawRows('sys_user').find((u) => u['sys_id'] === mapping['user']);
  if (!user) throw refuse.notAuthenticated(`heartbeat from "${who}": the mapped user no longer exists`);
  const refusal = loginRefusal(user);
  if (refusal) throw refuse.notAuthenticated(`heartbeat from "${who}": ${refusal}`);
  if (!rolesOf(ctx.tables, user['sys_id'] as string).has('mid_server')) {
    throw refuse.notAuthenticated(`heartbeat from "${who}": user "${user['user_name']}" lacks the mid_server role`);
  }
}

function pluginActive(ctx: InstanceContext): boolean {
  const plugin = ctx.tables.rawRows('sys_plugins').find((p) => p['id'] === MUTUAL_AUTH_PLUGIN);
  return plugin?.['active'] === 'true' || plugin?.['active'] === 'active';
}

function propertyValue(ctx: InstanceContext, name: string): string | undefined {
  return ctx.tables.rawRows('sys_properties').find((p) => p['name'] === name)?.['value'];
}

function heartbeatFrom(body: Record<string, unknown>, ipAddress: string): Heartbeat {
  const text = (field: string, required: boolean): string => {
    const value = body[field] ?? '';
    if (typeof value !== 'string' || value.length > 255 || (required && value === '')) {
      throw refuse.badRequest('Invalid heartbeat', `${field} must be a string of 1..255 characters`);
    }
    return value;
  };
  return { name: text('name', true), hostName: text('host_name', false), version: text('version', false), ipAddress };
}
