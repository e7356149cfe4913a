import { request as httpRequest, type Agent as HttpAgent } from 'node:http';
import { BlockList, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { MidcertError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import { readSecretFile, type ProxyConfig } from './config.js';

/**
 * The controller's outbound HTTP proxy (docs/controller-config.md "Proxies"): `instance.proxy` and
 * `ca.proxy`, else the HTTPS_PROXY / HTTP_PROXY environment (upper or lower case), with NO_PROXY.
 * HTTPS targets go through a CONNECT tunnel (TLS end to end, the proxy sees only host:port);
 * plain-http targets (a cfssl on http://) are sent to the proxy in absolute form. Proxy Basic
 * auth goes in Proxy-Authorization only; the password is never part of a message.
 */

export interface ProxySettings {
  /** http://host:port (no user-info). */
  url: URL;
  username?: string;
  password?: string;
  /** Hosts that bypass the proxy (NO_PROXY syntax: name, .domain, *.domain, host:port, IP, CIDR, `*`). */
  noProxy: readonly string[];
  /** Where it came from, for messages: `instance.proxy`, `ca.proxy`, `HTTPS_PROXY`, … */
  source: string;
}

/** A tunnel or proxy failure. `kind`: auth (407), refused (other non-2xx), unreachable (cannot talk to the proxy, or it cannot reach the target). */
export class ProxyError extends Error {
  readonly kind: 'auth' | 'refused' | 'unreachable';
  readonly code: string;

  constructor(kind: 'auth' | 'refused' | 'unreachable', message: string) {
    super(message);
    this.name = 'ProxyError';
    this.kind = kind;
    this.code = kind === 'auth' ? 'PROXY_AUTH' : kind === 'refused' ? 'PROXY_REFUSED' : 'PROXY_UNREACHABLE';
  }
}

export function isProxyError(err: unknown): err is ProxyError {
  return err instanceof ProxyError;
}

/** The configured proxy with its password read (CONFIG_* errors name the key, never the value). */
export async function configuredProxy(cfg: ProxyConfig | undefined, key: 'instance.proxy' | 'ca.proxy'): Promise<ProxySettings | undefined> {
  if (!cfg) return undefined;
  const url = proxyUrl(cfg.url, key);
  if (url.username || url.password) throw new MidcertError('CONFIG_INVALID', `${key}.url must not hold user-info; set ${key}.username and ${key}.passwordFile`);
  const password = await readSecretFile(cfg.passwordFile, `${key} password`);
  if (password !== undefined && !cfg.username) throw new MidcertError('CONFIG_INVALID', `${key}.passwordFile is set but ${key}.username is not`);
  return {
    url, noProxy: cfg.noProxy ?? splitList(envValue(process.env, 'NO_PROXY')), source: key,
    ...(cfg.username ? { username: cfg.username } : {}), ...(password !== undefined ? { password } : {}),
  };
}

/**
 * The proxy for one target: the configured one, else HTTPS_PROXY (https targets) / HTTP_PROXY
 * (http targets) from the environment; undefined when none applies or the target bypasses it.
 */
export function proxyFor(target: URL, configured: ProxySettings | undefined, env: NodeJS.ProcessEnv = process.env): ProxySettings | undefined {
  const proxy = configured ?? fromEnv(target.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY', env);
  if (!proxy) return undefined;
  const port = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
  return bypasses(target.hostname, port, proxy.noProxy) ? undefined : proxy;
}

function fromEnv(name: 'HTTPS_PROXY' | 'HTTP_PROXY', env: NodeJS.ProcessEnv): ProxySettings | undefined {
  const value = envValue(env, name);
  if (!value) return undefined;
  const url = proxyUrl(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`, name);
  const username = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  return {
    url, noProxy: splitList(envValue(env, 'NO_PROXY')), source: name,
    ...(username ? { username } : {}), ...(username && password ? { password } : {}),
  };
}

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return (env[name] ?? env[name.toLowerCase()])?.trim() || undefined;
}

function splitList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter(Boolean);
}

function proxyUrl(text: string, key: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new MidcertError('CONFIG_INVALID', `${key}: "${redactUserInfo(text).slice(0, 80)}" is not a URL`);
  }
  if (url.protocol !== 'http:') throw new MidcertError('CONFIG_INVALID', `${key}: only http:// proxies are supported (CONNECT over plain HTTP), not ${url.protocol}`);
  if (url.pathname !== '/' && url.pathname !== '') throw new MidcertError('CONFIG_INVALID', `${key}: a proxy URL has no path`);
  return url;
}

function redactUserInfo(text: string): string {
  return text.replace(/\/\/[^@/]*@/, '//***@');
}

/** NO_PROXY matching (curl's rules plus CIDR): `*`, exact names, domain suffixes, host:port, IPs, CIDR blocks. */
export function bypasses(hostname: string, port: number, noProxy: readonly string[]): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase().replace(/\.$/, '');
  for (const raw of noProxy) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    let entryPort: number | undefined;
    const withPort = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (withPort) {
      entry = withPort[1] as string;
      entryPort = Number(withPort[2]);
    }
    entry = entry.replace(/^\[(.*)\]$/, '$1');
    if (entryPort !== undefined && entryPort !== port) continue;
    if (entry.includes('/')) {
      const [net, bits] = entry.split('/');
      const family = isIP(net ?? '');
      if (family && isIP(host) === family) {
        const list = new BlockList();
        try {
          list.addSubnet(net as string, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
          if (list.check(host, family === 4 ? 'ipv4' : 'ipv6')) return true;
        } catch { /* a malformed CIDR matches nothing */ }
      }
      continue;
    }
    const name = entry.replace(/^\*?\./, '');
    if (host === name || (!isIP(host) && host.endsWith(`.${name}`))) return true;
  }
  return false;
}

/** `http://host:port (instance.proxy)`: what every proxy message names. Never the password. */
export function describeProxy(proxy: ProxySettings): string {
  return `${proxy.url.origin} (${proxy.source})`;
}

export function proxyAuthorization(proxy: ProxySettings): string | undefined {
  if (!proxy.username) return undefined;
  return `Basic ${Buffer.from(`${proxy.username}:${proxy.password ?? ''}`, 'utf8').toString('base64')}`;
}

/** Opens a CONNECT tunnel to host:port through the proxy; rejects with a ProxyError. */
export function openTunnel(proxy: ProxySettings, host: string, port: number, timeoutMs = 30_000): Promise<Socket> {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  const authority = `${bare.includes(':') ? `[${bare}]` : bare}:${port}`;
  const where = describeProxy(proxy);
  const headers: Record<string, string> = { Host: authority, 'User-Agent': `midcert/${VERSION}` };
  const auth = proxyAuthorization(proxy);
  if (auth) headers['Proxy-Authorization'] = auth;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const req = httpRequest({
      host: proxy.url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(proxy.url.port || 80), method: 'CONNECT', path: authority, headers, agent: false,
    });
    const timer = setTimeout(() => {
      settle(() => reject(new ProxyError('unreachable', `the proxy ${where} did not open the tunnel to ${authority} within ${Math.round(timeoutMs / 1000)} s`)));
      req.destroy();
    }, timeoutMs);
    req.once('connect', (res, socket, head) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        socket.destroy();
        const said = `${status} ${res.statusMessage ?? ''}`.trim();
        // 407 is the standard answer; tinyproxy answers 401 to wrong credentials.
        if (status === 407 || status === 401) {
          const hint = proxy.username
            ? `the proxy refused the credentials of user "${proxy.username}"; check ${proxy.source === 'instance.proxy' || proxy.source === 'ca.proxy' ? `${proxy.source}.username and ${proxy.source}.passwordFile` : `the user-info in ${proxy.source}`}`
            : `set ${proxy.source === 'instance.proxy' || proxy.source === 'ca.proxy' ? `${proxy.source}.username and ${proxy.source}.passwordFile` : `user:password@ in ${proxy.source}`}`;
          settle(() => reject(new ProxyError('auth', `the proxy ${where} requires authentication (HTTP ${status === 407 ? '407 Proxy Authentication Required' : said}) for the tunnel to ${authority}: ${hint}`)));
        } else if (status === 502 || status === 503 || status === 504 || status === 500) {
          settle(() => reject(new ProxyError('unreachable', `the proxy ${where} could not reach ${authority} (HTTP ${said})`)));
        } else {
          settle(() => reject(new ProxyError('refused', `the proxy ${where} refused the tunnel to ${authority} (HTTP ${said})`)));
        }
        return;
      }
      if (head.length > 0) socket.unshift(head);
      settle(() => resolve(socket));
    });
    req.once('response', (res) => {
      // A proxy that answers CONNECT with a normal response (not a tunnel).
      res.resume();
      settle(() => reject(new ProxyError('refused', `the proxy ${where} did not open a tunnel to ${authority} (HTTP ${res.statusCode})`)));
    });
    req.once('error', (err: NodeJS.ErrnoException) => {
      settle(() => reject(new ProxyError('unreachable', `cannot reach the proxy ${where}: ${err.code ?? (err.message.split('\n', 1)[0] ?? 'error')}`)));
    });
    req.end();
  });
}

