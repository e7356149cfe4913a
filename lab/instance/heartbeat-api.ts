import type { IncomingMessage, ServerResponse } from 'node:http';
import { createPublicKey, type X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { InstanceContext } from './context.js';
import { readJsonObject, sendJson } from './http.js';
import { refuse } from './instance-error.js';
import type { CommandResponse, Poll } from './agents.js';
import { authenticate } from './auth.js';
import { loginRefusal, rolesOf } from './users.js';

export const MUTUAL_AUTH_PLUGIN = 'com.glide.auth.mutual';
export const SNI_PROPERTY = 'glide.outbound.tls_sni.enabled';

/**
 * `POST /api/mid/heartbeat`: the lab MID's poll (docs/lab/mid-instance-protocol.md §1–§2).
 * Authenticated by mutual TLS (the exact leaf in an active, published sys_user_certificate whose
 * user holds mid_server) or, for a basic-auth MID, by Basic credentials of a mid_server user.
 * Every refusal is a 401 "User Not Authenticated" with its reason in the log.
 */
export async function handleHeartbeat(req: IncomingMessage, res: ServerResponse, ctx: InstanceContext): Promise<void> {
  if (req.method !== 'POST') throw refuse.methodNotAllowed();
  const auth = authorizeMid(req, ctx);
  const poll = pollFrom(await readJsonObject(req, ctx.limits.jsonBytes), req.socket.remoteAddress ?? '', auth);
  const answer = ctx.agents.poll(poll);
  const result: Record<string, unknown> = {
    sys_id: answer.record['sys_id'], status: answer.record['status'], validated: answer.record['validated'], commands: answer.commands,
  };
  if (answer.credential !== undefined) result['credential'] = answer.credential;
  sendJson(res, 200, { result });
}

function authorizeMid(req: IncomingMessage, ctx: InstanceContext): 'mtls' | 'basic' {
  const socket = req.socket as TLSSocket;
  const peer = typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
  if (!peer) {
    if (!/^basic\s/i.test(req.headers.authorization ?? '')) throw refuse.notAuthenticated('heartbeat without a client certificate or Basic credentials');
    const principal = authenticate(req.headers.authorization, ctx.tables, ctx.credentials, Date.now());
    if (!principal.roles.has('mid_server')) throw refuse.notAuthenticated(`heartbeat without a client certificate: user "${principal.userName}" lacks the mid_server role`);
    return 'basic';
  }
  authorizeCertificate(socket, peer, ctx);
  return 'mtls';
}

function authorizeCertificate(socket: TLSSocket, peer: X509Certificate, ctx: InstanceContext): void {
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

/** sys_plugins keeps the plugin ID in `source` (vendor-facts §1); active reads true/1/active. */
function pluginActive(ctx: InstanceContext): boolean {
  const plugin = ctx.tables.rawRows('sys_plugins').find((p) => p['source'] === MUTUAL_AUTH_PLUGIN);
  return ['true', '1', 'active'].includes((plugin?.['active'] ?? '').toLowerCase());
}

function propertyValue(ctx: InstanceContext, name: string): string | undefined {
  return ctx.tables.rawRows('sys_properties').find((p) => p['name'] === name)?.['value'];
}

const MAX_RESPONSES = 100;
const MAX_PAYLOAD = 64 * 1024;

function pollFrom(body: Record<string, unknown>, ipAddress: string, auth: 'mtls' | 'basic'): Poll {
  const bad = (why: string): never => { throw refuse.badRequest('Invalid heartbeat', why); };
  const text = (source: Record<string, unknown>, field: string, max: number, required = false): string => {
    const value = source[field] ?? '';
    if (typeof value !== 'string' || value.length > max || (required && value === '')) bad(`${field} must be a string of ${required ? 1 : 0}..${max} characters`);
    return value as string;
  };
  const publicKey = text(body, 'public_key', 8192);
  if (publicKey !== '') {
    try { createPublicKey(publicKey); } catch { bad('public_key must be an SPKI PEM public key'); }
  }
  const rawResponses = body['responses'] ?? [];
  if (!Array.isArray(rawResponses) || rawResponses.length > MAX_RESPONSES) bad(`responses must be a list of at most ${MAX_RESPONSES}`);
  const responses: CommandResponse[] = (rawResponses as unknown[]).map((r) => {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) return bad('each response must be an object');
    const o = r as Record<string, unknown>;
    return { response_to: text(o, 'response_to', 32, true), topic: text(o, 'topic', 255), name: text(o, 'name', 255), payload: text(o, 'payload', MAX_PAYLOAD) };
  });
  const starting = body['starting'] ?? false;
  const credentialOk = body['credential_ok'];
  if (typeof starting !== 'boolean') bad('starting must be a boolean');
  if (credentialOk !== undefined && typeof credentialOk !== 'boolean') bad('credential_ok must be a boolean');
  return {
    name: text(body, 'name', 255, true), hostName: text(body, 'host_name', 255), version: text(body, 'version', 255), ipAddress,
    starting: starting as boolean, publicKey, responses, credentialOk: credentialOk as boolean | undefined, auth,
  };
}
