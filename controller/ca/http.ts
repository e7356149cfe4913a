import { request as httpRequest, type Agent, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { request as httpsRequest } from 'node:https';
import type { CaConfig } from '../config.js';
import { configuredProxy, describeProxy, isProxyError, proxyAuthorization, proxyFor, tunnelAgent, tunnelConnection, type ProxySettings } from '../proxy.js';
import { excerpt, rejected, unreachable } from './adapter.js';
import type { TlsMaterial } from './files.js';

/**
 * The one HTTP client the CA adapters share (node:http/https: client certificates and custom
 * trust need no extra dependency). Bounded in time and size. Transport trouble is thrown as a
 * CaAnswer: refused, reset, TLS failure or timeout → unreachable; an oversized answer → rejected.
 */
export interface HttpOptions {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  tls?: TlsMaterial;
  timeoutMs: number;
  /** Bytes of body read at most; a longer answer is refused. */
  maxBytes: number;
  /** A keep-alive agent (NTLM authenticates the connection); default: a new connection per call. */
  agent?: Agent;
  /** Told which socket carried the request (NTLM checks its handshake stayed on one). */
  onSocket?: (socket: Socket) => void;
}

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * The CA's proxy: `ca.proxy`, else HTTPS_PROXY / HTTP_PROXY with NO_PROXY (controller/proxy.ts).
 * One controller talks to one CA, so it is set once per process (createCaAdapter / probeCa).
 */
let caProxy: ProxySettings | undefined;

export async function useCaProxy(cfg: Pick<CaConfig, 'proxy'>): Promise<void> {
  caProxy = await configuredProxy(cfg.proxy, 'ca.proxy');
}

/** Keep-alive agents (NTLM) already switched to the tunnel. */
const tunnelled = new WeakSet<Agent>();

/** For messages: scheme, host and port only (never user-info, never query strings). */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

export function httpCall(url: string, options: HttpOptions): Promise<HttpReply> {
  const target = new URL(url);
  const isHttps = target.protocol === 'https:';
  const send = isHttps ? httpsRequest : httpRequest;
  const headers: Record<string, string | number> = { ...options.headers };
  if (options.body !== undefined) headers['Content-Length'] = Buffer.byteLength(options.body);
  const where = originOf(url);
  const proxy = proxyFor(target, caProxy);
  const via = proxy ? ` through the proxy ${describeProxy(proxy)}` : '';
  let routing: Record<string, unknown> = { agent: options.agent ?? false };
  if (proxy && isHttps) {
    // CONNECT tunnel: TLS (and client certificates) end to end with the CA.
    if (options.agent) {
      if (!tunnelled.has(options.agent)) tunnelAgent(options.agent, proxy, options.timeoutMs);
      tunnelled.add(options.agent);
    } else {
      // agent must be undefined (not false) for http.request to use createConnection.
      routing = { agent: undefined, createConnection: tunnelConnection(proxy, options.timeoutMs) };
    }
  } else if (proxy) {
    // Plain http: the request goes to the proxy with the absolute URL (RFC 9112 §3.2.2).
    const auth = proxyAuthorization(proxy);
    headers['Host'] = target.host;
    if (auth) headers['Proxy-Authorization'] = auth;
    routing = { agent: false, host: proxy.url.hostname, port: Number(proxy.url.port || 80), path: target.href };
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const req = send(target, {
      method: options.method,
      headers,
      ...routing,
      ...(isHttps ? { ca: options.tls?.ca, cert: options.tls?.cert, key: options.tls?.key, minVersion: 'TLSv1.2' as const } : {}),
    }, (res: IncomingMessage) => {
      if (proxy && !isHttps && res.statusCode === 407) {
        res.resume();
        finish(() => reject(rejected(`the proxy ${describeProxy(proxy)} requires authentication (HTTP 407 Proxy Authentication Required) for ${where}; check ${proxy.source === 'ca.proxy' ? 'ca.proxy.username and ca.proxy.passwordFile' : `the user-info in ${proxy.source}`}`)));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) {
          finish(() => reject(rejected(`the CA at ${where} sent an answer larger than ${options.maxBytes} bytes`)));
          req.destroy();
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => finish(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })));
      res.on('error', (err) => finish(() => reject(unreachable(transportReason(where, err)))));
    });
    const timer = setTimeout(() => {
      finish(() => reject(unreachable(`the CA at ${where}${via} did not answer within ${Math.round(options.timeoutMs / 1000)} s`)));
      req.destroy();
    }, options.timeoutMs);
    req.on('error', (err) => finish(() => reject(isProxyError(err)
      ? (err.kind === 'unreachable' ? unreachable(`cannot reach the CA at ${where}: ${err.message}`) : rejected(`cannot reach the CA at ${where}: ${err.message}`))
      : unreachable(transportReason(where + via, err)))));
    if (options.onSocket) req.on('socket', options.onSocket);
    req.end(options.body);
  });
}

const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_UNTRUSTED', 'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function transportReason(where: string, err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (TLS_TRUST_CODES.has(code)) return `cannot reach the CA at ${where}: its TLS certificate is not trusted (${code}); check ca.caFile and the URL's host name`;
  return `cannot reach the CA at ${where}: ${code || err.message.split('\n')[0]}`;
}

/** Seconds from a Retry-After header (delta-seconds or HTTP-date), if usable. */
export function retryAfterSeconds(headers: IncomingHttpHeaders, now = Date.now()): number | undefined {
  const value = headers['retry-after'];
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Math.min(Number(value.trim()), 86_400);
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, Math.ceil((at - now) / 1000)), 86_400);
}

/** The media type of a reply, lower-case, without parameters. */
export function mediaType(headers: IncomingHttpHeaders): string {
  return (headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/**
 * Throws the outcome a non-2xx status means. 401 is `rejected`, not retried: the credentials
 * are wrong until someone fixes them, and retrying a bad password can lock a directory account.
 */
export function assertSuccess(reply: HttpReply, where: string, authHint: string): void {
  const { status } = reply;
  if (status >= 200 && status < 300) return;
  const detail = bodyDetail(reply);
  if (status === 401) throw rejected(`authentication to the CA at ${where} failed (HTTP 401); check ${authHint}`);
  if (status === 403) throw rejected(`the CA at ${where} refused access (HTTP 403)${detail}`);
  if (status === 408 || status === 429 || status >= 500) throw unreachable(`the CA at ${where} answered HTTP ${status}${detail}`, retryAfterSeconds(reply.headers));
  throw rejected(`the CA at ${where} answered HTTP ${status}${detail}`);
}

function bodyDetail(reply: HttpReply): string {
  const type = mediaType(reply.headers);
  if (!type.startsWith('text/') && type !== 'application/json' && type !== '') return '';
  const text = excerpt(reply.body.subarray(0, 4096).toString('utf8').replace(/<[^>]*>/g, ' '), 200);
  return text ? `: ${text}` : '';
}
