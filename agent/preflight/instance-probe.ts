import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import type { ErrorCode } from '../../common/errors.js';
import { VERSION } from '../../common/version.js';
import { parseCertificate } from '../../pki/certificate.js';

/**
 * One HTTPS GET of the instance URL's root, the way the MID would reach it: straight, or through
 * the configured HTTP proxy with a CONNECT tunnel. Reports what the connection showed — the
 * certificate chain presented (trusted or not), the status and headers — and never throws.
 * No credential for the instance is sent; proxy credentials only in Proxy-Authorization.
 */

export interface ProbeProxy {
  host: string;
  port: number;
  /** Only when config.xml holds them in clear; never logged or echoed. */
  username?: string;
  password?: string;
}

export interface ProbeTarget {
  url: URL;
  proxy?: ProbeProxy;
  /** Trusted CA certificates (PEM), e.g. the system roots plus preflight.instanceCaFile. */
  ca: string[];
  timeoutMs: number;
}

export interface PresentedCertificate {
  subject: string;
  issuer: string;
}

export type ProbeResult = ProbeFailure | ProbeAnswer;

export interface ProbeFailure {
  reached: false;
  viaProxy: boolean;
  code: ErrorCode;
  message: string;
  /** The chain, when the TLS handshake got that far (a server that hangs after it). */
  presented: PresentedCertificate[];
  trustError?: string;
}

export interface ProbeAnswer {
  reached: true;
  viaProxy: boolean;
  status: number;
  headers: IncomingHttpHeaders;
  /** Local time the response headers arrived. */
  receivedAt: Date;
  /** Leaf first, as presented (and completed by the local trust store where it could). */
  presented: PresentedCertificate[];
  /** Chain verification and host name check; the reason when either failed. */
  trustError?: string;
}

type Stage = 'connecting to the proxy' | 'waiting for the proxy tunnel' | 'connecting' | 'in the TLS handshake' | 'waiting for the HTTP response';

export function probeInstance(target: ProbeTarget): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const viaProxy = target.proxy !== undefined;
    const host = target.url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(target.url.port || 443);
    const sockets: { destroy(): void }[] = [];
    let stage: Stage = viaProxy ? 'connecting to the proxy' : 'connecting';
    let presented: PresentedCertificate[] = [];
    let trustError: string | undefined;
    let settled = false;

    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      resolve(result);
    };
    const fail = (code: ErrorCode, message: string): void => finish({
      reached: false, viaProxy, code, message, presented, ...(trustError ? { trustError } : {}),
    });
    const timer = setTimeout(() => {
      fail('INSTANCE_UNREACHABLE', `${describe(target)} did not answer within ${formatSeconds(target.timeoutMs)} (${stage})`);
    }, target.timeoutMs);

    const overTls = (socket?: Socket): void => {
      stage = socket ? 'in the TLS handshake' : 'connecting';
      const tls: TLSSocket = tlsConnect({
        ...(socket ? { socket } : { host, port }),
        ...(isIP(host) ? {} : { servername: host }),
        ca: target.ca,
        // Trust is judged below and reported as a finding; the check goes on to see the headers.
        rejectUnauthorized: false,
      });
      sockets.push(tls);
      if (!socket) tls.once('connect', () => { stage = 'in the TLS handshake'; });
      tls.once('secureConnect', () => {
        presented = presentedChain(tls.getPeerCertificate(true));
        trustError = trustProblem(tls, host);
        stage = 'waiting for the HTTP response';
      });
      tls.on('error', (err) => fail('INSTANCE_UNREACHABLE', `${describe(target)}: ${stage === 'in the TLS handshake' ? 'TLS handshake failed: ' : ''}${reason(err)}`));
      const req = httpRequest({
        createConnection: () => tls,
        method: 'GET',
        path: '/',
        headers: { Host: target.url.host, 'User-Agent': `midcert-agent/${VERSION} (preflight)`, Accept: '*/*', Connection: 'close' },
      });
      req.on('response', (res) => {
        const answer: ProbeAnswer = {
          reached: true, viaProxy, status: res.statusCode ?? 0, headers: res.headers, receivedAt: new Date(), presented,
          ...(trustError ? { trustError } : {}),
        };
        res.resume();
        finish(answer);
      });
      req.on('error', (err) => fail('INSTANCE_UNREACHABLE', `${describe(target)}: ${reason(err)} (${stage})`));
      req.end();
    };

    if (!target.proxy) {
      overTls();
      return;
    }
    const proxy = target.proxy;
    const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const headers: Record<string, string> = { Host: authority, 'User-Agent': `midcert-agent/${VERSION} (preflight)` };
    if (proxy.username && proxy.password !== undefined) {
      headers['Proxy-Authorization'] = `Basic ${Buffer.from(`${proxy.username}:${proxy.password}`, 'utf8').toString('base64')}`;
    }
    const connectReq = httpRequest({ host: proxy.host, port: proxy.port, method: 'CONNECT', path: authority, headers, agent: false });
    sockets.push(connectReq);
    connectReq.once('socket', (socket) => socket.once('connect', () => { stage = 'waiting for the proxy tunnel'; }));
    connectReq.once('connect', (res, socket, head) => {
      sockets.push(socket);
      if (res.statusCode !== 200) {
        const why = res.statusCode === 407 || res.statusCode === 401 ? `requires authentication (${res.statusCode === 407 ? '407 Proxy Authentication Required' : '401 Unauthorized: the credentials were refused'})` : `answered ${res.statusCode} ${res.statusMessage ?? ''}`.trim();
        fail('PROXY_REFUSED', `the proxy ${proxy.host}:${proxy.port} refused the tunnel to ${authority}: it ${why}`);
        return;
      }
      if (head.length > 0) socket.unshift(head);
      overTls(socket);
    });
    connectReq.on('error', (err) => fail('INSTANCE_UNREACHABLE', `the proxy ${proxy.host}:${proxy.port}: ${reason(err)} (${stage})`));
    connectReq.end();
  });
}

/** The chain the server presented, leaf first (issuerCertificate links, stopping at the self-signed). */
function presentedChain(peer: DetailedPeerCertificate | undefined): PresentedCertificate[] {
  const out: PresentedCertificate[] = [];
  const seen = new Set<string>();
  let cert: DetailedPeerCertificate | undefined = peer;
  while (cert && cert.raw && !seen.has(cert.fingerprint256) && out.length < 10) {
    seen.add(cert.fingerprint256);
    out.push(describeCertificate(cert));
    cert = cert.issuerCertificate;
  }
  return out;
}

function describeCertificate(cert: DetailedPeerCertificate): PresentedCertificate {
  try {
    const parsed = parseCertificate(cert.raw);
    return { subject: parsed.subjectText, issuer: parsed.issuerText };
  } catch {
    return { subject: flatName(cert.subject), issuer: flatName(cert.issuer) };
  }
}

function flatName(name: object | undefined): string {
  return Object.entries((name ?? {}) as Record<string, string | string[]>).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`).join(',');
}

/** Why the presented certificate would not be accepted: chain verification, then the host name. */
function trustProblem(tls: TLSSocket, host: string): string | undefined {
  if (!tls.authorized) return String(tls.authorizationError ?? 'not trusted');
  const peer = tls.getPeerCertificate();
  const mismatch = checkServerIdentity(host, peer);
  return mismatch ? mismatch.message : undefined;
}

function describe(target: ProbeTarget): string {
  return `${target.url.origin}${target.proxy ? ` (through the proxy ${target.proxy.host}:${target.proxy.port})` : ''}`;
}

function reason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  const message = (err.message.split('\n', 1)[0] ?? '').slice(0, 200);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