/**
 * A `createConnection` for an https.Agent: the CONNECT tunnel, then TLS to the target over it.
 * The TLS socket is handed over at once (as https.Agent does), so callers see 'secureConnect'.
 */
export function tunnelConnection(proxy: ProxySettings, timeoutMs?: number) {
  return (options: ConnectionOptions & { host?: string; port?: number | string }, callback: (err: Error | null, socket?: Socket) => void): undefined => {
    const host = options.host ?? 'localhost';
    const port = Number(options.port ?? 443);
    openTunnel(proxy, host, port, timeoutMs).then((socket) => {
      const { host: _h, port: _p, path: _path, ...rest } = options as ConnectionOptions & { host?: string; port?: number; path?: string };
      const servername = options.servername ?? (isIP(host) ? undefined : host);
      const tls = tlsConnect({ ...rest, socket, host, ...(servername ? { servername } : {}) });
      callback(null, tls);
    }, (err: Error) => callback(err));
    return undefined;
  };
}

/** Makes a keep-alive https agent (or one made for a single call) tunnel through the proxy. */
export function tunnelAgent<T extends HttpAgent>(agent: T, proxy: ProxySettings, timeoutMs?: number): T {
  (agent as unknown as { createConnection: unknown }).createConnection = tunnelConnection(proxy, timeoutMs);
  return agent;
}
