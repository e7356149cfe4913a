import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { handleAttachment } from './attachment-api.js';
import { authenticate } from './auth.js';
import type { InstanceContext } from './context.js';
import { handleHeartbeat } from './heartbeat-api.js';
import { SERVER_HEADER, sendBytes, sendError } from './http.js';
import { InstanceError, refuse } from './instance-error.js';
import { handleTable } from './table-api.js';

/** Entry point for every HTTP request: header, latency, faults, routing, error body. */
export async function handleRequest(req: IncomingMessage, res: ServerResponse, ctx: InstanceContext): Promise<void> {
  if (req.socket.destroyed) return; // a refused mTLS connection: nothing may run on its behalf
  res.setHeader('Server', SERVER_HEADER);
  const path = (req.url ?? '/').split('?', 1)[0] as string;
  try {
    const url = parseUrl(req.url);
    const latency = ctx.faults.latencyMs();
    if (latency > 0) await sleep(latency);
    const fault = ctx.faults.take(url.pathname);
    if (fault) throw fault;
    await dispatch(req, res, url, ctx);
  } catch (err) {
    const refusal = asInstanceError(err, ctx);
    if (refusal.reason) ctx.log(`${refusal.status} ${req.method} ${path.slice(0, 200)}: ${refusal.reason}`);
    if (res.headersSent) res.destroy();
    else sendError(res, refusal);
  }
}

async function dispatch(req: IncomingMessage, res: ServerResponse, url: URL, ctx: InstanceContext): Promise<void> {
  const path = url.pathname;
  if (path === '/adcv2/server' || path === '/adcv2/supports_tls') {
    if (req.method !== 'GET') throw refuse.methodNotAllowed();
    return sendBytes(res, 200, path === '/adcv2/server' ? SERVER_HEADER : ctx.settings.supportsTls, 'text/plain;charset=UTF-8');
  }
  if (path === '/api/mid/heartbeat') return handleHeartbeat(req, res, ctx);
  if (path === '/oauth_token.do') return ctx.oauth.handle(req, res, ctx);
  const isTable = path.startsWith('/api/now/table/');
  const isAttachment = path === '/api/now/attachment' || path.startsWith('/api/now/attachment/');
  if (!isTable && !isAttachment) throw refuse.invalidUri();
  const principal = authenticate(req.headers.authorization, ctx.tables, ctx.credentials, Date.now());
  return isTable ? handleTable(req, res, url, ctx, principal) : handleAttachment(req, res, url, ctx, principal);
}

function parseUrl(text: string | undefined): URL {
  try {
    return new URL(text ?? '/', 'https://instance.invalid');
  } catch {
    throw refuse.invalidUri();
  }
}

function asInstanceError(err: unknown, ctx: InstanceContext): InstanceError {
  if (err instanceof InstanceError) return err;
  ctx.log(`internal error: ${err instanceof Error ? err.message : String(err)}`);
  return new InstanceError(500, 'Internal Server Error', { detail: 'The lab instance failed; see its log' });
}
